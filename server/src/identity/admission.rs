//! Admission of an xDS stream, in one place: who the caller is, whether the node it
//! describes is one it may claim, and which secrets view — if any — its stream may read.
//!
//! - An anonymous caller (plaintext port) gets config and no secrets.
//! - An authenticated caller must claim its own namespace in its node metadata; it gets
//!   its identity's own secrets view.
//! - A gateway proxy (`router~…`) gets a view that also holds its namespace's credentials
//!   (`credentialName`) only if its identity runs a gateway workload the registry knows,
//!   or the operator named it (`--credential-readers`): the proxy type is the proxy's own
//!   claim (Istio asks Kubernetes RBAC here, with a SubjectAccessReview).

use std::sync::Arc;

use shoal_cache::{StreamContext, View};
use shoal_translate::{Proxy, ProxyType};
use tonic::Status;

use super::Identity;

impl Identity {
    /// The secrets view `proxy`'s stream may read (`None`: no secrets), or why the stream
    /// is refused.
    pub fn admit(&self, proxy: &Proxy, ctx: &StreamContext) -> Result<Option<Arc<View>>, Status> {
        let Some(caller) = self.authenticate(ctx)? else {
            return Ok(None);
        };
        let identity = caller.identity;
        if identity.namespace != proxy.namespace {
            return Err(Status::permission_denied(format!(
                "authenticated as {} but the node claims namespace {}",
                identity.spiffe_uri(),
                proxy.namespace
            )));
        }
        let wants_credentials = proxy.proxy_type == ProxyType::Router;
        let gateway = wants_credentials && self.readers.allows(&identity, &self.config.borrow());
        if wants_credentials && !gateway {
            tracing::info!(
                identity = %identity.spiffe_uri(),
                "a gateway proxy whose identity runs no gateway workload: no credentials"
            );
        }
        self.secrets.view_of(&identity, gateway).map(Some)
    }
}
