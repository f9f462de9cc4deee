//! `AUTO_PASSTHROUGH` servers (east-west gateways): a client's mTLS connection is passed,
//! untouched, to the cluster its SNI names in Istio's DNS-compatible form
//! `outbound_.PORT_.SUBSET_.HOST` (no subset: `outbound_.PORT_._.HOST`), with no
//! VirtualService involved. Those SNI-DNAT clusters are the gateway's outbound clusters
//! under that name, without TLS origination (the client's TLS goes through), sharing their
//! endpoints (`service_name` is the outbound cluster's).

use std::collections::BTreeSet;

use shoal_api::pb::envoy::config::cluster::v3::Cluster;
use shoal_api::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch};
use shoal_config::host;

use super::split_host;
use crate::envoy::cluster::{self, OutboundCluster};
use crate::envoy::listener::tcp_proxy_filter;
use crate::scope::Scope;

/// The SNI (and cluster name) of an outbound cluster `outbound|PORT|SUBSET|HOST`.
pub(crate) fn sni_name(outbound: &str) -> Option<String> {
    let mut parts = outbound.split('|');
    if parts.next()? != "outbound" {
        return None;
    }
    let (port, subset, host) = (parts.next()?, parts.next()?, parts.next()?);
    Some(format!("outbound_.{port}_.{subset}_.{host}"))
}

/// Whether a server's `hosts` (`[NS/]HOST`) admit a service of `ns` named `h`.
fn admits(hosts: &[String], gateway_ns: &str, ns: &str, h: &str) -> bool {
    hosts.iter().any(|entry| {
        let (entry_ns, pattern) = split_host(entry);
        let ns_ok = match entry_ns {
            "*" => true,
            "." => ns == gateway_ns,
            other => other == ns,
        };
        ns_ok && host::matches(&pattern.to_ascii_lowercase(), h)
    })
}

/// The outbound clusters an AUTO_PASSTHROUGH server with `hosts` exposes: every port and
/// subset of the services in the gateway's scope that the hosts admit.
pub(crate) fn exposed(scope: &Scope<'_>, hosts: &[String], gateway_ns: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for svc in scope.services() {
        if !admits(hosts, gateway_ns, &svc.namespace, &svc.host) {
            continue;
        }
        for c in cluster::outbound_clusters(scope, svc) {
            out.insert(c.name);
        }
    }
    out
}

/// One filter chain per exposed cluster: its SNI to its SNI-DNAT cluster.
pub(crate) fn chains(exposed: &BTreeSet<String>) -> Vec<FilterChain> {
    exposed
        .iter()
        .filter_map(|outbound| {
            let sni = sni_name(outbound)?;
            Some(FilterChain {
                name: sni.clone(),
                filter_chain_match: Some(FilterChainMatch {
                    server_names: vec![sni.clone()],
                    ..Default::default()
                }),
                filters: vec![tcp_proxy_filter(&sni)],
                ..Default::default()
            })
        })
        .collect()
}

/// The SNI-DNAT cluster of an outbound cluster: the same cluster under its SNI name, with
/// no TLS of its own and the outbound cluster's endpoints.
pub(crate) fn cluster(c: &OutboundCluster<'_>, mut built: Cluster) -> Option<Cluster> {
    let sni = sni_name(&c.name)?;
    built.name = sni.clone();
    built.transport_socket = None;
    built.transport_socket_matches = Vec::new();
    if let Some(eds) = built.eds_cluster_config.as_mut() {
        eds.service_name = c.name.clone();
    }
    if let Some(la) = built.load_assignment.as_mut() {
        la.cluster_name = sni;
    }
    Some(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_istio() {
        assert_eq!(
            sni_name("outbound|8080||echo.app.svc.cluster.local").as_deref(),
            Some("outbound_.8080_._.echo.app.svc.cluster.local")
        );
        assert_eq!(
            sni_name("outbound|80|v1|reviews.app.svc.cluster.local").as_deref(),
            Some("outbound_.80_.v1_.reviews.app.svc.cluster.local")
        );
        assert_eq!(sni_name("inbound|80||"), None);
    }

    #[test]
    fn hosts_admit_services() {
        let hosts = vec!["*.local".to_string(), "prod/*".to_string()];
        assert!(admits(&hosts, "gw", "app", "echo.app.svc.cluster.local"));
        assert!(admits(&hosts, "gw", "prod", "api.example.com"));
        assert!(!admits(&hosts, "gw", "app", "api.example.com"));
        assert!(admits(
            &["./*".into()],
            "gw",
            "gw",
            "x.gw.svc.cluster.local"
        ));
        assert!(!admits(
            &["./*".into()],
            "gw",
            "app",
            "x.app.svc.cluster.local"
        ));
    }
}
