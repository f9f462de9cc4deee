//! Certificate signing requests: decoding, proof of possession and the SAN policy.
//!
//! The CA copies nothing from a CSR except its public key: the subject, key usages and
//! validity of the issued certificate are the CA's choice. The SANs are still checked
//! strictly, because a CSR that asks for more than the caller's own identity is a sign of a
//! confused or hostile client and must be refused loudly, not silently trimmed.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::error::CaError;
use crate::identity::Identity;
use crate::pem;

/// Smallest RSA modulus accepted for a workload key.
const MIN_RSA_BITS: usize = 2048;

/// What a verified CSR asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCsr {
    /// The DER SubjectPublicKeyInfo the certificate will certify.
    pub spki_der: Vec<u8>,
    /// The only SAN requested: a URI (not yet compared with any identity).
    pub uri_san: String,
}

/// Decodes a PEM CSR, verifies its self-signature and applies the SAN policy (exactly one
/// URI SAN, nothing else). Never panics, whatever the input.
pub fn parse_csr_pem(csr_pem: &str) -> Result<ParsedCsr, CaError> {
    let der = pem::csr_der_from_pem(csr_pem)?;
    parse_csr_der(&der)
}

/// Like [`parse_csr_pem`], and additionally requires the URI SAN to be `identity`.
pub(crate) fn check_csr(csr_pem: &str, identity: &Identity) -> Result<ParsedCsr, CaError> {
    let csr = parse_csr_pem(csr_pem)?;
    let expected = identity.spiffe_uri();
    if csr.uri_san != expected {
        return Err(CaError::CsrIdentityMismatch {
            requested: csr.uri_san.chars().take(256).collect(),
            authenticated: expected,
        });
    }
    Ok(csr)
}

fn parse_csr_der(der: &[u8]) -> Result<ParsedCsr, CaError> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| CaError::CsrMalformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CaError::CsrMalformed("trailing data after the CSR".into()));
    }
    check_algorithms(&csr)?;
    csr.verify_signature().map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => {
            CaError::CsrUnsupportedAlgorithm("signature algorithm".into())
        }
        _ => CaError::CsrBadSignature,
    })?;
    let uri_san = single_uri_san(&csr)?;
    Ok(ParsedCsr {
        spki_der: csr.certification_request_info.subject_pki.raw.to_vec(),
        uri_san,
    })
}

/// Refuses SHA-1, exotic algorithms and weak RSA keys up front, so that a weak key is
/// reported as such rather than as a failed signature.
fn check_algorithms(csr: &X509CertificationRequest<'_>) -> Result<(), CaError> {
    let sig = &csr.signature_algorithm.algorithm;
    let allowed = [
        &OID_SIG_ECDSA_WITH_SHA256,
        &OID_SIG_ECDSA_WITH_SHA384,
        &OID_PKCS1_SHA256WITHRSA,
        &OID_PKCS1_SHA384WITHRSA,
        &OID_PKCS1_SHA512WITHRSA,
        &OID_SIG_ED25519,
    ];
    if !allowed.contains(&sig) {
        return Err(CaError::CsrUnsupportedAlgorithm(format!(
            "signature algorithm {sig}"
        )));
    }
    let spki = &csr.certification_request_info.subject_pki;
    if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= MIN_RSA_BITS => {}
            Ok(_) => {
                return Err(CaError::CsrUnsupportedAlgorithm(format!(
                    "RSA keys must have at least {MIN_RSA_BITS} bits"
                )));
            }
            Err(e) => return Err(CaError::CsrMalformed(e.to_string())),
        }
    }
    Ok(())
}

/// Applies the SAN policy and returns the one URI SAN.
fn single_uri_san(csr: &X509CertificationRequest<'_>) -> Result<String, CaError> {
    let mut requests = csr
        .certification_request_info
        .iter_attributes()
        .filter_map(|a| match a.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(r) => Some(r),
            _ => None,
        });
    let Some(request) = requests.next() else {
        return Err(CaError::CsrMissingSan);
    };
    if requests.next().is_some() {
        return Err(CaError::CsrMalformed(
            "more than one extensionRequest".into(),
        ));
    }
    let mut san_extensions = request
        .extensions
        .iter()
        .filter(|e| e.oid == OID_X509_EXT_SUBJECT_ALT_NAME);
    let Some(san) = san_extensions.next() else {
        return Err(CaError::CsrMissingSan);
    };
    if san_extensions.next().is_some() {
        return Err(CaError::CsrMultipleSans);
    }
    let ParsedExtension::SubjectAlternativeName(san) = san.parsed_extension() else {
        return Err(CaError::CsrMalformed("unparsable subjectAltName".into()));
    };
    let mut uris = Vec::new();
    for name in &san.general_names {
        match name {
            GeneralName::URI(uri) => uris.push(*uri),
            GeneralName::DNSName(_) => return Err(CaError::CsrForbiddenSan("DNS")),
            GeneralName::IPAddress(_) => return Err(CaError::CsrForbiddenSan("IP address")),
            GeneralName::RFC822Name(_) => return Err(CaError::CsrForbiddenSan("email")),
            GeneralName::Invalid(..) => {
                return Err(CaError::CsrMalformed("invalid subjectAltName entry".into()));
            }
            _ => return Err(CaError::CsrForbiddenSan("non-URI")),
        }
    }
    match uris.as_slice() {
        [] => Err(CaError::CsrMissingSan),
        [uri] => Ok((*uri).to_string()),
        _ => Err(CaError::CsrMultipleSans),
    }
}
