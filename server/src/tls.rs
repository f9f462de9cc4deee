//! The TLS xDS listener (Istio's 15012): a serving certificate from shoal's own CA, renewed
//! and swapped without a restart, and optional client certificates, which are verified
//! against the trust bundle and handed to the services as [`PeerCertificates`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::client::ResolvesClientCert;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
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

/// The DNS name replicas verify each other by (every serving certificate carries it; a
/// workload certificate never has a DNS name, so no workload can pose as a replica).
pub const REPLICA_NAME: &str = "shoal";

/// One issuance: everything derived from the current serving certificate and bundle.
struct Material {
    /// The xDS port: client certificates optional.
    xds: Arc<ServerConfig>,
    /// Replica links: client certificates required.
    links: Arc<ServerConfig>,
    /// The admission webhooks (the API server calls them): no client certificate, HTTP/2
    /// or HTTP/1.1.
    webhook: Arc<ServerConfig>,
    key: Arc<CertifiedKey>,
    verifier: Arc<WebPkiServerVerifier>,
    renew_at: std::time::SystemTime,
    bundle: Vec<String>,
}

/// The current TLS configuration, swapped on renewal or a trust bundle change.
pub struct ServingTls {
    ca: Arc<CertificateAuthority>,
    names: Vec<String>,
    material: ArcSwap<Material>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServingTls {
    pub fn new(ca: Arc<CertificateAuthority>, mut names: Vec<String>) -> Result<Self, TlsError> {
        if !names.iter().any(|n| n == REPLICA_NAME) {
            names.push(REPLICA_NAME.to_string());
        }
        let material = build(&ca, &names)?;
        Ok(ServingTls {
            ca,
            names,
            material: ArcSwap::from_pointee(material),
        })
    }

    /// The xDS port's configuration (client certificates optional).
    pub fn current(&self) -> Arc<ServerConfig> {
        self.material.load().xds.clone()
    }

    /// The replica links' server configuration (a client certificate required).
    pub fn links(&self) -> Arc<ServerConfig> {
        self.material.load().links.clone()
    }

    /// The trust bundle (every root) as PEM: what clients of the serving certificate trust.
    pub fn trust_bundle_pem(&self) -> String {
        self.ca.trust_bundle().concat()
    }

    /// The admission webhooks' server configuration.
    pub fn webhook(&self) -> Arc<ServerConfig> {
        self.material.load().webhook.clone()
    }

    /// A client configuration for replica links: presents the current serving certificate
    /// and verifies the peer against the current bundle as [`REPLICA_NAME`]; both follow
    /// renewals and rotations without being rebuilt.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        // No ALPN here: the HTTP connectors set it for the protocol they speak.
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Current(self.clone())))
            .with_client_cert_resolver(Arc::new(Current(self.clone())));
        Ok(Arc::new(config))
    }

    /// Renews the serving certificate past half its life, or at once when the trust bundle
    /// changed; new connections use the new configuration, open ones keep theirs.
    pub fn maintain(&self) {
        let bundle = self.ca.trust_bundle();
        let m = self.material.load();
        if std::time::SystemTime::now() < m.renew_at && m.bundle == bundle {
            return;
        }
        match build(&self.ca, &self.names) {
            Ok(material) => {
                self.material.store(Arc::new(material));
                tracing::info!("serving certificate renewed");
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the serving certificate"),
        }
    }
}

/// Delegates to whatever [`ServingTls`] holds now.
#[derive(Debug)]
struct Current(Arc<ServingTls>);

impl std::fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingTls")
            .field("names", &self.names)
            .finish()
    }
}

impl ResolvesClientCert for Current {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material.load().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ServerCertVerifier for Current {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Peers are dialled by address; they are verified as replicas by name instead.
        let name = ServerName::try_from(REPLICA_NAME)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.0.material.load().verifier.verify_server_cert(
            end_entity,
            intermediates,
            &name,
            ocsp,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material
            .load()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material
            .load()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.material.load().verifier.supported_verify_schemes()
    }
}

fn build(ca: &CertificateAuthority, names: &[String]) -> Result<Material, TlsError> {
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
    let roots = Arc::new(roots);
    let signing = provider().key_provider.load_private_key(key.clone_key())?;
    let certified = Arc::new(CertifiedKey::new(chain.clone(), signing));
    // The xDS port: client certificates are optional (a proxy may authenticate with a
    // token instead); whoever presents one must present a valid one.
    let optional = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut xds = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(optional)
        .with_single_cert(chain.clone(), key.clone_key())?;
    xds.alpn_protocols = vec![b"h2".to_vec()];
    // Replica links: only holders of a certificate from this CA get through the handshake
    // (the caller then checks it is a replica's).
    let required = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut links = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(required)
        .with_single_cert(chain.clone(), key.clone_key())?;
    links.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut webhook = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    webhook.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let now = std::time::SystemTime::now();
    let renew_at = now + issued.not_after.duration_since(now).unwrap_or_default() / 2;
    Ok(Material {
        xds: Arc::new(xds),
        links: Arc::new(links),
        webhook: Arc::new(webhook),
        key: certified,
        verifier,
        renew_at,
        bundle,
    })
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

/// Which TLS port a [`TlsListener`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Replica links (Raft RPCs): mTLS with a client certificate from this CA that carries
    /// shoal's own identity; anything else is dropped after the handshake.
    Links,
    /// The admission webhooks: server authentication only.
    Webhook,
}

/// Accepts TLS connections for axum, handshakes off the accept loop.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl TlsListener {
    pub fn new(
        listener: TcpListener,
        tls: Arc<ServingTls>,
        port: Port,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
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
                if tx.is_closed() {
                    return;
                }
                let _ = tcp.set_nodelay(true);
                let (tx, tls) = (tx.clone(), tls.clone());
                tokio::spawn(async move {
                    let config = match port {
                        Port::Links => tls.links(),
                        Port::Webhook => tls.webhook(),
                    };
                    let acceptor = TlsAcceptor::from(config);
                    let stream = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        _ => {
                            if port == Port::Links {
                                metrics::counter!("shoal_link_refused_total", "reason" => "handshake")
                                    .increment(1);
                            }
                            tracing::debug!(%peer, ?port, "TLS handshake failed");
                            return;
                        }
                    };
                    let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
                    if port == Port::Links && !tls.is_replica(chain) {
                        metrics::counter!("shoal_link_refused_total", "reason" => "identity")
                            .increment(1);
                        tracing::warn!(%peer, "refused a link from a non-replica certificate");
                        return;
                    }
                    let _ = tx.send((stream, peer)).await;
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor is gone: nothing will ever come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl ServingTls {
    /// Whether a verified client chain belongs to a replica (shoal's own identity).
    pub fn is_replica(&self, chain: &[CertificateDer<'_>]) -> bool {
        self.ca
            .authenticate_client_cert(chain)
            .is_ok_and(|c| c.identity == *self.ca.server_identity())
    }
}
