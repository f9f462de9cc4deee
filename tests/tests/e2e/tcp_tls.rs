//! Real Envoy applying a VirtualService `tcp` route: a connection to a Sidecar's bound TCP
//! listener for one service reaches the backend the route picks instead.

use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::{Envoy, start_shoal};
use shoal_tests::{eventually, free_port};

/// A TCP Service with one endpoint.
fn service(name: &str, port: u16, ip: &str, target: u16) -> String {
    shoal_tests::service_with_endpoint(name, "app", "tcp", port, ip, target)
}

/// What the backend behind `127.0.0.1:port` greets a new connection with.
async fn greeting(port: u16) -> Option<String> {
    backends::greeting(([127, 0, 0, 1], port).into()).await
}

#[tokio::test]
async fn tcp_route_picks_the_backend() {
    let port = free_port("127.0.0.1");
    let (a_port, b_port) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let _a = backends::tcp_echo(format!("127.0.0.2:{a_port}").parse().unwrap(), "db")
        .await
        .unwrap();
    let _b = backends::tcp_echo(format!("127.0.0.3:{b_port}").parse().unwrap(), "db-v2")
        .await
        .unwrap();
    let mut mesh = service("db", port, "127.0.0.2", a_port);
    mesh += &service("db-v2", port, "127.0.0.3", b_port);
    mesh += &format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: app}}\nspec:\n  egress:\n  - port: {{number: {port}, protocol: TCP, name: tcp}}\n    captureMode: NONE\n    hosts: [\"./db.app.svc.cluster.local\"]\n  - hosts: [\"./*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: db, namespace: app}}\nspec:\n  hosts: [db]\n  tcp:\n  - match: [{{port: {port}}}]\n    route: [{{destination: {{host: db-v2}}}}]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app", "LABELS": { "app": "client" } });
    let Some(_envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    // Without the route the listener would reach `db`; the route sends every connection to
    // `db-v2`.
    eventually(Duration::from_secs(20), "tcp route in envoy", || async {
        (greeting(port).await? == "db-v2").then_some(())
    })
    .await
    .unwrap();
    for _ in 0..5 {
        assert_eq!(greeting(port).await.as_deref(), Some("db-v2"));
    }
}

#[tokio::test]
async fn a_gateway_tcp_server_follows_the_bound_tcp_route() {
    // The gateway listens on `port` (a Gateway TCP server) and sends connections where the
    // VirtualService bound to that Gateway says: `db-v2`, never `db`.
    let port = free_port("127.0.0.1");
    let svc_port = free_port("127.0.0.1");
    let (a_port, b_port) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let _a = backends::tcp_echo(format!("127.0.0.2:{a_port}").parse().unwrap(), "db")
        .await
        .unwrap();
    let _b = backends::tcp_echo(format!("127.0.0.3:{b_port}").parse().unwrap(), "db-v2")
        .await
        .unwrap();
    let mut mesh = service("db", svc_port, "127.0.0.2", a_port);
    mesh += &service("db-v2", svc_port, "127.0.0.3", b_port);
    mesh += &format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: tcp, namespace: app}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: tcp, protocol: TCP}}\n    bind: 127.0.0.1\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: db, namespace: app}}\nspec:\n  hosts: [\"*\"]\n  gateways: [tcp]\n  tcp:\n  - route: [{{destination: {{host: db-v2}}}}]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "router~127.0.0.1~ingress-0.istio-system~istio-system.svc.cluster.local";
    let meta =
        serde_json::json!({ "NAMESPACE": "istio-system", "LABELS": { "istio": "ingressgateway" } });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    eventually(
        Duration::from_secs(20),
        "the gateway's tcp route",
        || async { (greeting(port).await? == "db-v2").then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.proc.log()));
    for _ in 0..5 {
        assert_eq!(greeting(port).await.as_deref(), Some("db-v2"));
    }
}
