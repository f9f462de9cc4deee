//! Workload identity end to end with real Envoys: authentication on shoal's TLS xDS port,
//! certificates over SDS, mTLS between two sidecars, STRICT PeerAuthentication refusing
//! plaintext, and an AuthorizationPolicy allowing one path and denying another.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use shoal_tests::cluster::namespaces_available;
use shoal_tests::identity::{
    Issuer, create_certificate, csr_for, envoy_cert_uris, envoy_certs, pem_uris, tls_bootstrap,
    tls_channel,
};
use shoal_tests::netns::PodNet;
use shoal_tests::{Envoy, Proc, Shoal, http_get, start_shoal};
use shoal_tests::{env, eventually, free_port};

fn root_pem(shoal: &Shoal) -> String {
    std::fs::read_to_string(shoal.data_dir().join("ca/shoal-root/root-cert.pem")).unwrap()
}

fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_on_the_tls_port() {
    let Some(bin) = env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    let issuer = Issuer::new().unwrap();
    let mesh = env::workspace_root().join("examples/mesh");
    let shoal = start_shoal(&mesh, &["--jwt-issuer", &issuer.arg()])
        .await
        .unwrap();
    let root = root_pem(&shoal);
    let node = "sidecar~10.0.0.9~productpage-v1-abc.bookinfo~bookinfo.svc.cluster.local";
    let meta = serde_json::json!({ "NAMESPACE": "bookinfo" });
    let start = |token: String| {
        let (bin, root, meta) = (bin.clone(), root.clone(), meta.clone());
        let xds = shoal.xds_tls();
        async move {
            let admin = local(free_port("127.0.0.1"));
            Envoy::start_bootstrap(
                bin,
                admin,
                tls_bootstrap(node, meta, xds, admin, &root, &token),
            )
            .await
            .unwrap()
        }
    };

    let envoy = start(issuer.token("bookinfo", "bookinfo-productpage").unwrap()).await;
    let uris = eventually(
        Duration::from_secs(20),
        "Envoy's own certificate",
        || async {
            let uris = envoy_cert_uris(envoy.admin).await;
            (!uris.is_empty() && !envoy.listeners().await.ok()?.is_empty()).then_some(uris)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- envoy ---\n{}", envoy.proc.log()));
    assert_eq!(
        uris,
        vec!["spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage".to_string()],
        "Envoy holds exactly its own identity"
    );
    drop(envoy);

    // A token of another namespace than the node claims, and a forged token: nothing.
    let other = issuer.token("default", "sleep").unwrap();
    let forged = Issuer::new()
        .unwrap()
        .token("bookinfo", "bookinfo-productpage")
        .unwrap();
    for token in [other, forged] {
        let envoy = start(token).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(envoy_cert_uris(envoy.admin).await.is_empty());
        assert!(envoy.listeners().await.unwrap().is_empty());
    }
    let log = shoal.log();
    assert!(log.contains("refused stream"), "{log}");
}

fn mesh(ns_ip: &str, port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: demo}}
spec:
  selector: {{app: backend}}
  ports:
  - {{name: http, port: {port}, targetPort: 8080}}
---
apiVersion: v1
kind: Pod
metadata:
  name: backend-0
  namespace: demo
  labels: {{app: backend, security.istio.io/tlsMode: istio}}
spec: {{serviceAccountName: backend}}
status: {{podIP: {ns_ip}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend-0, namespace: demo, labels: {{kubernetes.io/service-name: backend}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- addresses: [{ns_ip}]
  targetRef: {{kind: Pod, name: backend-0}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: backend, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  mtls: {{mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: backend, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/client/sa/client]}}}}]
    to: [{{operation: {{methods: [GET], paths: [/allowed]}}}}]
"#
    ) + &shoal_tests::bound_http_sidecar("client", port, &["demo/*"])
}

