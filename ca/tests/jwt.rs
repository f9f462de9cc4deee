//! Service-account token authentication.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use shoal_ca::auth::{IssuerKeys, TrustedIssuer};
use shoal_ca::{AuthError, CallerKind, JwtAuthenticator};

fn authenticator(ec: &EcIssuer) -> JwtAuthenticator {
    JwtAuthenticator::new(
        TD,
        vec![
            TrustedIssuer::new(ISSUER, IssuerKeys::Jwks(ec.jwks())),
            TrustedIssuer::new("rsa-issuer", IssuerKeys::Pem(vec![RSA_PUB.to_string()])),
        ],
    )
    .unwrap()
}

fn refuse(auth: &JwtAuthenticator, token: &str) -> AuthError {
    match auth.authenticate(token) {
        Ok(caller) => panic!("accepted as {}", caller.identity),
        Err(e) => e,
    }
}

#[test]
fn valid_tokens() {
    let ec = EcIssuer::new("k1");
    let auth = authenticator(&ec);
    let caller = auth
        .authenticate(&ec.sign(&k8s_claims("istio-system", "ztunnel", Some("node-a"))))
        .unwrap();
    assert_eq!(caller.identity, id("istio-system", "ztunnel"));
    assert_eq!(caller.node.as_deref(), Some("node-a"));
    assert_eq!(caller.pod.as_deref(), Some("ztunnel-pod"));
    assert_eq!(caller.via, CallerKind::Jwt);

    // RS256 with a PEM key, identity from `sub` only (legacy-style claims).
    let claims = json!({
        "iss": "rsa-issuer", "aud": "istio-ca", "exp": now() + 600,
        "sub": "system:serviceaccount:default:bookinfo",
    });
    let caller = auth.authenticate(&rsa_token(&claims)).unwrap();
    assert_eq!(caller.identity, id("default", "bookinfo"));
    assert_eq!(caller.node, None);
}

#[test]
fn signature_and_algorithm_refusals() {
    let ec = EcIssuer::new("k1");
    let auth = authenticator(&ec);
    let claims = k8s_claims("default", "app", None);

    // Forged: same kid, another key.
    let forger = EcIssuer::new("k1");
    assert_eq!(
        refuse(&auth, &forger.sign(&claims)),
        AuthError::BadSignature
    );
    // A kid the issuer does not have.
    let stranger = EcIssuer::new("k9");
    assert_eq!(
        refuse(&auth, &stranger.sign(&claims)),
        AuthError::NoMatchingKey
    );

    // alg none, with and without a signature.
    let none = unsigned_token(&json!({"alg": "none", "typ": "JWT"}), &claims, b"");
    assert!(matches!(refuse(&auth, &none), AuthError::UnsupportedAlgorithm(a) if a == "none"));
    // HS256 keyed with the issuer's public key: the classic algorithm-confusion forgery.
    let mut rsa_claims = claims.clone();
    rsa_claims["iss"] = json!("rsa-issuer");
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &rsa_claims,
        &EncodingKey::from_secret(RSA_PUB.as_bytes()),
    )
    .unwrap();
    assert!(matches!(refuse(&auth, &hs), AuthError::UnsupportedAlgorithm(a) if a == "HS256"));
    // An RS256 token for the EC issuer has no key to verify with.
    let mut rs = claims.clone();
    rs["iss"] = json!(ISSUER);
    assert_eq!(refuse(&auth, &rsa_token(&rs)), AuthError::NoMatchingKey);
}

#[test]
fn claim_refusals() {
    let ec = EcIssuer::new("k1");
    let auth = authenticator(&ec);
    let base = k8s_claims("default", "app", None);
    let with = |key: &str, value: serde_json::Value| {
        let mut c = base.clone();
        c[key] = value;
        ec.sign(&c)
    };

    assert_eq!(
        refuse(&auth, &with("exp", json!(now() - 3600))),
        AuthError::Expired
    );
    assert_eq!(
        refuse(&auth, &with("nbf", json!(now() + 3600))),
        AuthError::NotYetValid
    );
    assert!(matches!(
        refuse(&auth, &with("iss", json!("https://evil.example"))),
        AuthError::UnknownIssuer(_)
    ));
    assert_eq!(
        refuse(&auth, &with("aud", json!(["kubernetes"]))),
        AuthError::WrongAudience
    );
    // Type confusion: a string `nbf`/`exp` must not be skipped.
    assert!(matches!(
        refuse(&auth, &with("nbf", json!("99999999999"))),
        AuthError::MalformedToken(_)
    ));
    assert!(matches!(
        refuse(&auth, &with("exp", json!("never"))),
        AuthError::MalformedToken(_)
    ));
    let mut no_aud = base.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert!(matches!(refuse(&auth, &ec.sign(&no_aud)), AuthError::MissingClaim(c) if c == "aud"));
    assert_eq!(
        refuse(
            &auth,
            &with("sub", json!("system:serviceaccount:kube-system:admin"))
        ),
        AuthError::ConflictingServiceAccount
    );
    let mut anonymous = base.clone();
    anonymous.as_object_mut().unwrap().remove("kubernetes.io");
    anonymous["sub"] = json!("alice");
    assert_eq!(
        refuse(&auth, &ec.sign(&anonymous)),
        AuthError::NoServiceAccount
    );
    assert!(matches!(
        refuse(&auth, &with("sub", json!(null)).replace('.', "..")),
        AuthError::MalformedToken(_)
    ));
}

#[test]
fn size_and_shape_refusals() {
    let ec = EcIssuer::new("k1");
    let auth = authenticator(&ec);
    let big = "a".repeat(shoal_ca::auth::jwt::MAX_TOKEN_BYTES + 1);
    assert!(matches!(
        refuse(&auth, &big),
        AuthError::TokenTooLarge { .. }
    ));
    for junk in ["", "a.b", "a.b.c", "....", "e30.e30.", "\u{0}.\u{0}.\u{0}"] {
        assert!(
            matches!(refuse(&auth, junk), AuthError::MalformedToken(_)),
            "{junk:?}"
        );
    }
}

#[test]
fn configuration_errors() {
    let hmac_only = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
    assert!(matches!(
        JwtAuthenticator::new(
            TD,
            vec![TrustedIssuer::new("x", IssuerKeys::Jwks(hmac_only.into()))]
        ),
        Err(AuthError::InvalidConfig(_))
    ));
    assert!(
        JwtAuthenticator::new(
            TD,
            vec![TrustedIssuer::new(
                "x",
                IssuerKeys::Pem(vec!["nope".into()])
            )]
        )
        .is_err()
    );
    let mut no_aud = TrustedIssuer::new("x", IssuerKeys::Pem(vec![RSA_PUB.into()]));
    no_aud.audiences.clear();
    assert!(JwtAuthenticator::new(TD, vec![no_aud]).is_err());
    assert!(shoal_ca::fuzzing::jwt_authenticator().is_some());
}
