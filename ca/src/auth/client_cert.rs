//! Authentication by a workload certificate this CA issued (renewal before expiry).

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::auth::{AuthError, Caller, CallerKind};
use crate::identity::Identity;
use crate::pki;

/// Longest chain a client may present (leaf plus intermediates).
const MAX_CHAIN_LEN: usize = 8;

/// Verifies `chain` (leaf first) against `roots` and returns the caller it identifies.
pub(crate) fn authenticate(
    chain: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
    trust_domain: &str,
) -> Result<Caller, AuthError> {
    let leaf = chain.first().ok_or(AuthError::MissingCredentials)?;
    if chain.len() > MAX_CHAIN_LEN {
        return Err(AuthError::ClientCertMalformed(format!(
            "more than {MAX_CHAIN_LEN} certificates"
        )));
    }
    let parsed = pki::parse(leaf).map_err(AuthError::ClientCertMalformed)?;
    pki::verify_chain(chain, roots).map_err(AuthError::ClientCertUntrusted)?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| AuthError::ClientCertMalformed(e.to_string()))?
        .ok_or_else(|| AuthError::ClientCertIdentity("no subjectAltName".into()))?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        return Err(AuthError::ClientCertIdentity(
            "expected exactly one URI SAN".into(),
        ));
    };
    let identity = Identity::parse(uri)?;
    if identity.trust_domain != trust_domain {
        return Err(AuthError::ClientCertIdentity(format!(
            "{identity} is outside trust domain {trust_domain}"
        )));
    }
    Ok(Caller {
        identity,
        node: None,
        pod: None,
        via: CallerKind::ClientCert,
    })
}
