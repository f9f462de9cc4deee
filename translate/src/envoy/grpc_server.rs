//! Listeners of xDS-enabled gRPC servers (gRFC A36): a proxyless gRPC workload asks for
//! `xds.istio.io/grpc/lds/inbound/HOST:PORT` (its bootstrap's
//! `server_listener_resource_name_template`) for each port it serves, and serves only once
//! it has one.
//!
//! As Istio builds them: one filter chain without a match (gRPC's filter-chain matching
//! cannot tell TLS from plaintext, so a port is either), an HTTP connection manager with an
//! inline route config whose single route has a `non_forwarding_action` (a server routes
//! nowhere), the AuthorizationPolicies as RBAC filters (gRFC A41; DENY then ALLOW — gRPC
//! knows no AUDIT), then the router. STRICT gives a `DownstreamTlsContext` from the
//! bootstrap's certificate provider requiring a client certificate (gRFC A29); PERMISSIVE
//! serves plaintext, or mTLS when the workload carries `security.istio.io/tlsMode: istio`
//! (clients then use auto mTLS to it); DISABLE plaintext.
//!
//! The names are served on demand for the hosts a server binds to without knowing its
//! address — `0.0.0.0` and `[::]` — and every port of the Services selecting the workload.

use shoal_api::pb::envoy::config::listener::v3::{FilterChain, Listener};
use shoal_api::pb::envoy::config::rbac::v3::rbac::Action;
use shoal_api::pb::envoy::config::route::v3::{
    NonForwardingAction, Route, RouteConfiguration, RouteMatch, VirtualHost,
    route::Action as RouteAction, route_match::PathSpecifier,
};
use shoal_api::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use shoal_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager::RouteSpecifier, http_filter,
};

use super::listener::{network_filter, router};
use super::{boolv, filters, socket};
use crate::scope::InboundPort;
use crate::security::{InboundSecurity, PeerMode, tls};

/// The prefix of a gRPC server's listener names (Istio's agent writes it into the
/// bootstrap's `server_listener_resource_name_template`).
pub(crate) const PREFIX: &str = "xds.istio.io/grpc/lds/inbound/";

/// The hosts a server listening on every address names itself with.
const ANY_HOSTS: [&str; 2] = ["0.0.0.0", "[::]"];

/// Whether the server on `port` requires mTLS.
fn mtls(sec: &InboundSecurity, port: u16, tls_mode_istio: bool) -> bool {
    match sec.modes.port(port) {
        PeerMode::Strict => true,
        PeerMode::Permissive => tls_mode_istio,
        PeerMode::Disable => false,
    }
}

fn rbac_filter(name: &str, rules: &shoal_api::pb::envoy::config::rbac::v3::Rbac) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(shoal_api::pack(
            &HttpRbac {
                rules: Some(rules.clone()),
                ..Default::default()
            },
        ))),
        ..Default::default()
    }
}

fn chain(port: u16, sec: &InboundSecurity, mtls: bool) -> FilterChain {
    let mut http_filters = Vec::new();
    for rules in &sec.http_rbac {
        match Action::try_from(rules.action) {
            Ok(Action::Deny) => http_filters.push(rbac_filter(filters::HTTP_RBAC_DENY, rules)),
            Ok(Action::Allow) => http_filters.push(rbac_filter(filters::HTTP_RBAC, rules)),
            // AUDIT (LOG): gRPC would refuse the whole listener.
            _ => {}
        }
    }
    http_filters.push(router());
    let manager = HttpConnectionManager {
        stat_prefix: format!("inbound_{port}"),
        route_specifier: Some(RouteSpecifier::RouteConfig(RouteConfiguration {
            name: "inbound".into(),
            virtual_hosts: vec![VirtualHost {
                name: "inbound".into(),
                domains: vec!["*".into()],
                routes: vec![Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(PathSpecifier::Prefix("/".into())),
                        ..Default::default()
                    }),
                    action: Some(RouteAction::NonForwardingAction(NonForwardingAction {})),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })),
        http_filters,
        ..Default::default()
    };
    FilterChain {
        name: if mtls {
            "inbound-mtls"
        } else {
            "inbound-plaintext"
        }
        .into(),
        filters: vec![network_filter(
            filters::HTTP_CONNECTION_MANAGER,
            shoal_api::pack(&manager),
        )],
        transport_socket: mtls.then(|| {
            let mut context = tls::downstream_grpc_mesh();
            context.require_client_certificate = Some(boolv(true));
            tls::socket(shoal_api::pack(&context))
        }),
        ..Default::default()
    }
}

/// The server listeners of a proxyless gRPC workload: for each port it serves, one per
/// host it may name itself with.
pub(crate) fn listeners(
    ports: &[InboundPort],
    sec: &InboundSecurity,
    tls_mode_istio: bool,
) -> Vec<Listener> {
    let mut out = Vec::new();
    for p in ports {
        let chain = chain(p.port, sec, mtls(sec, p.port, tls_mode_istio));
        for host in ANY_HOSTS {
            let bind = host.trim_start_matches('[').trim_end_matches(']');
            out.push(Listener {
                name: format!("{PREFIX}{host}:{}", p.port),
                address: Some(socket(bind, p.port)),
                filter_chains: vec![chain.clone()],
                ..Default::default()
            });
        }
    }
    out
}
