//! Who opened a stream: a bearer token (a Kubernetes service-account token), a verified
//! client certificate, a replica vouching for the client certificate it verified, or
//! nobody (the plaintext port).

use shoal_ca::grpc::PeerCertificates;
use shoal_ca::{Caller, Identity as Spiffe};
use shoal_cache::StreamContext;
use tonic::Status;

use super::Identity;

/// How a stream reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The TLS port: callers must authenticate.
    Tls,
    /// The plaintext port: anonymous callers get config but no secrets.
    Plaintext,
}

impl Transport {
    /// The TLS listener puts the peer's certificates (maybe none) on every request.
    pub fn of(ctx: &StreamContext) -> Transport {
        if ctx.extensions.get::<PeerCertificates>().is_some() {
            Transport::Tls
        } else {
            Transport::Plaintext
        }
    }
}

impl Identity {
    /// Who opened a stream: a bearer token first, else a verified client certificate.
    /// `Ok(None)`: an anonymous caller on the plaintext port (or forwarded from one).
    pub fn authenticate(&self, ctx: &StreamContext) -> Result<Option<Caller>, Status> {
        let peer = ctx.extensions.get::<PeerCertificates>();
        // A stream forwarded by a replica (or router) over mTLS: the peer certificate is
        // the forwarder's, not the proxy's. The forwarder vouches for the client
        // certificate it verified ([`shoal_router::CALLER`]), passes a token on for us to
        // verify, or forwards an anonymous stream it accepted on a plaintext port.
        // Only this group's own replicas: under a root shared with other clusters, a
        // peer group's replica carries the same identity, but another CA issued it.
        let from_replica = peer.is_some_and(|PeerCertificates(chain)| {
            !chain.is_empty()
                && self
                    .ca
                    .authenticate_own_client_cert(chain)
                    .is_ok_and(|c| c.identity == *self.ca.server_identity())
        });
        if let Some(claim) = ctx.headers.get(shoal_router::CALLER) {
            if !from_replica {
                return Err(Status::unauthenticated(format!(
                    "{} is only accepted from a replica over mTLS",
                    shoal_router::CALLER
                )));
            }
            let identity = claim
                .to_str()
                .ok()
                .and_then(|c| Spiffe::parse(c).ok())
                .ok_or_else(|| Status::unauthenticated("malformed forwarded caller"))?;
            return Ok(Some(Caller {
                identity,
                node: None,
                pod: None,
                via: shoal_ca::CallerKind::ClientCert,
            }));
        }
        if from_replica && !ctx.headers.contains_key(http::header::AUTHORIZATION) {
            return Ok(None);
        }
        if Transport::of(ctx) == Transport::Plaintext
            && ctx.headers.contains_key(http::header::AUTHORIZATION)
        {
            return Err(plaintext_token());
        }
        if let Some(value) = ctx.headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| Status::unauthenticated("authorization is not a Bearer token"))?;
            return self
                .jwt
                .authenticate(token.trim())
                .map(Some)
                .map_err(|e| Status::unauthenticated(e.to_string()));
        }
        if let Some(PeerCertificates(chain)) = peer
            && !chain.is_empty()
        {
            return self
                .ca
                .authenticate_client_cert(chain)
                .map(Some)
                .map_err(|e| Status::unauthenticated(e.to_string()));
        }
        match Transport::of(ctx) {
            Transport::Tls => Err(Status::unauthenticated(
                "the TLS xDS port needs a client certificate or \"authorization: Bearer <token>\"",
            )),
            Transport::Plaintext => Ok(None),
        }
    }
}

/// Why a token on the plaintext port is refused (logged, and the stream's status).
pub const PLAINTEXT_TOKEN: &str = "a token was sent to the plaintext xDS port, which serves config only and never \
     identities or secrets (the token and any key would travel in the clear): connect to \
     the TLS xDS port (--xds-tls-addr, Istio's 15012) to authenticate";

/// The refusal of a token sent over the plaintext port, logged with its reason.
pub fn plaintext_token() -> Status {
    tracing::warn!("refused a stream: {PLAINTEXT_TOKEN}");
    metrics::counter!("shoal_xds_plaintext_tokens_refused_total").increment(1);
    Status::unauthenticated(PLAINTEXT_TOKEN)
}

/// A gRPC interceptor for the plaintext port: a request carrying credentials is refused
/// before any service sees it — also a stream the replica's router would forward to its
/// owner over mTLS, where the token would otherwise be honoured.
pub fn refuse_credentials_in_clear(
    request: tonic::Request<()>,
) -> Result<tonic::Request<()>, Status> {
    if request.metadata().contains_key("authorization") {
        return Err(plaintext_token());
    }
    Ok(request)
}
