//! Arbitrary bytes as a bearer token: splitting, base64url, header and claim JSON,
//! algorithm selection and verification must never panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use shoal_ca::JwtAuthenticator;

static AUTH: LazyLock<Option<JwtAuthenticator>> =
    LazyLock::new(shoal_ca::fuzzing::jwt_authenticator);

fuzz_target!(|data: &[u8]| {
    if let Some(auth) = AUTH.as_ref() {
        shoal_ca::fuzzing::jwt(auth, data);
    }
});
