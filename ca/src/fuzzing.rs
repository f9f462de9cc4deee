//! Entry points for the cargo-fuzz targets in `ca/fuzz`. They feed arbitrary bytes to the
//! parsers that face the network; any panic is a bug.

use crate::auth::{IssuerKeys, JwtAuthenticator, TrustedIssuer};

/// Parses and verifies arbitrary bytes as a CSR PEM (after the UTF-8 check the gRPC layer
/// performs).
pub fn csr_pem(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::csr::parse_csr_pem(text);
    }
}

/// A fixed authenticator (one EC P-256 issuer) for [`jwt`].
pub fn jwt_authenticator() -> Option<JwtAuthenticator> {
    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    JwtAuthenticator::new(
        "cluster.local",
        vec![TrustedIssuer::new(
            "https://kubernetes.default.svc",
            IssuerKeys::Jwks(JWKS.into()),
        )],
    )
    .ok()
}

/// Authenticates arbitrary bytes as a bearer token.
pub fn jwt(authenticator: &JwtAuthenticator, data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = authenticator.authenticate(token);
    }
}
