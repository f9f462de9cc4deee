//! A proxyless gRPC client (Python grpcio with xDS credentials) calling through mTLS: a
//! DestinationRule's ISTIO_MUTUAL gives its cluster an UpstreamTlsContext naming the
//! bootstrap's certificate provider (gRFC A29), and the server is an Envoy sidecar under a
//! STRICT PeerAuthentication, holding its certificate from shoal over SDS. A client whose
//! certificate the mesh CA did not issue is refused.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use shoal_tests::identity::{Issuer, tls_bootstrap};
use shoal_tests::{Envoy, http_get, run_python, start_shoal};
use shoal_tests::{backends, env, eventually, free_port};
use tokio::io::AsyncBufReadExt;

/// The endpoint of `api`: the sidecar's ingress listener.
fn endpoint_slice(ingress: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: api-1, namespace: app, labels: {{kubernetes.io/service-name: api}}}}\naddressType: IPv4\nports: [{{name: grpc, port: {ingress}}}]\nendpoints:\n- addresses: [127.0.0.1]\n---\n"
    )
}

/// STRICT mTLS for the namespace, ISTIO_MUTUAL for clients of `api`.
const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: app}
spec:
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: app}
spec:
  host: api.app.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
"#;

fn mesh(ingress: u16, app: u16) -> String {
    shoal_tests::ingress_workload("GRPC", 7070, ingress, ingress, app)
        + &endpoint_slice(ingress)
        + POLICIES
}

/// A certificate for `spiffe://cluster.local/ns/NS/sa/SA` from the mesh CA in `ca_dir`
/// (as Istio's agent would write it), or self-signed when `None`: (chain, key).
fn workload_cert(ca_dir: Option<&Path>, ns: &str, sa: &str) -> (String, String) {
    let Some(dir) = ca_dir else {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"))
                .unwrap(),
        )];
        return (params.self_signed(&key).unwrap().pem(), key.serialize_pem());
    };
    let ca = shoal_ca::CertificateAuthority::load_or_create(dir, "cluster.local").unwrap();
    let id = shoal_ca::Identity::new("cluster.local", ns, sa).unwrap();
    let kp = ca.issue_keypair(&id, Duration::from_secs(3600)).unwrap();
    // The leaf and intermediates; the root is the trust bundle's.
    let chain = kp.cert_chain[..kp.cert_chain.len() - 1].concat();
    (chain, kp.key_pem)
}

/// A proxyless gRPC workload's bootstrap, written under `dir/name/`: node `node` with
/// `metadata` (GENERATOR grpc added), the `default` certificate provider holding `cert`
/// and the mesh root, and Istio's server listener name template. Returns its path.
fn bootstrap(
    dir: &Path,
    name: &str,
    xds: SocketAddr,
    node: &str,
    mut metadata: serde_json::Value,
    root_pem: &str,
    cert: &(String, String),
) -> std::path::PathBuf {
    let files = dir.join(name);
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("cert-chain.pem"), &cert.0).unwrap();
    std::fs::write(files.join("key.pem"), &cert.1).unwrap();
    std::fs::write(files.join("root-cert.pem"), root_pem).unwrap();
    metadata["GENERATOR"] = "grpc".into();
    let path = files.join("bootstrap.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&serde_json::json!({
            "xds_servers": [{ "server_uri": xds.to_string(), "channel_creds": [{ "type": "insecure" }], "server_features": ["xds_v3"] }],
            "node": { "id": node, "metadata": metadata, "locality": {} },
            "certificate_providers": { "default": { "plugin_name": "file_watcher", "config": {
                "certificate_file": files.join("cert-chain.pem"),
                "private_key_file": files.join("key.pem"),
                "ca_certificate_file": files.join("root-cert.pem"),
                "refresh_interval": "600s"
            } } },
            "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s"
        }))
        .unwrap(),
    )
    .unwrap();
    path
}

