//! Arbitrary bytes never panic the CSR or token parsers.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use shoal_ca::fuzzing;

/// Text that looks like a CSR PEM, then arbitrary bytes.
const CSR_HEAD: &str = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn csr_pem_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzzing::csr_pem(&data);
    }

    #[test]
    fn csr_pem_prefix_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut data = CSR_HEAD.as_bytes().to_vec();
        data.extend(tail);
        fuzzing::csr_pem(&data);
    }

    /// Well-framed PEM around arbitrary DER reaches the ASN.1 parser.
    #[test]
    fn csr_der_never_panics(der in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let body = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        prop_assert!(shoal_ca::parse_csr_pem(&body).is_err());
    }

    #[test]
    fn jwt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let auth = fuzzing::jwt_authenticator().unwrap();
        fuzzing::jwt(&auth, &data);
    }

    /// Three base64url parts of arbitrary JSON-ish text get past the splitting stage.
    #[test]
    fn jwt_parts_never_panic(header in ".{0,200}", payload in ".{0,400}", sig in proptest::collection::vec(any::<u8>(), 0..128)) {
        use base64::Engine;
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{}.{}.{}", enc.encode(header), enc.encode(payload), enc.encode(sig));
        let auth = fuzzing::jwt_authenticator().unwrap();
        prop_assert!(auth.authenticate(&token).is_err());
    }
}
