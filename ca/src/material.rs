//! Reading and checking signing material from files.
//!
//! Every check here names the file at fault, because the people who read these errors are
//! operators who just mounted a secret: "key does not match cert" or "cert-chain.pem does
//! not lead to a root in root-cert.pem" is actionable, "handshake failure" three hops
//! later is not.

use std::path::Path;

use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::error::CaError;
use crate::keys;
use crate::pem;
use crate::pki;

/// Istio's plugged-in CA files (the `cacerts` secret).
pub(crate) const CA_CERT: &str = "ca-cert.pem";
pub(crate) const CA_KEY: &str = "ca-key.pem";
pub(crate) const ROOT_CERT: &str = "root-cert.pem";
pub(crate) const CERT_CHAIN: &str = "cert-chain.pem";
pub(crate) const CACERTS_FILES: [&str; 4] = [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN];
/// The key file of a shoal-generated root (next to its `root-cert.pem`).
pub(crate) const ROOT_KEY: &str = "root-key.pem";

/// A checked signing set.
pub(crate) struct Material {
    pub(crate) signing_cert: CertificateDer<'static>,
    pub(crate) key: KeyPair,
    /// Signing certificate, intermediates, root: what follows each issued leaf.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// The roots this set declares trusted.
    pub(crate) roots: Vec<CertificateDer<'static>>,
}

/// Loads Istio's plugged-in layout from `dir`. The signing certificate may be an
/// intermediate; `root-cert.pem` may hold several roots (how Istio rotates plugged-in roots).
pub(crate) fn load_cacerts(dir: &Path) -> Result<Material, CaError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let signing_cert = single_cert(&cert_path)?;
    let key = keys::load_key(&key_path)?;
    check_signing_cert(&cert_path, &key_path, &signing_cert, &key)?;
    let roots = pem::certs_from_pem(&dir.join(ROOT_CERT), &pem::read_file(&dir.join(ROOT_CERT))?)?;
    for (i, root) in roots.iter().enumerate() {
        check_root(&dir.join(ROOT_CERT), i, root)?;
    }
    let chain_path = dir.join(CERT_CHAIN);
    let chain_text = pem::read_file(&chain_path)?;
    // An empty cert-chain.pem is what Istio writes when the signing certificate is the root.
    let listed = if chain_text.trim().is_empty() {
        Vec::new()
    } else {
        pem::certs_from_pem(&chain_path, &chain_text)?
    };
    let chain = build_chain(&signing_cert, listed, &roots)?;
    Ok(Material {
        signing_cert,
        key,
        chain,
        roots,
    })
}

/// Loads a shoal-generated self-signed root (`root-cert.pem` + `root-key.pem` in `dir`).
pub(crate) fn load_self_signed(dir: &Path) -> Result<Material, CaError> {
    let cert_path = dir.join(ROOT_CERT);
    let key_path = dir.join(ROOT_KEY);
    let root = single_cert(&cert_path)?;
    let key = keys::load_key(&key_path)?;
    check_signing_cert(&cert_path, &key_path, &root, &key)?;
    check_root(&cert_path, 0, &root)?;
    Ok(Material {
        signing_cert: root.clone(),
        key,
        chain: vec![root.clone()],
        roots: vec![root],
    })
}

/// The certificates of a retired root set, which stay trusted until dropped.
pub(crate) fn load_roots(dir: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let path = dir.join(ROOT_CERT);
    pem::certs_from_pem(&path, &pem::read_file(&path)?)
}

fn single_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = pem::certs_from_pem(path, &pem::read_file(path)?)?;
    match certs.len() {
        1 => certs
            .pop()
            .ok_or_else(|| CaError::bad_file(path, "no certificate")),
        n => Err(CaError::bad_file(
            path,
            format!("expected one certificate, found {n}"),
        )),
    }
}

/// The signing certificate must be a currently valid CA whose key is `key`.
fn check_signing_cert(
    cert_path: &Path,
    key_path: &Path,
    der: &CertificateDer<'_>,
    key: &KeyPair,
) -> Result<(), CaError> {
    let cert = pki::parse(der).map_err(|e| CaError::bad_file(cert_path, e))?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let can_sign = match cert.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    if !is_ca || !can_sign {
        return Err(CaError::NotACa {
            path: cert_path.to_path_buf(),
        });
    }
    if !keys::matches_public_key(key, &cert.public_key().subject_public_key.data) {
        return Err(CaError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        });
    }
    let validity = cert.validity();
    let now = OffsetDateTime::now_utc();
    let (from, to) = (
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    );
    if now < from || now >= to {
        return Err(CaError::SigningCertNotValid(format!(
            "{}: valid from {from} to {to}",
            cert_path.display()
        )));
    }
    Ok(())
}

/// A root must be a self-signed CA certificate.
fn check_root(path: &Path, index: usize, der: &CertificateDer<'_>) -> Result<(), CaError> {
    let cert = pki::parse(der).map_err(|e| CaError::bad_file(path, format!("#{index}: {e}")))?;
    let self_signed =
        cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok();
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !self_signed || !is_ca {
        return Err(CaError::bad_file(
            path,
            format!("certificate #{index} is not a self-signed CA certificate"),
        ));
    }
    Ok(())
}

/// Orders the chain that follows each leaf: signing certificate first, root last, each
/// certificate signed by the next one.
fn build_chain(
    signing: &CertificateDer<'static>,
    mut chain: Vec<CertificateDer<'static>>,
    roots: &[CertificateDer<'static>],
) -> Result<Vec<CertificateDer<'static>>, CaError> {
    // cert-chain.pem normally starts with ca-cert.pem; tolerate files listing only what
    // comes above it.
    if chain.first() != Some(signing) {
        chain.insert(0, signing.clone());
    }
    let last = chain
        .last()
        .ok_or_else(|| CaError::ChainMismatch("empty chain".into()))?;
    if !roots.contains(last) {
        let issuer = roots
            .iter()
            .find(|root| signed_by(last, root))
            .ok_or_else(|| {
                CaError::ChainMismatch(format!(
                    "{CERT_CHAIN} does not lead to a root in {ROOT_CERT}"
                ))
            })?;
        chain.push(issuer.clone());
    }
    for (i, pair) in chain.windows(2).enumerate() {
        if !signed_by(&pair[0], &pair[1]) {
            return Err(CaError::ChainMismatch(format!(
                "chain certificate #{i} ({}) is not signed by the next one ({CERT_CHAIN} is out of order or belongs to another CA)",
                subject_of(&pair[0])
            )));
        }
    }
    Ok(chain)
}

/// Whether `child` names `parent` as issuer and carries a signature by its key.
fn signed_by(child: &CertificateDer<'_>, parent: &CertificateDer<'_>) -> bool {
    let (Ok(child), Ok(parent)) = (pki::parse(child), pki::parse(parent)) else {
        return false;
    };
    child.issuer().as_raw() == parent.subject().as_raw()
        && child.verify_signature(Some(parent.public_key())).is_ok()
}

fn subject_of(der: &CertificateDer<'_>) -> String {
    pki::parse(der)
        .map(|c| c.subject().to_string())
        .unwrap_or_else(|e| e)
}
