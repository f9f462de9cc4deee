use shoal_api::ResourceType;
use shoal_api::istio::federation::ExportedService;
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use crate::{MeshOptions, Translator, ViewKey};

const MESH: &str = r#"apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: private, namespace: shop, annotations: {networking.istio.io/exportTo: "."}}
spec:
  clusterIP: 10.96.0.11
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-1, namespace: shop, labels: {app: echo, version: v1, istio-locality: eu.eu-a}}
spec: {serviceAccountName: echo}
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata:
  name: echo-remote
  namespace: shop
  labels: {app: echo, topology.istio.io/cluster: east}
spec: {serviceAccountName: echo}
status: {phase: Running, podIP: 10.2.0.1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: shop, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.1.0.1]}, {addresses: [10.2.0.1]}]
"#;

fn exports() -> Vec<(String, ExportedService)> {
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", MESH));
    let options = MeshOptions {
        cluster_id: "west".into(),
        network: "net-west".into(),
        ..MeshOptions::default()
    };
    let out = Translator::new(store.snapshot(), options).build(&ViewKey::federation());
    out.resources
        .get(&ResourceType::Federation)
        .into_iter()
        .flatten()
        .map(|r| {
            let e = <ExportedService as prost::Message>::decode(r.body.clone()).expect("decodes");
            (r.name.to_string(), e)
        })
        .collect()
}

#[test]
fn public_services_are_exported_with_this_clusters_endpoints_only() {
    let got = exports();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["shop/echo.shop.svc.cluster.local"],
        "exportTo . stays home"
    );
    let e = &got[0].1;
    assert_eq!(e.cluster_id, "west");
    assert_eq!(e.ports[0].port, 80);
    assert_eq!(e.ports[0].protocol, "HTTP");
    // The endpoint a peer exported (cluster east) is not exported again.
    assert_eq!(e.endpoints.len(), 1, "{:?}", e.endpoints);
    let ep = &e.endpoints[0];
    assert_eq!(ep.address, "10.1.0.1");
    assert_eq!(ep.ports["http"], 8080);
    assert_eq!(ep.network, "net-west");
    assert_eq!(ep.locality, "eu/eu-a/");
    assert_eq!(ep.service_account, "echo");
    assert_eq!(ep.labels["version"], "v1");
}
