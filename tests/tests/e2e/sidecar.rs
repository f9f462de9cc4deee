//! Sidecar proxies through a real Envoy: an ingress listener that remaps the port a
//! workload receives traffic on to the one its application listens on, and a proxy without
//! traffic capture reaching every service on the loopback address.

use std::time::Duration;

use shoal_tests::ingress::IngressApi;
use shoal_tests::{Envoy, backends, eventually, free_port, start_shoal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_listener_forwards_its_port_to_the_application() {
    let Some(api) = IngressApi::start("", &[]).await.unwrap() else {
        return;
    };
    // A request to the ingress port reaches the application on its own port.
    let (status, body) = eventually(Duration::from_secs(20), "the ingress listener", || async {
        api.get("/", &[]).await.ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", api.logs()));
    assert_eq!((status, body.as_str()), (200, "api"));
    // The listener is the Sidecar's: nothing for the service's port, which it replaced.
    let listeners = api.envoy.listeners().await.unwrap();
    assert_eq!(
        listeners,
        [api.via.to_string().replace(':', "_")],
        "{listeners:?}"
    );
}

/// A proxy without traffic capture (`INTERCEPTION_MODE: NONE`: a VM, a pod without the
/// iptables init container) and no Sidecar: as in Istio, every service port gets a listener
/// bound to `127.0.0.1:PORT`, so the application reaches an HTTP service and a TCP one of
/// another namespace through Envoy there.
async fn without_capture_services_are_reached_on_loopback(delta: bool) {
    let (http_port, tcp_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let (web_port, db_port) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let _web = backends::http(format!("127.0.0.2:{web_port}").parse().unwrap(), "web")
        .await
        .unwrap();
    let _db = backends::tcp_echo(format!("127.0.0.3:{db_port}").parse().unwrap(), "db")
        .await
        .unwrap();
    let mesh =
        shoal_tests::service_with_endpoint("web", "app", "http", http_port, "127.0.0.2", web_port)
            + &shoal_tests::service_with_endpoint(
                "db",
                "data",
                "tcp",
                tcp_port,
                "127.0.0.3",
                db_port,
            );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app" });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, delta).await.unwrap() else {
        return;
    };
    let log = || format!("{}\n--- shoal ---\n{}", envoy.proc.log(), shoal.log());
    let mut want = vec![
        format!("127.0.0.1_{http_port}"),
        format!("127.0.0.1_{tcp_port}"),
    ];
    want.sort();
    eventually(Duration::from_secs(20), "the bound listeners", || async {
        let mut got = envoy.listeners().await.ok()?;
        got.sort();
        (got == want).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", want, log()));
    let http = ([127, 0, 0, 1], http_port).into();
    shoal_tests::until_routed(http, "web.app", log).await;
    let (status, body) = shoal_tests::http_get(http, "/", &[("host", "web.app.svc.cluster.local")])
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "web"));
    let tcp = ([127, 0, 0, 1], tcp_port).into();
    assert_eq!(
        backends::greeting(tcp).await.as_deref(),
        Some("db"),
        "{}",
        log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_capture_services_are_reached_on_loopback_delta() {
    without_capture_services_are_reached_on_loopback(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_capture_services_are_reached_on_loopback_sotw() {
    without_capture_services_are_reached_on_loopback(false).await;
}
