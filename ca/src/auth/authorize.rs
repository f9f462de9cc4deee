//! Which identity a caller may have certified.
//!
//! A workload may only get a certificate for itself. ztunnel is the exception: it holds the
//! certificates of every pod on its node and asks for them with the `ImpersonatedIdentity`
//! metadata. Istio allows that only to node proxies and only for pods scheduled on the
//! caller's own node, so a compromised ztunnel cannot mint identities for the whole mesh;
//! the same rule is applied here, with the pod placement answered by a [`NodeDirectory`].

use crate::auth::{AuthError, Caller};
use crate::identity::{Identity, IdentityError};

/// Knows which workloads run on which Kubernetes node (the server answers from its pod
/// index).
pub trait NodeDirectory: Send + Sync {
    /// Whether a pod running as `identity` is scheduled on `node`.
    fn has_workload_on_node(&self, node: &str, identity: &Identity) -> bool;
}

/// The impersonation policy.
#[derive(Debug, Clone)]
pub struct Authorizer {
    node_proxies: Vec<Identity>,
}

impl Authorizer {
    /// The default policy: only `spiffe://TD/ns/istio-system/sa/ztunnel` may impersonate.
    pub fn new(trust_domain: &str) -> Result<Self, IdentityError> {
        Ok(Authorizer {
            node_proxies: vec![Identity::new(trust_domain, "istio-system", "ztunnel")?],
        })
    }

    /// A policy where exactly `node_proxies` may impersonate workloads on their node.
    pub fn with_node_proxies(node_proxies: Vec<Identity>) -> Self {
        Authorizer { node_proxies }
    }

    pub fn node_proxies(&self) -> &[Identity] {
        &self.node_proxies
    }

    /// The identity `caller` may have certified, given the optional impersonation request.
    pub fn authorize(
        &self,
        caller: &Caller,
        impersonated: Option<&Identity>,
        node_directory: &dyn NodeDirectory,
    ) -> Result<Identity, AuthError> {
        let Some(target) = impersonated else {
            return Ok(caller.identity.clone());
        };
        // Asking for oneself through the impersonation field grants nothing extra.
        if *target == caller.identity {
            return Ok(target.clone());
        }
        if !self.node_proxies.contains(&caller.identity) {
            return Err(AuthError::NotANodeProxy {
                caller: caller.identity.spiffe_uri(),
            });
        }
        if target.trust_domain != caller.identity.trust_domain {
            return Err(AuthError::ForeignTrustDomain {
                identity: target.spiffe_uri(),
            });
        }
        let node = caller
            .node
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or(AuthError::CallerNodeUnknown)?;
        if !node_directory.has_workload_on_node(node, target) {
            return Err(AuthError::WorkloadNotOnNode {
                node: node.to_string(),
                identity: target.spiffe_uri(),
            });
        }
        Ok(target.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::auth::CallerKind;

    struct OneNode;
    impl NodeDirectory for OneNode {
        fn has_workload_on_node(&self, node: &str, identity: &Identity) -> bool {
            node == "node-a" && identity.namespace == "default"
        }
    }

    fn caller(ns: &str, sa: &str, node: Option<&str>, via: CallerKind) -> Caller {
        Caller {
            identity: Identity::new("cluster.local", ns, sa).unwrap(),
            node: node.map(str::to_string),
            pod: None,
            via,
        }
    }

    #[test]
    fn policy() {
        let authz = Authorizer::new("cluster.local").unwrap();
        let app = Identity::new("cluster.local", "default", "app").unwrap();
        let ztunnel = caller("istio-system", "ztunnel", Some("node-a"), CallerKind::Jwt);
        let workload = caller("default", "other", Some("node-a"), CallerKind::Jwt);

        assert_eq!(
            authz.authorize(&workload, None, &OneNode).unwrap(),
            workload.identity
        );
        assert_eq!(
            authz
                .authorize(&workload, Some(&workload.identity), &OneNode)
                .unwrap(),
            workload.identity
        );
        assert_eq!(
            authz.authorize(&ztunnel, Some(&app), &OneNode).unwrap(),
            app
        );

        assert!(matches!(
            authz.authorize(&workload, Some(&app), &OneNode),
            Err(AuthError::NotANodeProxy { .. })
        ));
        let elsewhere = caller("istio-system", "ztunnel", Some("node-b"), CallerKind::Jwt);
        assert!(matches!(
            authz.authorize(&elsewhere, Some(&app), &OneNode),
            Err(AuthError::WorkloadNotOnNode { .. })
        ));
        let no_node = caller("istio-system", "ztunnel", None, CallerKind::ClientCert);
        assert_eq!(
            authz.authorize(&no_node, Some(&app), &OneNode),
            Err(AuthError::CallerNodeUnknown)
        );
        let foreign = Identity::new("other.domain", "default", "app").unwrap();
        assert!(matches!(
            authz.authorize(&ztunnel, Some(&foreign), &OneNode),
            Err(AuthError::ForeignTrustDomain { .. })
        ));
    }
}
