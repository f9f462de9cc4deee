//! DestinationRule load balancing through a real Envoy: consistent hashing keeps a header
//! value on one backend; locality failover keeps traffic in the client's zone until its
//! endpoints fail.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::backends::{self, tally};
use shoal_tests::{Envoy, http_get, start_shoal};
use shoal_tests::{eventually, free_port, free_port_on};

const HOST: &str = "echo.app.svc.cluster.local";

fn mesh(port: u16, backend: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: app}}
spec:
  ports:
  - {{name: http, port: {port}, targetPort: {backend}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo, namespace: app, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: http, port: {backend}}}]
endpoints:
- addresses: [127.0.0.2]
- addresses: [127.0.0.3]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: app}}
spec:
  host: echo
  trafficPolicy:
    loadBalancer:
      consistentHash: {{httpHeaderName: x-user}}
"#
    ) + &shoal_tests::bound_http_sidecar("app", port, &["./*"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_a_user_on_one_backend() {
    let port = free_port("127.0.0.1");
    let backend = free_port_on(&["127.0.0.2", "127.0.0.3"]);
    let _a = backends::http(format!("127.0.0.2:{backend}").parse().unwrap(), "a")
        .await
        .unwrap();
    let _b = backends::http(format!("127.0.0.3:{backend}").parse().unwrap(), "b")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh(port, backend)).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app" });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    let via: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    shoal_tests::until_routed(via, HOST, || envoy.proc.log()).await;

    let mut chosen = Vec::new();
    for user in 0..24 {
        let u = format!("user-{user}");
        let mut names = Vec::new();
        for _ in 0..8 {
            let (status, body) = http_get(via, "/", &[("host", HOST), ("x-user", &u)])
                .await
                .unwrap();
            assert_eq!(status, 200, "{body}");
            names.push(body);
        }
        let t = tally(names);
        assert_eq!(t.len(), 1, "user {u} was spread over {t:?}");
        chosen.extend(t.into_keys());
    }
    // Different users land on different backends (24 users all on one: p = 2^-23).
    let spread = tally(chosen);
    assert_eq!(spread.len(), 2, "{spread:?}");
}

/// Two endpoints of one service: one in the client's zone (us-west/zone-a), one in another
/// region, with localities from the nodes' topology labels and the slice's zones.
fn locality_mesh(port: u16, backend: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: app}}
spec:
  ports:
  - {{name: http, port: {port}, targetPort: {backend}}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-west, labels: {{topology.kubernetes.io/region: us-west}}}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-east, labels: {{topology.kubernetes.io/region: us-east}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo, namespace: app, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: http, port: {backend}}}]
endpoints:
- {{addresses: [127.0.0.2], nodeName: node-west, zone: zone-a}}
- {{addresses: [127.0.0.3], nodeName: node-east, zone: zone-c}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: app}}
spec:
  host: echo
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 5m
      maxEjectionPercent: 100
"#
    ) + &shoal_tests::bound_http_sidecar("app", port, &["./*"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locality_failover_leaves_the_zone_only_when_its_endpoints_fail() {
    let port = free_port("127.0.0.1");
    let backend = free_port_on(&["127.0.0.2", "127.0.0.3"]);
    let (_local, local_up) =
        backends::switchable(format!("127.0.0.2:{backend}").parse().unwrap(), "local")
            .await
            .unwrap();
    let _remote = backends::http(format!("127.0.0.3:{backend}").parse().unwrap(), "remote")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), locality_mesh(port, backend)).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = serde_json::json!({
        "id": "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local",
        "cluster": "test",
        "locality": { "region": "us-west", "zone": "zone-a" },
        "metadata": { "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app" },
    });
    let Some(envoy) = Envoy::start_node(shoal.xds, node, true).await.unwrap() else {
        return;
    };
    let via: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    shoal_tests::until_routed(via, HOST, || envoy.proc.log()).await;

    // Healthy: everything stays in the zone (without locality priorities, round robin
    // would send half of it to the other region).
    let mut names = Vec::new();
    for _ in 0..30 {
        let (status, body) = http_get(via, "/", &[("host", HOST)]).await.unwrap();
        assert_eq!(status, 200, "{body}");
        names.push(body);
    }
    assert_eq!(tally(names), [("local".to_string(), 30)].into());

    // The local endpoint fails: outlier detection ejects it and traffic fails over.
    local_up.store(false, std::sync::atomic::Ordering::SeqCst);
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    eventually(
        Duration::from_secs(20),
        "failover to the other region",
        || {
            let failed = failed.clone();
            async move {
                let (status, body) = http_get(via, "/", &[("host", HOST)]).await.ok()?;
                if status != 200 {
                    failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                (status == 200 && body == "remote").then_some(())
            }
        },
    )
    .await
    .unwrap();
    let failed = failed.load(std::sync::atomic::Ordering::SeqCst);
    // One 503 ejects the endpoint (consecutive5xxErrors: 1); then every request is served.
    assert!(failed <= 2, "{failed} requests failed before the failover");
    let mut names = Vec::new();
    for _ in 0..20 {
        let (status, body) = http_get(via, "/", &[("host", HOST)]).await.unwrap();
        assert_eq!(status, 200, "{body}");
        names.push(body);
    }
    assert_eq!(tally(names), [("remote".to_string(), 20)].into());
}
