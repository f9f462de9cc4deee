//! PEM in and out, with hard limits.
//!
//! A CSR arrives from the network, so its PEM is bounded in size and block count *before*
//! any decoding, and must be exactly one `CERTIFICATE REQUEST` block: a second block, an
//! unterminated one or stray base64 are refused instead of being silently skipped. Files
//! of the CA's own key material get looser (but still finite) limits.

use std::path::Path;

use pem::{EncodeConfig, LineEnding, Pem};
use rustls_pki_types::CertificateDer;

use crate::error::CaError;

/// Largest CSR PEM accepted. A P-256 CSR is well under 1 KiB and an RSA-4096 one under 4 KiB.
pub const MAX_CSR_PEM_BYTES: usize = 64 * 1024;
/// Most PEM blocks tolerated in a CSR input before refusing it outright.
pub const MAX_PEM_BLOCKS: usize = 4;
/// Largest key-material file read from disk.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most certificates accepted in one file (a root bundle or a chain).
pub(crate) const MAX_FILE_CERTS: usize = 64;

const BEGIN: &str = "-----BEGIN ";

/// Decodes a CSR PEM to DER, refusing anything but a single `CERTIFICATE REQUEST` block.
pub(crate) fn csr_der_from_pem(input: &str) -> Result<Vec<u8>, CaError> {
    if input.len() > MAX_CSR_PEM_BYTES {
        return Err(CaError::CsrTooLarge {
            len: input.len(),
            max: MAX_CSR_PEM_BYTES,
        });
    }
    let found = input.matches(BEGIN).count();
    if found > MAX_PEM_BLOCKS {
        return Err(CaError::TooManyPemBlocks {
            found,
            max: MAX_PEM_BLOCKS,
        });
    }
    let blocks = pem::parse_many(input).map_err(|e| CaError::CsrPem(e.to_string()))?;
    if blocks.len() != found {
        return Err(CaError::CsrPem("unterminated PEM block".into()));
    }
    let [block] = blocks.as_slice() else {
        return Err(CaError::CsrPem(format!("found {} blocks", blocks.len())));
    };
    match block.tag() {
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(block.contents().to_vec()),
        other => Err(CaError::CsrPem(format!(
            "block is {:?}",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

/// Reads a file of CA material with a size bound, as UTF-8 text.
pub(crate) fn read_file(path: &Path) -> Result<String, CaError> {
    let meta = std::fs::metadata(path).map_err(|e| CaError::io(path, e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(CaError::bad_file(
            path,
            format!("file is larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| CaError::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| CaError::bad_file(path, "not UTF-8 PEM text"))
}

/// Every `CERTIFICATE` block of a file; any other block or malformed PEM is an error.
pub(crate) fn certs_from_pem(
    path: &Path,
    text: &str,
) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let found = text.matches(BEGIN).count();
    if found > MAX_FILE_CERTS {
        return Err(CaError::bad_file(
            path,
            format!("more than {MAX_FILE_CERTS} PEM blocks"),
        ));
    }
    let blocks =
        pem::parse_many(text).map_err(|e| CaError::bad_file(path, format!("bad PEM: {e}")))?;
    if blocks.len() != found {
        return Err(CaError::bad_file(path, "unterminated PEM block"));
    }
    if blocks.is_empty() {
        return Err(CaError::bad_file(path, "no CERTIFICATE block"));
    }
    blocks
        .into_iter()
        .map(|b| {
            if b.tag() == "CERTIFICATE" {
                Ok(CertificateDer::from(b.into_contents()))
            } else {
                Err(CaError::bad_file(
                    path,
                    format!("unexpected {:?} block, expected CERTIFICATE", b.tag()),
                ))
            }
        })
        .collect()
}

/// The single private-key block of a key file, with its label (which tells PKCS#8 from
/// PKCS#1 and SEC1).
pub(crate) fn key_from_pem(path: &Path, text: &str) -> Result<Pem, CaError> {
    let found = text.matches(BEGIN).count();
    let blocks =
        pem::parse_many(text).map_err(|e| CaError::bad_file(path, format!("bad PEM: {e}")))?;
    let keys: Vec<Pem> = blocks
        .into_iter()
        .filter(|b| b.tag().ends_with("PRIVATE KEY"))
        .collect();
    match keys.as_slice() {
        [_] if found <= MAX_PEM_BLOCKS => keys
            .into_iter()
            .next()
            .ok_or_else(|| CaError::bad_file(path, "no private key")),
        [] => Err(CaError::bad_file(path, "no PRIVATE KEY block")),
        _ => Err(CaError::bad_file(
            path,
            "expected exactly one private key block",
        )),
    }
}

/// A certificate as PEM with `\n` line endings (what Envoy, ztunnel and Go all accept).
pub(crate) fn cert_to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &Pem::new("CERTIFICATE", der),
        EncodeConfig::new().set_line_ending(LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn block(tag: &str) -> String {
        pem::encode_config(
            &Pem::new(tag, vec![0x30, 0x00]),
            EncodeConfig::new().set_line_ending(LineEnding::LF),
        )
    }

    #[test]
    fn csr_limits() {
        let csr = block("CERTIFICATE REQUEST");
        assert_eq!(csr_der_from_pem(&csr).unwrap(), vec![0x30, 0x00]);
        let big = "a".repeat(MAX_CSR_PEM_BYTES + 1);
        assert!(matches!(
            csr_der_from_pem(&big),
            Err(CaError::CsrTooLarge { .. })
        ));
        let many = csr.repeat(MAX_PEM_BLOCKS + 1);
        assert!(matches!(
            csr_der_from_pem(&many),
            Err(CaError::TooManyPemBlocks { .. })
        ));
        let two = csr.repeat(2);
        assert!(matches!(csr_der_from_pem(&two), Err(CaError::CsrPem(_))));
        let cert = block("CERTIFICATE");
        assert!(matches!(csr_der_from_pem(&cert), Err(CaError::CsrPem(_))));
        let open = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n";
        assert!(matches!(csr_der_from_pem(open), Err(CaError::CsrPem(_))));
        assert!(matches!(csr_der_from_pem(""), Err(CaError::CsrPem(_))));
        let bad64 =
            "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n";
        assert!(matches!(csr_der_from_pem(bad64), Err(CaError::CsrPem(_))));
    }

    #[test]
    fn cert_files() {
        let p = Path::new("x.pem");
        let two = format!("{}{}", block("CERTIFICATE"), block("CERTIFICATE"));
        assert_eq!(certs_from_pem(p, &two).unwrap().len(), 2);
        assert!(certs_from_pem(p, "").is_err());
        assert!(certs_from_pem(p, &block("PRIVATE KEY")).is_err());
        assert!(key_from_pem(p, &block("CERTIFICATE")).is_err());
        assert_eq!(
            key_from_pem(p, &block("EC PRIVATE KEY")).unwrap().tag(),
            "EC PRIVATE KEY"
        );
        let two_keys = format!("{}{}", block("PRIVATE KEY"), block("PRIVATE KEY"));
        assert!(key_from_pem(p, &two_keys).is_err());
    }
}
