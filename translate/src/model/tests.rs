use std::collections::BTreeSet;

use proptest::prelude::*;
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use super::*;

fn service(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n"
    )
}

fn slice(ns: &str, svc: &str, idx: usize, ips: &[u8], ready: bool) -> String {
    let eps: String = ips
        .iter()
        .map(|i| format!("- addresses: [10.0.{idx}.{i}]\n  conditions: {{ready: {ready}}}\n"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}-{idx}, namespace: {ns}, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{}---\n",
        if eps.is_empty() {
            "[]\n".to_string()
        } else {
            eps
        }
    )
}

fn pod(ns: &str, name: &str, app: &str, version: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}, version: {version}}}}}\nstatus: {{podIP: {ip}}}\n---\n"
    )
}

/// Services with their endpoints' identity, for comparing models.
fn summary(m: &Model) -> Vec<(String, String, Vec<Endpoint>)> {
    m.services
        .values()
        .flatten()
        .map(|s| {
            (
                s.host.to_string(),
                s.namespace.to_string(),
                (*s.endpoints).clone(),
            )
        })
        .collect()
}

#[test]
fn endpoint_changes_patch_only_their_hosts() {
    let mut store = ConfigStore::new();
    let base = service("a", "x")
        + &service("a", "y")
        + &slice("a", "x", 1, &[1, 2], true)
        + &slice("a", "y", 2, &[1], true);
    store.apply("svc.yaml", parse_yaml("svc.yaml", &base));
    let mut model = Model::build(store.snapshot(), MeshOptions::default());
    let before_y = model.services["y.a.svc.cluster.local"][0].generation;
    let changes = store.apply(
        "svc.yaml",
        parse_yaml(
            "svc.yaml",
            &(service("a", "x")
                + &service("a", "y")
                + &slice("a", "x", 1, &[1, 2, 3], true)
                + &slice("a", "y", 2, &[1], true)),
        ),
    );
    let delta = model.update(store.snapshot(), &changes);
    assert!(!delta.full);
    assert_eq!(
        delta
            .endpoint_hosts
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>(),
        ["x.a.svc.cluster.local"]
    );
    assert_eq!(
        model.services["x.a.svc.cluster.local"][0].endpoints.len(),
        3
    );
    assert_eq!(
        model.services["y.a.svc.cluster.local"][0].generation,
        before_y
    );
}

#[test]
fn pod_label_change_moves_subset_membership() {
    let mut store = ConfigStore::new();
    store.apply(
        "svc.yaml",
        parse_yaml(
            "svc.yaml",
            &(service("a", "x") + &slice("a", "x", 1, &[1], true)),
        ),
    );
    store.apply(
        "pods.yaml",
        parse_yaml("pods.yaml", &pod("a", "p1", "x", "v1", "10.0.1.1")),
    );
    let mut model = Model::build(store.snapshot(), MeshOptions::default());
    assert_eq!(
        model.services["x.a.svc.cluster.local"][0].endpoints[0]
            .labels
            .get("version"),
        Some("v1")
    );
    let changes = store.apply(
        "pods.yaml",
        parse_yaml("pods.yaml", &pod("a", "p1", "x", "v2", "10.0.1.1")),
    );
    let delta = model.update(store.snapshot(), &changes);
    assert!(!delta.full && delta.endpoint_hosts.len() == 1);
    assert_eq!(
        model.services["x.a.svc.cluster.local"][0].endpoints[0]
            .labels
            .get("version"),
        Some("v2")
    );
}

#[test]
fn service_changes_rebuild() {
    let mut store = ConfigStore::new();
    store.apply("svc.yaml", parse_yaml("svc.yaml", &service("a", "x")));
    let mut model = Model::build(store.snapshot(), MeshOptions::default());
    let changes = store.apply(
        "svc.yaml",
        parse_yaml("svc.yaml", &(service("a", "x") + &service("b", "z"))),
    );
    assert!(model.update(store.snapshot(), &changes).full);
    assert_eq!(model.services.len(), 2);
}

proptest! {
    /// Any sequence of endpoint-only edits, applied incrementally, gives the model a full
    /// rebuild would.
    #[test]
    fn incremental_equals_full(edits in proptest::collection::vec((0usize..3, 0usize..3, proptest::collection::vec(1u8..6, 0..4), any::<bool>(), 0usize..3), 1..12)) {
        let services: String = ["s0", "s1", "s2"].iter().map(|s| service("ns", s)).collect();
        let mut store = ConfigStore::new();
        store.apply("services.yaml", parse_yaml("services.yaml", &services));
        let mut model = Model::build(store.snapshot(), MeshOptions::default());
        for (svc, idx, ips, ready, version) in edits {
            let file = format!("slice-{svc}-{idx}.yaml");
            let text = if ips.is_empty() && !ready {
                String::new()
            } else {
                slice("ns", &format!("s{svc}"), idx + svc * 3, &ips, ready)
                    + &pod("ns", &format!("p{svc}{idx}"), &format!("s{svc}"), &format!("v{version}"), &format!("10.0.{}.1", idx + svc * 3))
            };
            let changes = store.apply(&file, parse_yaml(&file, &text));
            let delta = model.update(store.snapshot(), &changes);
            prop_assert!(!delta.full);
            let fresh = Model::build(store.snapshot(), MeshOptions::default());
            prop_assert_eq!(summary(&model), summary(&fresh));
            let changed: BTreeSet<_> = delta.endpoint_hosts;
            let _ = changed;
        }
    }
}
