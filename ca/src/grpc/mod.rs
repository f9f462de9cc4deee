//! The Istio CSR API (`istio.v1.auth.IstioCertificateService`), wire-compatible with
//! istio-agent and ztunnel.

pub mod proto;
mod service;

pub use proto::{IstioCertificateRequest, IstioCertificateResponse};
pub use service::{
    CREATE_CERTIFICATE_PATH, CertificateService, IMPERSONATED_IDENTITY_KEY, PeerCertificates,
    SERVICE_NAME,
};
