//! How a policy attaches to proxies, for every kind that attaches the same way: Istio's
//! label selector (`selector.matchLabels` of the security kinds and ProxyConfig,
//! `workloadSelector.labels` of Sidecar) and the Gateway-API style `targetRef`/`targetRefs`
//! (AuthorizationPolicy, RequestAuthentication). The YAML keeps each kind's own field
//! names; [`Attached::target`] reads them into one [`PolicyTarget`], which the validator
//! checks once (`validate/policy_target.rs`) and [`applicable`] selects by.
//!
//! Selection follows Istio: a policy applies to workloads of its own namespace and, from
//! the root namespace, to workloads of every namespace; an absent or empty selector makes
//! it namespace-wide (mesh-wide in the root namespace). A policy attached by `targetRef(s)`
//! applies to no workload: it applies where a waypoint serves what it names (the waypoint's
//! `Gateway`, a `Service` or `ServiceEntry` of its namespace, or, from the root namespace,
//! the `GatewayClass` `istio-waypoint`), see [`PolicyTarget::targets`].

use serde::{Deserialize, Serialize};

use crate::meta::{Labels, selects};

/// `istio.type.v1beta1.WorkloadSelector` (`matchLabels`), the selector of the security
/// kinds and of ProxyConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelector {
    #[serde(default)]
    pub match_labels: Labels,
}

/// A policy's attachment as written, borrowed from its spec.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicyTarget<'a> {
    /// The selector's labels, `Some` whenever a selector is written (even an empty one).
    pub selector: Option<&'a Labels>,
    /// `targetRef`, kept as written: shoal attaches nothing by reference.
    pub target_ref: Option<&'a serde_json::Value>,
    /// `targetRefs`, kept as written.
    pub target_refs: &'a [serde_json::Value],
}

/// A spec that attaches to proxies through a [`PolicyTarget`].
pub trait Attached {
    fn target(&self) -> PolicyTarget<'_>;
}

/// A stored policy as [`applicable`] sees it: where it is defined and how it attaches.
pub trait AttachedPolicy {
    /// The namespace the policy is defined in.
    fn namespace(&self) -> &str;
    fn target(&self) -> PolicyTarget<'_>;
}

impl<P: AttachedPolicy + ?Sized> AttachedPolicy for std::sync::Arc<P> {
    fn namespace(&self) -> &str {
        P::namespace(self)
    }
    fn target(&self) -> PolicyTarget<'_> {
        P::target(self)
    }
}

/// The proxy policies are selected for: a workload (sidecar, proxyless gRPC server) or a
/// gateway, by its namespace and labels.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub namespace: &'a str,
    pub labels: &'a Labels,
}

/// How far a policy reaches, from where it is defined and whether it has a selector
/// (Istio's levels, most general first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The root namespace, no selector: every workload of the mesh.
    Mesh,
    /// Another namespace, no selector: every workload of that namespace.
    Namespace,
    /// A selector, outside the root namespace: the workloads of its namespace it selects.
    Workload,
    /// A selector in the root namespace: the workloads of any namespace it selects.
    RootSelector,
}

/// The kinds a policy can be attached to by reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// `gateway.networking.k8s.io` `Gateway`.
    Gateway,
    /// `gateway.networking.k8s.io` `GatewayClass`.
    GatewayClass,
    /// Core `Service`.
    Service,
    /// `networking.istio.io` `ServiceEntry`.
    ServiceEntry,
}

/// One `targetRef` (Gateway API `PolicyTargetReference`), borrowed from the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetRef<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
}

impl<'a> TargetRef<'a> {
    /// Reads one reference; `None` when it is not an object with a kind and a name.
    pub fn read(v: &'a serde_json::Value) -> Option<TargetRef<'a>> {
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
        Some(TargetRef {
            group: field("group").unwrap_or(""),
            kind: field("kind")?,
            name: field("name")?,
            namespace: field("namespace"),
        })
    }

    /// The kind named, when it is one a policy attaches to (`None`: not supported).
    pub fn kind(&self) -> Option<RefKind> {
        match (self.group, self.kind) {
            ("gateway.networking.k8s.io", "Gateway") => Some(RefKind::Gateway),
            ("gateway.networking.k8s.io", "GatewayClass") => Some(RefKind::GatewayClass),
            ("" | "core", "Service") => Some(RefKind::Service),
            ("networking.istio.io", "ServiceEntry") => Some(RefKind::ServiceEntry),
            _ => None,
        }
    }
}

impl<'a> PolicyTarget<'a> {
    /// The attachment of a kind with a `selector.matchLabels` only.
    pub fn selector(selector: Option<&'a PolicySelector>) -> PolicyTarget<'a> {
        PolicyTarget {
            selector: selector.map(|s| &s.match_labels),
            ..PolicyTarget::default()
        }
    }

    /// The labels a workload must carry; `None` without a selector or with an empty one
    /// (a namespace- or mesh-wide policy, unless it attaches by reference).
    pub fn workload_labels(&self) -> Option<&'a Labels> {
        self.selector.filter(|l| !l.is_empty())
    }

    /// Whether the policy attaches by `targetRef(s)` rather than by selector.
    pub fn has_target_refs(&self) -> bool {
        self.target_ref_field().is_some()
    }

