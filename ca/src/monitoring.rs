//! Istio's Citadel metrics (`security/pkg/server/ca/monitoring.go`), recorded per
//! certificate request beside shoal's own `shoal_ca_*` counters, so that Istio's dashboards
//! read shoal's CA unchanged. Counters, without labels but `error` on sign errors.

use crate::error::CaError;

pub const CSR_COUNT: &str = "citadel_server_csr_count";
pub const AUTHENTICATION_FAILURES: &str = "citadel_server_authentication_failure_count";
pub const CSR_PARSING_ERRORS: &str = "citadel_server_csr_parsing_err_count";
pub const ID_EXTRACTION_ERRORS: &str = "citadel_server_id_extraction_err_count";
pub const CSR_SIGN_ERRORS: &str = "citadel_server_csr_sign_err_count";
pub const SUCCESS: &str = "citadel_server_success_cert_issuance_count";

/// A certificate request arrived.
pub(crate) fn csr_received() {
    metrics::counter!(CSR_COUNT).increment(1);
}

/// Its caller could not be authenticated, or may not have the identity it asked for.
pub(crate) fn authentication_failed() {
    metrics::counter!(AUTHENTICATION_FAILURES).increment(1);
}

/// A certificate was issued.
pub(crate) fn issued() {
    metrics::counter!(SUCCESS).increment(1);
}

/// Signing was refused or failed: the CSR did not parse, named no usable identity, or
/// signing failed (`error` as Istio's CA error types name it).
pub(crate) fn sign_failed(error: &CaError) {
    match error {
        CaError::CsrTooLarge { .. }
        | CaError::TooManyPemBlocks { .. }
        | CaError::CsrPem(_)
        | CaError::CsrMalformed(_)
        | CaError::CsrBadSignature
        | CaError::CsrUnsupportedAlgorithm(_) => {
            metrics::counter!(CSR_PARSING_ERRORS).increment(1);
        }
        CaError::CsrMissingSan
        | CaError::CsrForbiddenSan(_)
        | CaError::CsrMultipleSans
        | CaError::CsrIdentityMismatch { .. }
        | CaError::Identity(_) => {
            metrics::counter!(ID_EXTRACTION_ERRORS).increment(1);
        }
        CaError::TtlTooLong { .. } => {
            metrics::counter!(CSR_SIGN_ERRORS, "error" => "TTL_ERROR").increment(1);
        }
        _ => {
            metrics::counter!(CSR_SIGN_ERRORS, "error" => "CERT_GEN_ERROR").increment(1);
        }
    }
}
