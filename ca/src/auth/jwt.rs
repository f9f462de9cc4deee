//! Kubernetes service-account JWTs, as Istio's CA accepts them.
//!
//! Before any key is touched the token is bounded in size and its header's `alg` is checked
//! against an allow-list of asymmetric algorithms: `none` and the HMAC family are refused
//! outright, so a public key can never be abused as an HMAC secret. The `iss` claim is read
//! unverified only to pick the issuer's keys; the signature, `exp`, `nbf`, `iss` and `aud`
//! are then verified by jsonwebtoken (≥ 10.3, which no longer skips wrongly-typed time
//! claims), and the claims are deserialized with strict types as a second guard.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::auth::{AuthError, Caller, CallerKind};
use crate::identity::Identity;

/// Largest token accepted. Kubernetes tokens are about 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The audience Istio's CA expects by default.
pub const DEFAULT_AUDIENCE: &str = "istio-ca";

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Verification keys of an issuer.
#[derive(Debug, Clone)]
pub enum IssuerKeys {
    /// A JWKS document (`{"keys": [...]}`), e.g. the API server's
    /// `/openid/v1/jwks`. Symmetric (`oct`) keys are ignored.
    Jwks(String),
    /// PEM public keys (SubjectPublicKeyInfo, or PKCS#1 for RSA), e.g. the API server's
    /// `--service-account-key-file`.
    Pem(Vec<String>),
}

/// One token issuer the CA trusts.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// Exact `iss` value (e.g. `https://kubernetes.default.svc.cluster.local`).
    pub issuer: String,
    /// Accepted audiences; a token must carry at least one of them.
    pub audiences: Vec<String>,
    pub keys: IssuerKeys,
}

impl TrustedIssuer {
    /// An issuer with Istio's default audience, `istio-ca`.
    pub fn new(issuer: impl Into<String>, keys: IssuerKeys) -> Self {
        TrustedIssuer {
            issuer: issuer.into(),
            audiences: vec![DEFAULT_AUDIENCE.to_string()],
            keys,
        }
    }
}

struct VerifyKey {
    kid: Option<String>,
    key: DecodingKey,
    algs: Vec<Algorithm>,
}

struct LoadedIssuer {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<VerifyKey>,
}

/// Verifies service-account tokens of the configured issuers.
pub struct JwtAuthenticator {
    trust_domain: String,
    issuers: Vec<LoadedIssuer>,
    leeway: Duration,
    /// Asked about tokens of issuers shoal has no keys of.
    reviewer: Option<std::sync::Arc<dyn super::TokenReviewer>>,
}

impl JwtAuthenticator {
    /// Loads every issuer's keys. Fails if an issuer has no usable key or no audience.
    pub fn new(trust_domain: &str, issuers: Vec<TrustedIssuer>) -> Result<Self, AuthError> {
        // Validates the trust domain with the identity rules.
        Identity::new(trust_domain, "x", "x")?;
        let issuers = issuers
            .into_iter()
            .map(load_issuer)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JwtAuthenticator {
            trust_domain: trust_domain.to_string(),
            issuers,
            leeway: Duration::from_secs(60),
            reviewer: None,
        })
    }

    /// Tokens of issuers without configured keys are reviewed by `reviewer` (Kubernetes
    /// TokenReview) rather than refused.
    pub fn with_reviewer(mut self, reviewer: std::sync::Arc<dyn super::TokenReviewer>) -> Self {
        self.reviewer = Some(reviewer);
        self
    }

    /// Clock-skew allowance for `exp` and `nbf` (default 60 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Verifies `token` and returns the service account it names.
    pub fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TokenTooLarge {
                len: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        let peek = peek(token)?;
        let Some(issuer) = self.issuers.iter().find(|i| i.issuer == peek.iss) else {
            return match &self.reviewer {
                Some(reviewer) => reviewer.review(token),
                None => Err(AuthError::UnknownIssuer(
                    peek.iss.chars().take(128).collect(),
                )),
            };
        };
        let claims = self.verify(token, &peek, issuer)?;
        self.caller(claims)
    }

    fn verify(&self, token: &str, peek: &Peek, issuer: &LoadedIssuer) -> Result<Claims, AuthError> {
        let candidates: Vec<&VerifyKey> = issuer
            .keys
            .iter()
            .filter(|k| k.algs.contains(&peek.alg))
            .filter(|k| peek.kid.is_none() || k.kid.is_none() || k.kid == peek.kid)
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::NoMatchingKey);
        }
        let mut validation = Validation::new(peek.alg);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        for candidate in candidates {
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => return Ok(data.claims),
                // Another key of the issuer may have signed it (key rollover).
                Err(e) if is_key_mismatch(e.kind()) => continue,
                Err(e) => return Err(map_error(e.kind())),
            }
        }
        Err(AuthError::BadSignature)
    }

    fn caller(&self, claims: Claims) -> Result<Caller, AuthError> {
        let from_sub = claims.sub.as_deref().and_then(|s| {
            let rest = s.strip_prefix("system:serviceaccount:")?;
            let (ns, sa) = rest.split_once(':')?;
            Some((ns.to_string(), sa.to_string()))
        });
        let k8s = claims.kubernetes.unwrap_or_default();
        let from_claim = match (k8s.namespace, k8s.serviceaccount) {
            (Some(ns), Some(sa)) => Some((ns, sa.name)),
            _ => None,
        };
        let (namespace, account) = match (from_claim, from_sub) {
            (Some(c), Some(s)) if c != s => return Err(AuthError::ConflictingServiceAccount),
            (Some(c), _) => c,
            (None, Some(s)) => s,
            (None, None) => return Err(AuthError::NoServiceAccount),
        };
        Ok(Caller {
            identity: Identity::new(self.trust_domain.clone(), namespace, account)?,
            node: k8s.node.map(|n| n.name),
            pod: k8s.pod.map(|p| p.name),
            via: CallerKind::Jwt,
        })
    }
}

