//! A real Envoy as an Istio ingress gateway (`router~…` node, labels
//! `istio: ingressgateway`): a `Gateway` with an HTTP server and an HTTPS `SIMPLE` server
//! (certificate files written here), an `httpsRedirect` server, a VirtualService bound to it, and traffic through both
//! to an HTTP backend; hosts the Gateway does not accept get Istio's 404.
//!
//! Credentials (`credentialName`): an authenticated gateway gets its namespace's Secrets
//! from shoal over SDS — HTTPS SIMPLE, MUTUAL (a client without a certificate, or with one
//! from another CA, is refused) and a TLS server terminating TLS in front of a TCP backend —
//! while sidecars, anonymous streams and gateways of other namespaces get none of them.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::identity::{Issuer, tls_bootstrap};
use shoal_tests::{Envoy, Shoal, http_get, start_shoal};
use shoal_tests::{eventually, free_port};

const HOST: &str = "web.example.com";

fn mesh(ports: [u16; 3], backend: u16, certs: &std::path::Path) -> String {
    let [http_port, https_port, redirect_port] = ports;
    let (cert, key) = (
        certs.join("web.pem").display().to_string(),
        certs.join("web-key.pem").display().to_string(),
    );
    shoal_tests::service_with_endpoint("web", "app", "http", 8000, "127.0.0.2", backend)
        + &format!(
            r#"apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {http_port}, name: http, protocol: HTTP}}
    hosts: ["app/{HOST}"]
  - port: {{number: {https_port}, name: https, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: ["app/{HOST}"]
    tls: {{mode: SIMPLE, serverCertificate: "{cert}", privateKey: "{key}"}}
  - port: {{number: {redirect_port}, name: http-redirect, protocol: HTTP}}
    hosts: ["app/{HOST}"]
    tls: {{httpsRedirect: true}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: app}}
spec:
  hosts: [{HOST}]
  gateways: [istio-system/ingress]
  http:
  - route:
    - destination: {{host: web, port: {{number: 8000}}}}
"#
        )
}

/// A CA and a certificate for `HOST` it signed: (CA PEM, certificate PEM, key PEM).
fn certificates() -> (String, String, String) {
    shoal_tests::identity::ca_and_leaf("shoal gateway test CA", &[HOST]).unwrap()
}

/// Connects over TLS to `addr` with SNI `sni`, trusting `ca_pem` and presenting `client`
/// (certificate PEM, key PEM) if given, writes `request` and returns what came back.
fn tls_exchange(
    addr: SocketAddr,
    sni: &str,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    request: &[u8],
) -> anyhow::Result<String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(sni.to_string())?)?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request)?;
    let mut buf = Vec::new();
    // Envoy may close without close_notify after `connection: close`; keep what arrived,
    // but a connection refused during or right after the handshake is an error.
    if let Err(e) = tls.read_to_end(&mut buf)
        && buf.is_empty()
    {
        return Err(e.into());
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// GET / over TLS to `addr` with SNI and Host `HOST`, trusting `ca_pem`: status and body.
fn https_get(addr: SocketAddr, ca_pem: &str) -> anyhow::Result<(u16, String)> {
    https_get_as(addr, ca_pem, None)
}

/// As [`https_get`], presenting a client certificate if given.
fn https_get_as(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> anyhow::Result<(u16, String)> {
    let request = format!("GET / HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n");
    let text = tls_exchange(addr, HOST, ca_pem, client, request.as_bytes())?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

async fn gateway_traffic(delta: bool) {
    let backend_port = free_port("127.0.0.2");
    let _web = backends::http(format!("127.0.0.2:{backend_port}").parse().unwrap(), "web")
        .await
        .unwrap();
    let ports = [(); 3].map(|_| free_port("127.0.0.1"));
    let [http_port, https_port, redirect_port] = ports;
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates();
    std::fs::write(certs.path().join("web.pem"), cert).unwrap();
    std::fs::write(certs.path().join("web-key.pem"), key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        mesh(ports, backend_port, certs.path()),
    )
    .unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "router~127.0.0.1~ingress.istio-system~istio-system.svc.cluster.local";
    let meta = serde_json::json!({ "LABELS": { "istio": "ingressgateway" } });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, delta).await.unwrap() else {
        return;
    };

    // HTTP: the listener exists before its routes; wait until a request gets through.
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    eventually(Duration::from_secs(20), "gateway HTTP route", || async {
        let (status, body) = http_get(http, "/", &[("host", HOST)]).await.ok()?;
        (status == 200 && body == "web").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", envoy.proc.log()));
    let mut listeners = envoy.listeners().await.unwrap();
    listeners.sort();
    let mut want = vec![
        format!("0.0.0.0_{http_port}"),
        format!("0.0.0.0_{redirect_port}"),
        format!("127.0.0.1_{https_port}"),
    ];
    want.sort();
    assert_eq!(listeners, want, "Istio's gateway listener names");
    // A host the Gateway does not accept: Istio's 404.
    let (status, _) = http_get(http, "/", &[("host", "other.example.com")])
        .await
        .unwrap();
    assert_eq!(status, 404);

    // httpsRedirect: every request on that server is told to come back over HTTPS.
    let redirect: SocketAddr = format!("127.0.0.1:{redirect_port}").parse().unwrap();
    eventually(
        Duration::from_secs(20),
        "gateway HTTPS redirect",
        || async {
            let (status, _) = http_get(redirect, "/", &[("host", HOST)]).await.ok()?;
            (status == 301).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", envoy.proc.log()));

    // HTTPS SIMPLE: TLS terminated with the certificate files, then the same route.
    let https: SocketAddr = format!("127.0.0.1:{https_port}").parse().unwrap();
    eventually(Duration::from_secs(20), "gateway HTTPS route", || {
        let ca = ca.clone();
        async move {
            let got = tokio::task::spawn_blocking(move || https_get(https, &ca))
                .await
                .ok()?
                .ok()?;
            (got == (200, "web".to_string())).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", envoy.proc.log()));
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_http_and_https_delta() {
    gateway_traffic(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_http_and_https_sotw() {
    gateway_traffic(false).await;
}

const DB_HOST: &str = "db.example.com";

/// A `stringData` entry holding a PEM text.
fn pem_entry(key: &str, pem: &str) -> String {
    format!("  {key}: {pem:?}\n")
}

/// The credential mesh: HTTPS SIMPLE, HTTPS MUTUAL and TLS (terminated, then TCP) servers
/// whose certificates are Secrets of the gateway's namespace, plus one Secret in another
/// namespace that no gateway here may read.
fn credential_mesh(
    ports: [u16; 3],
    web: u16,
    db: u16,
    server: &(String, String, String),
    client_ca: &str,
) -> String {
    let [simple, mutual, tls] = ports;
    let (_, cert, key) = server;
    r#"# The ingress gateway's pod: what lets its service account read the credentials.
apiVersion: v1
kind: Pod
metadata: {name: ingress-0, namespace: istio-system, labels: {istio: ingressgateway}}
spec: {serviceAccountName: ingress}
---
"#
    .to_string()
        + &shoal_tests::service_with_endpoint("web", "app", "http", 8000, "127.0.0.2", web)
        + &shoal_tests::service_with_endpoint("db", "app", "tcp", 5432, "127.0.0.2", db)
        + &format!(
            r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {simple}, name: https, protocol: HTTPS}}
    hosts: ["app/{HOST}"]
    tls: {{mode: SIMPLE, credentialName: web-cert}}
  - port: {{number: {mutual}, name: https-mutual, protocol: HTTPS}}
    hosts: ["app/{HOST}"]
    tls: {{mode: MUTUAL, credentialName: web-mtls}}
  - port: {{number: {tls}, name: tls-db, protocol: TLS}}
    hosts: ["app/{DB_HOST}"]
    tls: {{mode: SIMPLE, credentialName: db-cert}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: app}}
spec:
  hosts: [{HOST}]
  gateways: [istio-system/ingress]
  http:
  - route:
    - destination: {{host: web, port: {{number: 8000}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: app}}
spec:
  hosts: [{DB_HOST}]
  gateways: [istio-system/ingress]
  tcp:
  - route:
    - destination: {{host: db, port: {{number: 5432}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: web-cert, namespace: istio-system}}
type: kubernetes.io/tls
stringData:
{tls_crt}{tls_key}---
apiVersion: v1
kind: Secret
metadata: {{name: web-mtls, namespace: istio-system}}
type: kubernetes.io/tls
stringData:
{tls_crt}{tls_key}{ca_crt}---
apiVersion: v1
kind: Secret
metadata: {{name: db-cert, namespace: istio-system}}
type: Opaque
stringData:
{generic_cert}{generic_key}---
apiVersion: v1
kind: Secret
metadata: {{name: app-cert, namespace: app}}
type: kubernetes.io/tls
stringData:
{tls_crt}{tls_key}"#,
            tls_crt = pem_entry("tls.crt", cert),
            tls_key = pem_entry("tls.key", key),
            ca_crt = pem_entry("ca.crt", client_ca),
            generic_cert = pem_entry("cert", cert),
            generic_key = pem_entry("key", key),
        )
}

fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

const GATEWAY_NODE: &str = "router~127.0.0.1~ingress.istio-system~istio-system.svc.cluster.local";

#[tokio::test(flavor = "multi_thread")]
async fn gateway_credentials_come_from_secrets_over_sds() {
    let Some(bin) = shoal_tests::env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    let web_port = free_port("127.0.0.2");
    let _web = backends::http(format!("127.0.0.2:{web_port}").parse().unwrap(), "web")
        .await
        .unwrap();
    let db_port = free_port("127.0.0.2");
    let _db = backends::tcp_echo(format!("127.0.0.2:{db_port}").parse().unwrap(), "db")
        .await
        .unwrap();
    let server =
        shoal_tests::identity::ca_and_leaf("shoal gateway server CA", &[HOST, DB_HOST]).unwrap();
    let (client_ca, client_cert, client_key) =
        shoal_tests::identity::ca_and_leaf("shoal gateway client CA", &["client.example.com"])
            .unwrap();
    let (_, stranger_cert, stranger_key) =
        shoal_tests::identity::ca_and_leaf("another CA", &["client.example.com"]).unwrap();
    let ports = [(); 3].map(|_| free_port("127.0.0.1"));
    let [simple_port, mutual_port, tls_port] = ports;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        credential_mesh(ports, web_port, db_port, &server, &client_ca),
    )
    .unwrap();
    let issuer = Issuer::new().unwrap();
    let shoal = start_shoal(dir.path(), &["--jwt-issuer", &issuer.arg()])
        .await
        .unwrap();
    let root =
        std::fs::read_to_string(shoal.data_dir().join("ca/shoal-root/root-cert.pem")).unwrap();
    // The gateway authenticates as a service account of its own namespace.
    let token = issuer.token("istio-system", "ingress").unwrap();
    let admin = local(free_port("127.0.0.1"));
    let meta = serde_json::json!({ "LABELS": { "istio": "ingressgateway" } });
    let envoy = Envoy::start_bootstrap(
        bin,
        admin,
        tls_bootstrap(GATEWAY_NODE, meta, shoal.xds_tls(), admin, &root, &token),
    )
    .await
    .unwrap();
    let server_ca = server.0.clone();

    // SIMPLE: the certificate Envoy presents came from the Secret, over SDS.
    let simple = local(simple_port);
    eventually(
        Duration::from_secs(30),
        "HTTPS with a credentialName",
        || {
            let ca = server_ca.clone();
            async move {
                let got = tokio::task::spawn_blocking(move || https_get(simple, &ca))
                    .await
                    .ok()?
                    .ok()?;
                (got == (200, "web".to_string())).then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}\n--- shoal ---\n{}", envoy.proc.log(), shoal.log()));

    // MUTUAL: served to a client with a certificate of the Secret's CA (`ca.crt`)...
    let mutual = local(mutual_port);
    let with_cert = {
        let (ca, cert, key) = (server_ca.clone(), client_cert.clone(), client_key.clone());
        move || https_get_as(mutual, &ca, Some((&cert, &key)))
    };
    eventually(
        Duration::from_secs(30),
        "MUTUAL with a client certificate",
        || {
            let f = with_cert.clone();
            async move {
                let got = tokio::task::spawn_blocking(f).await.ok()?.ok()?;
                (got == (200, "web".to_string())).then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", envoy.proc.log()));
    // ...and refused to a client without one, or with one from another CA.
    let refused = |client: Option<(String, String)>| {
        let ca = server_ca.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                https_get_as(
                    mutual,
                    &ca,
                    client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
                )
            })
            .await
            .unwrap()
        }
    };
    let anonymous = refused(None).await;
    assert!(
        anonymous.as_ref().is_err() || anonymous.as_ref().is_ok_and(|(s, _)| *s != 200),
        "a client without a certificate got {anonymous:?}"
    );
    let stranger = refused(Some((stranger_cert, stranger_key))).await;
    assert!(
        stranger.as_ref().is_err() || stranger.as_ref().is_ok_and(|(s, _)| *s != 200),
        "a client with another CA's certificate got {stranger:?}"
    );

    // TLS terminated at the gateway, then the tcp route to the TCP backend.
    let tls = local(tls_port);
    eventually(Duration::from_secs(30), "TLS terminated to TCP", || {
        let ca = server_ca.clone();
        async move {
            let got = tokio::task::spawn_blocking(move || {
                tls_exchange(tls, DB_HOST, &ca, None, b"ping\n")
            })
            .await
            .ok()?
            .ok()?;
            got.starts_with("db\nping").then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", envoy.proc.log()));

    // No key material in shoal's log.
    let log = shoal.log();
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains(client_key.lines().nth(1).unwrap()),
        "{log}"
    );
}

/// A router or sidecar node of `ns`.
fn raw_node(kind: &str, ns: &str) -> shoal_api::pb::envoy::config::core::v3::Node {
    shoal_tests::xds::node(&format!(
        "{kind}~10.0.0.9~ingress-abc.{ns}~{ns}.svc.cluster.local"
    ))
}

/// Where a proxy with `token` connects: the TLS port (tokens are refused on plaintext),
/// else the plaintext one.
fn xds_for(shoal: &Shoal, token: Option<&str>) -> shoal_tests::xds::Target {
    match token {
        Some(_) => shoal_tests::xds::Target::tls(
            shoal.xds_tls(),
            &shoal.data_dir().join("ca/shoal-root/root-cert.pem"),
        )
        .unwrap_or_else(|e| panic!("{e}")),
        None => shoal.xds.into(),
    }
}

/// The secrets a stream gets when it asks for `names`: `Ok(names received)`, or the
/// status of a refused stream.
async fn secrets_received(
    shoal: &Shoal,
    node: shoal_api::pb::envoy::config::core::v3::Node,
    token: Option<&str>,
    names: &[&str],
) -> Result<Vec<String>, tonic::Status> {
    use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    let request = DeltaDiscoveryRequest {
        node: Some(node),
        type_url: shoal_api::type_url::SECRET.into(),
        resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut s =
        shoal_tests::xds::DeltaStream::open_with_token(xds_for(shoal, token), request, token)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut got: Vec<String> = Vec::new();
    // Every response within a short while (a first one always comes).
    while let Some(resp) = s.recv(Duration::from_secs(3)).await? {
        got.extend(resp.resources.into_iter().map(|r| r.name));
    }
    got.sort();
    Ok(got)
}

/// A shoal serving [`credential_mesh`] with gateway servers on `ports` (nothing runs
/// behind them) to proxies with tokens of its issuer, with `extra` flags; and its config
/// directory.
async fn credential_shoal(ports: [u16; 3], extra: &[&str]) -> (Issuer, tempfile::TempDir, Shoal) {
    let issuer = Issuer::new().unwrap();
    let server = certificates();
    let (client_ca, _, _) =
        shoal_tests::identity::ca_and_leaf("client CA", &["client.example.com"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        credential_mesh(ports, 8000, 5432, &server, &client_ca),
    )
    .unwrap();
    let issuer_arg = issuer.arg();
    let mut args = vec!["--jwt-issuer", issuer_arg.as_str()];
    args.extend_from_slice(extra);
    let shoal = start_shoal(dir.path(), &args).await.unwrap();
    (issuer, dir, shoal)
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_only_for_gateways_of_their_namespace() {
    // app's gateway has no pod in the registry: the operator names its identity.
    let (issuer, _dir, shoal) = credential_shoal(
        [18443, 18444, 18445],
        &["--credential-readers", "app/ingress"],
    )
    .await;
    let wanted = [
        "kubernetes://web-cert",
        "kubernetes://web-mtls-cacert",
        "kubernetes://app-cert",
    ];
    let gateway_token = issuer.token("istio-system", "ingress").unwrap();

    // The gateway of istio-system: that namespace's credentials, by name, and no other's.
    let got = secrets_received(
        &shoal,
        raw_node("router", "istio-system"),
        Some(&gateway_token),
        &wanted,
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        ["kubernetes://web-cert", "kubernetes://web-mtls-cacert"],
        "{}",
        shoal.log()
    );

    // A sidecar with the very same identity: nothing of them.
    let got = secrets_received(
        &shoal,
        raw_node("sidecar", "istio-system"),
        Some(&gateway_token),
        &wanted,
    )
    .await
    .unwrap();
    assert!(got.is_empty(), "a sidecar got {got:?}");

    // A workload of istio-system that claims to be a gateway but runs none: nothing.
    let intruder = issuer.token("istio-system", "intruder").unwrap();
    let got = secrets_received(
        &shoal,
        raw_node("router", "istio-system"),
        Some(&intruder),
        &wanted,
    )
    .await
    .unwrap();
    assert!(got.is_empty(), "a self-declared gateway got {got:?}");

    // An anonymous gateway (plaintext, no token): no secret at all.
    let got = secrets_received(&shoal, raw_node("router", "istio-system"), None, &wanted)
        .await
        .unwrap();
    assert!(got.is_empty(), "an anonymous gateway got {got:?}");

    // A gateway of another namespace gets its own namespace's credential only...
    let app_token = issuer.token("app", "ingress").unwrap();
    let got = secrets_received(&shoal, raw_node("router", "app"), Some(&app_token), &wanted)
        .await
        .unwrap();
    assert_eq!(got, ["kubernetes://app-cert"]);
    // ...and may not claim the namespace whose credentials it wants.
    let err = secrets_received(
        &shoal,
        raw_node("router", "istio-system"),
        Some(&app_token),
        &wanted,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_whose_pod_appears_later_gets_its_credentials() {
    use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    let (issuer, dir, shoal) = credential_shoal([18446, 18447, 18448], &[]).await;
    // The gateway's stream starts before its Pod is in the registry (a Kubernetes watch
    // can lag the pod's start): no credentials yet, and the stream stays open.
    let token = issuer.token("istio-system", "late").unwrap();
    let request = DeltaDiscoveryRequest {
        node: Some(raw_node("router", "istio-system")),
        type_url: shoal_api::type_url::SECRET.into(),
        resource_names_subscribe: vec!["kubernetes://web-cert".into()],
        ..Default::default()
    };
    let mut stream = shoal_tests::xds::DeltaStream::open_with_token(
        xds_for(&shoal, Some(&token)),
        request,
        Some(&token),
    )
    .await
    .unwrap();
    let mut got: Vec<String> = Vec::new();
    while let Some(resp) = stream.recv(Duration::from_secs(2)).await.unwrap() {
        got.extend(resp.resources.into_iter().map(|r| r.name));
    }
    assert!(
        got.is_empty(),
        "credentials before the gateway runs: {got:?}"
    );

    // Its Pod appears: the same stream gets the credential, without reconnecting.
    std::fs::write(
        dir.path().join("late.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: late-0, namespace: istio-system, labels: {istio: ingressgateway}}\nspec: {serviceAccountName: late}\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !got.iter().any(|n| n == "kubernetes://web-cert") {
        assert!(
            std::time::Instant::now() < deadline,
            "no credential after the Pod appeared: {got:?}\n{}",
            shoal.log()
        );
        if let Some(resp) = stream.recv(Duration::from_secs(1)).await.unwrap() {
            got.extend(resp.resources.into_iter().map(|r| r.name));
        }
    }
}
