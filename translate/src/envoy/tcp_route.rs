//! VirtualService `tcp` and `tls` routes, as Istio turns them into listener filter chains.
//!
//! Neither kind of route sees HTTP, so both are filter chains of the listener rather than
//! routes of a route config: a `tcp` match becomes a chain matching the original destination
//! (`destinationSubnets`, else the service's virtual IPs), a `tls` match one that also
//! matches the ClientHello's SNI (`server_names`, read by `tls_inspector`). Each chain ends
//! in `tcp_proxy` to one cluster, or to `weighted_clusters` when the route splits traffic.
//! Chains are added in front of the listener's own chain for the service, which stays as
//! the fallback for connections no route matches (as when no VirtualService applies).
//! `sourceLabels` and `sourceNamespace` are not acted on (validation warns).

use std::collections::BTreeSet;
use std::sync::Arc;

use shoal_api::pb::envoy::config::core::v3::CidrRange;
use shoal_api::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener};
use shoal_api::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use shoal_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy, tcp_proxy::weighted_cluster::ClusterWeight,
};
use shoal_config::istio::RouteDestination;

use super::listener::{self, cidr, network_filter};
use super::traffic_policy::TcpTimeouts;
use super::{filters, outbound_cluster_name};
use crate::model::{Protocol, Service, VirtualServiceRule};
use crate::scope::{Scope, match_applies};
use shoal_config::host;

/// One applicable match of a `tcp` or `tls` route: what a chain matches and where it goes.
pub(crate) struct L4Rule<'a> {
    pub subnets: &'a [String],
    /// Empty for `tcp` routes.
    pub sni_hosts: &'a [String],
    pub route: &'a [RouteDestination],
}

/// The conditions of an L4 match decided here rather than by Envoy.
struct Conditions<'a> {
    port: Option<u32>,
    gateways: &'a [String],
    source_labels: &'a shoal_config::Labels,
    source_namespace: Option<&'a str>,
}

/// Whether a match applies to this proxy and listener port: its `port`, `gateways`,
/// `sourceLabels` and `sourceNamespace` all hold (Istio's `matchTCP`: for L4 routes the
/// source conditions count even when gateways are named).
fn applies(
    scope: &Scope<'_>,
    vs: &VirtualServiceRule,
    c: Conditions<'_>,
    listener_port: u16,
) -> bool {
    c.port.is_none_or(|p| p == u32::from(listener_port))
        && match_applies(scope.gateway.as_deref(), &vs.namespace, c.gateways)
        && scope.source_applies(c.source_labels, c.source_namespace)
}

/// The `tcp` rules of a VirtualService for a port, in order, up to the first that matches
/// every destination (later ones could never be chosen, as in Istio).
pub(crate) fn tcp_rules<'a>(
    scope: &Scope<'_>,
    vs: &'a VirtualServiceRule,
    port: u16,
) -> Vec<L4Rule<'a>> {
    let mut out = Vec::new();
    for r in &vs.spec.tcp {
        if r.matches.is_empty() {
            out.push(L4Rule {
                subnets: &[],
                sni_hosts: &[],
                route: &r.route,
            });
            return out;
        }
        for m in &r.matches {
            let c = Conditions {
                port: m.port,
                gateways: &m.gateways,
                source_labels: &m.source_labels,
                source_namespace: m.source_namespace.as_deref(),
            };
            if applies(scope, vs, c, port) {
                out.push(L4Rule {
                    subnets: &m.destination_subnets,
                    sni_hosts: &[],
                    route: &r.route,
                });
                if m.destination_subnets.is_empty() {
                    return out;
                }
            }
        }
    }
    out
}

/// The `tls` rules of a VirtualService for a port, in order.
pub(crate) fn tls_rules<'a>(
    scope: &Scope<'_>,
    vs: &'a VirtualServiceRule,
    port: u16,
) -> Vec<L4Rule<'a>> {
    vs.spec
        .tls
        .iter()
        .flat_map(|r| r.matches.iter().map(move |m| (r, m)))
        .filter(|(_, m)| {
            let c = Conditions {
                port: m.port,
                gateways: &m.gateways,
                source_labels: &m.source_labels,
                source_namespace: m.source_namespace.as_deref(),
            };
            !m.sni_hosts.is_empty() && applies(scope, vs, c, port)
        })
        .map(|(r, m)| L4Rule {
            subnets: &m.destination_subnets,
            sni_hosts: &m.sni_hosts,
            route: &r.route,
        })
        .collect()
}

