//! `virtualInbound` (15006): traffic for the workload itself, by destination port, with the
//! workload's PeerAuthentication (mTLS) and AuthorizationPolicy (RBAC) applied.
//!
//! Each port gets filter chains per transport its mTLS mode admits: STRICT only mTLS
//! (`transport_protocol: tls`, terminated with the workload certificate), PERMISSIVE mTLS
//! and plaintext (`raw_buffer`) side by side, DISABLE plaintext without looking at the
//! transport (TLS from the client then reaches the application untouched). Envoy picks the
//! most specific destination port first and never falls back to a less specific one, so a
//! plaintext connection to a STRICT port matches no chain and is closed. Ports the workload
//! does not declare go through the passthrough chains, with the workload-level mode.
//!
//! RBAC filters (AUDIT, DENY, ALLOW) run before the router in HTTP chains and before the TCP
//! proxy in TCP chains, as in Istio.

use shoal_api::pb::envoy::config::core::v3::TrafficDirection;
use std::collections::BTreeMap;

use shoal_api::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use shoal_api::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use shoal_api::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use shoal_api::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use shoal_api::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use shoal_api::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use shoal_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter,
    http_connection_manager::{
        ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
    },
    http_filter,
};
use shoal_api::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use shoal_api::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;

use super::listener::{HTTP_PROTOCOLS, hcm, listener_filter, network_filter, tcp_proxy_filter};
use super::{INBOUND_PASSTHROUGH, boolv, filters, inbound_cluster_name, route, socket, u32v};
use crate::model::Protocol;
use crate::scope::InboundPort;
use crate::security::jwt::JwtConfig;
use crate::security::rbac::RbacConfig;
use crate::security::{InboundSecurity, PeerMode, tls};

/// ALPN values Istio clients use for HTTP over mTLS (detects HTTP on sniffed ports).
const MESH_HTTP_PROTOCOLS: [&str; 3] = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];

/// The transport a filter chain accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Whatever arrives (mTLS disabled).
    Any,
    /// Plaintext only (mTLS permissive).
    Plain,
    /// mTLS, terminated here.
    Mtls,
}

impl Transport {
    fn for_mode(mode: PeerMode) -> &'static [Transport] {
        match mode {
            PeerMode::Disable => &[Transport::Any],
            PeerMode::Permissive => &[Transport::Mtls, Transport::Plain],
            PeerMode::Strict => &[Transport::Mtls],
        }
    }

    fn protocol(self) -> String {
        match self {
            Transport::Any => String::new(),
            Transport::Plain => "raw_buffer".into(),
            Transport::Mtls => "tls".into(),
        }
    }

    /// Chain names stay Istio's for plaintext; mTLS chains get a suffix (names are unique).
    fn name(self, base: String) -> String {
        match self {
            Transport::Mtls => format!("{base}|mtls"),
            _ => base,
        }
    }

    /// ALPN values that mark HTTP on a sniffed port.
    fn http_protocols(self) -> Vec<String> {
        match self {
            Transport::Mtls => MESH_HTTP_PROTOCOLS.map(String::from).to_vec(),
            _ => HTTP_PROTOCOLS.map(String::from).to_vec(),
        }
    }

    fn socket(self) -> Option<shoal_api::pb::envoy::config::core::v3::TransportSocket> {
        (self == Transport::Mtls).then(|| tls::socket(shoal_api::pack(&tls::downstream_mesh())))
    }
}

fn http_rbac_filter(rules: &RbacConfig) -> HttpFilter {
    HttpFilter {
        name: filters::HTTP_RBAC.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(shoal_api::pack(
            &HttpRbac {
                rules: Some(rules.clone()),
                ..Default::default()
            },
        ))),
        ..Default::default()
    }
}

fn jwt_filter(jwt: &JwtConfig) -> HttpFilter {
    HttpFilter {
        name: filters::HTTP_JWT_AUTHN.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(shoal_api::pack(
            &jwt.filter,
        ))),
        ..Default::default()
    }
}

fn network_rbac_filter(rules: &RbacConfig) -> Filter {
    network_filter(
        filters::NETWORK_RBAC,
        shoal_api::pack(&NetworkRbac {
            rules: Some(rules.clone()),
            stat_prefix: "tcp.".into(),
            ..Default::default()
        }),
    )
}

/// The HTTP filters that enforce a workload's (or gateway's) security ahead of routing:
/// JWTs are verified before RBAC reads their claims.
pub(crate) fn http_guards(sec: &InboundSecurity) -> Vec<HttpFilter> {
    let mut filters: Vec<HttpFilter> = sec.jwt.iter().map(jwt_filter).collect();
    filters.extend(sec.http_rbac.iter().map(http_rbac_filter));
    filters
}

/// The network filters that enforce AuthorizationPolicies on a TCP chain, ahead of its
/// `tcp_proxy`.
pub(crate) fn tcp_guards(sec: &InboundSecurity) -> Vec<Filter> {
    sec.tcp_rbac.iter().map(network_rbac_filter).collect()
}

fn chain_match(port: Option<u16>, t: Transport, alpn: Vec<String>) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: port.map(|p| u32v(u32::from(p))),
        transport_protocol: t.protocol(),
        application_protocols: alpn,
        ..Default::default()
    }
}

