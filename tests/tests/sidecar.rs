//! Sidecar resources through a real Envoy: an ingress listener that remaps the port a
//! workload receives traffic on to the one its application listens on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::proc::{Envoy, Shoal, http_get};
use shoal_tests::{eventually, free_port};

fn mesh(ingress: u16, app: u16) -> String {
    shoal_tests::ingress_workload("HTTP", 80, app, ingress, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_listener_forwards_its_port_to_the_application() {
    let (ingress, app) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let _app = backends::http(format!("127.0.0.1:{app}").parse().unwrap(), "api")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh(ingress, app)).unwrap();
    let shoal = Shoal::start(dir.path(), &[]).await.unwrap();
    let node = "sidecar~127.0.0.1~api-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({
        "INTERCEPTION_MODE": "NONE",
        "NAMESPACE": "app",
        "LABELS": { "app": "api" },
    });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    // A request to the ingress port reaches the application on its own port.
    let via: SocketAddr = format!("127.0.0.1:{ingress}").parse().unwrap();
    let (status, body) = eventually(Duration::from_secs(20), "the ingress listener", || async {
        http_get(via, "/", &[("host", "api.app")]).await.ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.proc.log()));
    assert_eq!((status, body.as_str()), (200, "api"));
    // The listener is the Sidecar's: nothing for the service's port, which it replaced.
    let listeners = envoy.listeners().await.unwrap();
    assert_eq!(listeners, [format!("127.0.0.1_{ingress}")], "{listeners:?}");
}
