//! gRPC's own xDS client (Python grpcio, `xds:///HOST:PORT`) as a proxyless client of
//! shoal: real RPCs split by weight, matched by header, and following a config edit.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use shoal_tests::start_shoal;
use shoal_tests::{backends, env, free_port_on};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn mesh(backend: u16, weights: (u32, u32)) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: grpc}}
spec:
  hosts: [echo.grpc.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 7070, name: grpc, protocol: GRPC, targetPort: {backend}}}
  endpoints:
  - {{address: 127.0.0.2, labels: {{version: v1}}, locality: r1/z1}}
  - {{address: 127.0.0.3, labels: {{version: v2}}, locality: r1/z2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: grpc}}
spec:
  host: echo.grpc.svc.cluster.local
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: grpc}}
spec:
  hosts: [echo.grpc.svc.cluster.local]
  http:
  - match:
    - headers: {{x-canary: {{exact: "yes"}}}}
    route:
    - destination: {{host: echo.grpc.svc.cluster.local, subset: v2}}
  - route:
    - destination: {{host: echo.grpc.svc.cluster.local, subset: v1}}
      weight: {}
    - destination: {{host: echo.grpc.svc.cluster.local, subset: v2}}
      weight: {}
"#,
        weights.0, weights.1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_xds_client_routes_by_weight_header_and_edits() {
    let Some(python) = env::python() else { return };
    let port = free_port_on(&["127.0.0.2", "127.0.0.3"]);
    let _v1 = backends::grpc(format!("127.0.0.2:{port}").parse().unwrap(), "v1")
        .await
        .unwrap();
    let _v2 = backends::grpc(format!("127.0.0.3:{port}").parse().unwrap(), "v2")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grpc.yaml");
    std::fs::write(&file, mesh(port, (70, 30))).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();

    let bootstrap = dir.path().join("bootstrap.json.txt");
    let node = "sidecar~127.0.0.1~pyclient.grpc~grpc.svc.cluster.local";
    std::fs::write(
        &bootstrap,
        serde_json::to_vec(&serde_json::json!({
            "xds_servers": [{ "server_uri": shoal.xds.to_string(), "channel_creds": [{ "type": "insecure" }], "server_features": ["xds_v3"] }],
            "node": { "id": node, "metadata": { "GENERATOR": "grpc", "NAMESPACE": "grpc" }, "locality": {} }
        }))
        .unwrap(),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(python)
        .arg(env::py_script("xds_client.py"))
        .args([
            "xds:///echo.grpc.svc.cluster.local:7070",
            "400",
            "x-canary=yes",
            "v2",
        ])
        .env("GRPC_XDS_BOOTSTRAP", &bootstrap)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("client answers in time")
            .unwrap()
            .expect("a line")
    };

    let split: BTreeMap<String, usize> = serde_json::from_str(&next().await).unwrap();
    let v1 = *split.get("v1").unwrap_or(&0) as f64 / 400.0;
    assert!((0.55..=0.85).contains(&v1), "70/30 split, got {split:?}");
    let canary: BTreeMap<String, usize> = serde_json::from_str(&next().await).unwrap();
    assert_eq!(canary.get("v2"), Some(&100), "header match: {canary:?}");
    assert_eq!(next().await, "READY");

    // gRPC accepted everything shoal sent.
    let syncz = shoal.json("/debug/syncz").await.unwrap();
    let stream = syncz
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node_id"] == node)
        .expect("the client's stream");
    assert_eq!(stream["protocol"], "sotw");
    for t in stream["types"].as_array().unwrap() {
        assert_eq!(t["nacks"], 0, "{t}");
        assert_eq!(t["state"], "SYNCED", "{t}");
    }

    // The live client follows an edit of the file.
    std::fs::write(&file, mesh(port, (0, 100))).unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"go\n")
        .await
        .unwrap();
    assert_eq!(next().await, "SHIFTED");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
