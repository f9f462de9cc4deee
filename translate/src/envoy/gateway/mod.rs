//! Gateway proxies (`router~…` nodes): listeners and route configs from the Istio
//! `Gateway`s that select the proxy, with routes from the VirtualServices bound to them.
//!
//! As Istio builds them:
//! - one listener per (bind, port) of the servers, named `BIND_PORT` (`0.0.0.0_PORT` when
//!   the server does not set `bind`), listening on `port.number`, or on the target port a
//!   Service selecting the gateway maps it to (`80` → `8080`);
//! - plain HTTP servers share one filter chain and the route config `http.PORT`
//!   (`http.PORT.BIND` with a bind), with a virtual host per VirtualService host that
//!   intersects a server's hosts; `tls.httpsRedirect` makes those virtual hosts require TLS
//!   (a 301 to `https://`);
//! - TLS-terminating servers (`tls.mode` SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL; see
//!   `tls.rs` for their `DownstreamTlsContext`s) each get a filter chain matching their
//!   hosts by SNI: HTTPS servers with the route config
//!   `https.PORT.PORT_NAME.GATEWAY.NAMESPACE`, TLS servers with `tcp_proxy` to the first
//!   applicable `tcp` route of the bound VirtualServices (Istio's
//!   `buildGatewayNetworkFiltersFromTCPRoutes`); certificates come from files (`filename`
//!   data sources Envoy reads itself) or over SDS from `kubernetes://CREDENTIAL_NAME`, which
//!   shoal serves to authenticated gateway proxies from their own namespace's Secrets
//!   (`server/src/security.rs`);
//! - TLS `PASSTHROUGH` and TCP servers: filter chains from the bound VirtualServices'
//!   `tls` routes (by SNI, `tls_inspector`) or `tcp` routes, `tcp_proxy` to their clusters;
//! - servers sharing a port that is not plain HTTP share one listener, their chains in
//!   server order (the first of two chains with the same match wins);
//! - a route config without virtual hosts answers 404 (`blackhole:PORT`).
//!
//! - `AUTO_PASSTHROUGH` servers: a chain per exposed service port and subset, matching
//!   Istio's SNI `outbound_.PORT_.SUBSET_.HOST` and passing the connection to the SNI-DNAT
//!   cluster of that name (`sni_dnat.rs`).
//!
//! A port whose servers mix plain HTTP and TLS/TCP (a conflict Istio also reports) keeps
//! the kind of its first server.
//!
//! The AuthorizationPolicies and RequestAuthentications selecting the gateway guard its
//! chains as they guard a sidecar's inbound ones: `jwt_authn` and HTTP RBAC ahead of the
//! router on HTTP(S) chains, network RBAC ahead of `tcp_proxy` on TCP, PASSTHROUGH and
//! TLS-terminated TCP chains (`remoteIpBlocks` see the client as `numTrustedProxies`
//! says). AUTO_PASSTHROUGH chains are left unguarded: their mTLS runs end to end, so
//! the destination's own sidecar enforces its policies.

pub(crate) mod sni_dnat;
pub(crate) mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shoal_api::pb::envoy::config::core::v3::TrafficDirection;
use shoal_api::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use shoal_api::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route::Action,
    route_match::PathSpecifier, virtual_host::TlsRequirementType,
};
use shoal_api::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use shoal_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    Rds,
    http_connection_manager::{
        ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
    },
};
use shoal_config::host;
use shoal_config::istio::{GatewaySpec, Server, ServerTlsMode, ServerTlsSettings};

use super::tcp_route;
use super::{ads, boolv, filters, inbound, listener, route, socket};
use crate::model::VirtualServiceRule;
use crate::proxy::{ClientCertForwarding, GatewayTopology, Generator};
use crate::scope::{Scope, qualify_gateway};
use crate::security::InboundSecurity;
use crate::security::tls as mesh_tls;

/// What a gateway proxy's view gets besides its clusters.
#[derive(Debug, Default)]
pub(crate) struct GatewayResources {
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    /// Outbound clusters (`outbound|…`) AUTO_PASSTHROUGH servers expose: the view adds
    /// their SNI-DNAT twins (`sni_dnat.rs`).
    pub sni_dnat: BTreeSet<String>,
}

