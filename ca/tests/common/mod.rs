//! Shared helpers for the integration tests: CSRs, certificate inspection, token minting.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use serde_json::{Value, json};
use shoal_ca::{CertificateAuthority, CertificateDer, Identity};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

pub const TD: &str = "cluster.local";
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const RSA_PKCS8: &str = include_str!("../fixtures/rsa-2048-pkcs8.pem");
pub const RSA_PKCS1: &str = include_str!("../fixtures/rsa-2048-pkcs1.pem");
pub const RSA_PUB: &str = include_str!("../fixtures/rsa-2048-pub.pem");

pub fn id(ns: &str, sa: &str) -> Identity {
    Identity::new(TD, ns, sa).unwrap()
}

pub fn new_ca(dir: &Path) -> CertificateAuthority {
    CertificateAuthority::load_or_create(dir, TD).unwrap()
}

/// A CSR PEM with the given SANs, and its key.
pub fn csr(sans: Vec<SanType>) -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

/// A CSR asking for exactly `identity`.
pub fn csr_for(identity: &Identity) -> (KeyPair, String) {
    csr(vec![uri(&identity.spiffe_uri())])
}

pub fn der(pem_text: &str) -> CertificateDer<'static> {
    CertificateDer::from(pem::parse(pem_text).unwrap().into_contents())
}

pub fn with_cert<R>(pem_text: &str, f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
    let der = pem::parse(pem_text).unwrap().into_contents();
    let (rest, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(rest.is_empty());
    f(&cert)
}

/// Whether `child` (PEM) carries a valid signature by `parent`'s key (PEM).
pub fn signed_by(child: &str, parent: &str) -> bool {
    with_cert(parent, |p| {
        with_cert(child, |c| {
            c.issuer().as_raw() == p.subject().as_raw()
                && c.verify_signature(Some(p.public_key())).is_ok()
        })
    })
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a bound Kubernetes service-account token.
pub fn k8s_claims(ns: &str, sa: &str, node: Option<&str>) -> Value {
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": {"name": sa, "uid": "1"},
        "pod": {"name": format!("{sa}-pod"), "uid": "2"},
    });
    if let Some(node) = node {
        k8s["node"] = json!({"name": node, "uid": "3"});
    }
    json!({
        "iss": ISSUER,
        "aud": ["istio-ca"],
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "exp": now() + 3600,
        "iat": now(),
        "nbf": now() - 10,
        "kubernetes.io": k8s,
    })
}

/// An EC P-256 token issuer: signs tokens and publishes its JWKS.
pub struct EcIssuer {
    pub key: KeyPair,
    pub kid: String,
}

impl EcIssuer {
    pub fn new(kid: &str) -> Self {
        EcIssuer {
            key: KeyPair::generate().unwrap(),
            kid: kid.to_string(),
        }
    }

    pub fn jwks(&self) -> String {
        let raw = self.key.public_key_raw();
        assert_eq!(raw.len(), 65);
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
        }]})
        .to_string()
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

/// An RS256 token signed with the fixture RSA key.
pub fn rsa_token(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PKCS8.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

/// A token with an arbitrary header and no real signature.
pub fn unsigned_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}
