//! The catch-all egress listener where traffic is not captured (a proxy with
//! `INTERCEPTION_MODE: NONE`, or a Sidecar catch-all egress listener with `captureMode:
//! NONE`): as in Istio, a listener bound to `LOCALHOST:PORT` (or the egress listener's `bind`)
//! for each port of the services in scope, so that an application without iptables reaches
//! every service at `127.0.0.1:PORT`.
//!
//! Services sharing a port share its listener the way Istio's conflict resolution leaves it
//! when every listener of the port has the same address: HTTP services share the route
//! config `PORT` (every HTTP service of the port, then the outbound traffic policy's
//! catch-all); a TCP service takes the port for itself (the first one wins, and an HTTP
//! service arriving after it is not reachable there, nor a TCP one after HTTP services); a
//! service whose protocol is not declared gets TCP to its cluster with HTTP detected on the
//! connection going to the route config `HOST:PORT` (its virtual hosts only). An undeclared
//! service replaces HTTP services that came before it, and adds its HTTP detection to a
//! TCP service's listener. Services take their turns in host order (Istio's: oldest first,
//! then by host). A proxy that cannot bind ports below 1024 (`UNPRIVILEGED_POD`) gets no
//! listener there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shoal_api::{Resource, ResourceType};

use super::ViewBuilder;
use crate::envoy::listener::{self, BoundTraffic};
use crate::envoy::outbound_cluster_name;
use crate::envoy::traffic_policy::TcpTimeouts;
use crate::model::{Protocol, Service, VirtualServiceRule};
use crate::scope::Egress;

/// What a port's bound listener carries, after the services of the port took their turns.
#[derive(Clone, Copy)]
enum PortListener<'m> {
    /// HTTP, on the route config `PORT`.
    Http { open: bool },
    /// TCP to `service`; HTTP detected on a connection goes to `sniffed`'s routes.
    Tcp {
        service: &'m Arc<Service>,
        sniffed: Option<&'m Arc<Service>>,
        open: bool,
    },
}

/// How a service's port joins a listener.
#[derive(Clone, Copy)]
enum Joins {
    Http,
    Tcp,
    /// Protocol not declared: HTTP detected on the connection, TCP otherwise.
    Sniffed,
}

impl<'m> PortListener<'m> {
    /// The listener once `svc` (with `protocol` on the port) is added, as Istio merges
    /// listeners of one address: `open` while the listener has the one protocol of its
    /// services (HTTP or TCP); a mixed or sniffed listener takes nothing more.
    fn add(
        current: Option<PortListener<'m>>,
        svc: &'m Arc<Service>,
        protocol: Protocol,
    ) -> PortListener<'m> {
        let joins = match protocol {
            p if p.is_http() => Joins::Http,
            Protocol::Unknown => Joins::Sniffed,
            _ => Joins::Tcp,
        };
        let open_tcp = |service, sniffed| PortListener::Tcp {
            service,
            sniffed,
            open: sniffed.is_none(),
        };
        match (current, joins) {
            (None, Joins::Http) => PortListener::Http { open: true },
            (None, Joins::Tcp) => open_tcp(svc, None),
            // Sniffing takes the place of the HTTP services before it.
            (None | Some(PortListener::Http { open: true }), Joins::Sniffed) => {
                open_tcp(svc, Some(svc))
            }
            // TCP after HTTP (or HTTP after TCP) keeps the first one's chain: they would
            // match the same connections.
            (Some(PortListener::Http { open: true }), Joins::Tcp) => {
                PortListener::Http { open: false }
            }
            (
                Some(PortListener::Tcp {
                    service,
                    sniffed: None,
                    open: true,
                }),
                Joins::Http,
            ) => PortListener::Tcp {
                service,
                sniffed: None,
                open: false,
            },
            // A sniffed service adds its HTTP chain to a TCP listener.
            (
                Some(PortListener::Tcp {
                    service,
                    sniffed: None,
                    open: true,
                }),
                Joins::Sniffed,
            ) => open_tcp(service, Some(svc)),
            (Some(l), _) => l,
        }
    }
}

impl<'m> ViewBuilder<'_, 'm> {
    /// The address a listener of egress listener `e` binds: its `bind`, else the proxy's
    /// loopback address.
    pub(super) fn bind_of(&self, e: &Egress) -> String {
        e.bind
            .clone()
            .unwrap_or_else(|| self.scope.key.loopback().to_string())
    }

    /// A bound listener for each port of the services of catch-all egress listener `e`,
    /// except where a listener with a port already binds the same address (`bound`). Ports
    /// in `routed` already have their route config `PORT` (a captured egress listener's).
    pub(super) fn bound_catch_all(
        &mut self,
        e: &Egress,
        bound: &BTreeSet<(String, u16)>,
        routed: &BTreeSet<u16>,
        vss: &[&'m Arc<VirtualServiceRule>],
    ) {
        let bind = self.bind_of(e);
        let mut ports: BTreeMap<u16, (PortListener<'m>, Vec<&'m Arc<Service>>)> = BTreeMap::new();
        for svc in self.scope.services_of(e) {
            for p in &svc.ports {
                if p.protocol == Protocol::Udp
                    || !self.scope.key.can_bind(p.port)
                    || bound.contains(&(bind.clone(), p.port))
                {
                    continue;
                }
                match ports.get_mut(&p.port) {
                    Some((_, services)) if services.iter().any(|s| s.host == svc.host) => {}
                    Some((l, services)) => {
                        *l = PortListener::add(Some(*l), svc, p.protocol);
                        services.push(svc);
                    }
                    None => {
                        let l = PortListener::add(None, svc, p.protocol);
                        ports.insert(p.port, (l, vec![svc]));
                    }
                }
            }
        }
        for (port, (l, services)) in ports {
            self.bound_port(&bind, port, l, &services, !routed.contains(&port), vss);
        }
    }

    fn bound_port(
        &mut self,
        bind: &str,
        port: u16,
        l: PortListener<'m>,
        services: &[&'m Arc<Service>],
        add_route: bool,
        vss: &[&'m Arc<VirtualServiceRule>],
    ) {
        let (service, sniffed) = match l {
            PortListener::Http { .. } => {
                let route = port.to_string();
                self.listener(listener::bound(
                    bind,
                    port,
                    BoundTraffic::Http { route: &route },
                ));
                if add_route {
                    let rc = self.route_config(&route, port, services, vss, true);
                    self.out
                        .add(ResourceType::Route, Resource::encode(rc.name.clone(), &rc));
                }
                return;
            }
            PortListener::Tcp {
                service, sniffed, ..
            } => (service, sniffed),
        };
        let cluster = outbound_cluster_name(port, "", &service.host);
        let timeouts = TcpTimeouts::for_host(&self.scope, &service.host);
        let route = sniffed.map(|s| format!("{}:{port}", s.host));
        let mut l = listener::bound(
            bind,
            port,
            BoundTraffic::Tcp {
                cluster: &cluster,
                timeouts: &timeouts,
                sniffed: route.as_deref(),
            },
        );
        crate::envoy::tcp_route::apply_sidecar(
            &self.scope,
            vss,
            std::slice::from_ref(&service),
            port,
            &mut l,
        );
        self.listener(l);
        if let Some(svc) = sniffed {
            self.sniffed_route(svc, port, vss);
        }
    }
}
