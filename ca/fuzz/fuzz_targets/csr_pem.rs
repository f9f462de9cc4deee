//! Arbitrary bytes as the `csr` of a CreateCertificate request: PEM limits, DER parsing,
//! signature verification and the SAN policy must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shoal_ca::fuzzing::csr_pem(data);
});