fn http_chain(port: u16, t: Transport, alpn: Vec<String>, sec: &InboundSecurity) -> FilterChain {
    let cluster = inbound_cluster_name(port);
    let mut used = std::collections::BTreeSet::new();
    let vh: Option<VirtualHost> = route::virtual_host(
        format!("inbound|http|{port}"),
        vec!["*".into()],
        route::default_routes(&cluster, crate::proxy::Generator::Envoy),
        &mut used,
    );
    let rc = RouteConfiguration {
        name: cluster.clone(),
        virtual_hosts: vh.into_iter().collect(),
        ..Default::default()
    };
    let mut manager = hcm(
        &format!("inbound_0.0.0.0_{port}"),
        RouteSpecifier::RouteConfig(rc),
    );
    let mut http_filters = http_guards(sec);
    http_filters.append(&mut manager.http_filters);
    manager.http_filters = http_filters;
    if t == Transport::Mtls {
        // The application learns the peer's identity from the client certificate.
        manager.forward_client_cert_details = ForwardClientCertDetails::AppendForward as i32;
        manager.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
            subject: Some(boolv(true)),
            dns: true,
            uri: true,
            ..Default::default()
        });
    }
    FilterChain {
        name: t.name(format!("inbound|http|{port}")),
        filter_chain_match: Some(chain_match(Some(port), t, alpn)),
        filters: vec![network_filter(
            filters::HTTP_CONNECTION_MANAGER,
            shoal_api::pack(&manager),
        )],
        transport_socket: t.socket(),
        ..Default::default()
    }
}

fn tcp_chain(
    name: String,
    port: Option<u16>,
    cluster: &str,
    t: Transport,
    sec: &InboundSecurity,
) -> FilterChain {
    let mut filters = tcp_guards(sec);
    filters.push(tcp_proxy_filter(cluster));
    FilterChain {
        name: t.name(name),
        filter_chain_match: Some(chain_match(port, t, Vec::new())),
        filters,
        transport_socket: t.socket(),
        ..Default::default()
    }
}

/// The filter chains of one inbound port: one per transport its mTLS mode admits, or a
/// single chain terminating `tls` (a Sidecar ingress port's own TLS, which replaces mesh
/// mTLS there). Also says whether the TLS inspector is needed.
fn port_chains(
    p: &InboundPort,
    sec: &InboundSecurity,
    tls: Option<&DownstreamTlsContext>,
) -> (Vec<FilterChain>, bool) {
    let cluster = inbound_cluster_name(p.port);
    let mut chains = Vec::new();
    if let Some(ctx) = tls {
        // The chain shape of an mTLS one, with the listener's own certificate and checks.
        // Once the sidecar terminated TLS, an HTTPS port carries HTTP.
        let mut c = if p.protocol.is_http() || p.protocol == Protocol::Https {
            http_chain(p.port, Transport::Mtls, Vec::new(), sec)
        } else {
            tcp_chain(
                cluster.clone(),
                Some(p.port),
                &cluster,
                Transport::Mtls,
                sec,
            )
        };
        c.name = c.name.replace("|mtls", "|tls");
        c.transport_socket = Some(tls::socket(shoal_api::pack(ctx)));
        chains.push(c);
        return (chains, true);
    }
    let mut inspect_tls = false;
    for &t in Transport::for_mode(sec.modes.port(p.port)) {
        inspect_tls |= t != Transport::Any;
        if p.protocol.is_http() {
            chains.push(http_chain(p.port, t, Vec::new(), sec));
            continue;
        }
        if p.protocol == Protocol::Unknown {
            chains.push(http_chain(p.port, t, t.http_protocols(), sec));
        }
        chains.push(tcp_chain(cluster.clone(), Some(p.port), &cluster, t, sec));
    }
    (chains, inspect_tls)
}

/// TLS and HTTP inspection for chains that match on them.
fn inspectors(inspect_tls: bool) -> Vec<ListenerFilter> {
    let mut out = Vec::new();
    if inspect_tls {
        out.push(listener_filter(
            filters::TLS_INSPECTOR,
            &TlsInspector::default(),
        ));
    }
    out.push(listener_filter(
        filters::HTTP_INSPECTOR,
        &HttpInspector::default(),
    ));
    out
}

/// A listener bound to `bind:PORT` for one inbound port (a Sidecar ingress listener that
/// is not captured), with the same chains `virtualInbound` would have for it.
pub(crate) fn bound_inbound(
    bind: &str,
    p: &InboundPort,
    sec: &InboundSecurity,
    tls: Option<&DownstreamTlsContext>,
) -> Listener {
    let (filter_chains, inspect_tls) = port_chains(p, sec, tls);
    Listener {
        name: format!("{bind}_{}", p.port),
        address: Some(socket(bind, p.port)),
        filter_chains,
        listener_filters: inspectors(inspect_tls),
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}

/// `virtualInbound` (15006): traffic for this workload, by destination port (`tls`: ports
/// whose Sidecar ingress listener terminates TLS itself).
pub(crate) fn virtual_inbound(
    ports: &[InboundPort],
    sec: &InboundSecurity,
    tls: &BTreeMap<u16, DownstreamTlsContext>,
) -> Listener {
    let mut chains = Vec::new();
    let mut inspect_tls = false;
    for p in ports {
        let (mut c, inspect) = port_chains(p, sec, tls.get(&p.port));
        chains.append(&mut c);
        inspect_tls |= inspect;
    }
    for &t in Transport::for_mode(sec.modes.workload) {
        inspect_tls |= t != Transport::Any;
        chains.push(tcp_chain(
            INBOUND_PASSTHROUGH.into(),
            None,
            INBOUND_PASSTHROUGH,
            t,
            sec,
        ));
    }
    let mut listener_filters = vec![listener_filter(
        filters::ORIGINAL_DST,
        &OriginalDst::default(),
    )];
    listener_filters.append(&mut inspectors(inspect_tls));
    Listener {
        name: "virtualInbound".into(),
        address: Some(socket("0.0.0.0", 15006)),
        filter_chains: chains,
        listener_filters,
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}
