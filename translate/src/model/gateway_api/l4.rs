//! TLSRoutes and TCPRoutes as VirtualServices bound to the listeners they attach to: one
//! per (route, listener), with a `tls` route per rule matching the SNI hosts the route
//! serves there, or a `tcp` route per rule, to its weighted backends. A rule without a
//! valid backend keeps an empty route: its connections are refused, not sent to the next
//! rule.

use std::sync::Arc;

use shoal_config::gateway_api::{L4RouteRule, L4RouteSpec};
use shoal_config::istio::{
    RouteDestination, TcpRoute, TlsMatchAttributes, TlsRoute, VirtualServiceSpec,
};
use shoal_config::{ConfigSnapshot, Kind, Object};

use super::refs::Backends;
use super::{Gateways, RouteKind, attachments};
use crate::model::{Rule, VirtualServiceRule, Visibility};

pub(super) fn virtual_services(
    cfg: &ConfigSnapshot,
    gateways: &Gateways,
    suffix: &str,
) -> Vec<Arc<VirtualServiceRule>> {
    let mut out = Vec::new();
    for (kind, route_kind) in [
        (Kind::TlsRoute, RouteKind::Tls),
        (Kind::TcpRoute, RouteKind::Tcp),
    ] {
        for (key, e) in cfg.of_kind(kind) {
            let spec: &L4RouteSpec = match e.object.as_ref() {
                Object::TlsRoute(r) | Object::TcpRoute(r) => &r.spec,
                _ => continue,
            };
            let backends = Backends {
                cfg,
                route_ns: &key.namespace,
                kind: route_kind,
                suffix,
            };
            let rules: Vec<Vec<RouteDestination>> = spec
                .rules
                .iter()
                .map(|r| destinations(r, &backends))
                .collect();
            let attached = attachments(
                cfg,
                &key.namespace,
                route_kind,
                &spec.parent_refs,
                &spec.hostnames,
            );
            for ((gw_ns, gw_name), hosts) in attached {
                if !gateways.contains_key(&(gw_ns.clone(), gw_name.clone())) {
                    continue;
                }
                let mut vs = VirtualServiceSpec {
                    hosts: hosts.clone(),
                    gateways: vec![format!("{gw_ns}/{gw_name}")],
                    ..Default::default()
                };
                match route_kind {
                    RouteKind::Tls => {
                        vs.tls = rules
                            .iter()
                            .map(|route| TlsRoute {
                                matches: vec![TlsMatchAttributes {
                                    sni_hosts: hosts.clone(),
                                    ..Default::default()
                                }],
                                route: route.clone(),
                            })
                            .collect();
                    }
                    RouteKind::Tcp | RouteKind::Http | RouteKind::Grpc => {
                        vs.tcp = rules
                            .iter()
                            .map(|route| TcpRoute {
                                matches: Vec::new(),
                                route: route.clone(),
                            })
                            .collect();
                    }
                }
                out.push(Arc::new(Rule {
                    namespace: gw_ns.clone(),
                    name: format!(
                        "{gw_name}.{}.{}.{}",
                        route_kind.name().to_ascii_lowercase(),
                        key.namespace,
                        key.name
                    )
                    .into(),
                    spec: Arc::new(vs),
                    hosts,
                    visibility: Visibility::Public,
                }));
            }
        }
    }
    out
}

/// A rule's valid backends with a positive weight (default 1).
fn destinations(rule: &L4RouteRule, backends: &Backends<'_>) -> Vec<RouteDestination> {
    rule.backend_refs
        .iter()
        .filter_map(|b| {
            let weight = b.weight.unwrap_or(1);
            let destination = backends.destination(&b.backend())?;
            (weight > 0).then_some(RouteDestination {
                destination,
                weight: Some(weight),
            })
        })
        .collect()
}
