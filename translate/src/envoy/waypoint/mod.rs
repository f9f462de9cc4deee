//! A waypoint: the Envoy of a Gateway of class `istio-waypoint`, which takes the traffic
//! ztunnels send for the services (and workloads) that use it, applies L7 policy and
//! routing, and passes it on to the workloads.
//!
//! The layout is Istio's, three listeners chained through Envoy internal listeners:
//! - `connect_terminate` (0.0.0.0:15008) ends the HBONE tunnel: mTLS with the waypoint's
//!   workload certificate (clients must present theirs), HTTP/2 `CONNECT` whose authority
//!   is the original destination `VIP:PORT`. It records that destination, the client's
//!   address and its identity as filter state shared with the next hop, and hands the
//!   tunnel's payload to `main_internal`.
//! - `main_internal` (internal) restores the original destination (`original_dst`) and
//!   picks a filter chain by destination VIP and port: an HTTP connection manager for HTTP
//!   ports (the service's VirtualService or HTTPRoute routes, RequestAuthentication's JWT
//!   check and AuthorizationPolicy's L7 rules, in Istio's filter order), a TCP proxy for
//!   the others, both for ports whose protocol is sniffed.
//!   Traffic addressed to a workload that uses the waypoint (`istio.io/waypoint-for:
//!   workload` or `all`) gets the waypoint's own policies and goes on to that workload.
//! - `connect_originate` (internal) opens a new HBONE tunnel to an ambient workload
//!   (`POD_IP:15008`, `CONNECT POD_IP:PORT`) with the waypoint's certificate.
//!
//! Clusters (`cluster.rs`) are named `inbound-vip|PORT|http|HOST` (`http/SUBSET` for a
//! subset, `tcp` on TCP chains). Ambient endpoints are reached through
//! `connect_originate`; the others directly, with auto mTLS to those running a sidecar.
//!
//! Policies apply here only when attached by reference (`targetRefs`): to the waypoint's
//! Gateway, to the GatewayClass `istio-waypoint` from the root namespace, or to a Service
//! or ServiceEntry it serves (that service's chains only). The client's identity comes in
//! the tunnel: RBAC reads it from the filter state `io.istio.peer_principal`.
//!
//! Envoy needs the bootstrap extension `envoy.bootstrap.internal_listener` for internal
//! listeners (Istio's waypoint bootstrap has it).

mod cluster;

use std::collections::BTreeSet;
use std::sync::Arc;

use shoal_api::pb::envoy::config::core::v3::Http2ProtocolOptions;
use shoal_api::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, TrafficDirection, data_source::Specifier,
    substitution_format_string::Format,
};
use shoal_api::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
    listener::{InternalListenerConfig, ListenerSpecifier},
};
use shoal_api::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    route::Action,
    route_action::{
        ClusterSpecifier, UpgradeConfig as RouteUpgrade, upgrade_config::ConnectConfig,
    },
    route_match::{ConnectMatcher, PathSpecifier},
};
use shoal_api::pb::envoy::extensions::filters::common::set_filter_state::v3::{
    FilterStateValue, filter_state_value,
};
use shoal_api::pb::envoy::extensions::filters::http::set_filter_state::v3::Config as SetFilterState;
use shoal_api::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use shoal_api::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use shoal_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager,
    http_connection_manager::{RouteSpecifier, UpgradeConfig},
};
use shoal_api::pb::envoy::extensions::filters::network::set_filter_state::v3::Config as NetworkSetFilterState;
use shoal_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy,
    tcp_proxy::{self, TunnelingConfig},
};
use shoal_api::{Resource, ResourceType};

use super::listener::{HTTP_PROTOCOLS, hcm, http_filter, listener_filter, network_filter};
use super::{boolv, filters, inbound, route, socket, u32v};
use crate::ambient::{Enrolment, HBONE_PORT};
use crate::model::{Model, Protocol};
use crate::proxy::Generator;
use crate::scope::policies::{WaypointTarget, waypoint_policies};
use crate::scope::{Scope, ViewKey};
use crate::security::{self, rbac::PEER_PRINCIPAL, tls};
use crate::view::{Out, ViewOutput};

