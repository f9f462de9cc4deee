//! `serve --mesh-config`: Istio's MeshConfig sets the mesh-wide options, and an edit of the
//! file reaches a connected Envoy without a restart; a broken edit is refused and the last
//! good options stay. `accessLogFile` makes Envoy log requests there, as text or JSON.

use std::time::Duration;

use shoal_tests::eventually;
use shoal_tests::{Envoy, start_shoal};

const CLUSTER: &str = "outbound|80||web.app.svc.cluster.local";

/// The connect timeout Envoy holds for [`CLUSTER`].
async fn connect_timeout(envoy: &Envoy) -> Option<String> {
    envoy
        .clusters()
        .await
        .ok()?
        .iter()
        .find(|c| c["name"] == CLUSTER)?["connect_timeout"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_config_edits_reach_envoy_and_broken_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        shoal_tests::service_with_endpoint("web", "app", "http", 80, "127.0.0.9", 8080),
    )
    .unwrap();
    let meshconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        meshconfig.path(),
        "connectTimeout: 2s\nenableTracing: true\n",
    )
    .unwrap();
    let path = meshconfig.path().display().to_string();
    let shoal = start_shoal(dir.path(), &["--mesh-config", &path])
        .await
        .unwrap();
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "NAMESPACE": "app", "INTERCEPTION_MODE": "NONE" });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    let until = |want: &'static str| {
        let envoy = &envoy;
        let shoal = &shoal;
        async move {
            eventually(
                Duration::from_secs(20),
                "the cluster's connect timeout",
                || async { (connect_timeout(envoy).await.as_deref() == Some(want)).then_some(()) },
            )
            .await
            .unwrap_or_else(|e| panic!("{e} {want}\n{}", shoal.log()));
        }
    };
    until("2s").await;
    assert!(
        shoal.log().contains("enableTracing"),
        "fields shoal does not act on are named: {}",
        shoal.log()
    );

    std::fs::write(meshconfig.path(), "connectTimeout: 7s\n").unwrap();
    until("7s").await;

    std::fs::write(meshconfig.path(), "connectTimeout: [oops\n").unwrap();
    eventually(Duration::from_secs(10), "the refusal", || async {
        shoal.log().contains("MeshConfig refused").then_some(())
    })
    .await
    .unwrap();
    assert_eq!(connect_timeout(&envoy).await.as_deref(), Some("7s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_go_where_mesh_config_says() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let meshconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        meshconfig.path(),
        format!("accessLogFile: {}\n", log.display()),
    )
    .unwrap();
    let path = meshconfig.path().display().to_string();
    let Some(api) = shoal_tests::ingress::IngressApi::start("", &["--mesh-config", &path])
        .await
        .unwrap()
    else {
        return;
    };
    // The first line logged for a request to `needle` (in JSON if `json`): requests are
    // repeated until one is, as the MeshConfig edit takes a moment to reach Envoy.
    let logged = |needle: String, json: bool| {
        let log = log.clone();
        let api = &api;
        async move {
            eventually(Duration::from_secs(20), "an access log line", || {
                let needle = needle.clone();
                let log = log.clone();
                async move {
                    let _ = api.get(&needle, &[]).await;
                    let text = std::fs::read_to_string(&log).ok()?;
                    text.lines()
                        .find(|l| l.contains(&needle) && l.starts_with('{') == json)
                        .map(str::to_string)
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", api.logs()))
        }
    };
    // Istio's default text format: method, path, protocol, status.
    let line = logged("/text-line".to_string(), false).await;
    assert!(line.contains("\"GET /text-line HTTP/1.1\" 200"), "{line}");

    // JSON lines after an edit of the MeshConfig, without a restart.
    std::fs::write(
        meshconfig.path(),
        format!(
            "accessLogFile: {}\naccessLogEncoding: JSON\n",
            log.display()
        ),
    )
    .unwrap();
    let line = logged("/json-line".to_string(), true).await;
    let entry: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(entry["path"], "/json-line", "{line}");
    assert_eq!(entry["response_code"], 200, "{line}");
    assert_eq!(entry["method"], "GET", "{line}");
}
