//! Private keys of the CA: loading the formats operators actually have, and generating new
//! ones.
//!
//! The signing backend (ring, through rcgen) reads only PKCS#8. Istio's documented
//! `cacerts` recipes produce `RSA PRIVATE KEY` (PKCS#1) with OpenSSL 1.x and `EC PRIVATE KEY`
//! (SEC1) from `openssl ecparam`, so those are re-wrapped into PKCS#8 here instead of asking
//! operators to convert their files.

use std::path::Path;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::error::CaError;
use crate::pem;

/// DER of `AlgorithmIdentifier { rsaEncryption, NULL }`.
const ALG_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// DER of the OID id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of the OID prime256v1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the OID secp384r1 (1.3.132.0.34).
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of `INTEGER 0`, the PKCS#8 version.
const VERSION_0: &[u8] = &[0x02, 0x01, 0x00];

/// Loads the one private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC; unencrypted).
pub(crate) fn load_key(path: &Path) -> Result<KeyPair, CaError> {
    let text = pem::read_file(path)?;
    let block = pem::key_from_pem(path, &text)?;
    key_from_der(block.tag(), block.contents()).map_err(|reason| CaError::bad_file(path, reason))
}

/// Parses a private key given its PEM label and DER body.
pub(crate) fn key_from_der(label: &str, der: &[u8]) -> Result<KeyPair, String> {
    let unsupported = || {
        format!(
            "unsupported {label}: expected an unencrypted RSA (2048-8192 bits), ECDSA P-256/P-384 or Ed25519 key"
        )
    };
    match label {
        "PRIVATE KEY" => KeyPair::try_from(der).map_err(|_| unsupported()),
        "RSA PRIVATE KEY" => {
            let alg_and_key = [ALG_RSA, &octet_string(der)].concat();
            KeyPair::try_from(pkcs8(&alg_and_key).as_slice()).map_err(|_| unsupported())
        }
        "EC PRIVATE KEY" => [OID_P256, OID_P384]
            .iter()
            .find_map(|curve| {
                let alg = sequence(&[OID_EC_PUBLIC_KEY, curve].concat());
                KeyPair::try_from(pkcs8(&[alg, octet_string(der)].concat()).as_slice()).ok()
            })
            .ok_or_else(unsupported),
        "ENCRYPTED PRIVATE KEY" => Err("encrypted private keys are not supported".into()),
        other => Err(format!("unsupported key block {other:?}")),
    }
}

/// A fresh ECDSA P-256 key: small certificates, fast handshakes, what Istio uses by default.
pub(crate) fn generate_p256() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::Signing(e.to_string()))
}

/// Whether `key` is the private half of the public key `spki_key` (the raw BIT STRING
/// contents of a certificate's SubjectPublicKeyInfo).
pub(crate) fn matches_public_key(key: &KeyPair, spki_key: &[u8]) -> bool {
    key.public_key_raw() == spki_key
}

/// `PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey }` around `alg_and_key`.
fn pkcs8(alg_and_key: &[u8]) -> Vec<u8> {
    sequence(&[VERSION_0, alg_and_key].concat())
}

fn sequence(content: &[u8]) -> Vec<u8> {
    tlv(0x30, content)
}

fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(0x04, content)
}

/// DER tag-length-value with definite-length encoding.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const RSA_PKCS8: &str = include_str!("../tests/fixtures/rsa-2048-pkcs8.pem");
    const RSA_PKCS1: &str = include_str!("../tests/fixtures/rsa-2048-pkcs1.pem");
    const EC_PKCS8: &str = include_str!("../tests/fixtures/ec-p384-pkcs8.pem");
    const EC_SEC1: &str = include_str!("../tests/fixtures/ec-p384-sec1.pem");

    fn load(text: &str) -> Result<KeyPair, String> {
        let block = ::pem::parse(text).unwrap();
        key_from_der(block.tag(), block.contents())
    }

    #[test]
    fn traditional_formats_load_as_the_same_key() {
        let a = load(RSA_PKCS8).unwrap();
        let b = load(RSA_PKCS1).unwrap();
        assert_eq!(a.public_key_raw(), b.public_key_raw());
        let c = load(EC_PKCS8).unwrap();
        let d = load(EC_SEC1).unwrap();
        assert_eq!(c.public_key_raw(), d.public_key_raw());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(key_from_der("PRIVATE KEY", &[0x30, 0x00]).is_err());
        assert!(key_from_der("RSA PRIVATE KEY", &[1, 2, 3]).is_err());
        assert!(key_from_der("EC PRIVATE KEY", &[]).is_err());
        assert!(key_from_der("ENCRYPTED PRIVATE KEY", &[]).is_err());
        assert!(key_from_der("DSA PRIVATE KEY", &[]).is_err());
    }

    #[test]
    fn long_lengths() {
        let v = tlv(0x04, &[0u8; 300]);
        assert_eq!(&v[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(v.len(), 304);
    }
}
