//! Which security policies apply to a workload or gateway (Istio's selection, through
//! [`shoal_config::istio::applicable`]), named in its [`ViewKey`], and resolved again for
//! the security builders as [`Policies`].
//!
//! Where Istio picks the *oldest* of several candidates, shoal — which has no creation
//! times — picks the first by namespace and name, so every replica agrees.

use std::sync::Arc;

use shoal_config::Labels;
use shoal_config::istio::{Level, Workload, applicable};

use super::ViewKey;
use crate::model::{
    AuthorizationPolicyRule, Model, PeerAuthenticationPolicy, Policy, RequestAuthenticationPolicy,
};
use crate::security::Policies;

/// A policy's identity in a [`ViewKey`]: (namespace, name).
pub(crate) type PolicyRef = (Arc<str>, Arc<str>);

/// The PeerAuthentications that decide a workload's mode, as Istio composes them: the
/// mesh-wide one (root namespace, no selector), the namespace-wide one and the
/// workload-level one (a selector matching the workload, outside the root namespace —
/// selectors in the root namespace are ignored, as in Istio).
pub(crate) fn peer_policies_for<'a>(
    model: &'a Model,
    namespace: &str,
    labels: &Labels,
) -> Vec<&'a Arc<PeerAuthenticationPolicy>> {
    let workload = Workload { namespace, labels };
    let root = model.options.root_namespace.as_str();
    let mut chosen: [Option<&Arc<PeerAuthenticationPolicy>>; 3] = [None; 3];
    for (level, p) in applicable(&model.peer_authentications, root, workload) {
        let slot = match level {
            Level::Mesh => 0,
            Level::Namespace => 1,
            Level::Workload => 2,
            Level::RootSelector => continue,
        };
        chosen[slot].get_or_insert(p);
    }
    chosen.into_iter().flatten().collect()
}

/// The AuthorizationPolicies that apply to a workload or gateway: those of its namespace
/// and of the root namespace whose selector is absent or matches it. Policies attached by
/// `targetRef(s)` apply to none.
pub(crate) fn authorization_policies_for<'a>(
    model: &'a Model,
    namespace: &str,
    labels: &Labels,
) -> Vec<&'a Arc<AuthorizationPolicyRule>> {
    let root = model.options.root_namespace.as_str();
    applicable(
        &model.authorization_policies,
        root,
        Workload { namespace, labels },
    )
    .map(|(_, p)| p)
    .collect()
}

/// The RequestAuthentications that apply to a workload or gateway, selected like
/// AuthorizationPolicies.
pub(crate) fn request_authentications_for<'a>(
    model: &'a Model,
    namespace: &str,
    labels: &Labels,
) -> Vec<&'a Arc<RequestAuthenticationPolicy>> {
    let root = model.options.root_namespace.as_str();
    applicable(
        &model.request_authentications,
        root,
        Workload { namespace, labels },
    )
    .map(|(_, p)| p)
    .collect()
}

/// What a waypoint enforces a policy for: everything it serves, or one service.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WaypointTarget<'a> {
    /// The waypoint itself: policies attached to its Gateway or to the GatewayClass.
    Gateway,
    /// A service it serves: the above, and policies attached to that Service or
    /// ServiceEntry.
    Service(&'a crate::model::Service),
}

/// Whether a policy attached by reference applies on waypoint `gateway` (namespace, name)
/// for `target`. Policies with a selector, or none, apply to workloads, never here.
fn on_waypoint<P: shoal_config::istio::AttachedPolicy>(
    p: &P,
    root: &str,
    gateway: (&str, &str),
    target: WaypointTarget<'_>,
) -> bool {
    use shoal_config::istio::RefKind;
    let t = p.target();
    let ns = p.namespace();
    if t.targets(ns, root, RefKind::Gateway, gateway.0, gateway.1)
        || t.targets(
            ns,
            root,
            RefKind::GatewayClass,
            "",
            crate::ambient::WAYPOINT_CLASS,
        )
    {
        return true;
    }
    let WaypointTarget::Service(svc) = target else {
        return false;
    };
    let kind = match svc.key.kind {
        shoal_config::Kind::Service => RefKind::Service,
        shoal_config::Kind::ServiceEntry => RefKind::ServiceEntry,
        _ => return false,
    };
    t.targets(ns, root, kind, &svc.namespace, &svc.key.name)
}

/// The AuthorizationPolicies and RequestAuthentications a waypoint enforces for `target`
/// (PeerAuthentication is ztunnel's: HBONE is always mTLS).
pub(crate) fn waypoint_policies<'a>(
    model: &'a Model,
    gateway: (&str, &str),
    target: WaypointTarget<'_>,
) -> Policies<'a> {
    let root = model.options.root_namespace.as_str();
    Policies {
        peer: Vec::new(),
        authorization: model
            .authorization_policies
            .iter()
            .filter(|p| on_waypoint(p.as_ref(), root, gateway, target))
            .collect(),
        request_authentication: model
            .request_authentications
            .iter()
            .filter(|p| on_waypoint(p.as_ref(), root, gateway, target))
            .collect(),
    }
}

/// The security policies of a workload, by name: what of its labels matters to its view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PolicyRefs {
    pub peer: Vec<PolicyRef>,
    pub authorization: Vec<PolicyRef>,
    pub request_authentication: Vec<PolicyRef>,
}

fn refs<T>(list: &[&Arc<Policy<T>>]) -> Vec<PolicyRef> {
    list.iter()
        .map(|p| (p.namespace.clone(), p.name.clone()))
        .collect()
}

/// The names of the policies that apply to a workload.
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

impl ViewKey {
    /// The policies this key names, as the model holds them.
    pub(crate) fn policies<'a>(&self, model: &'a Model) -> Policies<'a> {
        Policies {
            peer: resolve(&model.peer_authentications, &self.peer_authentication),
            authorization: resolve(&model.authorization_policies, &self.authorization),
            request_authentication: resolve(
                &model.request_authentications,
                &self.request_authentication,
            ),
        }
    }
}

#[cfg(test)]
mod tests;
