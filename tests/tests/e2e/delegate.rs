//! Delegate VirtualServices through a real Envoy: a root VirtualService hands `/api` over
//! to a delegate in another namespace, whose routes split `/api/v1` and `/api/v2` between
//! two backends; what the delegate does not match falls through to the root's next route.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::{Envoy, http_get, start_shoal};
use shoal_tests::{eventually, free_port, free_port_on};

const API: &str = "api.app.svc.cluster.local";

/// A Service with one endpoint at `ip:target`.
fn service(name: &str, ns: &str, port: u16, ip: &str, target: u16) -> String {
    shoal_tests::service_with_endpoint(name, ns, "http", port, ip, target)
}

fn mesh(port: u16, backend: u16) -> String {
    let mut m = service("api", "app", port, "127.0.0.2", backend);
    m += &service("api-v1", "team", 8001, "127.0.0.3", backend);
    m += &service("api-v2", "team", 8002, "127.0.0.4", backend);
    m += r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: app}
spec:
  hosts: [api]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    delegate: {name: api-routes, namespace: team}
  - name: default
    route: [{destination: {host: api}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api-routes, namespace: team}
spec:
  exportTo: [app]
  http:
  - name: v1
    match: [{uri: {prefix: /api/v1}}]
    route: [{destination: {host: api-v1}}]
  - name: v2
    match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: api-v2}}]
"#;
    m + &shoal_tests::bound_http_sidecar("app", port, &["./*", "team/*"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegate_splits_the_roots_prefix_between_backends() {
    let port = free_port("127.0.0.1");
    let backend = free_port_on(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let mut running = Vec::new();
    for (ip, name) in [
        ("127.0.0.2", "root"),
        ("127.0.0.3", "v1"),
        ("127.0.0.4", "v2"),
    ] {
        let addr = format!("{ip}:{backend}").parse().unwrap();
        running.push(backends::http(addr, name).await.unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh(port, backend)).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app" });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    let via: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(
        Duration::from_secs(20),
        "the delegated route through Envoy",
        || async {
            http_get(via, "/api/v1/x", &[("host", API)])
                .await
                .ok()
                .filter(|(s, b)| *s == 200 && b == "v1")
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.proc.log()));

    for (path, want) in [
        // The delegate's routes, each under the root's `/api` prefix.
        ("/api/v1", "v1"),
        ("/api/v1/users", "v1"),
        ("/api/v2", "v2"),
        ("/api/v2/users?id=1", "v2"),
        // Under `/api` but matched by no delegate route: the root's next route.
        ("/api/v3", "root"),
        ("/api", "root"),
        // Outside `/api`.
        ("/", "root"),
        ("/v1", "root"),
    ] {
        let (status, body) = http_get(via, path, &[("host", API)]).await.unwrap();
        assert_eq!((status, body.as_str()), (200, want), "{path}");
    }
}
