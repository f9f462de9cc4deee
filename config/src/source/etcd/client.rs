//! Talking to etcd: how to connect (endpoints, TLS, user), and a consistent read of a
//! whole prefix. Every call is bounded in time: a balanced channel with no endpoint up
//! waits rather than fails, and the source must notice.

use std::fmt;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
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
        let mut tls = TlsOptions::new();
        tls = match &connection.ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            None => tls.with_native_roots(),
        };
        if let Some((cert, key)) = &connection.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        options = options.with_tls(tls);
    }
    bounded(Client::connect(&connection.endpoints, Some(options))).await
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
