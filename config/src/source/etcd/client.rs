//! Talking to etcd: how to connect (endpoints, TLS, user), and a consistent read of a
//! whole prefix. Plain endpoints share one balanced channel; TLS ones are reached one at a
//! time over shoal's own rustls connector, taking turns across reconnections. Every call is bounded in time: a balanced channel with no endpoint up
//! waits rather than fails, and the source must notice.

use std::fmt;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Client, ConnectOptions, GetOptions};
use thiserror::Error;

use super::key::Prefix;

/// Keys per page of a read (values are at most 1.5 MiB by etcd's default limit, so a page
/// stays well below [`MAX_MESSAGE`]).
const PAGE: i64 = 100;
/// The largest gRPC message accepted from etcd (a read page, a watch response).
pub const MAX_MESSAGE: usize = 256 << 20;
/// Keys a read takes at most: beyond, the prefix is refused rather than held.
const MAX_KEYS: usize = 1_000_000;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach etcd and which keys to read.
#[derive(Clone)]
pub struct Connection {
    /// `http://HOST:PORT` or `https://HOST:PORT`, all of one scheme.
    pub endpoints: Vec<String>,
    pub prefix: Prefix,
    /// PEM: the CA that signed etcd's serving certificate (else the system's roots).
    pub ca: Option<Vec<u8>>,
    /// PEM: a client certificate and its key, for etcd's `--client-cert-auth`.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// etcd's own authentication: user and password.
    pub user: Option<(String, String)>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("no etcd endpoint given")]
    NoEndpoints,
    #[error("etcd endpoint {0:?} is not http://HOST:PORT or https://HOST:PORT")]
    Endpoint(String),
    #[error("etcd endpoints mix http:// and https://")]
    MixedSchemes,
    #[error("{what} is given but the etcd endpoints are http://; TLS needs https://")]
    TlsOverHttp { what: &'static str },
    #[error("{what} holds no PEM {expected}")]
    Pem {
        what: &'static str,
        expected: &'static str,
    },
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    #[error("TLS to etcd: {0}")]
    Tls(String),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("etcd ended the watch")]
    WatchEnded,
    #[error("etcd's answer has no header (revision)")]
    NoHeader,
    #[error("more than {MAX_KEYS} keys below the prefix")]
    TooManyKeys,
}

impl Connection {
    /// Refuses what can never work (before any attempt, so that `serve` fails at once):
    /// endpoints that are not URLs of one scheme, TLS material over http, files without
    /// PEM.
    pub fn check(&self) -> Result<(), ConnectError> {
        if self.endpoints.is_empty() {
            return Err(ConnectError::NoEndpoints);
        }
        let mut https = None;
        for e in &self.endpoints {
            let secure = if let Some(rest) = e.strip_prefix("https://") {
                (true, rest)
            } else if let Some(rest) = e.strip_prefix("http://") {
                (false, rest)
            } else {
                return Err(ConnectError::Endpoint(e.clone()));
            };
            let authority = secure.1.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') || e.parse::<http::Uri>().is_err() {
                return Err(ConnectError::Endpoint(e.clone()));
            }
            match https {
                Some(s) if s != secure.0 => return Err(ConnectError::MixedSchemes),
                _ => https = Some(secure.0),
            }
        }
        if https == Some(false) {
            if self.ca.is_some() {
                return Err(ConnectError::TlsOverHttp { what: "--etcd-ca" });
            }
            if self.identity.is_some() {
                return Err(ConnectError::TlsOverHttp {
                    what: "--etcd-cert",
                });
            }
        }
        let has = |pem: &[u8], tags: &[&str]| {
            pem::parse_many(pem)
                .map(|blocks| blocks.iter().any(|b| tags.contains(&b.tag())))
                .unwrap_or(false)
        };
        if let Some(ca) = &self.ca
            && !has(ca, &["CERTIFICATE"])
        {
            return Err(ConnectError::Pem {
                what: "--etcd-ca",
                expected: "CERTIFICATE",
            });
        }
        if let Some((cert, key)) = &self.identity {
            if !has(cert, &["CERTIFICATE"]) {
                return Err(ConnectError::Pem {
                    what: "--etcd-cert",
                    expected: "CERTIFICATE",
                });
            }
            if !has(key, &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]) {
                return Err(ConnectError::Pem {
                    what: "--etcd-key",
                    expected: "PRIVATE KEY",
                });
            }
        }
        Ok(())
    }

    fn https(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }
}

