//! The seed corpus of the `csr_pem` fuzz target (`ca/fuzz/seeds/csr_pem/`): validly signed
//! CSRs, one per outcome of the SAN policy, so the fuzzer starts past the signature check.
//! Each file is named after the outcome it must have (`ok-…` or a [`CaError::reason`]).
//! `SHOAL_WRITE_CSR_SEEDS=1 cargo test -p shoal-ca --test fuzz_seeds` regenerates them.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rcgen::{KeyPair, SanType};

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/csr_pem")
}

const ME: &str = "spiffe://cluster.local/ns/default/sa/app";

fn with_key(key: KeyPair, sans: Vec<SanType>) -> String {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn generate() -> Vec<(&'static str, String)> {
    let ip = SanType::IpAddress([10, 0, 0, 1].into());
    let email = SanType::Rfc822Name("a@example.com".try_into().unwrap());
    vec![
        ("ok-ec-p256.pem", csr(vec![uri(ME)]).1),
        (
            "ok-rsa-2048.pem",
            with_key(KeyPair::from_pem(RSA_PKCS8).unwrap(), vec![uri(ME)]),
        ),
        (
            "ok-ec-p384.pem",
            with_key(
                KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
                vec![uri(ME)],
            ),
        ),
        ("missing_san-none.pem", csr(vec![]).1),
        (
            "forbidden_san-dns.pem",
            csr(vec![uri(ME), dns("evil.example.com")]).1,
        ),
        ("forbidden_san-ip.pem", csr(vec![ip, uri(ME)]).1),
        ("forbidden_san-email.pem", csr(vec![uri(ME), email]).1),
        (
            "multiple_sans-two-uris.pem",
            csr(vec![uri(ME), uri("spiffe://cluster.local/ns/default/sa/b")]).1,
        ),
    ]
}

#[test]
fn seeds_have_the_outcome_their_name_says() {
    let dir = seeds_dir();
    if std::env::var_os("SHOAL_WRITE_CSR_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, pem) in generate() {
            std::fs::write(dir.join(name), pem).unwrap();
        }
    }
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let want = name.split('-').next().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let got = match shoal_ca::parse_csr_pem(&text) {
            Ok(csr) => {
                assert_eq!(csr.uri_san, ME, "{name}");
                "ok"
            }
            Err(e) => e.reason(),
        };
        assert_eq!(got, want, "{name}");
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} seeds in {}", dir.display());
}
