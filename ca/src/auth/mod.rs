//! Who is asking, and what they may have certified.
//!
//! Authentication yields a [`Caller`] from a Kubernetes service-account JWT
//! ([`JwtAuthenticator`]) or from a still-valid workload certificate
//! ([`crate::CertificateAuthority::authenticate_client_cert`]). Authorization
//! ([`Authorizer`]) then decides which identity the certificate may name: the caller's own,
//! or — for node proxies such as ztunnel — a workload running on the caller's node.

pub mod authorize;
pub(crate) mod client_cert;
pub mod jwt;

use thiserror::Error;

use crate::identity::{Identity, IdentityError};

pub use authorize::{Authorizer, NodeDirectory};
pub use jwt::{IssuerKeys, JwtAuthenticator, TrustedIssuer};

/// How a caller proved its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKind {
    Jwt,
    ClientCert,
    /// A token the Kubernetes API server vouched for (TokenReview).
    TokenReview,
}

/// Verifies a bearer token by asking who issued it (Kubernetes TokenReview), for tokens of
/// issuers shoal has no keys of. Called on a blocking thread; implementations cache.
pub trait TokenReviewer: Send + Sync {
    fn review(&self, token: &str) -> Result<Caller, AuthError>;
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub identity: Identity,
    /// The Kubernetes node the caller's pod runs on, when its token says so (bound
    /// service-account tokens carry `kubernetes.io.node.name`). Needed to impersonate.
    pub node: Option<String>,
    /// The caller's pod, when its token says so; for audit logs only.
    pub pod: Option<String>,
    pub via: CallerKind,
}

/// Authentication and authorization failures.
///
/// Messages say what was wrong with the credential without repeating it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("no credentials: send \"authorization: Bearer <token>\" or a client certificate")]
    MissingCredentials,
    #[error("token is {len} bytes, more than the {max} allowed")]
    TokenTooLarge { len: usize, max: usize },
    #[error("malformed token: {0}")]
    MalformedToken(String),
    #[error(
        "token algorithm {0:?} is not accepted (use RS256/RS384/RS512/PS256/PS384/PS512/ES256/ES384)"
    )]
    UnsupportedAlgorithm(String),
    #[error("token issuer {0:?} is not trusted")]
    UnknownIssuer(String),
    #[error("no key of the issuer matches the token's kid/alg")]
    NoMatchingKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token issuer does not match")]
    WrongIssuer,
    #[error("token lacks required claim {0:?}")]
    MissingClaim(String),
    #[error("token review refused the token: {0}")]
    ReviewRefused(String),
    #[error("token review failed (the API server could not be asked): {0}")]
    ReviewFailed(String),
    #[error("token names no Kubernetes service account")]
    NoServiceAccount,
    #[error("token's kubernetes.io claim and sub name different service accounts")]
    ConflictingServiceAccount,
    #[error("invalid identity in credential: {0}")]
    InvalidIdentity(#[from] IdentityError),
    #[error("malformed client certificate: {0}")]
    ClientCertMalformed(String),
    #[error("client certificate is not trusted: {0}")]
    ClientCertUntrusted(String),
    #[error("client certificate identity: {0}")]
    ClientCertIdentity(String),
    #[error("{caller} may not request certificates for other identities (not a node proxy)")]
    NotANodeProxy { caller: String },
    #[error("the caller's node is unknown (its token has no kubernetes.io node claim)")]
    CallerNodeUnknown,
    #[error("{identity} does not run on node {node}")]
    WorkloadNotOnNode { node: String, identity: String },
    #[error("{identity} is outside the caller's trust domain")]
    ForeignTrustDomain { identity: String },
    #[error("invalid authenticator configuration: {0}")]
    InvalidConfig(String),
}

impl AuthError {
    /// A stable label for the `reason` of `shoal_ca_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => "missing_credentials",
            AuthError::TokenTooLarge { .. } => "token_too_large",
            AuthError::MalformedToken(_) => "malformed_token",
            AuthError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            AuthError::UnknownIssuer(_) => "unknown_issuer",
            AuthError::NoMatchingKey => "no_matching_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::ReviewRefused(_) => "review_refused",
            AuthError::ReviewFailed(_) => "review_failed",
            AuthError::NoServiceAccount => "no_service_account",
            AuthError::ConflictingServiceAccount => "conflicting_service_account",
            AuthError::InvalidIdentity(_) => "invalid_identity",
            AuthError::ClientCertMalformed(_) => "malformed_client_cert",
            AuthError::ClientCertUntrusted(_) => "untrusted_client_cert",
            AuthError::ClientCertIdentity(_) => "client_cert_identity",
            AuthError::NotANodeProxy { .. } => "impersonation_not_allowed",
            AuthError::CallerNodeUnknown => "caller_node_unknown",
            AuthError::WorkloadNotOnNode { .. } => "workload_not_on_node",
            AuthError::ForeignTrustDomain { .. } => "foreign_trust_domain",
            AuthError::InvalidConfig(_) => "invalid_config",
        }
    }

    /// Whether the caller was authenticated but asked for something it may not have
    /// (gRPC `PERMISSION_DENIED`), as opposed to not being authenticated at all.
    pub fn is_permission_denied(&self) -> bool {
        matches!(
            self,
            AuthError::NotANodeProxy { .. }
                | AuthError::CallerNodeUnknown
                | AuthError::WorkloadNotOnNode { .. }
                | AuthError::ForeignTrustDomain { .. }
        )
    }
}
