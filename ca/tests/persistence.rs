//! The self-signed root on disk: persistence, shared directories and root rotation.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use shoal_ca::{AuthError, CaError, CaMode};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn root_is_persisted_with_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    assert_eq!(ca.mode(), CaMode::SelfSigned);
    let root_dir = dir.path().join("shoal-root");
    assert_eq!(mode(&root_dir.join("root-key.pem")), 0o600);
    assert_eq!(mode(&root_dir), 0o700);
    // Nothing half-written is left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["shoal-root".to_string()]);

    with_cert(&ca.trust_bundle()[0], |root| {
        assert_eq!(root.subject().to_string(), "O=cluster.local");
        let bc = root.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert!(root.key_usage().unwrap().unwrap().value.key_cert_sign());
        assert!(root.public_key().parsed().is_ok());
        let years = (root.validity().not_after.to_datetime() - time::OffsetDateTime::now_utc())
            .whole_days()
            / 365;
        assert_eq!(years, 9, "about ten years");
    });

    // A second load (another replica, or a restart) signs with the same root.
    let again = new_ca(dir.path());
    assert_eq!(again.trust_bundle(), ca.trust_bundle());
    let who = id("default", "app");
    let issued = again
        .sign_csr(&csr_for(&who).1, &who, Duration::ZERO)
        .unwrap();
    assert!(
        ca.authenticate_client_cert(&[der(&issued.cert_chain[0])])
            .is_ok()
    );
}

#[test]
fn replicas_starting_together_agree_on_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let bundles: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| new_ca(dir.path()).trust_bundle()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(bundles.iter().all(|b| b.len() == 1 && *b == bundles[0]));
}

#[test]
fn root_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let replica = new_ca(dir.path());
    let old_root = ca.trust_bundle()[0].clone();
    let who = id("default", "app");
    let old_leaf = ca.sign_csr(&csr_for(&who).1, &who, Duration::ZERO).unwrap();

    assert!(matches!(ca.promote_next_root(), Err(CaError::NoNextRoot)));

    // 1. rotate: the bundle carries old and new, signing stays on the old root.
    ca.rotate_root().unwrap();
    let bundle = ca.trust_bundle();
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[0], old_root);
    let new_root = bundle[1].clone();
    assert_ne!(new_root, old_root);
    assert_eq!(
        mode(&dir.path().join("shoal-root.next/root-key.pem")),
        0o600
    );
    let leaf = ca.sign_csr(&csr_for(&who).1, &who, Duration::ZERO).unwrap();
    assert_eq!(leaf.cert_chain.last(), Some(&old_root));
    assert!(matches!(ca.rotate_root(), Err(CaError::RotationInProgress)));
    // Another replica sees the same bundle after reloading.
    replica.reload().unwrap();
    assert_eq!(replica.trust_bundle(), bundle);

    // 2. promote: signing switches, the old root stays trusted.
    ca.promote_next_root().unwrap();
    assert_eq!(ca.trust_bundle(), vec![new_root.clone(), old_root.clone()]);
    let leaf = ca.sign_csr(&csr_for(&who).1, &who, Duration::ZERO).unwrap();
    assert_eq!(leaf.cert_chain.last(), Some(&new_root));
    assert!(signed_by(&leaf.cert_chain[0], &new_root));
    assert!(
        ca.authenticate_client_cert(&[der(&old_leaf.cert_chain[0])])
            .is_ok()
    );
    assert!(!dir.path().join("shoal-root.previous/root-key.pem").exists());
    // A second rotation must wait until the previous root is dropped.
    ca.rotate_root().unwrap();
    assert!(matches!(
        ca.promote_next_root(),
        Err(CaError::PreviousRootStillTrusted)
    ));
    assert_eq!(ca.trust_bundle().len(), 3);

    // 3. drop: certificates of the old root stop validating.
    ca.drop_previous_root().unwrap();
    assert!(!ca.trust_bundle().contains(&old_root));
    assert!(matches!(
        ca.authenticate_client_cert(&[der(&old_leaf.cert_chain[0])]),
        Err(AuthError::ClientCertUntrusted(_))
    ));
    replica.reload().unwrap();
    assert_eq!(replica.trust_bundle(), ca.trust_bundle());
}

#[test]
fn interrupted_promotion_is_completed_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    ca.rotate_root().unwrap();
    let bundle = ca.trust_bundle();
    // Crash between the two renames of `promote`.
    fs::rename(
        dir.path().join("shoal-root"),
        dir.path().join("shoal-root.previous"),
    )
    .unwrap();
    let reloaded = new_ca(dir.path());
    assert_eq!(
        reloaded.trust_bundle(),
        vec![bundle[1].clone(), bundle[0].clone()]
    );
    let who = id("default", "app");
    let leaf = reloaded
        .sign_csr(&csr_for(&who).1, &who, Duration::ZERO)
        .unwrap();
    assert_eq!(leaf.cert_chain.last(), Some(&bundle[1]));
}
