//! Every outbound HTTP call shoal makes — JWKS and OpenID discovery, `shoal status`, the
//! fleet view of `/debug/syncz` — goes through this one client and its limits: redirects
//! followed a few times (each `Location` resolved against the request's URL as RFC 3986
//! says, by the `url` crate), a cap on the body, a timeout per request, TLS verified
//! against the system's roots plus any the operator adds, plain HTTP where asked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use url::Url;

/// Limits of a client.
#[derive(Debug, Clone)]
pub struct Limits {
    /// One request, from connecting to the last byte of the body.
    pub timeout: Duration,
    /// A larger body is refused.
    pub max_body: usize,
    /// Redirects followed per call.
    pub max_redirects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            max_body: 1 << 20,
            max_redirects: 3,
        }
    }
}

/// Why a call failed. Every variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0} is not an http(s) URL")]
    BadUrl(String),
    #[error("GET {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("GET {url}: HTTP {status}{}", body_excerpt(body))]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("GET {url}: more than {max} redirects")]
    TooManyRedirects { url: String, max: usize },
    #[error("TLS roots: {0}")]
    Roots(String),
}

fn body_excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let cut: String = body.chars().take(200).collect();
    format!(": {cut}")
}

type Inner = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// An HTTP(S) client with [`Limits`]. Cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct HttpClient {
    inner: Inner,
    limits: Limits,
}

impl HttpClient {
    /// A client for shoal's own admin servers (`http://`): it verifies no TLS server, so
    /// it reads no trust store.
    pub fn plaintext(limits: Limits) -> Result<HttpClient, HttpError> {
        HttpClient::with_roots(rustls::RootCertStore::empty(), limits)
    }

    /// A client trusting the system's roots and the PEM files `extra_roots`.
    pub fn new(extra_roots: &[PathBuf], limits: Limits) -> Result<HttpClient, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "skipping a system root certificate");
        }
        roots.add_parsable_certificates(native.certs);
        for path in extra_roots {
            let pem = std::fs::read(path)
                .map_err(|e| HttpError::Roots(format!("{}: {e}", path.display())))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| HttpError::Roots(format!("{}: {e}", path.display())))?;
            roots.add_parsable_certificates(certs);
        }
        if roots.is_empty() {
            tracing::warn!("no TLS roots: https servers cannot be verified");
        }
        HttpClient::with_roots(roots, limits)
    }

    fn with_roots(roots: rustls::RootCertStore, limits: Limits) -> Result<HttpClient, HttpError> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(limits.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(https),
            limits,
        })
    }

    /// GETs `url`, following redirects; the body of the final 2xx answer.
    pub async fn get(&self, url: &str, accept: &str) -> Result<Bytes, HttpError> {
        let mut url = parse(url)?;
        for _ in 0..=self.limits.max_redirects {
            let (status, location, body) = self.once(&url, accept).await?;
            if status.is_redirection() {
                let Some(location) = location else {
                    return Err(HttpError::Transport {
                        url: url.to_string(),
                        reason: format!("HTTP {status} without a Location"),
                    });
                };
                url = resolve(&url, &location)?;
                continue;
            }
            if !status.is_success() {
                return Err(HttpError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            return Ok(body);
        }
        Err(HttpError::TooManyRedirects {
            url: url.to_string(),
            max: self.limits.max_redirects,
        })
    }

    /// One request: status, `Location`, body (read whole, within the limits).
    async fn once(
        &self,
        url: &Url,
        accept: &str,
    ) -> Result<(http::StatusCode, Option<String>, Bytes), HttpError> {
        let transport = |reason: String| HttpError::Transport {
            url: url.to_string(),
            reason,
        };
        let req = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, accept)
            .header(http::header::USER_AGENT, "shoal")
            .body(Empty::new())
            .map_err(|e| transport(e.to_string()))?;
        let timeout = self.limits.timeout;
        let exchange = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| transport(format!("{e}")))?;
            let status = resp.status();
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            let body = Limited::new(resp.into_body(), self.limits.max_body)
                .collect()
                .await
                .map_err(|e| transport(format!("reading the body: {e}")))?
                .to_bytes();
            Ok((status, location, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| transport(format!("no complete answer within {timeout:?}")))?
    }
}

/// An absolute http(s) URL with a host.
fn parse(url: &str) -> Result<Url, HttpError> {
    let parsed = Url::parse(url).map_err(|_| HttpError::BadUrl(url.to_string()))?;
    checked(parsed)
}

fn checked(url: Url) -> Result<Url, HttpError> {
    if matches!(url.scheme(), "http" | "https") && url.host().is_some() {
        Ok(url)
    } else {
        Err(HttpError::BadUrl(url.to_string()))
    }
}

/// A `Location` header resolved against the URL that answered with it.
fn resolve(base: &Url, location: &str) -> Result<Url, HttpError> {
    let next = base
        .join(location)
        .map_err(|_| HttpError::BadUrl(location.to_string()))?;
    checked(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(location: &str) -> String {
        let base = Url::parse("https://idp.example/a/b/keys?x=1").unwrap_or_else(|e| panic!("{e}"));
        resolve(&base, location)
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn locations_resolve_as_rfc_3986_says() {
        assert_eq!(joined("https://cdn.example/k"), "https://cdn.example/k");
        assert_eq!(joined("/k"), "https://idp.example/k");
        assert_eq!(joined("k2"), "https://idp.example/a/b/k2");
        // The forms a hand-written resolver got wrong.
        assert_eq!(joined("//cdn.example/k"), "https://cdn.example/k");
        assert_eq!(joined("?v=2"), "https://idp.example/a/b/keys?v=2");
        assert_eq!(joined("../c/k"), "https://idp.example/a/c/k");
        // Nowhere but http(s).
        assert!(joined("file:///etc/passwd").starts_with("error"));
    }

    #[test]
    fn only_absolute_http_urls_are_fetched() {
        assert!(parse("https://idp.example/keys").is_ok());
        assert!(parse("http://127.0.0.1:8080/x").is_ok());
        for bad in ["/keys", "ftp://idp.example/k", "idp.example/keys", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
