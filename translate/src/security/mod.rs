//! Istio's security APIs for a workload: which PeerAuthentications and
//! AuthorizationPolicies apply to it, the mTLS mode they compose to (per port), and what a
//! client may assume about a destination's mode (auto mTLS).
//!
//! Selection follows Istio: policies of the workload's namespace and of the root namespace
//! apply; an absent or empty selector makes a policy namespace-wide (mesh-wide in the root
//! namespace). Where Istio picks the *oldest* of several candidates, shoal — which has no
//! creation times — picks the first by namespace and name, so every replica agrees.

pub(crate) mod jwt;
pub(crate) mod matchers;
pub(crate) mod rbac;
pub(crate) mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use shoal_config::istio::{MtlsMode, selector_labels};
use shoal_config::{Labels, selects};

use crate::model::{
    AuthorizationPolicyRule, Model, PeerAuthenticationPolicy, Policy, RequestAuthenticationPolicy,
};
use crate::scope::ViewKey;

/// A policy's identity in a [`ViewKey`]: (namespace, name).
pub(crate) type PolicyRef = (Arc<str>, Arc<str>);

/// An effective mTLS mode (`UNSET` resolved through inheritance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PeerMode {
    /// Plaintext only.
    Disable,
    /// mTLS and plaintext (Istio's default).
    Permissive,
    /// mTLS only.
    Strict,
}

impl PeerMode {
    fn from_set(m: MtlsMode) -> Option<PeerMode> {
        match m {
            MtlsMode::Unset => None,
            MtlsMode::Disable => Some(PeerMode::Disable),
            MtlsMode::Permissive => Some(PeerMode::Permissive),
            MtlsMode::Strict => Some(PeerMode::Strict),
        }
    }
}

/// A workload's inbound mTLS modes: one for the workload, overrides per workload port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerModes {
    pub workload: PeerMode,
    pub ports: BTreeMap<u16, PeerMode>,
}

impl PeerModes {
    pub fn port(&self, port: u16) -> PeerMode {
        self.ports.get(&port).copied().unwrap_or(self.workload)
    }
}

impl Default for PeerModes {
    fn default() -> Self {
        PeerModes {
            workload: PeerMode::Permissive,
            ports: BTreeMap::new(),
        }
    }
}

fn pa_selector(p: &PeerAuthenticationPolicy) -> Option<&Labels> {
    selector_labels(p.spec.selector.as_ref())
}

/// The PeerAuthentications that decide a workload's mode, as Istio composes them: the
/// mesh-wide one (root namespace, no selector), the namespace-wide one and the
/// workload-level one (a selector matching the workload, outside the root namespace —
/// selectors in the root namespace are ignored, as in Istio).
pub(crate) fn peer_policies_for<'a>(
    model: &'a Model,
    namespace: &str,
    labels: &Labels,
) -> Vec<&'a Arc<PeerAuthenticationPolicy>> {
    let root = model.options.root_namespace.as_str();
    let all = &model.peer_authentications;
    let mesh = all
        .iter()
        .find(|p| p.namespace.as_ref() == root && pa_selector(p).is_none());
    let (ns_wide, workload) = if namespace == root {
        (None, None)
    } else {
        let in_ns = || all.iter().filter(|p| p.namespace.as_ref() == namespace);
        (
            in_ns().find(|p| pa_selector(p).is_none()),
            in_ns().find(|p| pa_selector(p).is_some_and(|sel| selects(sel, labels))),
        )
    };
    [mesh, ns_wide, workload].into_iter().flatten().collect()
}

/// Composes the modes of the policies [`peer_policies_for`] chose (Istio's
/// `ComposePeerAuthentication`): mesh, then namespace, then workload, each overriding the
/// previous unless `UNSET`; PERMISSIVE when nothing sets a mode. Port-level modes come from
/// the workload-level policy only; an `UNSET` port inherits the workload's mode.
pub(crate) fn compose(policies: &[&Arc<PeerAuthenticationPolicy>], root: &str) -> PeerModes {
    let mut modes = PeerModes::default();
    let level = |p: &PeerAuthenticationPolicy| match (pa_selector(p), p.namespace.as_ref() == root)
    {
        (None, true) => 0,
        (None, false) => 1,
        (Some(_), false) => 2,
        (Some(_), true) => 3,
    };
    let mut ordered: Vec<&Arc<PeerAuthenticationPolicy>> = policies.to_vec();
    ordered.sort_by_key(|p| level(p));
    for p in ordered {
        let lvl = level(p);
        if lvl == 3 {
            continue;
        }
        if let Some(m) = p
            .spec
            .mtls
            .as_ref()
            .and_then(|m| m.set_mode())
            .and_then(PeerMode::from_set)
        {
            modes.workload = m;
        }
        if lvl == 2 {
            for (port, mtls) in &p.spec.port_level_mtls {
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                let m = mtls
                    .set_mode()
                    .and_then(PeerMode::from_set)
                    .unwrap_or(modes.workload);
                modes.ports.insert(port, m);
            }
        }
    }
    modes
}