/// What is read from a token before verification: enough to choose keys, nothing trusted.
struct Peek {
    alg: Algorithm,
    kid: Option<String>,
    iss: String,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct RawIssuer {
    iss: Option<String>,
}

/// Splits and decodes the header and the `iss` claim, checking the algorithm first.
fn peek(token: &str) -> Result<Peek, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::MalformedToken(
            "expected three dot-separated parts".into(),
        ));
    };
    let header: RawHeader = decode_part(header, "header")?;
    let alg_name = header
        .alg
        .ok_or_else(|| AuthError::MalformedToken("header has no alg".into()))?;
    let alg = allowed_alg(&alg_name)
        .ok_or_else(|| AuthError::UnsupportedAlgorithm(alg_name.chars().take(32).collect()))?;
    let payload: RawIssuer = decode_part(payload, "payload")?;
    let iss = payload
        .iss
        .ok_or_else(|| AuthError::MissingClaim("iss".into()))?;
    Ok(Peek {
        alg,
        kid: header.kid,
        iss,
    })
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str, what: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::MalformedToken(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::MalformedToken(format!("{what} is not the expected JSON object")))
}

/// The asymmetric algorithms accepted. Never `none`, never HS*.
fn allowed_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

fn is_key_mismatch(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
    )
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => {
            AuthError::MalformedToken(format!("claim {c:?} has the wrong type"))
        }
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        _ => AuthError::MalformedToken("claims do not decode".into()),
    }
}

/// The claims shoal reads, strictly typed: a string `exp` fails to deserialize.
#[derive(Deserialize)]
struct Claims {
    #[allow(dead_code)]
    exp: u64,
    #[allow(dead_code)]
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(rename = "kubernetes.io", default)]
    kubernetes: Option<KubernetesClaim>,
}

#[derive(Deserialize, Default)]
struct KubernetesClaim {
    namespace: Option<String>,
    serviceaccount: Option<NamedRef>,
    pod: Option<NamedRef>,
    node: Option<NamedRef>,
}

#[derive(Deserialize)]
struct NamedRef {
    name: String,
}

fn load_issuer(cfg: TrustedIssuer) -> Result<LoadedIssuer, AuthError> {
    if cfg.audiences.is_empty() {
        return Err(AuthError::InvalidConfig(format!(
            "issuer {:?} has no audience",
            cfg.issuer
        )));
    }
    let keys = match &cfg.keys {
        IssuerKeys::Jwks(doc) => keys_from_jwks(doc)?,
        IssuerKeys::Pem(pems) => pems
            .iter()
            .map(|p| key_from_pem(p))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if keys.is_empty() {
        return Err(AuthError::InvalidConfig(format!(
            "issuer {:?} has no usable RSA or EC key",
            cfg.issuer
        )));
    }
    Ok(LoadedIssuer {
        issuer: cfg.issuer,
        audiences: cfg.audiences,
        keys,
    })
}

fn keys_from_jwks(doc: &str) -> Result<Vec<VerifyKey>, AuthError> {
    // Keys are decoded one by one so that one key of an unknown type (a JWKS may hold
    // encryption or post-quantum keys) does not make the whole document unusable.
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_str(doc)
        .map_err(|e| AuthError::InvalidConfig(format!("JWKS does not parse: {e}")))?;
    let mut keys = Vec::new();
    for raw in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
            tracing::warn!("ignoring a JWKS key that does not parse");
            continue;
        };
        if let Some(key) = verify_key_from_jwk(&jwk)? {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// A signature-verification key from a JWK, or `None` for keys shoal must not use
/// (symmetric, encryption-only, or of an algorithm outside the allow-list).
fn verify_key_from_jwk(jwk: &Jwk) -> Result<Option<VerifyKey>, AuthError> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            vec![Algorithm::ES256]
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
            vec![Algorithm::ES384]
        }
        _ => {
            tracing::warn!(kid = ?jwk.common.key_id, "ignoring a JWKS key that is not RSA or EC P-256/P-384");
            return Ok(None);
        }
    };
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Ok(None);
    }
    // A key that names its algorithm is used for that algorithm only.
    let algs = match jwk.common.key_algorithm {
        None => family,
        Some(named) => match signing_alg(named) {
            Some(alg) if family.contains(&alg) => vec![alg],
            _ => return Ok(None),
        },
    };
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| AuthError::InvalidConfig(format!("JWKS key: {e}")))?;
    Ok(Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        key,
        algs,
    }))
}

/// The JWS algorithm a JWK names, if it is one shoal accepts.
fn signing_alg(named: KeyAlgorithm) -> Option<Algorithm> {
    Some(match named {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

fn key_from_pem(pem: &str) -> Result<VerifyKey, AuthError> {
    let bytes = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok(VerifyKey {
            kid: None,
            key,
            algs: RSA_ALGS.to_vec(),
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        // The curve decides which of the two verifies; the other simply fails.
        return Ok(VerifyKey {
            kid: None,
            key,
            algs: vec![Algorithm::ES256, Algorithm::ES384],
        });
    }
    Err(AuthError::InvalidConfig(
        "PEM is not an RSA or EC public key".into(),
    ))
}
