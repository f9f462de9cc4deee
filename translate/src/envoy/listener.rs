//! LDS: Istio's outbound listeners (per port, behind `virtualOutbound`), listeners bound to
//! a port where traffic is not captured, and gRPC's `HOST:PORT` api listeners
//! (`virtualInbound` is in [`super::inbound`]).

use shoal_api::pb::envoy::config::core::v3::{CidrRange, TrafficDirection};
use shoal_api::pb::envoy::config::listener::v3::{
    ApiListener, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter,
    listener_filter,
};
use shoal_api::pb::envoy::extensions::filters::http::cors::v3::Cors;
use shoal_api::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use shoal_api::pb::envoy::extensions::filters::http::router::v3::Router;
use shoal_api::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use shoal_api::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use shoal_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
    http_connection_manager::{CodecType, RouteSpecifier, UpgradeConfig},
    http_filter,
};
use shoal_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};

use super::outbound_policy::Unknown;
use super::traffic_policy::TcpTimeouts;
use super::{ads, boolv, filters, socket, u32v};
use crate::model::Protocol;

pub(crate) const HTTP_PROTOCOLS: [&str; 2] = ["http/1.1", "h2c"];

pub(crate) fn http_filter<M: prost::Name>(name: &str, config: &M) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(shoal_api::pack(
            config,
        ))),
        ..Default::default()
    }
}

pub(crate) fn router() -> HttpFilter {
    HttpFilter {
        name: filters::HTTP_ROUTER.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(shoal_api::pack(
            &Router::default(),
        ))),
        ..Default::default()
    }
}

pub(crate) fn hcm(stat_prefix: &str, route: RouteSpecifier) -> HttpConnectionManager {
    HttpConnectionManager {
        codec_type: CodecType::Auto as i32,
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(route),
        // As in Istio's sidecars: CORS, then fault injection, then the router.
        http_filters: vec![
            http_filter(filters::HTTP_CORS, &Cors::default()),
            http_filter(filters::HTTP_FAULT, &HttpFault::default()),
            router(),
        ],
        use_remote_address: Some(boolv(false)),
        normalize_path: Some(boolv(true)),
        upgrade_configs: vec![UpgradeConfig {
            upgrade_type: "websocket".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn rds(name: &str) -> RouteSpecifier {
    RouteSpecifier::Rds(Rds {
        config_source: Some(ads()),
        route_config_name: name.to_string(),
    })
}

pub(crate) fn network_filter(name: &str, any: shoal_api::pb::google::protobuf::Any) -> Filter {
    Filter {
        name: name.into(),
        config_type: Some(filter::ConfigType::TypedConfig(any)),
    }
}

fn hcm_filter(stat_prefix: &str, route: RouteSpecifier) -> Filter {
    network_filter(
        filters::HTTP_CONNECTION_MANAGER,
        shoal_api::pack(&hcm(stat_prefix, route)),
    )
}

pub(crate) fn tcp_proxy_filter(cluster: &str) -> Filter {
    tcp_proxy_filter_timed(cluster, &TcpTimeouts::default())
}

/// `tcp_proxy` to one cluster with the destination's DestinationRule timeouts.
pub(crate) fn tcp_proxy_filter_timed(cluster: &str, t: &TcpTimeouts) -> Filter {
    let tp = TcpProxy {
        stat_prefix: cluster.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        idle_timeout: t.idle,
        max_downstream_connection_duration: t.max_duration,
        ..Default::default()
    };
    network_filter(filters::TCP_PROXY, shoal_api::pack(&tp))
}

pub(crate) fn listener_filter<M: prost::Name>(name: &str, config: &M) -> ListenerFilter {
    ListenerFilter {
        name: name.into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(shoal_api::pack(
            config,
        ))),
        ..Default::default()
    }
}

pub(crate) fn cidr(address: &str) -> Option<CidrRange> {
    let (ip, len) = match address.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u32>().ok()?),
        None => (address, if address.contains(':') { 128 } else { 32 }),
    };
    ip.parse::<std::net::IpAddr>().ok()?;
    Some(CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(u32v(len)),
    })
}

/// A service reachable on a listener port: its host, cluster, protocol and addresses.
#[derive(Debug, Clone)]
pub(crate) struct PortService {
    pub host: String,
    pub cluster: String,
    /// The TCP timeouts of the service's DestinationRule.
    pub tcp: TcpTimeouts,
    pub protocol: Protocol,
    pub addresses: Vec<String>,
}

impl PortService {
    /// The addresses that get a listener of their own (`VIP_PORT`): plain IP addresses,
    /// for a service that is not HTTP (HTTP services share `0.0.0.0_PORT` and are told
    /// apart by host). Address blocks are matched on `0.0.0.0_PORT` instead, as in Istio.
    pub fn vips(&self) -> Vec<&str> {
        if self.protocol.is_http() {
            return Vec::new();
        }
        self.addresses
            .iter()
            .filter(|a| !a.contains('/') && a.parse::<std::net::IpAddr>().is_ok())
            .map(String::as_str)
            .collect()
    }

