//! Istio's security APIs for a workload: the mTLS mode its PeerAuthentications compose to
//! (per port), what a client may assume about a destination's mode (auto mTLS), and the
//! inbound security ([`InboundSecurity`]) built from the [`Policies`] that apply to it.
//! Which policies apply is decided by the view's scope (`scope/policies.rs`), not here.

pub(crate) mod jwt;
pub(crate) mod matchers;
pub(crate) mod rbac;
pub(crate) mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use shoal_config::istio::{Attached, Level, MtlsMode};

use crate::model::{
    AuthorizationPolicyRule, Model, PeerAuthenticationPolicy, RequestAuthenticationPolicy,
};

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

/// Composes the modes of a workload's PeerAuthentications (Istio's
/// `ComposePeerAuthentication`): mesh, then namespace, then workload, each overriding the
/// previous unless `UNSET`; PERMISSIVE when nothing sets a mode. Port-level modes come from
/// the workload-level policy only; an `UNSET` port inherits the workload's mode. Selectors
/// in the root namespace do not apply to PeerAuthentication.
pub(crate) fn compose(policies: &[&Arc<PeerAuthenticationPolicy>], root: &str) -> PeerModes {
    let mut modes = PeerModes::default();
    let mut ordered: Vec<(Level, &Arc<PeerAuthenticationPolicy>)> = policies
        .iter()
        .filter_map(|p| Some((p.spec.target().level(&p.namespace, root)?, *p)))
        .filter(|(level, _)| *level != Level::RootSelector)
        .collect();
    ordered.sort_by_key(|(level, _)| *level);
    for (lvl, p) in ordered {
        if let Some(m) = p
            .spec
            .mtls
            .as_ref()
            .and_then(|m| m.set_mode())
            .and_then(PeerMode::from_set)
        {
            modes.workload = m;
        }
        if lvl == Level::Workload {
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
            .find(|p| p.namespace.as_ref() == ns && p.spec.target().workload_labels().is_none())
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

/// The security policies that apply to a workload or gateway, as the model holds them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policies<'a> {
    pub peer: Vec<&'a Arc<PeerAuthenticationPolicy>>,
    pub authorization: Vec<&'a Arc<AuthorizationPolicyRule>>,
    pub request_authentication: Vec<&'a Arc<RequestAuthenticationPolicy>>,
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

/// The inbound security of a workload or gateway under `policies`. Without a workload
/// certificate (`workload_certs`), PERMISSIVE accepts plaintext only.
pub(crate) fn inbound(
    model: &Model,
    policies: &Policies<'_>,
    workload_certs: bool,
) -> InboundSecurity {
    inbound_from(
        model,
        policies,
        workload_certs,
        rbac::PeerSource::Connection,
    )
}

/// The security a waypoint enforces for the policies attached to it or to a service it
/// serves: the peer's identity comes with the HBONE tunnel.
pub(crate) fn waypoint(model: &Model, policies: &Policies<'_>) -> InboundSecurity {
    inbound_from(model, policies, true, rbac::PeerSource::Tunnel)
}

fn inbound_from(
    model: &Model,
    policies: &Policies<'_>,
    workload_certs: bool,
    peer: rbac::PeerSource,
) -> InboundSecurity {
    let root = model.options.root_namespace.as_str();
    let jwt = jwt::build(model, &policies.request_authentication);
    let issuers = jwt.as_ref().map(|j| j.issuers.clone()).unwrap_or_default();
    let td = model.options.trust_domain.as_str();
    let mut modes = compose(&policies.peer, root);
    if !workload_certs {
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
    let rbac = |for_tcp| {
        rbac::build(
            &policies.authorization,
            td,
            &model.options.trust_domain_aliases,
            &issuers,
            for_tcp,
            peer,
        )
    };
    InboundSecurity {
        modes,
        http_rbac: rbac(false),
        tcp_rbac: rbac(true),
        jwt,
    }
}

#[cfg(test)]
mod tests;
