//! Istio's bookinfo as a user installs it: the platform manifest (ServiceAccounts, Services,
//! Deployments), the ingress Gateway with its VirtualService, the DestinationRules of every
//! version and the VirtualServices pinning v1, all applied with kubectl. The test plays
//! the parts of the cluster no emulator has — the Deployment and EndpointSlice controllers
//! and the kubelet — by creating the Pods and EndpointSlices those would, each Pod an HTTP
//! server on a loopback address. A real Envoy is the ingress gateway; traffic to
//! `/productpage` flows through it, and productpage's sidecar view follows the reviews
//! VirtualService as a user shifts it to v3.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use shoal_api::ResourceType;
use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use shoal_kube_emulator::{Emulator, ISTIO_CRDS};
use shoal_tests::backends::{self, Backend};
use shoal_tests::xds::{DeltaStream, node};
use shoal_tests::{Envoy, eventually, free_port, http_get};

use super::{Cluster, responses};

/// bookinfo's platform manifest, in the shape of Istio's `platform/kube/bookinfo.yaml`.
fn platform() -> String {
    let mut m = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo, labels: {istio-injection: enabled}}\n---\n",
    );
    for app in ["details", "ratings", "reviews", "productpage"] {
        m += &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\n  namespace: bookinfo\n  labels: {{app: {app}, service: {app}}}\nspec:\n  ports:\n  - {{port: 9080, name: http}}\n  selector: {{app: {app}}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: bookinfo-{app}\n  namespace: bookinfo\n  labels: {{account: {app}}}\n---\n"
        );
    }
    for (app, version) in [
        ("details", "v1"),
        ("ratings", "v1"),
        ("reviews", "v1"),
        ("reviews", "v2"),
        ("reviews", "v3"),
        ("productpage", "v1"),
    ] {
        m += &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}-{version}\n  namespace: bookinfo\n  labels: {{app: {app}, version: {version}}}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {app}, version: {version}}}\n  template:\n    metadata:\n      labels: {{app: {app}, version: {version}}}\n    spec:\n      serviceAccountName: bookinfo-{app}\n      containers:\n      - name: {app}\n        image: docker.io/istio/examples-bookinfo-{app}-{version}:1.20.2\n        imagePullPolicy: IfNotPresent\n        ports:\n        - containerPort: 9080\n---\n"
        );
    }
    m
}

/// The ingress Gateway and its VirtualService, as `networking/bookinfo-gateway.yaml` has
/// them (the server on `port` rather than 8080, so that tests may run side by side).
fn gateway(port: u16) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bookinfo-gateway, namespace: bookinfo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo, namespace: bookinfo}}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {{exact: /productpage}}
    - uri: {{prefix: /static}}
    - uri: {{exact: /login}}
    - uri: {{exact: /logout}}
    - uri: {{prefix: /api/v1/products}}
    route:
    - destination: {{host: productpage, port: {{number: 9080}}}}
---
"#
    )
}

/// `destination-rule-all.yaml`: a subset per version.
fn destination_rules() -> String {
    let mut m = String::new();
    for (app, versions) in [
        ("productpage", &["v1"][..]),
        ("reviews", &["v1", "v2", "v3"][..]),
        ("ratings", &["v1"][..]),
        ("details", &["v1"][..]),
    ] {
        let subsets: String = versions
            .iter()
            .map(|v| format!("  - name: {v}\n    labels: {{version: {v}}}\n"))
            .collect();
        m += &format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {app}, namespace: bookinfo}}\nspec:\n  host: {app}\n  subsets:\n{subsets}---\n"
        );
    }
    m
}

/// A VirtualService sending all of `app`'s traffic to `subset` (as
/// `virtual-service-all-v1.yaml` and `virtual-service-reviews-v3.yaml` do).
fn pin(app: &str, subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {app}, namespace: bookinfo}}\nspec:\n  hosts: [{app}]\n  http:\n  - route:\n    - destination: {{host: {app}, subset: {subset}}}\n---\n"
    )
}

