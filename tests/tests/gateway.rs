//! A real Envoy as an Istio ingress gateway (`router~…` node, labels
//! `istio: ingressgateway`): a `Gateway` with an HTTP server and an HTTPS `SIMPLE` server
//! (certificate files written here), an `httpsRedirect` server, a VirtualService bound to it, and traffic through both
//! to an HTTP backend; hosts the Gateway does not accept get Istio's 404.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::proc::{Envoy, Shoal, http_get};
use shoal_tests::{eventually, free_port};

const HOST: &str = "web.example.com";

fn mesh(ports: [u16; 3], backend: u16, certs: &std::path::Path) -> String {
    let [http_port, https_port, redirect_port] = ports;
    let (cert, key) = (
        certs.join("web.pem").display().to_string(),
        certs.join("web-key.pem").display().to_string(),
    );
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: app}}
spec:
  ports:
  - {{name: http, port: 8000, targetPort: {backend}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: app, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {backend}}}]
endpoints:
- addresses: [127.0.0.2]
---
apiVersion: networking.istio.io/v1beta1
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
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "shoal gateway test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![HOST.to_string()]).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// GET / over TLS to `addr` with SNI and Host `HOST`, trusting `ca_pem`: status and body.
fn https_get(addr: SocketAddr, ca_pem: &str) -> anyhow::Result<(u16, String)> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(HOST)?)?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET / HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut buf = Vec::new();
    // Envoy may close without close_notify after `connection: close`; keep what arrived.
    let _ = tls.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
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
    let shoal = Shoal::start(dir.path(), &[]).await.unwrap();
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