/// `tcp_proxy` to a route's destination, or split by weight when it has several. Envoy
/// refuses a zero total, so zero-weight destinations are dropped unless all are zero.
fn route_filter(
    scope: &Scope<'_>,
    vs_ns: &str,
    route: &[RouteDestination],
    port: u16,
    stat: &str,
) -> Option<Filter> {
    let weighted: Vec<(String, u32)> = route
        .iter()
        .map(|d| {
            let w = d.weight.and_then(|w| u32::try_from(w).ok()).unwrap_or(0);
            (
                super::route::destination_cluster(scope, vs_ns, &d.destination, port),
                w,
            )
        })
        .collect();
    // A single destination gets its DestinationRule's TCP timeouts (as in Istio).
    let timeouts = match route {
        [d] => TcpTimeouts::for_host(
            scope,
            &host::resolve(
                &d.destination.host,
                vs_ns,
                &scope.model.options.domain_suffix,
            ),
        ),
        _ => TcpTimeouts::default(),
    };
    let specifier = match weighted.as_slice() {
        [] => return None,
        [(c, _)] => tcp_proxy::ClusterSpecifier::Cluster(c.clone()),
        many => {
            let all_zero = many.iter().all(|(_, w)| *w == 0);
            tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
                clusters: many
                    .iter()
                    .filter(|(_, w)| all_zero || *w > 0)
                    .map(|(c, w)| ClusterWeight {
                        name: c.clone(),
                        weight: if all_zero { 1 } else { *w },
                        ..Default::default()
                    })
                    .collect(),
            })
        }
    };
    let tp = TcpProxy {
        stat_prefix: stat.to_string(),
        cluster_specifier: Some(specifier),
        idle_timeout: timeouts.idle,
        max_downstream_connection_duration: timeouts.max_duration,
        ..Default::default()
    };
    Some(network_filter(filters::TCP_PROXY, shoal_api::pack(&tp)))
}

/// Filter chains of rules: destination subnets (else `default_ranges`) and SNI hosts.
pub(crate) fn chains(
    scope: &Scope<'_>,
    vs: &VirtualServiceRule,
    rules: &[L4Rule<'_>],
    port: u16,
    default_ranges: &[CidrRange],
    name: &str,
) -> Vec<FilterChain> {
    rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let prefix_ranges = if r.subnets.is_empty() {
                default_ranges.to_vec()
            } else {
                r.subnets.iter().filter_map(|s| cidr(s)).collect()
            };
            let filter = route_filter(scope, &vs.namespace, r.route, port, name)?;
            let kind = if r.sni_hosts.is_empty() { "tcp" } else { "tls" };
            let m = FilterChainMatch {
                prefix_ranges,
                // `*` matches any SNI: no server name at all, as in Istio.
                server_names: r.sni_hosts.iter().filter(|h| *h != "*").cloned().collect(),
                ..Default::default()
            };
            Some(FilterChain {
                name: format!("{name}|{kind}|{}.{}|{i}", vs.name, vs.namespace),
                // Matching everything is written as no match, like the chains it replaces.
                filter_chain_match: (m != FilterChainMatch::default()).then_some(m),
                filters: vec![filter],
                ..Default::default()
            })
        })
        .collect()
}

/// Drops chains whose match an earlier chain already has (Envoy rejects duplicates; the
/// first, like Istio's first matching route, wins) and adds `tls_inspector` when a chain
/// matches on SNI.
pub(crate) fn finish(l: &mut Listener) {
    let mut seen = BTreeSet::new();
    l.filter_chains.retain(|c| {
        seen.insert(format!(
            "{:?}",
            c.filter_chain_match.clone().unwrap_or_default()
        ))
    });
    let sni = l.filter_chains.iter().any(|c| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.server_names.is_empty())
    });
    if sni
        && !l
            .listener_filters
            .iter()
            .any(|f| f.name == filters::TLS_INSPECTOR)
    {
        l.listener_filters.push(listener::listener_filter(
            filters::TLS_INSPECTOR,
            &TlsInspector::default(),
        ));
    }
}

/// Applies the `tcp` and `tls` routes of the VirtualServices for a sidecar listener's
/// non-HTTP services: each service's chain (named after its cluster, or the single chain of
/// a bound listener) gets the route chains in front of it, with its virtual IPs as their
/// default destination match.
pub(crate) fn apply_sidecar(
    scope: &Scope<'_>,
    vss: &[&Arc<VirtualServiceRule>],
    services: &[&Arc<Service>],
    port: u16,
    l: &mut Listener,
) {
    for svc in services {
        let Some(p) = svc.port(port) else { continue };
        // Sniffed ports (protocol unknown) take `tcp` routes for what is not HTTP: their
        // HTTP chain (matched by ALPN) keeps the http routes.
        if p.protocol.is_http() || p.protocol == Protocol::Udp {
            continue;
        }
        let Some(vs) = scope.virtual_service_for(vss, &svc.host) else {
            continue;
        };
        let cluster = outbound_cluster_name(port, "", &svc.host);
        let idx = l
            .filter_chains
            .iter()
            .position(|c| c.name == cluster)
            .or_else(|| {
                (l.filter_chains.len() == 1 && l.filter_chains[0].filter_chain_match.is_none())
                    .then_some(0)
            });
        let Some(idx) = idx else { continue };
        let ranges = l.filter_chains[idx]
            .filter_chain_match
            .as_ref()
            .map(|m| m.prefix_ranges.clone())
            .unwrap_or_default();
        let mut rules = Vec::new();
        if matches!(p.protocol, Protocol::Tls | Protocol::Https) {
            rules.extend(tls_rules(scope, vs, port));
        }
        rules.extend(tcp_rules(scope, vs, port));
        let new = chains(scope, vs, &rules, port, &ranges, &cluster);
        l.filter_chains.splice(idx..idx, new);
        // The listener's own chain for the service is the fallback: when a catch-all route
        // has the same match, the route wins and `finish` drops the fallback.
    }
    finish(l);
}