/// A client sidecar (host, `INTERCEPTION_MODE: NONE`, a bound listener for the backend)
/// and a backend behind its capturing sidecar in its own network namespace, both
/// authenticated to shoal's TLS port with tokens.
struct Pair {
    shoal: Shoal,
    client: Envoy,
    server: Envoy,
    /// The client sidecar's listener for the backend service.
    via: SocketAddr,
    /// The backend workload's address (captured by its sidecar).
    direct: SocketAddr,
    _app: Proc,
    _site: tempfile::TempDir,
    _dir: tempfile::TempDir,
    _issuer: Issuer,
    _net: PodNet,
}

const HOST: [(&str, &str); 1] = [("host", "backend.demo.svc.cluster.local")];

/// `None` (after saying why) where Envoy, root, iproute2 or iptables are missing.
async fn pair(extra: &[&str]) -> Option<Pair> {
    let Some(bin) = env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return None;
    };
    if !namespaces_available() || Command::new("iptables").arg("-V").output().is_err() {
        eprintln!("SKIP: needs root, iproute2 and iptables (a sidecar's inbound capture)");
        return None;
    }
    let net = PodNet::create().unwrap();
    net.capture_inbound(8080).unwrap();
    let port = free_port("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh(&net.pod_ip, port)).unwrap();
    let issuer = Issuer::new().unwrap();
    let tls = format!("0.0.0.0:{}", free_port("0.0.0.0"));
    let issuer_arg = issuer.arg();
    let mut args = vec!["--jwt-issuer", &issuer_arg, "--xds-tls-addr", &tls];
    args.extend_from_slice(extra);
    let shoal = start_shoal(dir.path(), &args).await.unwrap();
    let root = root_pem(&shoal);

    // The backend: a plain HTTP server in its own namespace, behind its sidecar.
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("allowed"), "allowed\n").unwrap();
    std::fs::write(site.path().join("denied"), "denied\n").unwrap();
    let app = Proc::spawn(
        "backend",
        net.command("python3")
            .args(["-m", "http.server", "8080"])
            .arg("--directory")
            .arg(site.path()),
    )
    .unwrap();
    let xds_from_ns: SocketAddr = format!("{}:{}", net.host_ip, shoal.xds_tls().port())
        .parse()
        .unwrap();
    let server_admin: SocketAddr = format!("{}:15000", net.pod_ip).parse().unwrap();
    let server = Envoy::start_bootstrap_in(
        Some(&net.name),
        bin.clone(),
        server_admin,
        tls_bootstrap(
            &format!(
                "sidecar~{}~backend-0.demo~demo.svc.cluster.local",
                net.pod_ip
            ),
            serde_json::json!({ "NAMESPACE": "demo", "LABELS": { "app": "backend" } }),
            xds_from_ns,
            server_admin,
            &root,
            &issuer.token("demo", "backend").unwrap(),
        ),
    )
    .await
    .unwrap();
    let client_admin = local(free_port("127.0.0.1"));
    let client = Envoy::start_bootstrap(
        bin,
        client_admin,
        tls_bootstrap(
            "sidecar~127.0.0.1~client-0.client~client.svc.cluster.local",
            serde_json::json!({ "NAMESPACE": "client", "INTERCEPTION_MODE": "NONE" }),
            local(shoal.xds_tls().port()),
            client_admin,
            &root,
            &issuer.token("client", "client").unwrap(),
        ),
    )
    .await
    .unwrap();

    Some(Pair {
        shoal,
        client,
        server,
        via: local(port),
        direct: format!("{}:8080", net.pod_ip).parse().unwrap(),
        _app: app,
        _site: site,
        _dir: dir,
        _issuer: issuer,
        _net: net,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_envoys_talk_mtls_with_certificates_from_sds() {
    let Some(p) = pair(&[]).await else { return };
    let (shoal, server, client) = (&p.shoal, &p.server, &p.client);
    // Each sidecar holds exactly its own identity, from SDS.
    for (envoy, want) in [
        (&server, "spiffe://cluster.local/ns/demo/sa/backend"),
        (&client, "spiffe://cluster.local/ns/client/sa/client"),
    ] {
        let uris = eventually(
            Duration::from_secs(30),
            "a certificate over SDS",
            || async {
                let u = envoy_cert_uris(envoy.admin).await;
                (!u.is_empty()).then_some(u)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.log()));
        assert_eq!(uris, vec![want.to_string()]);
    }

    // Client → its sidecar → mTLS → the backend's sidecar (STRICT, RBAC) → the app.
    let host = HOST;
    let via = p.via;
    let (status, body) = eventually(Duration::from_secs(30), "a request over mTLS", || async {
        http_get(via, "/allowed", &host)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- client ---\n{}\n--- server ---\n{}",
            client.proc.log(),
            server.proc.log()
        )
    });
    assert_eq!((status, body.as_str()), (200, "allowed\n"));
    // The AuthorizationPolicy allows only /allowed for the client's identity.
    let (status, _) = http_get(via, "/denied", &host).await.unwrap();
    assert_eq!(status, 403, "a path the policy does not allow");
    // STRICT: plaintext straight to the workload is refused by its sidecar (under
    // PERMISSIVE it would reach RBAC and get a 403 instead).
    let plain = http_get(p.direct, "/allowed", &[]).await;
    assert!(plain.is_err(), "plaintext reached the workload: {plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_the_root_rotate_under_traffic() {
    // Workload certificates live 4 s (renewed at 2 s); the CA directory is checked twice a
    // second for a root rotation.
    let Some(p) = pair(&[
        "--workload-cert-ttl",
        "4s",
        "--cert-check-interval",
        "500ms",
    ])
    .await
    else {
        return;
    };
    let ca_dir = p.shoal.data_dir().join("ca");
    let ca = |step: &str| {
        let out = Command::new(env::shoal_bin())
            .args(["ca", step, "--ca-dir"])
            .arg(&ca_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let first = eventually(Duration::from_secs(30), "traffic over mTLS", || async {
        http_get(p.via, "/allowed", &HOST)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert!(first.is_ok(), "{}", p.server.proc.log());

    // Traffic flows the whole time; every request must succeed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, via) = (stop.clone(), p.via);
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http_get(via, "/allowed", &HOST).await {
                    Ok((200, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, failed)
        })
    };
    let mut serials = std::collections::BTreeSet::new();
    let mut watch = |c: &shoal_tests::identity::HeldCerts| serials.extend(c.leaves.clone());

    // Workload certificates renew (several times over 6 s) without a dropped request.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        watch(&envoy_certs(p.server.admin).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let renewed = serials.len();
    assert!(
        renewed >= 3,
        "the server's certificate was renewed only to {serials:?}"
    );

    // Root rotation: the new root is trusted everywhere first, then signs.
    ca("rotate");
    for envoy in [&p.server, &p.client] {
        eventually(Duration::from_secs(15), "both roots in ROOTCA", || async {
            (envoy_certs(envoy.admin).await.roots == 2).then_some(())
        })
        .await
        .unwrap_or_else(|e| {
            let certs = futures::executor::block_on(http_get(envoy.admin, "/certs", &[]));
            panic!("{e}\n{certs:?}\n{}", p.shoal.log())
        });
    }
    let before: std::collections::BTreeSet<String> = envoy_certs(p.server.admin)
        .await
        .leaves
        .into_iter()
        .collect();
    ca("promote");
    // Certificates from the new root replace the old ones; traffic keeps flowing.
    eventually(
        Duration::from_secs(15),
        "a certificate from the new root",
        || async {
            let now = envoy_certs(p.server.admin).await;
            (now.roots == 2 && now.leaves.iter().all(|s| !before.contains(s))).then_some(())
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert!(ok > 50, "only {ok} requests went through");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_gets_only_its_own_identity_s_secrets() {
    use shoal_api::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
    use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use shoal_tests::xds::{DeltaStream, Target};

    let issuer = Issuer::new().unwrap();
    let mesh = env::workspace_root().join("examples/mesh");
    let shoal = start_shoal(&mesh, &["--jwt-issuer", &issuer.arg()])
        .await
        .unwrap();
    let node = shoal_api::pb::envoy::config::core::v3::Node {
        id: "sidecar~10.0.0.9~productpage-v1-abc.bookinfo~bookinfo.svc.cluster.local".into(),
        metadata: Some(shoal_api::pb::google::protobuf::Struct {
            fields: [(
                "NAMESPACE".to_string(),
                shoal_api::pb::google::protobuf::Value {
                    kind: Some(shoal_api::pb::google::protobuf::value::Kind::StringValue(
                        "bookinfo".into(),
                    )),
                },
            )]
            .into(),
        }),
        ..Default::default()
    };
    // Asks for its own secrets and for other identities' by every name that might work.
    let wanted = [
        "default",
        "ROOTCA",
        "spiffe://cluster.local/ns/default/sa/sleep",
        "kubernetes://sleep",
        "default/sleep",
    ];
    let request = || DeltaDiscoveryRequest {
        node: Some(node.clone()),
        type_url: shoal_api::type_url::SECRET.into(),
        resource_names_subscribe: wanted.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let token = issuer.token("bookinfo", "bookinfo-productpage").unwrap();
    let tls = Target::tls(
        shoal.xds_tls(),
        &shoal.data_dir().join("ca/shoal-root/root-cert.pem"),
    )
    .unwrap();
    // The same valid token on the plaintext port: refused, pointing to the TLS port, and
    // the log says why. Identities never cross the plaintext port.
    let err = shoal_tests::xds::refusal(shoal.xds, request(), Some(&token))
        .await
        .expect("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("TLS xDS port"), "{err:?}");
    assert!(
        shoal
            .log()
            .contains("a token was sent to the plaintext xDS port"),
        "{}",
        shoal.log()
    );
    let mut s = DeltaStream::open_with_token(tls.clone(), request(), Some(&token))
        .await
        .unwrap();
    let resp = s
        .recv(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a response");
    let mut names: Vec<&str> = resp.resources.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["ROOTCA", "default"]);
    for r in &resp.resources {
        let secret: Secret =
            prost::Message::decode(r.resource.as_ref().unwrap().value.as_slice()).unwrap();
        if let Some(secret::Type::TlsCertificate(c)) = secret.r#type {
            let chain = match c.certificate_chain.unwrap().specifier.unwrap() {
                shoal_api::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(b) => b,
                other => panic!("{other:?}"),
            };
            assert_eq!(
                pem_uris(&chain),
                ["spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage"]
            );
        }
    }
    // The other names do not exist for this proxy.
    let mut removed = resp.removed_resources.clone();
    removed.sort();
    let mut others: Vec<&str> = wanted[2..].to_vec();
    others.sort();
    assert_eq!(removed, others);

    // Anonymous: config, but no secret at all.
    let mut anon = DeltaStream::open(shoal.xds, request()).await.unwrap();
    let resp = anon
        .recv(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a response");
    assert!(
        resp.resources.is_empty(),
        "{:?}",
        resp.resources.iter().map(|r| &r.name).collect::<Vec<_>>()
    );
    // A token for another namespace than the node's is refused outright.
    let other = issuer.token("default", "sleep").unwrap();
    let mut s = DeltaStream::open_with_token(tls, request(), Some(&other))
        .await
        .unwrap();
    let err = s.recv(Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_certificate_authenticates_on_the_tls_port() {
    let Some(bin) = env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    let mesh = env::workspace_root().join("examples/mesh");
    let shoal = start_shoal(&mesh, &[]).await.unwrap();
    let root = root_pem(&shoal);
    // A still-valid workload certificate from the mesh CA (as a proxy renewing would hold).
    let ca = shoal_ca::CertificateAuthority::load_or_create(
        &shoal.data_dir().join("ca"),
        "cluster.local",
    )
    .unwrap();
    let id = shoal_ca::Identity::new("cluster.local", "bookinfo", "bookinfo-productpage").unwrap();
    let kp = ca.issue_keypair(&id, Duration::from_secs(3600)).unwrap();
    let chain = kp.cert_chain[..kp.cert_chain.len() - 1].concat();
    let node = "sidecar~10.0.0.9~productpage-v1-abc.bookinfo~bookinfo.svc.cluster.local";
    let admin = local(free_port("127.0.0.1"));
    let envoy = Envoy::start_bootstrap(
        bin,
        admin,
        shoal_tests::identity::cert_bootstrap(
            node,
            serde_json::json!({ "NAMESPACE": "bookinfo" }),
            shoal.xds_tls(),
            admin,
            &root,
            (&chain, &kp.key_pem),
        ),
    )
    .await
    .unwrap();
    let uris = eventually(
        Duration::from_secs(20),
        "its certificate over SDS",
        || async {
            let u = envoy_cert_uris(envoy.admin).await;
            (u.len() == 1).then_some(u)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    assert_eq!(uris, [id.spiffe_uri()]);

    // Claiming to be a forwarded stream without being a replica gets nothing.
    use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    let first = DeltaDiscoveryRequest {
        node: Some(shoal_tests::xds::node(node)),
        type_url: shoal_api::type_url::SECRET.into(),
        ..Default::default()
    };
    let mut s = shoal_tests::xds::DeltaStream::open_with_metadata(
        shoal.xds,
        first,
        &[("x-shoal-caller", &id.spiffe_uri())],
    )
    .await
    .unwrap();
    let err = s.recv(Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_istio_csr_api_signs_only_the_caller_s_identity() {
    let issuer = Issuer::new().unwrap();
    let mesh = env::workspace_root().join("examples/mesh");
    let shoal = start_shoal(&mesh, &["--jwt-issuer", &issuer.arg()])
        .await
        .unwrap();
    let root = root_pem(&shoal);
    let channel = tls_channel(shoal.xds_tls().port(), &root).unwrap();
    let token = issuer.token("bookinfo", "bookinfo-reviews").unwrap();
    let me = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews";

    let resp = create_certificate(&channel, &token, csr_for(me).unwrap())
        .await
        .unwrap();
    assert!(resp.cert_chain.len() >= 2, "leaf and root");
    assert_eq!(pem_uris(resp.cert_chain[0].as_bytes()), [me]);
    assert_eq!(
        resp.cert_chain.last().unwrap().trim(),
        root.trim(),
        "root last"
    );

    // Another identity, garbage, an oversized CSR: refused, and no certificate.
    let other = create_certificate(
        &channel,
        &token,
        csr_for("spiffe://cluster.local/ns/bookinfo/sa/bookinfo-ratings").unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    let garbage = create_certificate(
        &channel,
        &token,
        "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n".into(),
    )
    .await
    .unwrap_err();
    assert_eq!(garbage.code(), tonic::Code::InvalidArgument, "{garbage:?}");
    // Over the CSR size cap (64 KiB), and over the message size limit.
    let big = create_certificate(&channel, &token, "A".repeat(100 << 10))
        .await
        .unwrap_err();
    assert_eq!(big.code(), tonic::Code::InvalidArgument, "{big:?}");
    let huge = create_certificate(&channel, &token, "A".repeat(1 << 20))
        .await
        .unwrap_err();
    assert_eq!(huge.code(), tonic::Code::OutOfRange, "{huge:?}");
    let forged = Issuer::new()
        .unwrap()
        .token("bookinfo", "bookinfo-reviews")
        .unwrap();
    let forged = create_certificate(&channel, &forged, csr_for(me).unwrap())
        .await
        .unwrap_err();
    assert_eq!(forged.code(), tonic::Code::Unauthenticated, "{forged:?}");
    // The server is still fine.
    create_certificate(&channel, &token, csr_for(me).unwrap())
        .await
        .unwrap();
}
