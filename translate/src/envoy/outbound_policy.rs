//! `outboundTrafficPolicy`: where a sidecar sends traffic for hosts the registry does not
//! know. `ALLOW_ANY` passes it through to its original destination (or to the Sidecar's
//! `egressProxy`); `REGISTRY_ONLY` drops it (`BlackHoleCluster` for TCP, a 502 from the
//! `block_all` virtual host for HTTP), as Istio does.

use std::collections::BTreeSet;

use shoal_api::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteMatch, VirtualHost, route::Action, route_match::PathSpecifier,
};
use shoal_config::istio::OutboundMode;

use super::route::{self, default_routes};
use super::{BLACKHOLE, PASSTHROUGH, outbound_cluster_name};
use crate::proxy::Generator;
use crate::scope::Scope;

/// What happens to traffic for unknown hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unknown {
    Passthrough,
    /// `ALLOW_ANY` with an `egressProxy`: this cluster instead of the original destination.
    EgressProxy(String),
    Blackhole,
}

impl Unknown {
    /// The policy of the proxy's Sidecar, else the mesh's.
    pub fn of(scope: &Scope<'_>) -> Unknown {
        let policy = scope
            .sidecar()
            .and_then(|s| s.outbound_traffic_policy.clone());
        let mode = policy
            .as_ref()
            .and_then(|p| p.mode)
            .unwrap_or(scope.model.options.outbound_traffic_policy);
        if mode == OutboundMode::RegistryOnly {
            return Unknown::Blackhole;
        }
        let egress = policy.and_then(|p| p.egress_proxy).and_then(|d| {
            let port = d.port.map(|p| p.number).filter(|p| *p != 0)?;
            let h = shoal_config::host::resolve(
                &d.host,
                scope.namespace(),
                &scope.model.options.domain_suffix,
            );
            Some(outbound_cluster_name(
                u16::try_from(port).ok()?,
                d.subset.as_deref().unwrap_or_default(),
                &h,
            ))
        });
        match egress {
            Some(c) => Unknown::EgressProxy(c),
            None => Unknown::Passthrough,
        }
    }

    /// The cluster unknown TCP traffic goes to.
    pub fn cluster(&self) -> &str {
        match self {
            Unknown::Passthrough => PASSTHROUGH,
            Unknown::EgressProxy(c) => c,
            Unknown::Blackhole => BLACKHOLE,
        }
    }

    /// Name of `virtualOutbound`'s catch-all filter chain.
    pub fn chain_name(&self) -> &'static str {
        match self {
            Unknown::Blackhole => "BlackHoleFilterChain",
            _ => "PassthroughFilterChain",
        }
    }

    /// The catch-all virtual host of a route config: `allow_any` or `block_all`.
    pub fn virtual_host(&self, used: &mut BTreeSet<String>) -> Option<VirtualHost> {
        let (name, routes) = match self {
            Unknown::Blackhole => (
                "block_all",
                vec![Route {
                    name: "block_all".into(),
                    r#match: Some(RouteMatch {
                        path_specifier: Some(PathSpecifier::Prefix("/".into())),
                        ..Default::default()
                    }),
                    action: Some(Action::DirectResponse(DirectResponseAction {
                        status: 502,
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
            ),
            other => (
                "allow_any",
                default_routes(other.cluster(), Generator::Envoy),
            ),
        };
        route::virtual_host(name.into(), vec!["*".into()], routes, used)
    }
}