pub(crate) const CONNECT_TERMINATE: &str = "connect_terminate";
pub(crate) const MAIN_INTERNAL: &str = "main_internal";
pub(crate) const CONNECT_ORIGINATE: &str = "connect_originate";
/// Filter state the `original_dst` listener filter of an internal listener restores the
/// destination and source addresses from.
const LOCAL_IP_STATE: &str = "envoy.filters.listener.original_dst.local_ip";
const REMOTE_IP_STATE: &str = "envoy.filters.listener.original_dst.remote_ip";
/// Envoy's generic string filter state object.
const STRING_STATE: &str = "envoy.string";

/// Every resource of a waypoint's view; `enrolment` is the model's (see [`Enrolment`]).
pub(crate) fn build(model: &Model, key: &ViewKey, enrolment: &Enrolment) -> ViewOutput {
    let mut out = Out::default();
    let Some(gateway) = key.waypoint_gateway() else {
        return out.finish();
    };
    let scope = Scope::new(model, key);
    let services = enrolment.services_of(gateway);
    let mut clusters = cluster::Wanted::default();
    let mut chains = Vec::new();
    let mut sniffing = false;
    let vss = scope.virtual_services();
    for svc in services {
        let ranges: Vec<_> = svc
            .addresses
            .iter()
            .filter_map(|a| super::listener::cidr(a))
            .collect();
        if ranges.is_empty() {
            // Reached by address only: a service without one is not served here.
            continue;
        }
        let sec = security::waypoint(
            model,
            &waypoint_policies(model, gateway, WaypointTarget::Service(svc)),
        );
        let vs = scope.virtual_service_for(&vss, &svc.host);
        for port in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            let matches = |alpn: Vec<String>| FilterChainMatch {
                prefix_ranges: ranges.clone(),
                destination_port: Some(u32v(u32::from(port.port))),
                application_protocols: alpn,
                ..Default::default()
            };
            let sniffed = port.protocol == Protocol::Unknown;
            sniffing |= sniffed;
            if port.protocol.is_http() || sniffed {
                let mut routes = route::routes(
                    &scope,
                    vs.map(Arc::as_ref),
                    svc,
                    port.port,
                    Generator::Envoy,
                );
                cluster::rename_routes(&mut routes, &mut clusters);
                let alpn = if sniffed {
                    HTTP_PROTOCOLS.map(String::from).to_vec()
                } else {
                    Vec::new()
                };
                let name = cluster::vip_name(port.port, "http", "", &svc.host);
                chains.push(FilterChain {
                    name: name.clone(),
                    filter_chain_match: Some(matches(alpn)),
                    filters: vec![http_filter_chain(&name, routes, &sec)],
                    ..Default::default()
                });
            }
            if !port.protocol.is_http() {
                let name = cluster::vip_name(port.port, "tcp", "", &svc.host);
                clusters.insert(&name);
                let mut filters = inbound::tcp_guards(&sec);
                filters.push(super::listener::tcp_proxy_filter(&name));
                chains.push(FilterChain {
                    name,
                    filter_chain_match: Some(matches(Vec::new())),
                    filters,
                    ..Default::default()
                });
            }
        }
    }
    let workloads = enrolment.workloads_of(gateway);
    if !workloads.is_empty() {
        let sec = security::waypoint(
            model,
            &waypoint_policies(model, gateway, WaypointTarget::Gateway),
        );
        chains.extend(direct_chains(workloads, &sec));
        sniffing = true;
    }
    for c in cluster::build(&scope, enrolment, &clusters) {
        out.add(ResourceType::Cluster, Resource::encode(c.name.clone(), &c));
    }
    let mut listeners = vec![
        connect_terminate(),
        main_internal(chains, sniffing),
        connect_originate(),
    ];
    for l in &mut listeners {
        if let Some(log) = &model.options.access_log {
            super::access_log::apply(l, log);
        }
        out.add(ResourceType::Listener, Resource::encode(l.name.clone(), l));
    }
    out.finish()
}