/// The mode a client may infer for a destination namespace (Istio's
/// `BestEffortInferServiceMTLSMode`): its namespace-wide policy, else the mesh-wide one;
/// `None` when neither sets a mode. Workload-level policies are not considered — a client
/// cannot know which workload it will reach — so auto mTLS to a workload whose own policy
/// says DISABLE still uses mTLS, exactly as in Istio.
pub(crate) fn namespace_mode(model: &Model, namespace: &str) -> Option<PeerMode> {
    let root = model.options.root_namespace.as_str();
    let wide_mode = |ns: &str| {
        model
            .peer_authentications
            .iter()
            .find(|p| p.namespace.as_ref() == ns && pa_selector(p).is_none())
            .and_then(|p| p.spec.mtls.as_ref())
            .and_then(|m| m.set_mode())
            .and_then(PeerMode::from_set)
    };
    let own = if namespace == root {
        None
    } else {
        wide_mode(namespace)
    };
    own.or_else(|| wide_mode(root))
}

/// The AuthorizationPolicies that apply to a workload: those of its namespace and of the
/// root namespace whose selector is absent or matches it. Policies attached by
/// `targetRef(s)` apply to gateways and waypoints only, never to sidecars.
pub(crate) fn authorization_policies_for<'a>(
    model: &'a Model,
    namespace: &str,
    labels: &Labels,
) -> Vec<&'a Arc<AuthorizationPolicyRule>> {
    let root = model.options.root_namespace.as_str();
    model
        .authorization_policies
        .iter()
        .filter(|p| p.namespace.as_ref() == namespace || p.namespace.as_ref() == root)
        .filter(|p| !p.spec.has_target_refs())
        .filter(|p| {
            selector_labels(p.spec.selector.as_ref()).is_none_or(|sel| selects(sel, labels))
        })
        .collect()
}

fn refs<T>(list: &[&Arc<Policy<T>>]) -> Vec<PolicyRef> {
    list.iter()
        .map(|p| (p.namespace.clone(), p.name.clone()))
        .collect()
}

/// The RequestAuthentications that apply to a workload, selected like
/// AuthorizationPolicies: its namespace's and the root namespace's, with an absent or
/// matching selector; those attached by `targetRef(s)` apply to no sidecar.
pub(crate) fn request_authentications_for<'a>(
    model: &'a Model,
    namespace: &str,
    labels: &Labels,
) -> Vec<&'a Arc<RequestAuthenticationPolicy>> {
    let root = model.options.root_namespace.as_str();
    model
        .request_authentications
        .iter()
        .filter(|p| p.namespace.as_ref() == namespace || p.namespace.as_ref() == root)
        .filter(|p| !p.spec.has_target_refs())
        .filter(|p| {
            selector_labels(p.spec.selector.as_ref()).is_none_or(|sel| selects(sel, labels))
        })
        .collect()
}

/// The security policies of a workload, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PolicyRefs {
    pub peer: Vec<PolicyRef>,
    pub authorization: Vec<PolicyRef>,
    pub request_authentication: Vec<PolicyRef>,
}

/// What of a workload's labels matters to its view: the names of the policies that apply.
pub(crate) fn policy_refs(model: &Model, namespace: &str, labels: &Labels) -> PolicyRefs {
    PolicyRefs {
        peer: refs(&peer_policies_for(model, namespace, labels)),
        authorization: refs(&authorization_policies_for(model, namespace, labels)),
        request_authentication: refs(&request_authentications_for(model, namespace, labels)),
    }
}

fn resolve<'a, T>(list: &'a [Arc<Policy<T>>], names: &[PolicyRef]) -> Vec<&'a Arc<Policy<T>>> {
    names
        .iter()
        .filter_map(|(ns, name)| list.iter().find(|p| &p.namespace == ns && &p.name == name))
        .collect()
}

/// A view's inbound security: mTLS modes and the RBAC configurations (in filter order:
/// AUDIT, DENY, ALLOW) for HTTP and for TCP filter chains.
#[derive(Debug, Clone, Default)]
pub(crate) struct InboundSecurity {
    pub modes: PeerModes,
    pub http_rbac: Vec<rbac::RbacConfig>,
    pub tcp_rbac: Vec<rbac::RbacConfig>,
    /// The `jwt_authn` filter of HTTP chains, when RequestAuthentications apply.
    pub jwt: Option<jwt::JwtConfig>,
}

/// The inbound security of a view, from the policies its key names.
pub(crate) fn inbound(model: &Model, key: &ViewKey) -> InboundSecurity {
    let root = model.options.root_namespace.as_str();
    let peer = resolve(&model.peer_authentications, &key.peer_authentication);
    let authz = resolve(&model.authorization_policies, &key.authorization);
    let request_auth = resolve(&model.request_authentications, &key.request_authentication);
    let jwt = jwt::build(model, &request_auth);
    let issuers = jwt.as_ref().map(|j| j.issuers.clone()).unwrap_or_default();
    let td = model.options.trust_domain.as_str();
    let mut modes = compose(&peer, root);
    if !key.workload_certs {
        // No certificate to terminate mTLS with: PERMISSIVE accepts plaintext only.
        let plain = |m: PeerMode| {
            if m == PeerMode::Permissive {
                PeerMode::Disable
            } else {
                m
            }
        };
        modes.workload = plain(modes.workload);
        for m in modes.ports.values_mut() {
            *m = plain(*m);
        }
    }
    InboundSecurity {
        modes,
        http_rbac: rbac::build(
            &authz,
            td,
            &model.options.trust_domain_aliases,
            &issuers,
            false,
        ),
        tcp_rbac: rbac::build(
            &authz,
            td,
            &model.options.trust_domain_aliases,
            &issuers,
            true,
        ),
        jwt,
    }
}

#[cfg(test)]
mod tests;
