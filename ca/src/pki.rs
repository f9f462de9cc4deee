//! Small X.509 helpers shared by loading, the self-test and client-certificate checks.
//!
//! Path validation is delegated to rustls-webpki rather than written here: it is what
//! rustls peers run, it handles path building, validity, basic constraints and EKU, and a
//! hand-rolled chain walk is exactly the kind of code that ends up accepting a forged chain.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::CaError;

/// Parses a certificate, refusing trailing bytes.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after the certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// End of a certificate's validity period.
pub(crate) fn not_after(der: &CertificateDer<'_>) -> Result<OffsetDateTime, CaError> {
    let cert = parse(der).map_err(CaError::ChainMismatch)?;
    Ok(cert.validity().not_after.to_datetime())
}

/// Verifies that `presented` (leaf first, then intermediates in any order) chains to one of
/// `roots`, is valid now, and that the leaf may be used for TLS client authentication.
pub(crate) fn verify_chain(
    presented: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
) -> Result<(), String> {
    let (leaf, intermediates) = presented
        .split_first()
        .ok_or_else(|| "no certificate presented".to_string())?;
    let anchors: Vec<TrustAnchor<'_>> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    if anchors.is_empty() {
        return Err("no usable trust anchor".into());
    }
    let leaf = EndEntityCert::try_from(leaf).map_err(|e| format!("leaf: {e}"))?;
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        intermediates,
        UnixTime::now(),
        KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}