/// How a server is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode<'a> {
    /// Plain HTTP; `redirect` for `tls.httpsRedirect`.
    Http { redirect: bool },
    /// TLS terminated, then HTTP (protocol HTTPS).
    Https(&'a ServerTlsSettings),
    /// TLS terminated, then the bound VirtualServices' first applicable `tcp` route
    /// (protocol TLS).
    TlsTerminated(&'a ServerTlsSettings),
    /// Connections routed by the bound VirtualServices' `tls` routes (TLS PASSTHROUGH: by
    /// SNI, not terminated) or `tcp` routes (TCP).
    L4 { passthrough: bool },
    /// TLS passed through to the cluster its SNI names (`outbound_.PORT_.SUBSET_.HOST`).
    AutoPassthrough,
}

/// One server of one Gateway, with what identifies it.
#[derive(Debug, Clone)]
struct GwServer<'a> {
    namespace: &'a str,
    name: &'a str,
    server: &'a Server,
    mode: Mode<'a>,
}

impl GwServer<'_> {
    fn gateway(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn port_name(&self) -> &str {
        self.server.port.as_ref().map_or("", |p| p.name.as_str())
    }
}

fn mode_of(server: &Server) -> Option<Mode<'_>> {
    let protocol = server.port.as_ref()?.protocol.to_ascii_uppercase();
    match protocol.as_str() {
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" => Some(Mode::Http {
            redirect: server.tls.as_ref().is_some_and(|t| t.https_redirect),
        }),
        "HTTPS" | "TLS" => {
            let t = server.tls.as_ref()?;
            match t.mode() {
                ServerTlsMode::Passthrough => Some(Mode::L4 { passthrough: true }),
                ServerTlsMode::AutoPassthrough => Some(Mode::AutoPassthrough),
                ServerTlsMode::Simple
                | ServerTlsMode::Mutual
                | ServerTlsMode::OptionalMutual
                | ServerTlsMode::IstioMutual => Some(if protocol == "HTTPS" {
                    Mode::Https(t)
                } else {
                    Mode::TlsTerminated(t)
                }),
            }
        }
        "TCP" | "MONGO" | "MYSQL" | "REDIS" => Some(Mode::L4 { passthrough: false }),
        _ => None,
    }
}

/// The Gateways of the view, in key order.
/// Istio Gateways and converted Kubernetes Gateway listeners alike (`Model::gateways`).
fn gateways<'m>(scope: &Scope<'m>) -> Vec<(&'m str, &'m str, &'m GatewaySpec)> {
    let model = scope.model;
    scope
        .key
        .gateways
        .iter()
        .filter_map(|key| {
            let gw = model.gateways.get(key)?;
            Some((gw.namespace.as_ref(), gw.name.as_ref(), gw.spec.as_ref()))
        })
        .collect()
}

/// Listeners and route configs of a gateway proxy.
pub(crate) fn build(scope: &Scope<'_>) -> GatewayResources {
    let mut by_listener: BTreeMap<(String, u16), Vec<GwServer<'_>>> = BTreeMap::new();
    for (namespace, name, spec) in gateways(scope) {
        for server in &spec.servers {
            let Some(mode) = mode_of(server) else {
                continue;
            };
            let Some(port) = server
                .port
                .as_ref()
                .and_then(|p| u16::try_from(p.number).ok())
                .filter(|p| *p != 0)
            else {
                continue;
            };
            let bind = server.bind.clone().unwrap_or_else(|| "0.0.0.0".into());
            by_listener.entry((bind, port)).or_default().push(GwServer {
                namespace,
                name,
                server,
                mode,
            });
        }
    }
    let mut out = GatewayResources::default();
    let sec = scope.inbound_security();
    for ((bind, port), servers) in by_listener {
        match servers.first().map(|s| s.mode) {
            Some(Mode::Http { .. }) => http_listener(scope, &sec, &bind, port, &servers, &mut out),
            _ => tls_tcp_listener(scope, &sec, &bind, port, &servers, &mut out),
        }
    }
    listen_on_target_ports(&mut out.listeners, &scope.key.gateway_ports);
    if scope.key.gateway_topology.is_some_and(|t| t.proxy_protocol) {
        expect_proxy_protocol(&mut out.listeners);
    }
    out
}

