//! The TLS xDS listener (Istio's 15012): a serving certificate from shoal's own CA, renewed
//! and swapped without a restart, and optional client certificates, which are verified
//! against the trust bundle and handed to the services as [`PeerCertificates`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use shoal_ca::CertificateAuthority;
use shoal_ca::grpc::PeerCertificates;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// How long a serving certificate lives; it is renewed at half of that.
pub const SERVING_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("issuing the serving certificate: {0}")]
    Issue(#[from] shoal_ca::CaError),
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
    #[error("reading PEM: {0}")]
    Pem(String),
}

/// The current TLS configuration, swapped on renewal or a trust bundle change.
pub struct ServingTls {
    ca: Arc<CertificateAuthority>,
    names: Vec<String>,
    config: ArcSwap<ServerConfig>,
    bundle: parking_lot::Mutex<Vec<String>>,
    renew_at: parking_lot::Mutex<std::time::SystemTime>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServingTls {
    pub fn new(ca: Arc<CertificateAuthority>, names: Vec<String>) -> Result<Self, TlsError> {
        let (config, renew_at, bundle) = build(&ca, &names)?;
        Ok(ServingTls {
            ca,
            names,
            config: ArcSwap::from_pointee(config),
            bundle: parking_lot::Mutex::new(bundle),
            renew_at: parking_lot::Mutex::new(renew_at),
        })
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// Renews the serving certificate past half its life, or at once when the trust bundle
    /// changed; new connections use the new configuration, open ones keep theirs.
    pub fn maintain(&self) {
        let bundle = self.ca.trust_bundle();
        if std::time::SystemTime::now() < *self.renew_at.lock() && *self.bundle.lock() == bundle {
            return;
        }
        match build(&self.ca, &self.names) {
            Ok((config, renew_at, bundle)) => {
                self.config.store(Arc::new(config));
                *self.renew_at.lock() = renew_at;
                *self.bundle.lock() = bundle;
                tracing::info!("serving certificate renewed");
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the serving certificate"),
        }
    }
}

fn build(
    ca: &CertificateAuthority,
    names: &[String],
) -> Result<(ServerConfig, std::time::SystemTime, Vec<String>), TlsError> {
    let issued = ca.issue_server_cert(names, SERVING_TTL)?;
    let mut chain = Vec::new();
    for pem in issued
        .cert_chain
        .iter()
        .take(issued.cert_chain.len().saturating_sub(1).max(1))
    {
        chain.push(
            CertificateDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| TlsError::Pem(e.to_string()))?,
        );
    }
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let bundle = ca.trust_bundle();
    let mut roots = rustls::RootCertStore::empty();
    for der in ca.trust_bundle_der() {
        roots
            .add(der)
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    }
    // Client certificates are optional here: a proxy may authenticate with a token
    // instead; whoever presents one must present a valid one.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let now = std::time::SystemTime::now();
    let renew_at = now + issued.not_after.duration_since(now).unwrap_or_default() / 2;
    Ok((config, renew_at, bundle))
}

/// A TLS connection as tonic serves it, carrying the peer's certificates.
pub struct TlsConn(TlsStream<TcpStream>);

impl Connected for TlsConn {
    type ConnectInfo = PeerCertificates;

    fn connect_info(&self) -> PeerCertificates {
        let certs = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        PeerCertificates(certs)
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and completes their handshakes concurrently (a slow or hostile
/// client holds up only itself, for at most 10 s); yields the established ones.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServingTls>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let acceptor = TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(TlsConn(stream))).await;
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("shoal_tls_handshake_failures_total").increment(1);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