    fn ranges(&self) -> Vec<CidrRange> {
        self.addresses
            .iter()
            .filter(|a| a.contains('/'))
            .filter_map(|a| cidr(a))
            .collect()
    }

    fn is_tls(&self) -> bool {
        matches!(self.protocol, Protocol::Tls | Protocol::Https)
    }
}

/// The route config of a service whose protocol is sniffed on a listener of its own
/// (`VIP_PORT`, or a headless service's `PODIP_PORT`): Istio's `HOST:PORT`.
pub(crate) fn sniffed_route(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// HTTP detected on the connection (by `http_inspector`) goes to `route`.
fn sniffed_http_chain(
    name: String,
    ranges: Vec<CidrRange>,
    stat: &str,
    route: &str,
) -> FilterChain {
    FilterChain {
        name,
        filter_chain_match: Some(FilterChainMatch {
            prefix_ranges: ranges,
            application_protocols: HTTP_PROTOCOLS.map(String::from).to_vec(),
            ..Default::default()
        }),
        filters: vec![hcm_filter(stat, rds(route))],
        ..Default::default()
    }
}

fn tcp_chain(s: &PortService, m: Option<FilterChainMatch>) -> FilterChain {
    FilterChain {
        name: s.cluster.clone(),
        filter_chain_match: m,
        filters: vec![tcp_proxy_filter_timed(&s.cluster, &s.tcp)],
        ..Default::default()
    }
}

fn captured(address: &str, port: u16, filter_chains: Vec<FilterChain>) -> Listener {
    let matches = |f: fn(&FilterChainMatch) -> bool| {
        filter_chains
            .iter()
            .any(|c| c.filter_chain_match.as_ref().is_some_and(f))
    };
    let mut listener_filters = Vec::new();
    if matches(|m| !m.server_names.is_empty()) {
        listener_filters.push(listener_filter(
            filters::TLS_INSPECTOR,
            &TlsInspector::default(),
        ));
    }
    if matches(|m| !m.application_protocols.is_empty()) {
        listener_filters.push(listener_filter(
            filters::HTTP_INSPECTOR,
            &HttpInspector::default(),
        ));
    }
    Listener {
        name: format!("{address}_{port}"),
        address: Some(socket(address, port)),
        filter_chains,
        bind_to_port: Some(boolv(false)),
        listener_filters,
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

/// `ADDRESS_PORT`: captured outbound traffic to one address, reached through
/// `virtualOutbound` by original destination (not bound). Istio gives each TCP or
/// sniffed service with a virtual IP such a listener, and each pod of a headless Service
/// (so that each pod's traffic is its own service's even where several share a port).
/// The services are in precedence order: where two claim the address, the first one's
/// chains win (later duplicates are dropped by [`super::tcp_route::finish`]). A service
/// whose protocol is sniffed sends what is HTTP to its own route config `HOST:PORT`.
pub(crate) fn outbound_vip(address: &str, port: u16, services: &[PortService]) -> Listener {
    let stat = format!("outbound_{address}_{port}");
    let mut chains = Vec::new();
    for s in services {
        if s.protocol == Protocol::Unknown {
            chains.push(sniffed_http_chain(
                format!("{}-http", s.cluster),
                Vec::new(),
                &stat,
                &sniffed_route(&s.host, port),
            ));
        }
        chains.push(tcp_chain(s, None));
    }
    captured(address, port, chains)
}

/// `0.0.0.0_PORT`: captured outbound traffic to a port that no `VIP_PORT` listener takes,
/// as Istio builds it from the services without a virtual IP of their own:
/// - HTTP services, on the route config `PORT` (told apart by host);
/// - services on address blocks, matched by destination range (HTTP on a sniffed one
///   detected and routed by `PORT` as well);
/// - TLS and HTTPS services without addresses, matched by SNI (their host name): how
///   an external HTTPS API registered by host alone is reached;
/// - a TCP (or sniffed) service without addresses takes every other connection to the
///   port (the first such service; HTTP on it still goes to `PORT`);
/// - what is left (not HTTP, no other match) follows the outbound traffic policy
///   (`PassthroughCluster` or `BlackHoleCluster`).
pub(crate) fn outbound_wildcard(
    port: u16,
    services: &[PortService],
    unknown: &Unknown,
) -> Listener {
    let stat = format!("outbound_0.0.0.0_{port}");
    let route = port.to_string();
    let mut chains = Vec::new();
    let mut catch_all: Option<&PortService> = None;
    let mut sniff_any = false;
    for s in services.iter().filter(|s| !s.protocol.is_http()) {
        let ranges = s.ranges();
        if !ranges.is_empty() {
            if s.protocol == Protocol::Unknown {
                chains.push(sniffed_http_chain(
                    format!("{}-http", s.cluster),
                    ranges.clone(),
                    &stat,
                    &route,
                ));
            }
            let m = FilterChainMatch {
                prefix_ranges: ranges,
                ..Default::default()
            };
            chains.push(tcp_chain(s, Some(m)));
        } else if !s.vips().is_empty() {
            // Reached on its own `VIP_PORT` listener.
        } else if s.is_tls() {
            let m = FilterChainMatch {
                server_names: vec![s.host.clone()],
                ..Default::default()
            };
            chains.push(tcp_chain(s, Some(m)));
        } else if catch_all.is_none() {
            sniff_any |= s.protocol == Protocol::Unknown;
            catch_all = Some(s);
        }
    }
    let any_http = services.iter().any(|s| s.protocol.is_http());
    match catch_all {
        // TCP and HTTP share the port: HTTP is detected, the rest is the service's.
        Some(s) => {
            if any_http || sniff_any {
                chains.push(sniffed_http_chain("http".into(), Vec::new(), &stat, &route));
            }
            chains.push(tcp_chain(s, None));
        }
        // What is not HTTP follows the outbound traffic policy, as in Istio: HTTP is
        // detected, and a TCP client of some unregistered address on a port that mesh HTTP
        // services use is passed through (or blocked), not fed to the HTTP codec.
        None => {
            if any_http {
                chains.push(sniffed_http_chain("http".into(), Vec::new(), &stat, &route));
            }
            chains.push(FilterChain {
                name: unknown.chain_name().into(),
                filters: vec![tcp_proxy_filter(unknown.cluster())],
                ..Default::default()
            });
        }
    }
    captured("0.0.0.0", port, chains)
}

/// What a bound listener carries.
pub(crate) enum BoundTraffic<'a> {
    /// HTTP, routed by the route config named.
    Http { route: &'a str },
    /// TCP to one cluster. With `sniffed`, connections the HTTP inspector finds to be HTTP
    /// take that route config instead (a port whose protocol is not declared).
    Tcp {
        cluster: &'a str,
        timeouts: &'a TcpTimeouts,
        sniffed: Option<&'a str>,
    },
}

/// The name of a listener bound to `bind:port`, as Istio names it.
pub(crate) fn bound_name(bind: &str, port: u16) -> String {
    format!("{bind}_{port}")
}

/// A listener bound to `bind:port` (`BIND_PORT`), for traffic that is not captured: a
/// Sidecar egress listener with `captureMode: NONE`, or any egress port of a proxy without
/// traffic capture.
pub(crate) fn bound(bind: &str, port: u16, traffic: BoundTraffic<'_>) -> Listener {
    let name = bound_name(bind, port);
    let stat = format!("outbound_{name}");
    let mut listener_filters = Vec::new();
    let filter_chains = match traffic {
        BoundTraffic::Http { route } => vec![FilterChain {
            filters: vec![hcm_filter(&stat, rds(route))],
            ..Default::default()
        }],
        BoundTraffic::Tcp {
            cluster,
            timeouts,
            sniffed: None,
        } => vec![FilterChain {
            filters: vec![tcp_proxy_filter_timed(cluster, timeouts)],
            ..Default::default()
        }],
        BoundTraffic::Tcp {
            cluster,
            timeouts,
            sniffed: Some(route),
        } => {
            listener_filters.push(listener_filter(
                filters::HTTP_INSPECTOR,
                &HttpInspector::default(),
            ));
            vec![
                FilterChain {
                    name: format!("{cluster}-http"),
                    filter_chain_match: Some(FilterChainMatch {
                        application_protocols: HTTP_PROTOCOLS.map(String::from).to_vec(),
                        ..Default::default()
                    }),
                    filters: vec![hcm_filter(&stat, rds(route))],
                    ..Default::default()
                },
                FilterChain {
                    name: cluster.to_string(),
                    filters: vec![tcp_proxy_filter_timed(cluster, timeouts)],
                    ..Default::default()
                },
            ]
        }
    };
    Listener {
        name,
        address: Some(socket(bind, port)),
        filter_chains,
        listener_filters,
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

/// `virtualOutbound` (15001): every captured outbound connection lands here and is handed to
/// the listener of its original destination; the rest follows the outbound traffic policy.
pub(crate) fn virtual_outbound(unknown: &Unknown) -> Listener {
    Listener {
        name: "virtualOutbound".into(),
        address: Some(socket("0.0.0.0", 15001)),
        use_original_dst: Some(boolv(true)),
        filter_chains: vec![FilterChain {
            name: unknown.chain_name().into(),
            filters: vec![tcp_proxy_filter(unknown.cluster())],
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

/// gRPC's `HOST:PORT` listener: an HTTP connection manager taking routes over RDS.
pub(crate) fn api_listener(host: &str, port: u16, address: &str, route_config: &str) -> Listener {
    let manager = HttpConnectionManager {
        stat_prefix: format!("{host}:{port}"),
        route_specifier: Some(rds(route_config)),
        // Istio gives proxyless gRPC the fault filter (gRPC supports it) but no CORS.
        http_filters: vec![
            http_filter(filters::HTTP_FAULT, &HttpFault::default()),
            router(),
        ],
        ..Default::default()
    };
    Listener {
        name: format!("{host}:{port}"),
        address: Some(socket(address, port)),
        api_listener: Some(ApiListener {
            api_listener: Some(shoal_api::pack(&manager)),
        }),
        ..Default::default()
    }
}
