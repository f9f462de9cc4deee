//! An east-west gateway through a real Envoy: an AUTO_PASSTHROUGH server passes a TLS
//! connection, unopened, to the service its SNI names in Istio's form
//! `outbound_.PORT_.SUBSET_.HOST`, with no VirtualService.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::{Envoy, start_shoal};
use shoal_tests::{eventually, free_port, free_port_on};

fn mesh(gateway: u16, backend: u16) -> String {
    let service = |name: &str, ip: &str| {
        shoal_tests::service_with_endpoint(name, "app", "tls", backend, ip, backend)
    };
    service("alpha", "127.0.0.2")
        + &service("beta", "127.0.0.3")
        + &format!(
            r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: cross-network, namespace: istio-system}}
spec:
  selector: {{istio: eastwestgateway}}
  servers:
  - port: {{number: {gateway}, name: tls, protocol: TLS}}
    hosts: ["*.local"]
    tls: {{mode: AUTO_PASSTHROUGH}}
"#
        )
}

/// A TLS ClientHello naming `sni`, as bytes (the gateway only reads its SNI).
fn client_hello(sni: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Sends a ClientHello for `sni` through the gateway; what the backend answered first (its
/// name), or `None` when the gateway closed the connection.
pub(crate) fn through(gateway: SocketAddr, sni: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(&gateway, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(&client_hello(sni)).ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split('\n')
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_passthrough_routes_by_istio_sni() {
    let gateway_port = free_port("127.0.0.1");
    let backend = free_port_on(&["127.0.0.2", "127.0.0.3"]);
    let _a = backends::tcp_echo(format!("127.0.0.2:{backend}").parse().unwrap(), "alpha")
        .await
        .unwrap();
    let _b = backends::tcp_echo(format!("127.0.0.3:{backend}").parse().unwrap(), "beta")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh(gateway_port, backend)).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "router~127.0.0.1~eastwest-0.istio-system~istio-system.svc.cluster.local";
    let meta = serde_json::json!({ "LABELS": { "istio": "eastwestgateway" } });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    let gateway: SocketAddr = format!("127.0.0.1:{gateway_port}").parse().unwrap();
    let sni = |svc: &str| format!("outbound_.{backend}_._.{svc}.app.svc.cluster.local");
    let first = eventually(Duration::from_secs(20), "the passthrough listener", || {
        let sni = sni("alpha");
        async move {
            tokio::task::spawn_blocking(move || through(gateway, &sni))
                .await
                .ok()?
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.proc.log()));
    assert_eq!(first, "alpha");
    let beta = sni("beta");
    let got = tokio::task::spawn_blocking(move || through(gateway, &beta))
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("beta"));
    // An SNI naming no exposed cluster gets nowhere.
    let unknown = format!("outbound_.{backend}_._.gamma.app.svc.cluster.local");
    let got = tokio::task::spawn_blocking(move || through(gateway, &unknown))
        .await
        .unwrap();
    assert_eq!(got, None);
}
