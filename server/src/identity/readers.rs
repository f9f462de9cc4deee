//! Who may read its namespace's gateway credentials (`credentialName` Secrets over SDS).
//!
//! Istio lets a gateway read the Secrets of its namespace when Kubernetes RBAC allows its
//! service account to (a SubjectAccessReview). shoal has no RBAC to ask, and a proxy's type
//! (`router~…`) is only what it says it is, so it asks the registry instead: an identity
//! reads credentials when a Pod of its namespace runs with its service account and is a
//! gateway (an Istio Gateway selects its labels, or it carries a Gateway API gateway-name
//! label), or when the operator names it in `--credential-readers NS/SA` (`*` for any
//! part). Every other identity — any workload that merely claims to be a gateway — gets
//! its own secrets only.

use shoal_ca::Identity;
use shoal_config::{ConfigSnapshot, Kind, Object, selects};

/// Labels the Gateway API (and Istio's deployment of it) puts on gateway pods.
const GATEWAY_NAME_LABELS: [&str; 2] = [
    "gateway.networking.k8s.io/gateway-name",
    "istio.io/gateway-name",
];

/// The operator's explicit readers, `(namespace, service account)` with `*` wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialReaders {
    explicit: Vec<(String, String)>,
}

impl CredentialReaders {
    /// Parses `NS/SA` entries.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let explicit = entries
            .iter()
            .map(|e| {
                let (ns, sa) = e
                    .split_once('/')
                    .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--credential-readers {e:?} is not NAMESPACE/SERVICE_ACCOUNT"
                        )
                    })?;
                Ok((ns.to_string(), sa.to_string()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(CredentialReaders { explicit })
    }

    /// Whether `identity` may read the credentials of its namespace.
    pub fn allows(&self, identity: &Identity, config: &ConfigSnapshot) -> bool {
        let part = |want: &str, have: &str| want == "*" || want == have;
        self.explicit
            .iter()
            .any(|(ns, sa)| part(ns, &identity.namespace) && part(sa, &identity.service_account))
            || runs_a_gateway(identity, config)
    }
}

/// A set of identities by namespace (`NS`) or one by one (`NS/SA`). Who may ask the debug
/// xDS types (`istioctl proxy-status --xds-address`; Istio serves them to identities of
/// its system namespace: `--debug-readers`, `istio-system` by default), and which peer
/// groups may import this group's exports (`--federation-peers`, none by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugReaders {
    /// `(namespace, service account)`; `None`: any account of the namespace.
    entries: Vec<(String, Option<String>)>,
}

impl Default for DebugReaders {
    fn default() -> Self {
        DebugReaders {
            entries: vec![("istio-system".into(), None)],
        }
    }
}

impl DebugReaders {
    /// Parses `NS` and `NS/SA` entries of `--debug-readers`.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        Self::parse_flag("--debug-readers", entries)
    }

    /// Parses `NS` and `NS/SA` entries of `flag`.
    pub fn parse_flag(flag: &str, entries: &[String]) -> anyhow::Result<Self> {
        let entries = entries
            .iter()
            .map(|e| {
                let (ns, sa) = match e.split_once('/') {
                    Some((ns, sa)) => (ns, Some(sa)),
                    None => (e.as_str(), None),
                };
                anyhow::ensure!(
                    shoal_config::host::is_dns_label(ns)
                        && sa.is_none_or(|sa| !sa.is_empty() && !sa.contains('/')),
                    "{flag} {e:?} is not NAMESPACE or NAMESPACE/SERVICE_ACCOUNT"
                );
                Ok((ns.to_string(), sa.map(str::to_string)))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(DebugReaders { entries })
    }

    /// Nobody.
    pub fn none() -> Self {
        DebugReaders {
            entries: Vec::new(),
        }
    }

    pub fn allows(&self, identity: &Identity) -> bool {
        self.entries.iter().any(|(ns, sa)| {
            *ns == identity.namespace
                && sa.as_ref().is_none_or(|sa| *sa == identity.service_account)
        })
    }
}

impl std::fmt::Display for DebugReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (ns, sa)) in self.entries.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            match sa {
                Some(sa) => write!(f, "{sep}{ns}/{sa}")?,
                None => write!(f, "{sep}{ns}")?,
            }
        }
        Ok(())
    }
}

