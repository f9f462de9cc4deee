//! An HTTPS admission webhook server for tests: its own CA (rcgen), a serving certificate for
//! the names given, and a closure that answers each AdmissionReview request. It records every
//! review it receives with the path and query it was posted to.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

/// Answers one review: gets the path (without query) and `request`, returns the `response`
/// fields (the server sets `uid`).
pub type Answer = dyn Fn(&str, &Value) -> Value + Send + Sync;

/// A certificate authority for test servers.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The `caBundle` of a webhook configuration trusting this CA.
    pub fn bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.pem)
    }

    /// A serving certificate chain and key for `names` (DNS names or IP addresses).
    fn leaf(
        &self,
        names: &[&str],
    ) -> Result<(
        Vec<pki_types::CertificateDer<'static>>,
        pki_types::PrivateKeyDer<'static>,
    )> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            vec![pki_types::CertificateDer::from(cert.der().to_vec())],
            pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
                key.serialize_der(),
            )),
        ))
    }
}

pub struct WebhookServer {
    pub addr: SocketAddr,
    /// `(path and query, request)` of every review received.
    pub reviews: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookServer {
    /// Serves on 127.0.0.1 with a certificate of `ca` for `names`.
    pub async fn start(
        ca: &Ca,
        names: &[&str],
        answer: impl Fn(&str, &Value) -> Value + Send + Sync + 'static,
    ) -> Result<Self> {
        let (chain, key) = ca.leaf(names)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let reviews = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let seen = reviews.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, answer, seen) = (acceptor.clone(), answer.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (answer, seen) = (answer.clone(), seen.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let pq = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let review: Value = body
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or(Value::Null);
                            let request = review.get("request").cloned().unwrap_or(Value::Null);
                            if let Ok(mut s) = seen.lock() {
                                s.push((pq, request.clone()));
                            }
                            let mut response = answer(&path, &request);
                            response["uid"] = request.get("uid").cloned().unwrap_or(Value::Null);
                            let out = json!({
                                "apiVersion": "admission.k8s.io/v1",
                                "kind": "AdmissionReview",
                                "response": response,
                            });
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from(out.to_string())));
                            resp.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(WebhookServer {
            addr,
            reviews,
            task,
        })
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.reviews.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// An allowing response with a JSON patch.
pub fn patch_response(ops: &Value, warnings: &[&str]) -> Value {
    json!({
        "allowed": true,
        "patchType": "JSONPatch",
        "patch": base64::engine::general_purpose::STANDARD.encode(ops.to_string()),
        "warnings": warnings,
    })
}

/// The JSON patch that sets one label, whether or not the object has labels yet.
pub fn add_label(object: &Value, key: &str, value: &str) -> Value {
    if object
        .pointer("/metadata/labels")
        .is_some_and(Value::is_object)
    {
        let escaped = key.replace('~', "~0").replace('/', "~1");
        json!([{"op": "add", "path": format!("/metadata/labels/{escaped}"), "value": value}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {key: value}}])
    }
}

/// A free local port nothing listens on (for a webhook that is down).
pub async fn closed_port() -> Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    l.local_addr().context("local addr")
}
