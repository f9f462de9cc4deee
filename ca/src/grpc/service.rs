//! `istio.v1.auth.IstioCertificateService/CreateCertificate` as a tonic service without
//! code generation.
//!
//! Per request: authenticate (bearer JWT, or else the TLS client certificate the acceptor
//! put in [`PeerCertificates`]), authorize the identity (own, or impersonated by a node
//! proxy for a pod on its node), then sign. Authentication and signing run on the blocking
//! pool: an RSA CA key or a burst of reconnecting proxies must not stall the async workers
//! that serve xDS.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prost_types::value::Kind;
use rustls_pki_types::CertificateDer;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::auth::{AuthError, Authorizer, Caller, JwtAuthenticator, NodeDirectory};
use crate::authority::CertificateAuthority;
use crate::error::CaError;
use crate::grpc::proto::{IstioCertificateRequest, IstioCertificateResponse};
use crate::identity::Identity;
use crate::monitoring;

/// Fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "istio.v1.auth.IstioCertificateService";
/// HTTP/2 path of the one method.
pub const CREATE_CERTIFICATE_PATH: &str =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";
/// Metadata key (in the request's `Struct`) by which a node proxy names the workload.
pub const IMPERSONATED_IDENTITY_KEY: &str = "ImpersonatedIdentity";
/// Largest request message decoded: the CSR limit plus room for metadata.
const MAX_REQUEST_BYTES: usize = 128 * 1024;

/// The peer's verified TLS client certificates (leaf first). Whatever terminates TLS in
/// front of this service (e.g. a tower layer mapping tonic's peer certificates) inserts
/// this into the HTTP request extensions; without it only bearer tokens authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificates(pub Vec<CertificateDer<'static>>);

/// The Istio CSR service.
#[derive(Clone)]
pub struct CertificateService {
    inner: Arc<Inner>,
}

struct Inner {
    ca: Arc<CertificateAuthority>,
    jwt: Arc<JwtAuthenticator>,
    authorizer: Authorizer,
    nodes: Arc<dyn NodeDirectory>,
}

impl CertificateService {
    pub fn new(
        ca: Arc<CertificateAuthority>,
        jwt: Arc<JwtAuthenticator>,
        authorizer: Authorizer,
        nodes: Arc<dyn NodeDirectory>,
    ) -> Self {
        CertificateService {
            inner: Arc::new(Inner {
                ca,
                jwt,
                authorizer,
                nodes,
            }),
        }
    }

    /// Handles one `CreateCertificate` call (also callable directly, e.g. in tests).
    pub async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let bearer = bearer_token(&request)?;
        let peer = request.extensions().get::<PeerCertificates>().cloned();
        let message = request.into_inner();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.handle(bearer, peer, message))
            .await
            .map_err(|_| Status::internal("certificate issuance failed"))?
            .map(Response::new)
    }
}

impl Inner {
    fn handle(
        &self,
        bearer: Option<String>,
        peer: Option<PeerCertificates>,
        request: IstioCertificateRequest,
    ) -> Result<IstioCertificateResponse, Status> {
        monitoring::csr_received();
        let caller = self.authenticate(bearer, peer).map_err(|e| {
            monitoring::authentication_failed();
            auth_status(e)
        })?;
        let impersonated = impersonated_identity(&request)?;
        let identity = self
            .authorizer
            .authorize(&caller, impersonated.as_ref(), self.nodes.as_ref())
            .map_err(|e| {
                tracing::warn!(caller = %caller.identity, error = %e, "impersonation refused");
                monitoring::authentication_failed();
                auth_status(e)
            })?;
        let ttl = Duration::from_secs(u64::try_from(request.validity_duration).unwrap_or(0));
        let issued = self
            .ca
            .sign_csr_for_caller(&caller, &request.csr, &identity, ttl)
            .map_err(|e| {
                monitoring::sign_failed(&e);
                ca_status(&e)
            })?;
        monitoring::issued();
        Ok(IstioCertificateResponse {
            cert_chain: issued.cert_chain,
        })
    }

    fn authenticate(
        &self,
        bearer: Option<String>,
        peer: Option<PeerCertificates>,
    ) -> Result<Caller, AuthError> {
        // A token, when sent, is the credential: a bad token is not rescued by a certificate.
        match (bearer, peer) {
            (Some(token), _) => self.jwt.authenticate(&token),
            (None, Some(PeerCertificates(chain))) if !chain.is_empty() => {
                self.ca.authenticate_client_cert(&chain)
            }
            _ => Err(AuthError::MissingCredentials),
        }
    }
}

/// The bearer token of the `authorization` metadata, if any.
fn bearer_token<T>(request: &Request<T>) -> Result<Option<String>, Status> {
    let Some(value) = request.metadata().get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| auth_status(AuthError::MalformedToken("non-ASCII authorization".into())))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            auth_status(AuthError::MalformedToken(
                "authorization is not \"Bearer <token>\"".into(),
            ))
        })?;
    Ok(Some(token.to_string()))
}

/// The `ImpersonatedIdentity` metadata entry, if present.
fn impersonated_identity(request: &IstioCertificateRequest) -> Result<Option<Identity>, Status> {
    let Some(value) = request
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(IMPERSONATED_IDENTITY_KEY))
    else {
        return Ok(None);
    };
    match &value.kind {
        Some(Kind::StringValue(uri)) if uri.is_empty() => Ok(None),
        Some(Kind::StringValue(uri)) => Identity::parse(uri).map(Some).map_err(|e| {
            count_refusal("invalid_impersonated_identity");
            Status::invalid_argument(format!("{IMPERSONATED_IDENTITY_KEY}: {e}"))
        }),
        _ => {
            count_refusal("invalid_impersonated_identity");
            Err(Status::invalid_argument(format!(
                "{IMPERSONATED_IDENTITY_KEY} must be a string"
            )))
        }
    }
}

fn auth_status(error: AuthError) -> Status {
    count_refusal(error.reason());
    if matches!(error, AuthError::InvalidConfig(_)) {
        tracing::error!(%error, "authenticator misconfigured");
        return Status::internal("certificate issuance failed");
    }
    tracing::debug!(%error, "caller refused");
    if error.is_permission_denied() {
        Status::permission_denied(error.to_string())
    } else {
        Status::unauthenticated(error.to_string())
    }
}

/// Refusals are already counted and logged by the CA.
fn ca_status(error: &CaError) -> Status {
    match error {
        CaError::CsrIdentityMismatch { .. } => Status::permission_denied(error.to_string()),
        e if e.is_refusal() => Status::invalid_argument(error.to_string()),
        _ => Status::internal("certificate issuance failed"),
    }
}

fn count_refusal(reason: &'static str) {
    metrics::counter!("shoal_ca_refused_total", "reason" => reason).increment(1);
}

#[derive(Clone)]
struct CreateCertificate(CertificateService);

impl tonic::server::UnaryService<IstioCertificateRequest> for CreateCertificate {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<Response<IstioCertificateResponse>, Status>;

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.create_certificate(request).await })
    }
}

impl NamedService for CertificateService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for CertificateService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CREATE_CERTIFICATE_PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let method = CreateCertificate(self.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}
