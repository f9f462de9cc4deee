//! Every hostile or mistaken CSR gets its own error and no certificate.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use shoal_ca::{CaError, MAX_CSR_PEM_BYTES, MAX_PEM_BLOCKS};

fn refuse(csr_pem: &str) -> CaError {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let who = id("default", "app");
    match ca.sign_csr(csr_pem, &who, Duration::ZERO) {
        Ok(issued) => panic!("issued {:?}", issued.serial),
        Err(e) => e,
    }
}

#[test]
fn csr_for_another_identity() {
    let (_, csr) = csr_for(&id("kube-system", "admin"));
    match refuse(&csr) {
        CaError::CsrIdentityMismatch { requested, .. } => {
            assert_eq!(requested, "spiffe://cluster.local/ns/kube-system/sa/admin");
        }
        e => panic!("{e}"),
    }
}

#[test]
fn csr_with_extra_sans() {
    let me = "spiffe://cluster.local/ns/default/sa/app";
    let (_, pem) = csr(vec![uri(me), dns("evil.example.com")]);
    assert!(matches!(refuse(&pem), CaError::CsrForbiddenSan("DNS")));
    let (_, pem) = csr(vec![
        uri(me),
        rcgen::SanType::IpAddress([10, 0, 0, 1].into()),
    ]);
    assert!(matches!(
        refuse(&pem),
        CaError::CsrForbiddenSan("IP address")
    ));
    let (_, pem) = csr(vec![
        uri(me),
        uri("spiffe://cluster.local/ns/default/sa/other"),
    ]);
    assert!(matches!(refuse(&pem), CaError::CsrMultipleSans));
    let (_, pem) = csr(vec![]);
    assert!(matches!(refuse(&pem), CaError::CsrMissingSan));
}

#[test]
fn csr_with_bad_signature() {
    let (_, csr) = csr_for(&id("default", "app"));
    let mut der = pem::parse(&csr).unwrap().into_contents();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    assert!(matches!(refuse(&tampered), CaError::CsrBadSignature));
}

#[test]
fn garbage_and_oversized_pem() {
    assert!(matches!(refuse("hello"), CaError::CsrPem(_)));
    assert!(matches!(refuse(""), CaError::CsrPem(_)));
    let not_der = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", vec![1, 2, 3]));
    assert!(matches!(refuse(&not_der), CaError::CsrMalformed(_)));
    let (_, good) = csr_for(&id("default", "app"));
    let padded = format!("{good}{}", " ".repeat(MAX_CSR_PEM_BYTES));
    assert!(matches!(refuse(&padded), CaError::CsrTooLarge { .. }));
    let many = good.repeat(MAX_PEM_BLOCKS + 1);
    assert!(matches!(refuse(&many), CaError::TooManyPemBlocks { .. }));
    assert!(matches!(refuse(&good.repeat(2)), CaError::CsrPem(_)));
    // A certificate is not a CSR.
    let dir = tempfile::tempdir().unwrap();
    let root = new_ca(dir.path()).trust_bundle().remove(0);
    assert!(matches!(refuse(&root), CaError::CsrPem(_)));
}

#[test]
fn reasons_are_distinct() {
    let reasons = [
        CaError::CsrIdentityMismatch {
            requested: String::new(),
            authenticated: String::new(),
        },
        CaError::CsrForbiddenSan("DNS"),
        CaError::CsrMultipleSans,
        CaError::CsrMissingSan,
        CaError::CsrBadSignature,
        CaError::CsrPem(String::new()),
        CaError::CsrMalformed(String::new()),
        CaError::CsrTooLarge { len: 0, max: 0 },
        CaError::TooManyPemBlocks { found: 0, max: 0 },
    ]
    .map(|e| e.reason());
    let mut unique = reasons.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), reasons.len());
    assert!(!reasons.contains(&"internal"));
}
