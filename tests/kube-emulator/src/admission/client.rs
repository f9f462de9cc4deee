//! The HTTPS call to a webhook: one HTTP/1.1 connection per call, the server's certificate
//! verified against the webhook's `caBundle` for the name kube-apiserver verifies
//! (`NAME.NAMESPACE.svc` for a service, the URL's host otherwise), the whole exchange bounded by
//! the webhook's timeout. Errors read like the Go client's (`Post "URL": ...`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest webhook response read.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Where and how to reach one webhook.
pub(crate) struct Target {
    /// The address to connect to (a resolved service endpoint, or the URL's host and port).
    pub connect: Connect,
    /// The name the serving certificate must be valid for.
    pub server_name: ServerName<'static>,
    /// The `Host` header.
    pub authority: String,
    /// Path and query (`/inject?timeout=10s`).
    pub path_and_query: String,
    /// The URL kube-apiserver would name in its errors.
    pub url: String,
}

pub(crate) enum Connect {
    Addr(SocketAddr),
    Host(String, u16),
    /// A service with no endpoint set: every call fails.
    Unresolved(String),
}

/// A rustls client trusting exactly the PEM certificates of a `caBundle` (none when empty:
/// the emulator has no system trust store to fall back on).
pub(crate) fn tls_config(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    if !ca_pem.is_empty() {
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| format!("unable to load root certificates: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("unable to load root certificates: {e}"))?;
        }
        if roots.is_empty() {
            return Err(
                "unable to load root certificates: unable to parse bytes as PEM block".into(),
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Aborts the connection task when the call ends (or times out).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// POSTs `body` (JSON) and returns the response body of a 2xx answer.
pub(crate) async fn post(
    target: &Target,
    tls: Arc<ClientConfig>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let call = async {
        let tcp = match &target.connect {
            Connect::Addr(a) => TcpStream::connect(a)
                .await
                .map_err(|e| dial_error(&a.to_string(), &e))?,
            Connect::Host(h, p) => TcpStream::connect((h.as_str(), *p))
                .await
                .map_err(|e| dial_error(&format!("{h}:{p}"), &e))?,
            Connect::Unresolved(service) => {
                return Err(format!("no endpoints available for service {service:?}"));
            }
        };
        let stream = TlsConnector::from(tls)
            .connect(target.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("tls: failed to verify certificate: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let _conn = AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("kube-emulator: webhook connection: {e}");
            }
        }));
        let req = Request::post(target.path_and_query.as_str())
            .header(header::HOST, target.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .header(header::USER_AGENT, "kube-apiserver-admission")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(status_error(status.as_u16(), &bytes))
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(format!("Post \"{}\": {e}", target.url)),
        Err(_) => Err(format!(
            "Post \"{}\": context deadline exceeded",
            target.url
        )),
    }
}

fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: connect: {why}")
}

/// What the Go REST client reports for a non-2xx answer: a `Status` body's message, else a
/// generic sentence.
fn status_error(code: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && v.get("kind").and_then(Value::as_str) == Some("Status")
        && let Some(m) = v.get("message").and_then(Value::as_str)
    {
        return m.to_string();
    }
    if code == 500 {
        let text = String::from_utf8_lossy(body);
        let text: String = text.trim().chars().take(200).collect();
        format!("an error on the server ({text:?}) has prevented the request from succeeding")
    } else {
        format!(
            "the server responded with the status code {code} but did not return more information"
        )
    }
}
