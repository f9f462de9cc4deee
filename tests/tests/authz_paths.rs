//! AuthorizationPolicy path templates through a real Envoy: a sidecar's ingress listener (a
//! bound listener with the inbound security chains, no capture needed) allows only the
//! paths an ALLOW policy's templates match. `{*}` is exactly one path segment, `{**}` zero
//! or more; the query string is not part of the path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::proc::{Envoy, Shoal, http_get};
use shoal_tests::{eventually, free_port};

fn mesh(ingress: u16, app: u16) -> String {
    shoal_tests::ingress_workload("HTTP", 80, app, ingress, app)
        + r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: app}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - to:
    - operation:
        paths: ["/api/{*}/orders", "/files/{**}"]
        notPaths: ["/files/{*}/secret"]
"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_templates_allow_only_the_segments_they_name() {
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
    let via: SocketAddr = format!("127.0.0.1:{ingress}").parse().unwrap();
    let status = |path: &'static str| async move {
        http_get(via, path, &[("host", "api.app")])
            .await
            .map(|(s, _)| s)
    };

    let (code, body) = eventually(Duration::from_secs(20), "an allowed path", || async {
        http_get(via, "/api/x/orders", &[("host", "api.app")])
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.proc.log()));
    assert_eq!((code, body.as_str()), (200, "api"));

    for (path, want) in [
        // `{*}`: exactly one segment.
        ("/api/42/orders", 200),
        ("/api/x/orders?page=2", 200),
        ("/api/x/y/orders", 403),
        ("/api/orders", 403),
        ("/api//orders", 403),
        ("/api/x/orders/1", 403),
        // `{**}`: any number of segments, not the parent itself.
        ("/files/", 200),
        ("/files/a", 200),
        ("/files/a/b/c.txt", 200),
        ("/files", 403),
        // notPaths: a template excluded from the allowed ones.
        ("/files/a/secret", 403),
        ("/files/a/b/secret", 200),
        ("/other", 403),
    ] {
        assert_eq!(status(path).await.unwrap(), want, "{path}");
    }
}