/// The port a server on `port` listens on: the target port the gateway's Service maps it
/// to, else itself. Listener and route config names carry it, as Istio's (`0.0.0.0_8080`,
/// `http.8080` for a server on 80 of a Service mapping 80 → 8080); route matches on a port
/// keep the server's.
fn listening_port(scope: &Scope<'_>, port: u16) -> u16 {
    scope
        .key
        .gateway_ports
        .iter()
        .find(|(p, _)| *p == port)
        .map_or(port, |(_, target)| *target)
}

/// A server whose port the gateway's Service maps to another target port listens on the
/// target port.
fn listen_on_target_ports(listeners: &mut [Listener], ports: &[(u16, u16)]) {
    use shoal_api::pb::envoy::config::core::v3::{address, socket_address::PortSpecifier};
    for l in listeners {
        let Some(address::Address::SocketAddress(sa)) =
            l.address.as_mut().and_then(|a| a.address.as_mut())
        else {
            continue;
        };
        let Some(PortSpecifier::PortValue(port)) = sa.port_specifier else {
            continue;
        };
        let Some((_, target)) = ports.iter().find(|(p, _)| u32::from(*p) == port) else {
            continue;
        };
        sa.port_specifier = Some(PortSpecifier::PortValue(u32::from(*target)));
        l.name = format!("{}_{target}", sa.address);
    }
}

fn hcm_chain(
    stat_prefix: &str,
    rds_name: &str,
    topology: Option<GatewayTopology>,
    sec: &InboundSecurity,
) -> shoal_api::pb::envoy::config::listener::v3::Filter {
    let mut hcm = listener::hcm(
        stat_prefix,
        RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: rds_name.to_string(),
        }),
    );
    let mut http_filters = inbound::http_guards(sec);
    http_filters.append(&mut hcm.http_filters);
    hcm.http_filters = http_filters;
    // A gateway is the edge: the client's address is the connection's peer, or as many
    // hops back in X-Forwarded-For as the gateway's topology trusts. Client certificate
    // details are set for the backends (Istio's gateway default: SANITIZE_SET).
    hcm.use_remote_address = Some(boolv(true));
    let topology = topology.unwrap_or_default();
    hcm.xff_num_trusted_hops = topology.num_trusted_proxies;
    hcm.forward_client_cert_details = forwarding(
        topology
            .forward_client_cert
            .unwrap_or(ClientCertForwarding::SanitizeSet),
    ) as i32;
    hcm.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
        subject: Some(boolv(true)),
        cert: true,
        dns: true,
        uri: true,
        ..Default::default()
    });
    listener::network_filter(filters::HTTP_CONNECTION_MANAGER, shoal_api::pack(&hcm))
}

fn forwarding(f: ClientCertForwarding) -> ForwardClientCertDetails {
    match f {
        ClientCertForwarding::Sanitize => ForwardClientCertDetails::Sanitize,
        ClientCertForwarding::ForwardOnly => ForwardClientCertDetails::ForwardOnly,
        ClientCertForwarding::AppendForward => ForwardClientCertDetails::AppendForward,
        ClientCertForwarding::SanitizeSet => ForwardClientCertDetails::SanitizeSet,
        ClientCertForwarding::AlwaysForwardOnly => ForwardClientCertDetails::AlwaysForwardOnly,
    }
}

/// `gatewayTopology.proxyProtocol`: every listener reads the PROXY protocol header first.
fn expect_proxy_protocol(listeners: &mut [Listener]) {
    use shoal_api::pb::envoy::extensions::filters::listener::proxy_protocol::v3::ProxyProtocol;
    for l in listeners {
        l.listener_filters.insert(
            0,
            listener::listener_filter(filters::PROXY_PROTOCOL, &ProxyProtocol::default()),
        );
    }
}

