//! Istio's CA messages, written by hand with prost (no protoc, no build script).
//!
//! Field numbers follow `istio.v1.auth` (`security/proto/pb/ca.proto` in istio/istio, also
//! `security/v1alpha1/ca.proto` in istio/api): tag 2 once held `subject_id` and stays
//! unused; `metadata` (tag 4) carries `ImpersonatedIdentity` for ztunnel.

/// Certificate request.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded certificate signing request.
    #[prost(string, tag = "1")]
    pub csr: ::prost::alloc::string::String,
    /// Requested validity, in seconds; zero or negative means "the CA's default".
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Opaque metadata; shoal reads the string `ImpersonatedIdentity`.
    #[prost(message, optional, tag = "4")]
    pub metadata: ::core::option::Option<::prost_types::Struct>,
}

/// Certificate response: PEM certificates, leaf first and root last.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IstioCertificateResponse {
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: ::prost::alloc::vec::Vec<::prost::alloc::string::String>,
}
