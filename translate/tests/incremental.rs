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

/// A headless Service's clusters carry no endpoints but take auto mTLS from them: a pod
/// without a sidecar joining must turn the cluster's mTLS off, so its endpoint changes
/// are full changes.
#[test]
fn headless_endpoint_changes_rebuild_their_clusters() {
    let headless = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: a}\nspec:\n  clusterIP: None\n  ports: [{name: tcp, port: 8080}]\n";
    let slice = |with_sidecar: &[&str], without: &[&str]| {
        let eps: String = with_sidecar
            .iter()
            .map(|ip| {
                format!(
                    "- addresses: [{ip}]\n  targetRef: {{kind: Pod, name: p-{ip}, namespace: a}}\n"
                )
            })
            .chain(without.iter().map(|ip| format!("- addresses: [{ip}]\n")))
            .collect();
        let pods: String = with_sidecar
            .iter()
            .map(|ip| format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p-{ip}, namespace: a, labels: {{security.istio.io/tlsMode: istio}}}}\nstatus: {{podIP: {ip}}}\n"))
            .collect();
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: a, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: tcp, port: 8080}}]\nendpoints:\n{eps}{pods}"
        )
    };
    let mut store = ConfigStore::new();
    store.apply("base.yaml", parse_yaml("base.yaml", headless));
    store.apply(
        "slice.yaml",
        parse_yaml("slice.yaml", &slice(&["10.0.0.1"], &[])),
    );
    let mut tr = Translator::new(store.snapshot(), MeshOptions::default());
    let node = Node {
        id: "sidecar~10.9.9.9~c.a~a.svc.cluster.local".into(),
        ..Default::default()
    };
    let key = ViewKey::for_proxy(tr.model(), &Proxy::from_node(Some(&node)).unwrap());
    let cluster = |tr: &mut Translator| {
        let out = tr.build(&key);
        let r = out
            .resources
            .iter()
            .find(|(ty, _)| **ty == ResourceType::Cluster)
            .map(|(_, list)| list.clone())
            .unwrap_or_default();
        r.into_iter()
            .find(|r| r.name.as_ref() == "outbound|8080||web.a.svc.cluster.local")
            .unwrap()
    };
    let mtls = cluster(&mut tr);
    let changes = store.apply(
        "slice.yaml",
        parse_yaml("slice.yaml", &slice(&["10.0.0.1"], &["10.0.0.2"])),
    );
    let delta = tr.update(store.snapshot(), &changes);
    assert!(delta.full, "{delta:?}");
    let plain = cluster(&mut tr);
    assert_ne!(
        mtls.version, plain.version,
        "mTLS must go with the plaintext pod"
    );
}