fn listener_of(bind: &str, port: u16, filter_chains: Vec<FilterChain>, tls: bool) -> Listener {
    Listener {
        name: format!("{bind}_{port}"),
        address: Some(socket(bind, port)),
        filter_chains,
        listener_filters: if tls {
            vec![listener::listener_filter(
                filters::TLS_INSPECTOR,
                &TlsInspector::default(),
            )]
        } else {
            Vec::new()
        },
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

/// Plain HTTP servers of one listener: one chain, one route config for all of them.
fn http_listener(
    scope: &Scope<'_>,
    sec: &InboundSecurity,
    bind: &str,
    port: u16,
    servers: &[GwServer<'_>],
    out: &mut GatewayResources,
) {
    let named = listening_port(scope, port);
    let rds_name = if bind == "0.0.0.0" {
        format!("http.{named}")
    } else {
        format!("http.{named}.{bind}")
    };
    let servers: Vec<&GwServer<'_>> = servers
        .iter()
        .filter(|s| matches!(s.mode, Mode::Http { .. }))
        .collect();
    let chain = FilterChain {
        filters: vec![hcm_chain(
            &format!("outbound_{bind}_{port}"),
            &rds_name,
            scope.key.gateway_topology,
            sec,
        )],
        ..Default::default()
    };
    out.listeners
        .push(listener_of(bind, port, vec![chain], false));
    out.routes
        .push(route_config(scope, &rds_name, port, &servers));
}

/// The servers of a port that is not plain HTTP, in order: a TLS-terminating chain per
/// HTTPS or TLS server (selected by SNI), and the chains of the `tls` (PASSTHROUGH) or
/// `tcp` (TCP) routes of the VirtualServices bound to each L4 server. A port with no chain
/// gets no listener (Istio's gateway drops it as well).
fn tls_tcp_listener(
    scope: &Scope<'_>,
    sec: &InboundSecurity,
    bind: &str,
    port: u16,
    servers: &[GwServer<'_>],
    out: &mut GatewayResources,
) {
    let name = format!("{bind}_{port}");
    let mut chains = Vec::new();
    let mut terminating = false;
    // Envoy rejects two chains with the same match; the first terminating server keeps it.
    let mut claimed: BTreeSet<Vec<String>> = BTreeSet::new();
    for s in servers {
        match s.mode {
            Mode::Http { .. } => {}
            Mode::Https(t) | Mode::TlsTerminated(t) => {
                let server_names = sni_names(s.server);
                if claimed.contains(&server_names) {
                    continue;
                }
                let Some(context) = tls::downstream(t) else {
                    continue;
                };
                let chain = if matches!(s.mode, Mode::Https(_)) {
                    let rds_name = format!(
                        "https.{}.{}.{}.{}",
                        listening_port(scope, port),
                        s.port_name(),
                        s.name,
                        s.namespace
                    );
                    out.routes.push(route_config(scope, &rds_name, port, &[s]));
                    FilterChain {
                        name: rds_name.clone(),
                        filters: vec![hcm_chain(
                            &format!("outbound_{bind}_{port}"),
                            &rds_name,
                            scope.key.gateway_topology,
                            sec,
                        )],
                        ..Default::default()
                    }
                } else {
                    let Some(chain) = terminated_tcp_chain(scope, s, port, &name) else {
                        continue;
                    };
                    guard_tcp(chain, sec)
                };
                claimed.insert(server_names.clone());
                terminating = true;
                chains.push(FilterChain {
                    filter_chain_match: Some(FilterChainMatch {
                        server_names,
                        ..Default::default()
                    }),
                    transport_socket: Some(mesh_tls::socket(shoal_api::pack(&context))),
                    ..chain
                });
            }
            Mode::L4 { passthrough } => chains.extend(
                l4_chains(scope, s, passthrough, port, &name)
                    .into_iter()
                    .map(|c| guard_tcp(c, sec)),
            ),
            Mode::AutoPassthrough => {
                let exposed = sni_dnat::exposed(scope, &s.server.hosts, s.namespace);
                chains.extend(sni_dnat::chains(&exposed));
                out.sni_dnat.extend(exposed);
            }
        }
    }
    if chains.is_empty() {
        return;
    }
    let mut l = listener_of(bind, port, chains, terminating);
    tcp_route::finish(&mut l);
    out.listeners.push(l);
}

/// A TCP chain with the gateway's network RBAC ahead of its `tcp_proxy`.
fn guard_tcp(mut chain: FilterChain, sec: &InboundSecurity) -> FilterChain {
    let mut filters = inbound::tcp_guards(sec);
    filters.append(&mut chain.filters);
    chain.filters = filters;
    chain
}

/// Whether a VirtualService has a host the server admits.
fn admitted(s: &GwServer<'_>, vs: &VirtualServiceRule) -> bool {
    vs.hosts.iter().any(|vs_host| {
        s.server
            .hosts
            .iter()
            .any(|entry| intersect(entry, s.namespace, &vs.namespace, vs_host).is_some())
    })
}

/// A scope that applies only routes meant for this server's Gateway.
fn gateway_scope<'m>(scope: &Scope<'m>, s: &GwServer<'_>) -> Scope<'m> {
    Scope {
        gateway: Some(s.gateway()),
        ..Scope::new(scope.model, scope.key)
    }
}

/// The chains of a PASSTHROUGH (`tls` routes, by SNI) or TCP (`tcp` routes) server.
fn l4_chains(
    scope: &Scope<'_>,
    s: &GwServer<'_>,
    passthrough: bool,
    port: u16,
    name: &str,
) -> Vec<FilterChain> {
    let gscope = gateway_scope(scope, s);
    let mut chains = Vec::new();
    for vs in bound_virtual_services(scope, &s.gateway()) {
        if !admitted(s, vs) {
            continue;
        }
        let rules = if passthrough {
            tcp_route::tls_rules(&gscope, vs, port)
        } else {
            tcp_route::tcp_rules(&gscope, vs, port)
        };
        chains.extend(tcp_route::chains(&gscope, vs, &rules, port, &[], name));
    }
    chains
}

/// The chain of a TLS server that terminates TLS: `tcp_proxy` as the first applicable `tcp`
/// route of the bound VirtualServices (whose hosts the server admits) says, as Istio does.
/// `None` when no route applies: the server is left out. The caller sets the SNI match and
/// the TLS context.
fn terminated_tcp_chain(
    scope: &Scope<'_>,
    s: &GwServer<'_>,
    port: u16,
    name: &str,
) -> Option<FilterChain> {
    let gscope = gateway_scope(scope, s);
    bound_virtual_services(scope, &s.gateway())
        .into_iter()
        .filter(|vs| admitted(s, vs))
        .find_map(|vs| {
            let rules = tcp_route::tcp_rules(&gscope, vs, port);
            let first = rules.into_iter().next()?;
            let chain = tcp_route::chains(&gscope, vs, &[first], port, &[], name)
                .into_iter()
                .next()?;
            Some(FilterChain {
                name: format!(
                    "tls.{port}.{}.{}.{}|{}.{}",
                    s.port_name(),
                    s.name,
                    s.namespace,
                    vs.name,
                    vs.namespace
                ),
                ..chain
            })
        })
}

/// SNI names of a server: its hosts without namespaces; none (any SNI) if one is `*`.
fn sni_names(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server
        .hosts
        .iter()
        .map(|h| split_host(h).1.to_ascii_lowercase())
        .collect();
    if names.iter().any(|n| n == "*") {
        return Vec::new();
    }
    names.sort();
    names.dedup();
    names
}

/// `[NS/]HOST` → (NS, HOST); no namespace means any (`*`).
fn split_host(h: &str) -> (&str, &str) {
    h.split_once('/').unwrap_or(("*", h))
}

/// The host a server entry and a VirtualService host have in common (the more specific of
/// the two), if the entry admits VirtualServices of `vs_ns`.
fn intersect(entry: &str, gw_ns: &str, vs_ns: &str, vs_host: &str) -> Option<String> {
    let (ns, h) = split_host(entry);
    let ns_ok = match ns {
        "*" => true,
        "." => vs_ns == gw_ns,
        other => other == vs_ns,
    };
    if !ns_ok {
        return None;
    }
    let h = h.to_ascii_lowercase();
    if host::matches(&h, vs_host) {
        Some(vs_host.to_string())
    } else if host::matches(vs_host, &h) {
        Some(h)
    } else {
        None
    }
}

/// VirtualServices bound to a Gateway and visible to the proxy, by namespace and name.
fn bound_virtual_services<'m>(
    scope: &Scope<'m>,
    gateway: &str,
) -> Vec<&'m Arc<VirtualServiceRule>> {
    let mut list: Vec<&Arc<VirtualServiceRule>> = scope
        .model
        .virtual_services
        .iter()
        .filter(|vs| vs.visibility.visible_from(scope.namespace()))
        .filter(|vs| {
            vs.spec
                .gateways
                .iter()
                .any(|g| qualify_gateway(g, &vs.namespace).as_deref() == Some(gateway))
        })
        .collect();
    list.sort_by_key(|vs| (vs.namespace.clone(), vs.name.clone()));
    list
}

/// A route config of the servers of one listener (or one HTTPS server).
fn route_config(
    scope: &Scope<'_>,
    name: &str,
    port: u16,
    servers: &[&GwServer<'_>],
) -> RouteConfiguration {
    let mut used = BTreeSet::new();
    let mut vhosts = Vec::new();
    for s in servers {
        let gateway = s.gateway();
        // Routes of this Gateway: `match.gateways` naming another one do not apply.
        let gscope = Scope {
            gateway: Some(gateway.clone()),
            ..Scope::new(scope.model, scope.key)
        };
        let redirect = matches!(s.mode, Mode::Http { redirect: true });
        for vs in bound_virtual_services(scope, &gateway) {
            for vs_host in &vs.hosts {
                let Some(h) = s
                    .server
                    .hosts
                    .iter()
                    .find_map(|e| intersect(e, s.namespace, &vs.namespace, vs_host))
                else {
                    continue;
                };
                let routes = route::vs_routes(&gscope, vs, port, Generator::Envoy);
                let domains = if h == "*" {
                    vec![h.clone()]
                } else {
                    vec![h.clone(), format!("{h}:*")]
                };
                if let Some(mut vh) =
                    route::virtual_host(format!("{h}:{port}"), domains, routes, &mut used)
                {
                    if redirect {
                        vh.require_tls = TlsRequirementType::All as i32;
                    }
                    vhosts.push(vh);
                }
            }
        }
    }
    if vhosts.is_empty() {
        vhosts.push(blackhole(port));
    }
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vhosts,
        validate_clusters: Some(boolv(false)),
        ..Default::default()
    }
}

/// Istio's answer for a gateway port nothing is bound to: 404 for every request.
fn blackhole(port: u16) -> VirtualHost {
    VirtualHost {
        name: format!("blackhole:{port}"),
        domains: vec!["*".into()],
        routes: vec![Route {
            name: "default".into(),
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            action: Some(Action::DirectResponse(DirectResponseAction {
                status: 404,
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_hosts_intersect_virtual_service_hosts_by_namespace() {
        // (server entry, gateway ns, VirtualService ns, VirtualService host) → common host.
        let cases = [
            (
                "*/a.example.com",
                "gw",
                "app",
                "a.example.com",
                Some("a.example.com"),
            ),
            (
                "a.example.com",
                "gw",
                "app",
                "a.example.com",
                Some("a.example.com"),
            ),
            (
                "app/*.example.com",
                "gw",
                "app",
                "b.example.com",
                Some("b.example.com"),
            ),
            (
                "app/b.example.com",
                "gw",
                "app",
                "*.example.com",
                Some("b.example.com"),
            ),
            ("other/*.example.com", "gw", "app", "b.example.com", None),
            ("./*", "app", "app", "c.example.com", Some("c.example.com")),
            ("./*", "gw", "app", "c.example.com", None),
            ("*/a.example.com", "gw", "app", "b.example.com", None),
            ("*/*", "gw", "app", "*", Some("*")),
        ];
        for (entry, gw_ns, vs_ns, h, want) in cases {
            assert_eq!(
                intersect(entry, gw_ns, vs_ns, h).as_deref(),
                want,
                "{entry} {gw_ns} {vs_ns} {h}"
            );
        }
    }

    #[test]
    fn a_wildcard_server_host_matches_any_sni() {
        let server = |hosts: &[&str]| Server {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Server::default()
        };
        assert_eq!(
            sni_names(&server(&[
                "ns/B.example.com",
                "*/a.example.com",
                "b.example.com"
            ])),
            vec!["a.example.com", "b.example.com"]
        );
        assert!(sni_names(&server(&["a.example.com", "*/*"])).is_empty());
    }
}
