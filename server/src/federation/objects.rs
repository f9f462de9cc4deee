//! The config objects standing for a peer's export of one service: the `Service` itself
//! (with the exporting cluster's addresses and ports: it counts only where this cluster
//! has no Service of that name, the unit being applied at fallback precedence), an
//! `EndpointSlice` per set of endpoints serving the same ports, and a `Pod` per endpoint
//! carrying the remote workload's labels, identity and place.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shoal_api::istio::federation::{ExportedEndpoint, ExportedService};
use shoal_config::k8s::topology;
use shoal_translate::federation::FEDERATED_FROM;

/// A name part made of an address: `10.1.0.1` → `10-1-0-1`.
fn dashed(address: &str) -> String {
    address
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

/// The Pod standing for a remote endpoint: its labels, identity and place.
fn pod(peer: &str, export: &ExportedService, e: &ExportedEndpoint) -> Value {
    let mut labels: serde_json::Map<String, Value> = e
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.insert(topology::CLUSTER.into(), json!(export.cluster_id));
    if !e.network.is_empty() {
        labels.insert(topology::NETWORK.into(), json!(e.network));
    }
    if !e.locality.is_empty() {
        let locality = e.locality.trim_end_matches('/').replace('/', ".");
        labels.insert(topology::ISTIO_LOCALITY.into(), json!(locality));
    }
    if e.istio_tls {
        labels.insert(
            shoal_translate::inject::TLS_MODE_LABEL.into(),
            json!("istio"),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{peer}-{}", dashed(&e.address)),
            "namespace": export.namespace,
            "labels": labels,
        },
        "spec": { "serviceAccountName": e.service_account },
        "status": { "phase": "Running", "podIP": e.address },
    })
}

/// The Service as the exporting cluster has it. Without addresses it is headless.
fn service(peer: &str, export: &ExportedService) -> Value {
    let ports: Vec<Value> = export
        .ports
        .iter()
        .map(|p| {
            let mut port = json!({"name": p.name, "port": p.port});
            if !p.protocol.is_empty() {
                port["appProtocol"] = json!(p.protocol.to_ascii_lowercase());
            }
            port
        })
        .collect();
    let mut spec = json!({ "ports": ports });
    // Only addresses: what a peer sends is not trusted to be well formed.
    let addresses: Vec<&str> = export
        .addresses
        .iter()
        .map(String::as_str)
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .collect();
    match addresses.first() {
        Some(ip) => {
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!(addresses);
        }
        None => spec["clusterIP"] = json!("None"),
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": export.name,
            "namespace": export.namespace,
            "labels": {
                (FEDERATED_FROM): peer,
                (topology::CLUSTER): export.cluster_id,
            },
        },
        "spec": spec,
    })
}

/// The objects a peer's export of one service stands for: an EndpointSlice per set of
/// endpoints serving the same ports, and a Pod per endpoint.
pub(super) fn objects(peer: &str, export: &ExportedService) -> String {
    let mut by_ports: BTreeMap<Vec<(String, u32)>, Vec<&ExportedEndpoint>> = BTreeMap::new();
    for e in &export.endpoints {
        let ports: Vec<(String, u32)> = e.ports.iter().map(|(n, p)| (n.clone(), *p)).collect();
        by_ports.entry(ports).or_default().push(e);
    }
    let mut docs = vec![service(peer, export)];
    for (i, (ports, endpoints)) in by_ports.into_iter().enumerate() {
        let ipv6 = endpoints.iter().any(|e| e.address.contains(':'));
        docs.push(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-{peer}-{i}", export.name),
                "namespace": export.namespace,
                "labels": {
                    "kubernetes.io/service-name": export.name,
                    (FEDERATED_FROM): peer,
                },
            },
            "addressType": if ipv6 { "IPv6" } else { "IPv4" },
            "ports": ports.iter().map(|(n, p)| json!({"name": n, "port": p})).collect::<Vec<_>>(),
            "endpoints": endpoints.iter().map(|e| json!({
                "addresses": [e.address],
                "conditions": { "ready": e.healthy },
                "targetRef": { "kind": "Pod", "namespace": export.namespace, "name": format!("{peer}-{}", dashed(&e.address)) },
            })).collect::<Vec<_>>(),
        }));
        for e in endpoints {
            docs.push(pod(peer, export, e));
        }
    }
    docs.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
}