/// Runs a client of namespace `client` holding `cert`: 20 calls to `api`.
async fn call(
    dir: &Path,
    xds: SocketAddr,
    root_pem: &str,
    cert: &(String, String),
    name: &str,
    timeout_secs: u32,
) -> anyhow::Result<Option<String>> {
    let node = format!("sidecar~127.0.0.1~{name}-0.client~client.svc.cluster.local");
    let meta = serde_json::json!({ "NAMESPACE": "client" });
    let path = bootstrap(dir, name, xds, &node, meta, root_pem, cert);
    run_python(
        "xds_mtls_client.py",
        &[
            "xds:///api.app.svc.cluster.local:7070".into(),
            "20".into(),
            timeout_secs.to_string(),
        ],
        &[("GRPC_XDS_BOOTSTRAP", path.display().to_string())],
        Duration::from_secs(60),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxyless_client_calls_over_mtls_with_its_bootstrap_certificates() {
    let (Some(bin), Some(_)) = (env::envoy(), env::python()) else {
        eprintln!("SKIP: Envoy or grpcio not installed (run ./scripts/test)");
        return;
    };
    let (ingress, app) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let _app = backends::grpc(format!("127.0.0.1:{app}").parse().unwrap(), "api")
        .await
        .unwrap();
    let issuer = Issuer::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh(ingress, app)).unwrap();
    let shoal = start_shoal(dir.path(), &["--jwt-issuer", &issuer.arg()])
        .await
        .unwrap();
    let ca = shoal.data_dir().join("ca");
    let root_pem = std::fs::read_to_string(ca.join("shoal-root/root-cert.pem")).unwrap();

    // The server: an Envoy sidecar authenticated as app/api, its certificate over SDS.
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let node = "sidecar~127.0.0.1~api-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({
        "INTERCEPTION_MODE": "NONE",
        "NAMESPACE": "app",
        "LABELS": { "app": "api" },
    });
    let token = issuer.token("app", "api").unwrap();
    let server = Envoy::start_bootstrap(
        bin,
        admin,
        tls_bootstrap(node, meta, shoal.xds_tls(), admin, &root_pem, &token),
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(30),
        "the sidecar's certificate",
        || async {
            (!shoal_tests::identity::envoy_cert_uris(admin)
                .await
                .is_empty()
                && !server.listeners().await.ok()?.is_empty())
            .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", server.proc.log(), shoal.log()));

    let good = workload_cert(Some(&ca), "client", "client");
    let out = call(dir.path(), shoal.xds, &root_pem, &good, "good", 20)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.proc.log()))
        .unwrap();
    let answers: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answers, serde_json::json!({ "api": 20 }), "{out}");

    // A certificate from outside the mesh: the sidecar refuses the handshake.
    let stranger = workload_cert(None, "client", "client");
    let refused = call(dir.path(), shoal.xds, &root_pem, &stranger, "stranger", 5).await;
    let err = refused.expect_err("a certificate the mesh CA did not issue was accepted");
    assert!(err.to_string().contains("\"error\""), "{err}");
    let stats = http_get(admin, "/stats?filter=ssl.fail_verify_error", &[])
        .await
        .unwrap()
        .1;
    let refusals: u64 = stats
        .lines()
        .filter(|l| l.starts_with("listener.127.0.0.1_"))
        .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum();
    assert!(refusals > 0, "the sidecar refused no certificate: {stats}");
}

/// `api` as a proxyless gRPC server on `port` (no sidecar), STRICT, callable by
/// `client/client` only.
fn server_mesh(port: u16) -> String {
    shoal_tests::ingress_workload("GRPC", 7070, port, port, port)
        .split("---\n")
        .next()
        .map(|service| format!("{service}---\n"))
        .unwrap_or_default()
        + &endpoint_slice(port)
        + POLICIES
        + "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: api, namespace: app}\nspec:\n  selector: {matchLabels: {app: api}}\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/client/sa/client]}}]\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxyless_server_takes_its_listener_tls_and_policies_from_shoal() {
    let Some(python) = env::python() else {
        eprintln!("SKIP: grpcio not installed (run ./scripts/test)");
        return;
    };
    let port = free_port("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), server_mesh(port)).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let ca = shoal.data_dir().join("ca");
    let root_pem = std::fs::read_to_string(ca.join("shoal-root/root-cert.pem")).unwrap();

    // The server: grpcio with xDS, its listener (mTLS, RBAC) from shoal.
    let node = "sidecar~127.0.0.1~api-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "NAMESPACE": "app", "LABELS": { "app": "api" } });
    let server_cert = workload_cert(Some(&ca), "app", "api");
    let path = bootstrap(
        dir.path(),
        "server",
        shoal.xds,
        node,
        meta,
        &root_pem,
        &server_cert,
    );
    let mut server = tokio::process::Command::new(python)
        .arg(env::py_script("xds_server.py"))
        .args([port.to_string(), "api".to_string()])
        .env("GRPC_XDS_BOOTSTRAP", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let started = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server starts in time")
        .unwrap();
    assert_eq!(started.as_deref(), Some("STARTED"));

    // The allowed identity over mTLS.
    let good = workload_cert(Some(&ca), "client", "client");
    let out = call(dir.path(), shoal.xds, &root_pem, &good, "good", 20)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()))
        .unwrap();
    let answers: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answers, serde_json::json!({ "api": 20 }), "{out}");

    // Another mesh identity: the server's RBAC refuses it.
    let other = workload_cert(Some(&ca), "other", "intruder");
    let denied = call(dir.path(), shoal.xds, &root_pem, &other, "other", 10).await;
    let err = denied.expect_err("an identity the policy does not allow was served");
    assert!(err.to_string().contains("PERMISSION_DENIED"), "{err}");

    // A certificate from outside the mesh: no handshake.
    let stranger = workload_cert(None, "client", "client");
    let refused = call(dir.path(), shoal.xds, &root_pem, &stranger, "stranger", 5).await;
    let err = refused.expect_err("a certificate the mesh CA did not issue was accepted");
    assert!(!err.to_string().contains("PERMISSION_DENIED"), "{err}");
    let _ = server.kill().await;
}
