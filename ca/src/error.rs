//! Errors of the certificate authority: loading its key material and refusing requests.
//!
//! Refusals (anything a remote caller can cause) carry a short, stable [`CaError::reason`]
//! used as the `reason` label of `shoal_ca_refused_total`, and a message that names the
//! problem without echoing secrets or internal state.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::identity::IdentityError;

/// Everything that can go wrong in the CA.
#[derive(Debug, Error)]
pub enum CaError {
    // --- key material on disk ---
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{dir} holds an incomplete Istio cacerts layout: missing {missing:?} (need ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem)"
    )]
    IncompleteCacerts {
        dir: PathBuf,
        missing: Vec<&'static str>,
    },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("{key} does not hold the private key of the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: certificate is not a CA (needs basicConstraints CA:true and keyCertSign)")]
    NotACa { path: PathBuf },
    #[error("{0}")]
    ChainMismatch(String),
    #[error("the signing certificate expired or is not yet valid ({0})")]
    SigningCertNotValid(String),
    #[error(
        "CA self-test failed: a probe certificate did not verify against the trust bundle: {0}"
    )]
    SelfTest(String),

    // --- root rotation ---
    #[error(
        "the CA uses plugged-in cacerts; rotate by updating root-cert.pem (old and new roots) and then the signing files"
    )]
    ExternallyManaged,
    #[error("no next root to promote; call rotate_root first")]
    NoNextRoot,
    #[error("a next root already exists; promote or discard it first")]
    RotationInProgress,
    #[error("the previous root is still trusted; drop it before promoting again")]
    PreviousRootStillTrusted,

    // --- request refusals ---
    #[error("CSR PEM is {len} bytes, more than the {max} allowed")]
    CsrTooLarge { len: usize, max: usize },
    #[error("input holds {found} PEM blocks, more than the {max} allowed")]
    TooManyPemBlocks { found: usize, max: usize },
    #[error("CSR is not a single PEM \"CERTIFICATE REQUEST\" block: {0}")]
    CsrPem(String),
    #[error("CSR is not valid DER: {0}")]
    CsrMalformed(String),
    #[error("CSR signature does not verify with its own public key")]
    CsrBadSignature,
    #[error("CSR uses an unsupported key or signature algorithm: {0}")]
    CsrUnsupportedAlgorithm(String),
    #[error("CSR requests no URI SAN; exactly one (the caller's SPIFFE identity) is required")]
    CsrMissingSan,
    #[error("CSR requests a {0} SAN; only the caller's SPIFFE URI is allowed")]
    CsrForbiddenSan(&'static str),
    #[error("CSR requests more than one SAN; only the caller's SPIFFE URI is allowed")]
    CsrMultipleSans,
    #[error("CSR requests identity {requested:?} but the caller is {authenticated}")]
    CsrIdentityMismatch {
        requested: String,
        authenticated: String,
    },
    /// Istio's words, which clients and operators search for.
    #[error(
        "requested TTL {} is greater than the max allowed TTL {}",
        go_duration(*requested),
        go_duration(*max)
    )]
    TtlTooLong { requested: Duration, max: Duration },
    #[error("invalid server name {0:?}: expected a DNS name or an IP address")]
    InvalidServerName(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),

    // --- internal ---
    #[error("certificate generation failed: {0}")]
    Signing(String),
}

impl CaError {
    /// A stable label for metrics; `internal` for failures that are not the caller's fault.
    pub fn reason(&self) -> &'static str {
        match self {
            CaError::CsrTooLarge { .. } => "csr_too_large",
            CaError::TooManyPemBlocks { .. } => "too_many_pem_blocks",
            CaError::CsrPem(_) => "malformed_pem",
            CaError::CsrMalformed(_) => "malformed_csr",
            CaError::CsrBadSignature => "bad_csr_signature",
            CaError::CsrUnsupportedAlgorithm(_) => "unsupported_algorithm",
            CaError::CsrMissingSan => "missing_san",
            CaError::CsrForbiddenSan(_) => "forbidden_san",
            CaError::CsrMultipleSans => "multiple_sans",
            CaError::CsrIdentityMismatch { .. } => "identity_mismatch",
            CaError::TtlTooLong { .. } => "ttl_too_long",
            CaError::InvalidServerName(_) => "invalid_server_name",
            CaError::Identity(_) => "invalid_identity",
            _ => "internal",
        }
    }

    /// Whether the request itself was at fault (as opposed to the CA's state).
    pub fn is_refusal(&self) -> bool {
        self.reason() != "internal"
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        CaError::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CaError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A duration as Go prints it (`3h0m0s`, `90m` → `1h30m0s`, `45s`, `1.5s`), the form of
/// Istio's messages.
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = match d.subsec_nanos() {
        0 => String::new(),
        n => format!(".{n:09}").trim_end_matches('0').to_string(),
    };
    match (h, m) {
        (0, 0) => format!("{s}{frac}s"),
        (0, _) => format!("{m}m{s}{frac}s"),
        _ => format!("{h}h{m}m{s}{frac}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_in_istio_messages() {
        let d = Duration::from_secs;
        assert_eq!(go_duration(d(3 * 3600)), "3h0m0s");
        assert_eq!(go_duration(d(90 * 24 * 3600)), "2160h0m0s");
        assert_eq!(go_duration(d(5400)), "1h30m0s");
        assert_eq!(go_duration(d(125)), "2m5s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        let e = CaError::TtlTooLong {
            requested: d(3 * 3600),
            max: d(2 * 3600),
        };
        assert_eq!(
            e.to_string(),
            "requested TTL 3h0m0s is greater than the max allowed TTL 2h0m0s"
        );
        assert!(e.is_refusal());
    }
}
