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

/// `--mesh-networks`: an endpoint of another cluster (no network label) is placed on the
/// network MeshNetworks gives its cluster and reached through that network's gateway; an
/// edit of the file moves it, a broken edit is refused and reported, and without the
/// network it is reached directly again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_networks_place_endpoints_and_follow_edits() {
    use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use shoal_tests::xds::{DeltaStream, endpoint_addresses, node, wait_for_endpoints};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        r#"apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: app, labels: {app: web}}
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-east-1, namespace: app, labels: {app: web, topology.istio.io/cluster: east}}
status: {phase: Running, podIP: 10.2.0.1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: app, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.1.0.1]
- addresses: [10.2.0.1]
"#,
    )
    .unwrap();
    let networks = |east_gateway: Option<&str>| {
        let mut y = String::from("networks:\n  net-west:\n    endpoints: [{fromRegistry: west}]\n");
        if let Some(gw) = east_gateway {
            y.push_str(&format!(
                "  net-east:\n    endpoints: [{{fromRegistry: east}}]\n    gateways: [{{address: {gw}, port: 15443}}]\n"
            ));
        }
        y
    };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), networks(Some("192.0.2.1"))).unwrap();
    let path = file.path().display().to_string();
    let shoal = start_shoal(
        dir.path(),
        &["--cluster-id", "west", "--mesh-networks", &path],
    )
    .await
    .unwrap();
    let mut s = DeltaStream::open(
        shoal.xds,
        DeltaDiscoveryRequest {
            node: Some(node("sidecar~10.1.0.9~sleep-1.app~app.svc.cluster.local")),
            type_url: shoal_api::type_url::ENDPOINT.into(),
            resource_names_subscribe: vec![CLUSTER.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let expect = |s: &'static [&'static str]| s;
    for (step, want) in [
        (None, expect(&["10.1.0.1", "192.0.2.1"])),
        (
            Some(networks(Some("192.0.2.2"))),
            expect(&["10.1.0.1", "192.0.2.2"]),
        ),
    ] {
        if let Some(text) = step {
            std::fs::write(file.path(), text).unwrap();
        }
        if let Err(seen) = wait_for_endpoints(&mut s, want, Duration::from_secs(20)).await {
            panic!("wanted {want:?}, saw {seen:?}\n{}", shoal.log());
        }
    }

    // A broken edit: refused, reported, and nothing moves.
    std::fs::write(file.path(), "networks: [").unwrap();
    let reported = eventually(Duration::from_secs(20), "the refusal", || async {
        let (_, body) = shoal_tests::http_get(shoal.admin, "/debug/configz", &[])
            .await
            .ok()?;
        body.contains("MeshNetworks").then_some(())
    })
    .await;
    assert!(reported.is_ok(), "{}", shoal.log());
    assert_eq!(endpoint_addresses(&mut s).await, None, "no push");

    // Without net-east, east's endpoint is taken to be on this network: reached directly.
    std::fs::write(file.path(), networks(None)).unwrap();
    if let Err(seen) =
        wait_for_endpoints(&mut s, &["10.1.0.1", "10.2.0.1"], Duration::from_secs(20)).await
    {
        panic!("{seen:?}\n{}", shoal.log());
    }
}

/// `shoal validate --mesh-networks`: an entry `serve` would leave out is an error, named by
/// its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_mesh_networks_entries_serve_would_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("networks.yaml");
    let cfg = dir.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    let args = [
        cfg.display().to_string(),
        "--mesh-networks".into(),
        file.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    std::fs::write(
        &file,
        "networks:\n  n1:\n    endpoints: [{fromCidr: 10.0.0.0/33}]\n    gateways: [{address: 192.0.2.1, port: 15443}]\n",
    )
    .unwrap();
    let (code, out) = shoal_tests::validate(&args).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("networks.n1.endpoints[0].fromCidr"), "{out}");
    std::fs::write(
        &file,
        "networks:\n  n1:\n    endpoints: [{fromCidr: 10.0.0.0/16}]\n    gateways: [{address: 192.0.2.1, port: 15443}]\n",
    )
    .unwrap();
    let (code, out) = shoal_tests::validate(&args).await;
    assert_eq!(code, Some(0), "{out}");
}