/// What the Deployment controller, the scheduler and the kubelet would do: one running Pod
/// per Deployment (an HTTP server answering its name, on its own loopback address), and
/// what the EndpointSlice controller would: a slice per Service of its ready Pods.
async fn run_workloads(emu: &Emulator) -> (Vec<Backend>, BTreeMap<String, String>) {
    let mut servers = Vec::new();
    let mut ips = BTreeMap::new();
    let deployments = emu
        .list("deployments", Some("bookinfo"))
        .expect("deployments");
    let mut pods: Vec<(String, serde_json::Value, String)> = Vec::new();
    for (i, d) in deployments.iter().enumerate() {
        let name = d["metadata"]["name"].as_str().expect("name").to_string();
        let ip = format!("127.0.40.{}", i + 1);
        let labels = d["spec"]["template"]["metadata"]["labels"].clone();
        let at: SocketAddr = format!("{ip}:9080").parse().expect("address");
        servers.push(backends::http(at, &name).await.expect("workload server"));
        emu.apply(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{name}-5d8f7c9b4-x{i}"), "namespace": "bookinfo", "labels": labels},
            "spec": {
                "serviceAccountName": d["spec"]["template"]["spec"]["serviceAccountName"],
                "nodeName": "node-1",
                "containers": d["spec"]["template"]["spec"]["containers"],
            },
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("pod");
        ips.insert(name.clone(), ip.clone());
        pods.push((name, labels, ip));
    }
    for svc in emu.list("services", Some("bookinfo")).expect("services") {
        let name = svc["metadata"]["name"].as_str().expect("name");
        let endpoints: Vec<serde_json::Value> = pods
            .iter()
            .filter(|(_, labels, _)| labels["app"] == svc["spec"]["selector"]["app"])
            .map(|(_, _, ip)| serde_json::json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        emu.apply(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-abcde"), "namespace": "bookinfo",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .expect("endpoint slice");
    }
    (servers, ips)
}

/// The resources (name, encoded body) a delta stream is sent, until it is quiet.
async fn received(s: &mut DeltaStream, quiet: Duration) -> Vec<(String, Vec<u8>)> {
    responses(s, quiet)
        .await
        .into_iter()
        .flat_map(|r| r.resources)
        .map(|res| (res.name, res.resource.map(|a| a.value).unwrap_or_default()))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_applied_with_kubectl_serves_traffic_and_follows_routing_edits() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let port = free_port("127.0.0.1");
    cluster.apply(ISTIO_CRDS).await;
    cluster.apply(&platform()).await;
    let (_servers, ips) = run_workloads(&cluster.emu).await;
    cluster.apply(&gateway(port)).await;
    cluster.apply(&destination_rules()).await;
    let all_v1: String = ["productpage", "reviews", "ratings", "details"]
        .iter()
        .map(|app| pin(app, "v1"))
        .collect();
    cluster.apply(&all_v1).await;
    let shoal = cluster.shoal().await;

    let gateway_node =
        "router~127.0.0.1~istio-ingressgateway-7f8d9c.istio-system~istio-system.svc.cluster.local";
    let meta =
        serde_json::json!({ "NAMESPACE": "istio-system", "LABELS": {"istio": "ingressgateway"} });
    let Some(envoy) = Envoy::start(shoal.xds, gateway_node, meta, true)
        .await
        .expect("envoy")
    else {
        return;
    };
    let via: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .expect("gateway address");
    let page = eventually(Duration::from_secs(30), "/productpage", || async {
        http_get(via, "/productpage", &[("host", "bookinfo.example.com")])
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.log()));
    assert_eq!(page, "productpage-v1");
    let (status, _) = http_get(via, "/admin", &[("host", "bookinfo.example.com")])
        .await
        .expect("request");
    assert_eq!(status, 404, "paths the VirtualService does not route");

    // productpage's sidecar: reviews is pinned to v1, whose subset holds the v1 Pod only.
    let sidecar =
        "sidecar~127.0.40.9~productpage-v1-5d8f7c9b4-x5.bookinfo~bookinfo.svc.cluster.local";
    let v1 = "outbound|9080|v1|reviews.bookinfo.svc.cluster.local";
    let v3 = "outbound|9080|v3|reviews.bookinfo.svc.cluster.local";
    let mut routes = DeltaStream::open(
        shoal.xds,
        DeltaDiscoveryRequest {
            node: Some(node(sidecar)),
            type_url: ResourceType::Route.type_url().to_string(),
            resource_names_subscribe: vec!["9080".into()],
            ..Default::default()
        },
    )
    .await
    .expect("route stream");
    let first = received(&mut routes, Duration::from_secs(2)).await;
    let route = &first
        .iter()
        .find(|(n, _)| n == "9080")
        .expect("route 9080")
        .1;
    assert!(
        contains(route, v1) && !contains(route, v3),
        "reviews goes to v1"
    );
    let mut eds = DeltaStream::open(
        shoal.xds,
        DeltaDiscoveryRequest {
            node: Some(node(sidecar)),
            type_url: ResourceType::Endpoint.type_url().to_string(),
            resource_names_subscribe: vec![v1.into()],
            ..Default::default()
        },
    )
    .await
    .expect("endpoint stream");
    let endpoints = received(&mut eds, Duration::from_secs(2)).await;
    let (_, body) = endpoints
        .iter()
        .find(|(n, _)| n == v1)
        .expect("v1 endpoints");
    assert!(contains(body, &ips["reviews-v1"]), "the v1 Pod");
    assert!(!contains(body, &ips["reviews-v2"]), "v2 is not in v1");

    // The user shifts reviews to v3 (virtual-service-reviews-v3.yaml).
    cluster.apply(&pin("reviews", "v3")).await;
    let mut later = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !later
        .iter()
        .any(|(n, r): &(String, Vec<u8>)| n == "9080" && contains(r, v3))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reviews never moved to v3"
        );
        later.extend(received(&mut routes, Duration::from_millis(500)).await);
    }
}
