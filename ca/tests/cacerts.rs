//! Istio's plugged-in `cacerts` layout, with an intermediate signing CA.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use shoal_ca::{CaError, CaMode, CertificateAuthority};

struct Pki {
    root_pem: String,
    inter_pem: String,
    inter_key: KeyPair,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.remove(DnType::CommonName);
    p.distinguished_name
        .push(DnType::OrganizationName, "Example Corp");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn pki() -> Pki {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("Example Root CA");
    let root = root_params.self_signed(&root_key).unwrap();
    let inter_key = KeyPair::generate().unwrap();
    let mut inter_params = ca_params("Example Mesh Intermediate");
    inter_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    inter_params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::new(root_params, root_key);
    let inter = inter_params.signed_by(&inter_key, &issuer).unwrap();
    Pki {
        root_pem: root.pem(),
        inter_pem: inter.pem(),
        inter_key,
    }
}

fn write(dir: &Path, ca_cert: &str, ca_key: &str, root: &str, chain: &str) {
    fs::write(dir.join("ca-cert.pem"), ca_cert).unwrap();
    fs::write(dir.join("ca-key.pem"), ca_key).unwrap();
    fs::write(dir.join("root-cert.pem"), root).unwrap();
    fs::write(dir.join("cert-chain.pem"), chain).unwrap();
}

#[test]
fn intermediate_signs_and_chain_reaches_root() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let chain = format!("{}{}", pki.inter_pem, pki.root_pem);
    write(
        dir.path(),
        &pki.inter_pem,
        &pki.inter_key.serialize_pem(),
        &pki.root_pem,
        &chain,
    );

    let ca = new_ca(dir.path());
    assert_eq!(ca.mode(), CaMode::PluggedIn);
    assert_eq!(ca.trust_bundle().len(), 1);

    let who = id("default", "reviews");
    let issued = ca
        .sign_csr(&csr_for(&who).1, &who, Duration::from_secs(3600))
        .unwrap();
    let [leaf, inter, root] = issued.cert_chain.as_slice() else {
        panic!(
            "expected leaf, intermediate, root: {}",
            issued.cert_chain.len()
        );
    };
    assert_eq!(der(inter), der(&pki.inter_pem));
    assert_eq!(der(root), der(&pki.root_pem));
    assert_eq!(der(&ca.trust_bundle()[0]), der(&pki.root_pem));
    // leaf -> intermediate -> root, checked link by link and by webpki.
    assert!(signed_by(leaf, inter));
    assert!(signed_by(inter, root));
    assert!(!signed_by(leaf, root));
    let caller = ca
        .authenticate_client_cert(&[der(leaf), der(inter)])
        .unwrap();
    assert_eq!(caller.identity, who);
    // Without the intermediate the leaf does not chain.
    assert!(ca.authenticate_client_cert(&[der(leaf)]).is_err());

    // Rotation belongs to the operator here.
    assert!(matches!(ca.rotate_root(), Err(CaError::ExternallyManaged)));
}

#[test]
fn chain_file_without_root_and_rsa_pkcs1_root() {
    // cert-chain.pem holding only the intermediate: the root is appended.
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &pki.inter_pem,
        &pki.inter_key.serialize_pem(),
        &pki.root_pem,
        &pki.inter_pem,
    );
    let ca = new_ca(dir.path());
    let who = id("default", "a");
    let issued = ca.sign_csr(&csr_for(&who).1, &who, Duration::ZERO).unwrap();
    assert_eq!(issued.cert_chain.len(), 3);
    assert_eq!(der(&issued.cert_chain[2]), der(&pki.root_pem));

    // An RSA root used directly, its key in PKCS#1 form, with an empty cert-chain.pem.
    let key = KeyPair::from_pem(RSA_PKCS8).unwrap();
    let root = ca_params("RSA Root").self_signed(&key).unwrap().pem();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &root, RSA_PKCS1, &root, "");
    let ca = new_ca(dir.path());
    let issued = ca.sign_csr(&csr_for(&who).1, &who, Duration::ZERO).unwrap();
    assert_eq!(issued.cert_chain.len(), 2);
    assert!(signed_by(&issued.cert_chain[0], &root));
    assert!(
        ca.authenticate_client_cert(&[der(&issued.cert_chain[0])])
            .is_ok()
    );
}

fn load_err(dir: &Path) -> CaError {
    match CertificateAuthority::load_or_create(dir, TD) {
        Ok(_) => panic!("loaded"),
        Err(e) => e,
    }
}

#[test]
fn clear_errors_for_bad_files() {
    let pki = pki();
    let other = pki_other();
    let key = pki.inter_key.serialize_pem();
    let chain = format!("{}{}", pki.inter_pem, pki.root_pem);

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &pki.inter_pem, &key, &pki.root_pem, &chain);
    fs::remove_file(dir.path().join("cert-chain.pem")).unwrap();
    match load_err(dir.path()) {
        CaError::IncompleteCacerts { missing, .. } => assert_eq!(missing, vec!["cert-chain.pem"]),
        e => panic!("{e}"),
    }

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &pki.inter_pem,
        &KeyPair::generate().unwrap().serialize_pem(),
        &pki.root_pem,
        &chain,
    );
    assert!(matches!(load_err(dir.path()), CaError::KeyMismatch { .. }));

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        &key,
        &pki.root_pem,
        &chain,
    );
    assert!(matches!(load_err(dir.path()), CaError::BadFile { .. }));

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &pki.inter_pem, "garbage", &pki.root_pem, &chain);
    assert!(matches!(load_err(dir.path()), CaError::BadFile { .. }));

    // Root of another PKI: the chain leads nowhere trusted.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &pki.inter_pem, &key, &other, &pki.inter_pem);
    assert!(matches!(load_err(dir.path()), CaError::ChainMismatch(_)));

    // A leaf is not a CA.
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["x.example".to_string()])
        .unwrap()
        .self_signed(&leaf_key)
        .unwrap()
        .pem();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &leaf,
        &leaf_key.serialize_pem(),
        &pki.root_pem,
        &chain,
    );
    assert!(matches!(load_err(dir.path()), CaError::NotACa { .. }));
}

fn pki_other() -> String {
    let key = KeyPair::generate().unwrap();
    ca_params("Other Root").self_signed(&key).unwrap().pem()
}
