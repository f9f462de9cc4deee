//! Deprecated Istio fields as Istio treats them, in a real Envoy: `mirrorPercent` still
//! honoured (here 0: nothing is mirrored), `outlierDetection.consecutiveErrors` ignored (the
//! cluster keeps Envoy's default consecutive-5xx threshold instead of ejecting after one
//! error).

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::backends::{self, seen};
use shoal_tests::{Envoy, eventually, free_port, http_get, start_shoal};

const ECHO: &str = "echo.app.svc.cluster.local";

fn mesh(port: u16, echo: u16, shadow: u16) -> String {
    let mut m = shoal_tests::service_with_endpoint("echo", "app", "http", port, "127.0.0.2", echo);
    m += &shoal_tests::service_with_endpoint("shadow", "app", "http", port, "127.0.0.3", shadow);
    m += r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: app}
spec:
  hosts: [echo]
  http:
  - mirror: {host: shadow}
    mirrorPercent: 0
    route: [{destination: {host: echo}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: app}
spec:
  host: echo
  trafficPolicy:
    outlierDetection:
      consecutiveErrors: 1
      interval: 1s
"#;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_fields_behave_as_in_istio() {
    let port = free_port("127.0.0.1");
    let (echo_port, shadow_port) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let (_echo, _) = backends::recording(
        format!("127.0.0.2:{echo_port}").parse().expect("address"),
        "echo",
        false,
    )
    .await
    .expect("echo");
    let (_shadow, shadow_log) = backends::recording(
        format!("127.0.0.3:{shadow_port}").parse().expect("address"),
        "shadow",
        false,
    )
    .await
    .expect("shadow");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("mesh.yaml"),
        mesh(port, echo_port, shadow_port),
    )
    .expect("write");
    let shoal = start_shoal(dir.path(), &[]).await.expect("shoal");
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app" });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true)
        .await
        .expect("envoy")
    else {
        return;
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    eventually(Duration::from_secs(20), "routes in envoy", || async {
        let (status, _) = http_get(addr, "/", &[("host", ECHO)]).await.ok()?;
        (status == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));

    // mirrorPercent: 0 mirrors nothing (under shoal before, it was ignored: everything).
    for _ in 0..10 {
        let (status, _) = http_get(addr, "/m", &[("host", ECHO)])
            .await
            .expect("request");
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(seen(&shadow_log).is_empty(), "{:?}", seen(&shadow_log));

    // consecutiveErrors is not a consecutive-5xx threshold of 1.
    let cluster = envoy
        .clusters()
        .await
        .expect("config dump")
        .into_iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.ends_with(ECHO)))
        .expect("the echo cluster");
    let outlier = &cluster["outlier_detection"];
    assert!(outlier.is_object(), "{cluster:#}");
    assert!(outlier.get("consecutive_5xx").is_none(), "{outlier:#}");
    assert_eq!(outlier["interval"], "1s", "{outlier:#}");
}
