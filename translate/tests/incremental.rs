//! The incremental path (endpoint changes) yields exactly what a full build would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shoal_api::ResourceType;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;
use shoal_translate::{MeshOptions, Proxy, Translator, ViewKey};

const BASE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: a}
spec:
  host: web
  subsets: [{name: v1, labels: {version: v1}}]
"#;

fn slice(ips: &[&str]) -> String {
    let eps: String = ips
        .iter()
        .map(|ip| format!("- addresses: [{ip}]\n"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: a, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{eps}"
    )
}

#[test]
fn endpoint_updates_match_a_full_build() {
    let mut store = ConfigStore::new();
    store.apply("base.yaml", parse_yaml("base.yaml", BASE));
    store.apply(
        "slice.yaml",
        parse_yaml("slice.yaml", &slice(&["10.0.0.1"])),
    );
    let mut tr = Translator::new(store.snapshot(), MeshOptions::default());
    let node = Node {
        id: "sidecar~10.9.9.9~c.a~a.svc.cluster.local".into(),
        ..Default::default()
    };
    let key = ViewKey::for_proxy(tr.model(), &Proxy::from_node(Some(&node)).unwrap());
    let before = tr.build(&key);

    let changes = store.apply(
        "slice.yaml",
        parse_yaml("slice.yaml", &slice(&["10.0.0.1", "10.0.0.2"])),
    );
    let delta = tr.update(store.snapshot(), &changes);
    assert!(!delta.full);
    let patched = tr.endpoints(&key, &delta.endpoint_hosts);
    assert_eq!(
        patched.len(),
        2,
        "the service's cluster and its subset cluster"
    );

    let full = Translator::new(store.snapshot(), MeshOptions::default()).build(&key);
    let eds = &full.resources[&ResourceType::Endpoint];
    for r in &patched {
        assert!(eds.contains(r), "{} differs from a full build", r.name);
    }
    // Only EDS moved.
    for ty in [
        ResourceType::Cluster,
        ResourceType::Listener,
        ResourceType::Route,
    ] {
        assert_eq!(before.resources[&ty], full.resources[&ty]);
    }
    // Equal config, equal bytes: a second translator agrees on every version.
    let again = Translator::new(store.snapshot(), MeshOptions::default()).build(&key);
    assert_eq!(full, again);
}