/// The selectors of the Istio Gateways of a config.
fn gateway_selectors(config: &ConfigSnapshot) -> Vec<&shoal_config::Labels> {
    config
        .of_kind(Kind::Gateway)
        .filter_map(|(_, e)| match e.object.as_ref() {
            Object::Gateway(gw) if !gw.spec.selector.is_empty() => Some(&gw.spec.selector),
            _ => None,
        })
        .collect()
}

/// The service account of a Pod that is a gateway (an Istio Gateway selects it, or it
/// carries a Gateway API gateway-name label).
fn gateway_account<'a>(object: &'a Object, selectors: &[&shoal_config::Labels]) -> Option<&'a str> {
    let Object::Pod(pod) = object else {
        return None;
    };
    let labels = &pod.metadata.labels;
    let gateway = selectors.iter().any(|s| selects(s, labels))
        || GATEWAY_NAME_LABELS.iter().any(|l| labels.contains_key(l));
    gateway.then(|| {
        pod.spec
            .service_account_name
            .as_deref()
            .unwrap_or("default")
    })
}

/// A Pod of the identity's namespace and service account that is a gateway.
fn runs_a_gateway(identity: &Identity, config: &ConfigSnapshot) -> bool {
    let selectors = gateway_selectors(config);
    config
        .of_kind_in(Kind::Pod, &identity.namespace)
        .any(|(_, e)| {
            gateway_account(e.object.as_ref(), &selectors)
                == Some(identity.service_account.as_str())
        })
}

/// Every (namespace, service account) that runs a gateway: when this set changes, streams
/// must be resolved again (a gateway whose Pod appeared gets its credentials).
pub fn gateway_identities(config: &ConfigSnapshot) -> std::collections::BTreeSet<(String, String)> {
    let selectors = gateway_selectors(config);
    config
        .of_kind(Kind::Pod)
        .filter_map(|(key, e)| {
            let sa = gateway_account(e.object.as_ref(), &selectors)?;
            Some((key.namespace.to_string(), sa.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> ConfigSnapshot {
        let mut store = shoal_config::ConfigStore::new();
        store.apply("t.yaml", shoal_config::parse::parse_yaml("t.yaml", yaml));
        store.snapshot()
    }

    fn id(ns: &str, sa: &str) -> Identity {
        Identity::new("cluster.local", ns, sa).unwrap()
    }

    const MESH: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: ingress-0, namespace: istio-system, labels: {istio: ingressgateway}}\nspec: {serviceAccountName: ingress}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: istio-system, labels: {app: web}}\nspec: {serviceAccountName: web}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: api-gw-0, namespace: app, labels: {gateway.networking.k8s.io/gateway-name: api}}\nspec: {serviceAccountName: api-gw}\n";

    #[test]
    fn gateway_workloads_of_the_registry_read_credentials() {
        let cfg = config(MESH);
        let none = CredentialReaders::default();
        assert!(none.allows(&id("istio-system", "ingress"), &cfg));
        assert!(none.allows(&id("app", "api-gw"), &cfg));
        // A workload that is no gateway, or a gateway's account in another namespace.
        assert!(!none.allows(&id("istio-system", "web"), &cfg));
        assert!(!none.allows(&id("app", "ingress"), &cfg));
        assert!(!none.allows(&id("istio-system", "nobody"), &cfg));
    }

    #[test]
    fn the_operator_names_readers() {
        let cfg = config("");
        let r = CredentialReaders::parse(&["edge/*".into(), "*/ingress".into()]).unwrap();
        assert!(r.allows(&id("edge", "anything"), &cfg));
        assert!(r.allows(&id("app", "ingress"), &cfg));
        assert!(!r.allows(&id("app", "web"), &cfg));
        for bad in ["edge", "/sa", "ns/", ""] {
            assert!(
                CredentialReaders::parse(&[bad.to_string()]).is_err(),
                "{bad}"
            );
        }
    }
}