/// A client for `connection` (with a user, this authenticates, so etcd must answer).
pub async fn connect(connection: &Connection) -> Result<Client, ConnectError> {
    connection.check()?;
    let mut options = ConnectOptions::new()
        // A dead peer is noticed within 15 s even when no event is due.
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true)
        .with_connect_timeout(Duration::from_secs(5))
        // A member cut off from its cluster's leader ends the watch instead of going quiet.
        .with_require_leader(true);
    if let Some((user, password)) = &connection.user {
        options = options
            .with_user(user.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    if connection.https() {
        let channel = tls_channel(connection)?;
        return bounded(Client::from_channel(
            etcd_client::Channel::Tonic(channel),
            Some(options),
        ))
        .await;
    }
    bounded(Client::connect(&connection.endpoints, Some(options))).await
}

/// Which endpoint the next TLS connection tries: they take turns, so a source that keeps
/// failing on one moves on to the next.
static NEXT_ENDPOINT: AtomicUsize = AtomicUsize::new(0);

/// A channel to one of the https endpoints over rustls (ring): etcd's CA (else the
/// system's roots), the client certificate when given, HTTP/2 by ALPN.
fn tls_channel(connection: &Connection) -> Result<tonic::transport::Channel, ConnectError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &connection.ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ConnectError::Tls(format!("--etcd-ca: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ConnectError::Tls(format!("--etcd-ca: {e}")))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is no reason to fail the others.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &connection.identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConnectError::Tls(format!("--etcd-cert: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| ConnectError::Tls(format!("--etcd-key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConnectError::Tls(format!("--etcd-cert/--etcd-key: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http2()
        .build();
    let n = connection.endpoints.len().max(1);
    let url = &connection.endpoints[NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed) % n];
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|_| ConnectError::Endpoint(url.clone()))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_with_connector_lazy(https))
}

/// Runs an etcd call for at most [`CALL_TIMEOUT`].
pub async fn bounded<T>(
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ConnectError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ConnectError::Timeout(CALL_TIMEOUT)),
    }
}

/// Every key below `prefix` with its value, read at one revision (page by page, each page
/// at the revision of the first), and that revision. A compaction between two pages starts
/// the read over (a few times at most).
pub async fn read_prefix(
    client: &Client,
    prefix: &Prefix,
) -> Result<(i64, Vec<(Vec<u8>, Vec<u8>)>), ConnectError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match read_pages(client, prefix).await {
            Err(ConnectError::Client(etcd_client::Error::GRpcStatus(status)))
                if attempts < 3 && status.message().contains("compacted") =>
            {
                tracing::debug!(%prefix, "etcd: compacted during the read; reading again");
            }
            other => return other,
        }
    }
}

async fn read_pages(
    client: &Client,
    prefix: &Prefix,
) -> Result<(i64, Vec<(Vec<u8>, Vec<u8>)>), ConnectError> {
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let end = prefix.range_end();
    let mut start = prefix.range();
    let mut revision = 0;
    let mut out = Vec::new();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let mut response = bounded(kv.get(start.clone(), Some(options))).await?;
        if revision == 0 {
            revision = response.header().ok_or(ConnectError::NoHeader)?.revision();
        }
        let more = response.more();
        let kvs = response.take_kvs();
        let Some(last) = kvs.last().map(|kv| kv.key().to_vec()) else {
            break;
        };
        out.extend(kvs.into_iter().map(|kv| kv.into_key_value()));
        if out.len() > MAX_KEYS {
            return Err(ConnectError::TooManyKeys);
        }
        if !more {
            break;
        }
        // The next page starts right after the last key of this one.
        start = last;
        start.push(0);
    }
    Ok((revision, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(endpoints: &[&str]) -> Connection {
        Connection {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            prefix: Prefix::new("/shoal/config"),
            ca: None,
            identity: None,
            user: None,
        }
    }

    const CERT: &[u8] = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const KEY: &[u8] = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

    #[test]
    fn endpoints_must_be_urls_of_one_scheme() {
        assert!(
            connection(&["http://127.0.0.1:2379", "http://10.0.0.1:2379"])
                .check()
                .is_ok()
        );
        assert!(connection(&["https://etcd.example:2379/"]).check().is_ok());
        for (bad, says) in [
            (vec![], "no etcd endpoint"),
            (vec!["127.0.0.1:2379"], "is not http"),
            (vec!["http://"], "is not http"),
            (vec!["http://a:1/path"], "is not http"),
            (vec!["http://a b:1"], "is not http"),
            (vec!["http://a:1", "https://b:1"], "mix"),
        ] {
            let err = connection(&bad).check().err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(says)),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn tls_material_needs_https_and_pem() {
        let mut c = connection(&["http://127.0.0.1:2379"]);
        c.ca = Some(CERT.to_vec());
        assert!(
            c.check()
                .is_err_and(|e| e.to_string().contains("--etcd-ca"))
        );
        c.endpoints = vec!["https://127.0.0.1:2379".into()];
        assert!(c.check().is_ok());
        c.ca = Some(b"not pem".to_vec());
        assert!(
            c.check()
                .is_err_and(|e| e.to_string().contains("--etcd-ca holds no PEM"))
        );
        c.ca = None;
        c.identity = Some((CERT.to_vec(), CERT.to_vec()));
        assert!(
            c.check()
                .is_err_and(|e| e.to_string().contains("--etcd-key"))
        );
        c.identity = Some((CERT.to_vec(), KEY.to_vec()));
        assert!(c.check().is_ok());
    }

    #[test]
    fn the_password_is_never_printed() {
        let mut c = connection(&["http://127.0.0.1:2379"]);
        c.user = Some(("shoal".into(), "s3cret".into()));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("shoal") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