/// One value of filter state, from a substitution format, shared with the internal
/// connection the tunnel's payload continues on.
fn shared_state(key: &str, factory: &str, format: &str) -> FilterStateValue {
    FilterStateValue {
        key: Some(filter_state_value::Key::ObjectKey(key.into())),
        factory_key: factory.into(),
        value: Some(filter_state_value::Value::FormatString(
            SubstitutionFormatString {
                format: Some(Format::TextFormatSource(DataSource {
                    specifier: Some(Specifier::InlineString(format.into())),
                    ..Default::default()
                })),
                ..Default::default()
            },
        )),
        shared_with_upstream: filter_state_value::SharedWithUpstream::Once as i32,
        skip_if_empty: true,
        ..Default::default()
    }
}

/// `connect_terminate`: ends HBONE tunnels on 15008.
fn connect_terminate() -> Listener {
    let route = Route {
        name: "connect".into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::ConnectMatcher(ConnectMatcher::default())),
            ..Default::default()
        }),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(MAIN_INTERNAL.into())),
            upgrade_configs: vec![RouteUpgrade {
                upgrade_type: "CONNECT".into(),
                connect_config: Some(ConnectConfig::default()),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    let state = SetFilterState {
        on_request_headers: vec![
            shared_state(LOCAL_IP_STATE, "", "%REQ(:AUTHORITY)%"),
            shared_state(REMOTE_IP_STATE, "", "%DOWNSTREAM_REMOTE_ADDRESS%"),
            shared_state(PEER_PRINCIPAL, STRING_STATE, "%DOWNSTREAM_PEER_URI_SAN%"),
        ],
        ..Default::default()
    };
    let manager = HttpConnectionManager {
        stat_prefix: CONNECT_TERMINATE.into(),
        route_specifier: Some(RouteSpecifier::RouteConfig(RouteConfiguration {
            name: "default".into(),
            virtual_hosts: vec![VirtualHost {
                name: "default".into(),
                domains: vec!["*".into()],
                routes: vec![route],
                ..Default::default()
            }],
            ..Default::default()
        })),
        http_filters: vec![
            http_filter(filters::HTTP_SET_FILTER_STATE, &state),
            super::listener::router(),
        ],
        upgrade_configs: vec![UpgradeConfig {
            upgrade_type: "CONNECT".into(),
            ..Default::default()
        }],
        http2_protocol_options: Some(Http2ProtocolOptions {
            allow_connect: true,
            // Tunnels are long-lived and many streams share one: bound them for fairness.
            max_concurrent_streams: Some(u32v(100)),
            ..Default::default()
        }),
        stream_idle_timeout: Some(Default::default()),
        use_remote_address: Some(boolv(false)),
        ..Default::default()
    };
    let mut tls_context = tls::downstream_mesh();
    if let Some(common) = tls_context.common_tls_context.as_mut() {
        common.alpn_protocols = vec!["h2".into()];
    }
    Listener {
        name: CONNECT_TERMINATE.into(),
        address: Some(socket("0.0.0.0", HBONE_PORT as u16)),
        filter_chains: vec![FilterChain {
            name: "default".into(),
            filters: vec![network_filter(
                filters::HTTP_CONNECTION_MANAGER,
                shoal_api::pack(&manager),
            )],
            transport_socket: Some(tls::socket(shoal_api::pack(&tls_context))),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn internal(
    name: &str,
    listener_filters: Vec<ListenerFilter>,
    chains: Vec<FilterChain>,
) -> Listener {
    Listener {
        name: name.into(),
        listener_specifier: Some(ListenerSpecifier::InternalListener(
            InternalListenerConfig::default(),
        )),
        listener_filters,
        filter_chains: chains,
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}

/// `main_internal`: the served services' chains, by original destination.
fn main_internal(chains: Vec<FilterChain>, sniffing: bool) -> Listener {
    let mut listener_filters = vec![listener_filter(
        filters::ORIGINAL_DST,
        &OriginalDst::default(),
    )];
    if sniffing {
        listener_filters.push(listener_filter(
            filters::HTTP_INSPECTOR,
            &HttpInspector::default(),
        ));
    }
    internal(MAIN_INTERNAL, listener_filters, chains)
}

/// `connect_originate`: a new tunnel to the workload the endpoint metadata names.
fn connect_originate() -> Listener {
    let proxy = TcpProxy {
        stat_prefix: CONNECT_ORIGINATE.into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(
            CONNECT_ORIGINATE.into(),
        )),
        tunneling_config: Some(TunnelingConfig {
            hostname: "%DOWNSTREAM_LOCAL_ADDRESS%".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    internal(
        CONNECT_ORIGINATE,
        vec![listener_filter(
            filters::ORIGINAL_DST,
            &OriginalDst::default(),
        )],
        vec![FilterChain {
            name: CONNECT_ORIGINATE.into(),
            filters: vec![network_filter(filters::TCP_PROXY, shoal_api::pack(&proxy))],
            ..Default::default()
        }],
    )
}

/// Chains for traffic addressed to workloads that use the waypoint (not to a service):
/// HTTP (detected) and TCP, on to the workload itself through `encap`, the destination
/// passed on as filter state for `connect_originate`.
fn direct_chains(workloads: &[String], sec: &security::InboundSecurity) -> Vec<FilterChain> {
    let ranges: Vec<_> = workloads
        .iter()
        .filter_map(|a| super::listener::cidr(a))
        .collect();
    let pass_on = network_filter(
        filters::NETWORK_SET_FILTER_STATE,
        shoal_api::pack(&NetworkSetFilterState {
            on_new_connection: vec![shared_state(
                LOCAL_IP_STATE,
                "",
                &format!("%FILTER_STATE({LOCAL_IP_STATE}:PLAIN)%"),
            )],
            ..Default::default()
        }),
    );
    let chain = |name: &str, alpn: Vec<String>, mut filters: Vec<Filter>| {
        filters.insert(0, pass_on.clone());
        FilterChain {
            name: name.into(),
            filter_chain_match: Some(FilterChainMatch {
                prefix_ranges: ranges.clone(),
                application_protocols: alpn,
                ..Default::default()
            }),
            filters,
            ..Default::default()
        }
    };
    let mut tcp = inbound::tcp_guards(sec);
    tcp.push(super::listener::tcp_proxy_filter(cluster::ENCAP));
    let routes = route::default_routes(cluster::ENCAP, Generator::Envoy);
    vec![
        chain(
            "direct-http",
            HTTP_PROTOCOLS.map(String::from).to_vec(),
            vec![http_filter_chain("direct-http", routes, sec)],
        ),
        chain("direct-tcp", Vec::new(), tcp),
    ]
}

/// The HTTP connection manager of a service port: its routes inline, behind its
/// policies' JWT and RBAC filters.
fn http_filter_chain(name: &str, routes: Vec<Route>, sec: &security::InboundSecurity) -> Filter {
    let mut used = BTreeSet::new();
    let vhost = route::virtual_host(name.to_string(), vec!["*".into()], routes, &mut used);
    let mut manager = hcm(
        name,
        RouteSpecifier::RouteConfig(RouteConfiguration {
            name: name.into(),
            virtual_hosts: vhost.into_iter().collect(),
            validate_clusters: Some(boolv(false)),
            ..Default::default()
        }),
    );
    let guards = inbound::http_guards(sec);
    manager.http_filters.splice(0..0, guards);
    network_filter(filters::HTTP_CONNECTION_MANAGER, shoal_api::pack(&manager))
}

#[cfg(test)]
mod tests;
