//! Issuance round trips with a shoal-generated root.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use shoal_ca::{CaError, CallerKind};
use x509_parser::extensions::{GeneralName, ParsedExtension};

const DAY: Duration = Duration::from_secs(24 * 3600);

#[test]
fn csr_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let who = id("default", "productpage");
    let (key, csr) = csr_for(&who);

    let issued = ca.sign_csr(&csr, &who, 2 * DAY).unwrap();

    // Leaf first, root last, and the root is the trust bundle.
    assert_eq!(issued.cert_chain.len(), 2);
    assert_eq!(issued.cert_chain[1], ca.trust_bundle()[0]);
    assert!(signed_by(&issued.cert_chain[0], &issued.cert_chain[1]));

    let leaf = &issued.cert_chain[0];
    with_cert(leaf, |cert| {
        // Exactly the SPIFFE URI, critical because the subject is empty.
        assert!(cert.subject().iter().next().is_none());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(san.critical);
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI(
                "spiffe://cluster.local/ns/default/sa/productpage"
            )]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.any);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        assert!(cert.iter_extensions().any(|e| matches!(
            e.parsed_extension(),
            ParsedExtension::AuthorityKeyIdentifier(_)
        )));
        // The CSR's key is certified.
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        // 48 h requested and granted (under the 90-day maximum); not_before backdated by a
        // minute.
        let now = time::OffsetDateTime::now_utc();
        let lifetime = cert.validity().not_after.to_datetime() - now;
        assert!(lifetime <= time::Duration::hours(48) && lifetime > time::Duration::hours(47));
        let backdate = now - cert.validity().not_before.to_datetime();
        assert!(backdate >= time::Duration::seconds(59) && backdate < time::Duration::seconds(120));
        assert!(cert.raw_serial().len() >= 16);
    });
    let expected_end = SystemTime::now() + 2 * DAY;
    assert!(
        issued.not_after <= expected_end
            && issued.not_after + Duration::from_secs(60) > expected_end
    );

    // The chain verifies with rustls-webpki against the bundle, as a TLS peer would.
    let caller = ca.authenticate_client_cert(&[der(leaf)]).unwrap();
    assert_eq!(caller.identity, who);
    assert_eq!(caller.via, CallerKind::ClientCert);
}

#[test]
fn ttl_is_raised_to_the_minimum_and_zero_means_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let who = id("default", "app");
    let lifetime = |ttl| {
        let issued = ca.sign_csr(&csr_for(&who).1, &who, ttl).unwrap();
        issued.not_after.duration_since(SystemTime::now()).unwrap()
    };
    assert!(lifetime(Duration::from_secs(1)) > Duration::from_secs(590));
    assert!(lifetime(Duration::from_secs(1)) <= Duration::from_secs(600));
    assert!(lifetime(Duration::ZERO) > DAY - Duration::from_secs(60));
    let hour = lifetime(Duration::from_secs(3600));
    assert!(hour > Duration::from_secs(3590) && hour <= Duration::from_secs(3600));
    // Up to the maximum (90 days by default) a request is honoured; past it, refused.
    let ninety = Duration::from_secs(90 * 24 * 3600);
    assert!(lifetime(ninety) > ninety - Duration::from_secs(60));
    let refused = ca.sign_csr(&csr_for(&who).1, &who, ninety + Duration::from_secs(1));
    assert!(
        matches!(refused, Err(CaError::TtlTooLong { requested, max }) if max == ninety && requested > max),
        "{refused:?}"
    );
}

#[test]
fn keypair_for_sds() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let who = id("default", "app");
    let pair = ca.issue_keypair(&who, Duration::from_secs(3600)).unwrap();
    let key = rcgen::KeyPair::from_pem(&pair.key_pem).unwrap();
    assert_eq!(pair.cert_chain.len(), 2);
    with_cert(&pair.cert_chain[0], |cert| {
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
    });
    assert_eq!(
        ca.authenticate_client_cert(&[der(&pair.cert_chain[0])])
            .unwrap()
            .identity,
        who
    );
    let foreign = shoal_ca::Identity::new("other.domain", "default", "app").unwrap();
    assert!(matches!(
        ca.issue_keypair(&foreign, DAY),
        Err(CaError::CsrIdentityMismatch { .. })
    ));
}

#[test]
fn server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path());
    let names = vec!["shoal.istio-system.svc".to_string(), "10.0.0.7".to_string()];
    let pair = ca.issue_server_cert(&names, DAY).unwrap();
    with_cert(&pair.cert_chain[0], |cert| {
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![
                GeneralName::DNSName("shoal.istio-system.svc"),
                GeneralName::IPAddress(&[10, 0, 0, 7]),
                GeneralName::URI("spiffe://cluster.local/ns/istio-system/sa/shoal"),
            ]
        );
    });
    for bad in [
        "",
        "a..b",
        "-x.example",
        "x y",
        "spiffe://cluster.local/ns/a/sa/b",
    ] {
        assert!(
            matches!(
                ca.issue_server_cert(&[bad.to_string()], DAY),
                Err(CaError::InvalidServerName(_))
            ),
            "{bad:?}"
        );
    }
}