    /// The field the references are written in (`spec.targetRef` when both are).
    pub fn target_ref_field(&self) -> Option<&'static str> {
        if self.target_ref.is_some() {
            Some("spec.targetRef")
        } else if !self.target_refs.is_empty() {
            Some("spec.targetRefs")
        } else {
            None
        }
    }

    /// The references as written (`targetRef` first, then `targetRefs`); malformed ones
    /// (not an object, no kind or name) are skipped (the validator reports them).
    pub fn references(&self) -> impl Iterator<Item = TargetRef<'a>> {
        self.target_ref
            .into_iter()
            .chain(self.target_refs.iter())
            .filter_map(TargetRef::read)
    }

    /// Whether a policy defined in `policy_ns` names `kind`/`name` of namespace `ns` by
    /// reference. A reference reaches its policy's own namespace only (a written
    /// `namespace` must be that one); a `GatewayClass` is cluster-scoped and is named from
    /// the root namespace.
    pub fn targets(
        &self,
        policy_ns: &str,
        root: &str,
        kind: RefKind,
        ns: &str,
        name: &str,
    ) -> bool {
        self.references().any(|r| {
            r.kind() == Some(kind)
                && r.name == name
                && if kind == RefKind::GatewayClass {
                    policy_ns == root
                } else {
                    policy_ns == ns && r.namespace.is_none_or(|n| n == ns)
                }
        })
    }

    /// The level of a policy defined in `namespace`; `None` for one attached by reference.
    pub fn level(&self, namespace: &str, root: &str) -> Option<Level> {
        if self.has_target_refs() {
            return None;
        }
        let in_root = namespace == root;
        Some(match (self.workload_labels().is_some(), in_root) {
            (false, true) => Level::Mesh,
            (false, false) => Level::Namespace,
            (true, false) => Level::Workload,
            (true, true) => Level::RootSelector,
        })
    }

    /// Whether a policy defined in `namespace` applies to `workload`, and at which level.
    pub fn applies_to(&self, namespace: &str, root: &str, workload: Workload<'_>) -> Option<Level> {
        let level = self.level(namespace, root)?;
        let own = namespace == workload.namespace;
        let selected = || {
            self.workload_labels()
                .is_some_and(|sel| selects(sel, workload.labels))
        };
        let applies = match level {
            Level::Mesh => true,
            Level::Namespace => own,
            Level::Workload => own && selected(),
            Level::RootSelector => selected(),
        };
        applies.then_some(level)
    }
}

/// The policies among `policies` that apply to `workload`, in their order, with the level
/// each applies at. Kinds that compose levels (PeerAuthentication) or keep only some of
/// them pick from these.
pub fn applicable<'p, P: AttachedPolicy + 'p>(
    policies: impl IntoIterator<Item = &'p P>,
    root: &str,
    workload: Workload<'_>,
) -> impl Iterator<Item = (Level, &'p P)> {
    policies.into_iter().filter_map(move |p| {
        p.target()
            .applies_to(p.namespace(), root, workload)
            .map(|level| (level, p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P {
        ns: &'static str,
        labels: Option<Labels>,
        refs: Vec<serde_json::Value>,
    }

    impl AttachedPolicy for P {
        fn namespace(&self) -> &str {
            self.ns
        }
        fn target(&self) -> PolicyTarget<'_> {
            PolicyTarget {
                selector: self.labels.as_ref(),
                target_ref: None,
                target_refs: &self.refs,
            }
        }
    }

    fn labels(l: &[(&str, &str)]) -> Labels {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn p(ns: &'static str, sel: Option<&[(&str, &str)]>) -> P {
        P {
            ns,
            labels: sel.map(labels),
            refs: Vec::new(),
        }
    }

    #[test]
    fn levels_follow_istio() {
        let app = labels(&[("app", "a")]);
        let w = Workload {
            namespace: "shop",
            labels: &app,
        };
        let by_ref = P {
            refs: vec![serde_json::json!({"kind": "Gateway", "name": "g"})],
            ..p("shop", None)
        };
        let policies = [
            p("istio-system", None),
            p("istio-system", Some(&[("app", "a")])),
            p("istio-system", Some(&[("app", "b")])),
            p("shop", Some(&[])),
            p("shop", Some(&[("app", "a")])),
            p("shop", Some(&[("app", "b")])),
            p("other", None),
            p("other", Some(&[("app", "a")])),
            by_ref,
        ];
        let got: Vec<(Level, usize)> = applicable(&policies, "istio-system", w)
            .map(|(l, p)| (l, policies.iter().position(|q| std::ptr::eq(q, p)).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (Level::Mesh, 0),
                (Level::RootSelector, 1),
                (Level::Namespace, 3),
                (Level::Workload, 4),
            ]
        );
        // In the root namespace, a policy there without selector is mesh-wide.
        let root = Workload {
            namespace: "istio-system",
            labels: &app,
        };
        let got: Vec<Level> = applicable(&policies[..3], "istio-system", root)
            .map(|(l, _)| l)
            .collect();
        assert_eq!(got, [Level::Mesh, Level::RootSelector]);
    }
}
