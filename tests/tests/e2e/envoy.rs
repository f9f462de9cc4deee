//! Real Envoy, in delta and in SotW mode, routing real HTTP and gRPC traffic the way a
//! VirtualService says, and following an edit of the config file.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::backends::{self, tally};
use shoal_tests::{Envoy, http_get, start_shoal};
use shoal_tests::{eventually, free_port, free_port_on};

struct Ports {
    http: u16,
    grpc: u16,
    backend_http: u16,
    backend_grpc: u16,
}

fn mesh(p: &Ports, weights: (u32, u32)) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: app}}
spec:
  ports:
  - {{name: http, port: {http}, targetPort: {bh}}}
  - {{name: grpc, port: {grpc}, targetPort: {bg}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-a, namespace: app, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: http, port: {bh}}}, {{name: grpc, port: {bg}}}]
endpoints:
- addresses: [127.0.0.2]
  targetRef: {{kind: Pod, name: echo-a}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-b, namespace: app, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: http, port: {bh}}}, {{name: grpc, port: {bg}}}]
endpoints:
- addresses: [127.0.0.3]
  targetRef: {{kind: Pod, name: echo-b}}
---
apiVersion: v1
kind: Pod
metadata: {{name: echo-a, namespace: app, labels: {{app: echo, version: a}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: echo-b, namespace: app, labels: {{app: echo, version: b}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: app}}
spec:
  host: echo
  subsets:
  - {{name: a, labels: {{version: a}}}}
  - {{name: b, labels: {{version: b}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: app}}
spec:
  hosts: [echo]
  http:
  - match:
    - headers: {{x-version: {{exact: b}}}}
    route:
    - destination: {{host: echo, subset: b}}
  - route:
    - destination: {{host: echo, subset: a}}
      weight: {wa}
    - destination: {{host: echo, subset: b}}
      weight: {wb}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: app}}
spec:
  egress:
  - port: {{number: {http}, protocol: HTTP, name: http}}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: ["./*"]
  - port: {{number: {grpc}, protocol: GRPC, name: grpc}}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: ["./*"]
"#,
        http = p.http,
        grpc = p.grpc,
        bh = p.backend_http,
        bg = p.backend_grpc,
        wa = weights.0,
        wb = weights.1
    )
}

const HOST: &str = "echo.app.svc.cluster.local";

async fn http_tally(
    addr: SocketAddr,
    n: usize,
    headers: &[(&str, &str)],
) -> std::collections::BTreeMap<String, usize> {
    let mut names = Vec::new();
    for _ in 0..n {
        let (status, body) = http_get(addr, "/", headers)
            .await
            .expect("request through envoy");
        assert_eq!(status, 200, "{body}");
        names.push(body);
    }
    tally(names)
}

async fn grpc_tally(
    addr: SocketAddr,
    authority: &str,
    n: usize,
    md: &[(&'static str, &str)],
) -> std::collections::BTreeMap<String, usize> {
    let mut names = Vec::new();
    for _ in 0..n {
        names.push(
            backends::grpc_who(addr, authority, md)
                .await
                .expect("grpc through envoy"),
        );
    }
    tally(names)
}

fn share(t: &std::collections::BTreeMap<String, usize>, name: &str) -> f64 {
    let total: usize = t.values().sum();
    *t.get(name).unwrap_or(&0) as f64 / total.max(1) as f64
}

async fn routes_traffic(delta: bool) {
    let ports = Ports {
        http: free_port("127.0.0.1"),
        grpc: free_port("127.0.0.1"),
        backend_http: free_port_on(&["127.0.0.2", "127.0.0.3"]),
        backend_grpc: free_port_on(&["127.0.0.2", "127.0.0.3"]),
    };
    let _ha = backends::http(
        format!("127.0.0.2:{}", ports.backend_http).parse().unwrap(),
        "a",
    )
    .await
    .unwrap();
    let _hb = backends::http(
        format!("127.0.0.3:{}", ports.backend_http).parse().unwrap(),
        "b",
    )
    .await
    .unwrap();
    let _ga = backends::grpc(
        format!("127.0.0.2:{}", ports.backend_grpc).parse().unwrap(),
        "a",
    )
    .await
    .unwrap();
    let _gb = backends::grpc(
        format!("127.0.0.3:{}", ports.backend_grpc).parse().unwrap(),
        "b",
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesh.yaml");
    std::fs::write(&file, mesh(&ports, (75, 25))).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app", "LABELS": { "app": "client" } });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, delta).await.unwrap() else {
        return;
    };
    let want = [
        format!("127.0.0.1_{}", ports.http),
        format!("127.0.0.1_{}", ports.grpc),
    ];
    eventually(Duration::from_secs(20), "envoy listeners", || async {
        let l = envoy.listeners().await.ok()?;
        want.iter().all(|w| l.contains(w)).then_some(())
    })
    .await
    .unwrap();

    let http_addr: SocketAddr = format!("127.0.0.1:{}", ports.http).parse().unwrap();
    let grpc_addr: SocketAddr = format!("127.0.0.1:{}", ports.grpc).parse().unwrap();
    let host = [("host", HOST)];

    // Weighted split, 75/25 (binomial: ±15 points is more than 6 standard deviations).
    let t = http_tally(http_addr, 400, &host).await;
    assert!((0.60..=0.90).contains(&share(&t, "a")), "HTTP split {t:?}");
    let t = grpc_tally(grpc_addr, &format!("{HOST}:{}", ports.grpc), 200, &[]).await;
    assert!((0.55..=0.95).contains(&share(&t, "a")), "gRPC split {t:?}");

    // A header match selects subset b.
    let t = http_tally(http_addr, 50, &[("host", HOST), ("x-version", "b")]).await;
    assert_eq!(t.get("b"), Some(&50), "{t:?}");
    let t = grpc_tally(
        grpc_addr,
        &format!("{HOST}:{}", ports.grpc),
        30,
        &[("x-version", "b")],
    )
    .await;
    assert_eq!(t.get("b"), Some(&30), "{t:?}");

    // Editing the file shifts the traffic.
    std::fs::write(&file, mesh(&ports, (0, 100))).unwrap();
    eventually(Duration::from_secs(15), "traffic to move to b", || async {
        let t = http_tally(http_addr, 20, &host).await;
        (t.get("b") == Some(&20)).then_some(())
    })
    .await
    .unwrap();
    let t = grpc_tally(grpc_addr, &format!("{HOST}:{}", ports.grpc), 40, &[]).await;
    assert_eq!(t.get("b"), Some(&40), "{t:?}");

    // Shoal saw every response accepted.
    let syncz = shoal.json("/debug/syncz").await.unwrap();
    let stream = syncz
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node_id"] == node)
        .expect("proxy in syncz");
    assert_eq!(stream["protocol"], if delta { "delta" } else { "sotw" });
    for t in stream["types"].as_array().unwrap() {
        assert_eq!(t["nacks"], 0, "{t}");
    }
    let dump = shoal
        .json(&format!("/debug/config_dump?proxy={node}"))
        .await
        .unwrap();
    assert!(
        dump["types"]["CDS"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == format!("outbound|{}|b|{HOST}", ports.http))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_routes_http_and_grpc() {
    routes_traffic(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw_routes_http_and_grpc() {
    routes_traffic(false).await;
}
