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
//! - A debug client (`istioctl`) gets no view and no secrets, only answers about the
//!   connected proxies: it must authenticate (so only on the TLS port) as an identity
//!   `--debug-readers` allows (Istio's system namespace by default). Its node's claims are
//!   not checked: istioctl's node says nothing it is served by.
//! - A peer shoal group (`federation~…`) gets this group's exports and no secrets: it must
//!   authenticate as an identity `--federation-peers` allows (none by default). Its node
//!   claims no namespace of ours.
//! - A federation relay reader (`shoal_api::relay`) gets what this replica imported from a
//!   peer group: only a replica of this group may, connected directly (a forwarded claim
//!   would not do: under a shared root a peer group's replicas carry the same identity).

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

    /// Whether a peer group's replica may import this group's exports; the refusal says
    /// why.
    pub fn admit_federation(&self, ctx: &StreamContext) -> Result<(), Status> {
        let Some(caller) = self.authenticate(ctx)? else {
            return Err(Status::unauthenticated(
                "federation needs an authenticated peer: the TLS xDS port with a client \
                 certificate of a CA sharing this group's root",
            ));
        };
        if !self.federation_peers.allows(&caller.identity) {
            return Err(Status::permission_denied(format!(
                "{} may not import this group's exports (see --federation-peers)",
                caller.identity.spiffe_uri()
            )));
        }
        tracing::info!(peer = %caller.identity.spiffe_uri(), "federation peer admitted");
        Ok(())
    }

    /// Whether a replica of this group may read this replica's imports; the refusal says
    /// why.
    pub fn admit_relay(&self, ctx: &StreamContext) -> Result<(), Status> {
        let Some(shoal_ca::grpc::PeerCertificates(chain)) = ctx.extensions.get() else {
            return Err(Status::unauthenticated(
                "federation imports are read by this group's replicas only, over the TLS xDS \
                 port with their client certificate",
            ));
        };
        if ctx.headers.contains_key(shoal_router::CALLER)
            || ctx.headers.contains_key(shoal_router::FORWARDED)
        {
            return Err(Status::permission_denied(
                "federation imports are not read through another replica",
            ));
        }
        match self.ca.authenticate_own_client_cert(chain) {
            Ok(c) if c.identity == *self.ca.server_identity() => Ok(()),
            Ok(c) => Err(Status::permission_denied(format!(
                "{} is not a replica of this group",
                c.identity.spiffe_uri()
            ))),
            Err(e) => Err(Status::permission_denied(format!(
                "not a replica of this group: {e}"
            ))),
        }
    }

    /// Whether a debug client may ask Istio's debug types; the refusal says why.
    pub fn admit_debug(&self, ctx: &StreamContext) -> Result<(), Status> {
        let Some(caller) = self.authenticate(ctx)? else {
            return Err(Status::unauthenticated(
                "debug requests (istioctl) need an authenticated caller: use the TLS xDS port \
                 with a service-account token or a client certificate",
            ));
        };
        if !self.debug_readers.allows(&caller.identity) {
            return Err(Status::permission_denied(format!(
                "{} may not read debug information (allowed: {}; see --debug-readers)",
                caller.identity.spiffe_uri(),
                self.debug_readers
            )));
        }
        tracing::info!(caller = %caller.identity.spiffe_uri(), "debug client admitted");
        Ok(())
    }
}
