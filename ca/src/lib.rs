//! shoal's certificate authority.
//!
//! - [`CertificateAuthority`]: loads Istio's plugged-in `cacerts` or a shoal-generated
//!   root from a directory shared by all replicas, signs workload CSRs, issues SDS key pairs
//!   and shoal's own serving certificates, and rotates roots (see [`store`] for the on-disk
//!   mechanism).
//! - [`auth`]: who the caller is (Kubernetes service-account JWTs, workload certificates)
//!   and which identity it may have certified (ztunnel impersonation).
//! - [`grpc`]: the Istio CSR API, `istio.v1.auth.IstioCertificateService/CreateCertificate`.
//!
//! Identities are SPIFFE URIs, `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT` ([`Identity`]).
//! Everything a remote peer sends is bounded and parsed without panicking; each refusal is
//! a distinct error, logged and counted in `shoal_ca_refused_total{reason}`; each issuance
//! is logged and counted in `shoal_ca_issued_total{kind,via}`.

pub mod auth;
mod authority;
mod csr;
mod error;
#[cfg(feature = "testing")]
pub mod fuzzing;
pub mod grpc;
mod identity;
mod keys;
mod material;
pub mod monitoring;
mod pem;
mod pki;
mod signer;
pub mod store;

pub use auth::{
    AuthError, Authorizer, Caller, CallerKind, JwtAuthenticator, NodeDirectory, TokenReviewer,
};
pub use authority::{CaConfig, CertificateAuthority, IssuedCert, IssuedKeyPair};
pub use csr::{ParsedCsr, parse_csr_pem};
pub use error::CaError;
pub use identity::{Identity, IdentityError};
pub use pem::{MAX_CSR_PEM_BYTES, MAX_PEM_BLOCKS};
pub use rustls_pki_types::CertificateDer;
pub use store::CaMode;
