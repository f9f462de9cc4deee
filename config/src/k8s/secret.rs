//! Kubernetes `Secret` (core v1), read for the TLS credentials Istio gateways name with
//! `credentialName`.
//!
//! The keys are Istio's (`pilot/pkg/credentials/kube`): a certificate and key under `cert`
//! and `key` (a generic Secret) or else `tls.crt` and `tls.key` (`kubernetes.io/tls`); a CA
//! bundle for client verification under `cacert` or else `ca.crt`. Values come from `data`
//! (base64) and `stringData` (plain, winning over `data` as the API server merges them).
//!
//! Key material never leaves this type by accident: [`SecretBytes`] prints and serializes
//! as a length only, and parse errors of a Secret do not echo values (see `parse.rs`).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::meta::ObjectMeta;
use crate::validate::Validator;

/// Istio's keys of a generic Secret.
pub const GENERIC_CERT: &str = "cert";
pub const GENERIC_KEY: &str = "key";
pub const GENERIC_CA: &str = "cacert";
/// The keys of a `kubernetes.io/tls` Secret (and the CA key cert-manager adds).
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const TLS_CA: &str = "ca.crt";
/// `type` of a Kubernetes TLS Secret.
pub const TLS_TYPE: &str = "kubernetes.io/tls";

/// A Secret value: bytes that are never printed or serialized.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted: {} bytes>", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("<redacted: {} bytes>", self.0.len()))
    }
}

/// Decodes one value of a Secret's `data`: standard base64 with padding, as Kubernetes
/// writes it, line breaks tolerated.
pub fn decode_data_value(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(compact.as_bytes())
}

/// A base64 value of `data`.
struct Base64Value(Vec<u8>);

impl<'de> Deserialize<'de> for Base64Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        decode_data_value(&text)
            .map(Base64Value)
            .map_err(|_| serde::de::Error::custom("not valid base64"))
    }
}

/// The document as written.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecret {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, Base64Value>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

/// A Secret, with `data` decoded and `stringData` merged in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawSecret")]
pub struct Secret {
    pub metadata: ObjectMeta,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub data: BTreeMap<String, SecretBytes>,
}

impl From<RawSecret> for Secret {
    fn from(raw: RawSecret) -> Self {
        let mut data: BTreeMap<String, SecretBytes> = raw
            .data
            .into_iter()
            .map(|(k, v)| (k, SecretBytes(v.0)))
            .collect();
        for (k, v) in raw.string_data {
            data.insert(k, SecretBytes(v.into_bytes()));
        }
        Secret {
            metadata: raw.metadata,
            type_: raw.type_,
            data,
        }
    }
}

impl Secret {
    /// A non-empty value.
    pub fn value(&self, key: &str) -> Option<&[u8]> {
        self.data
            .get(key)
            .map(SecretBytes::as_bytes)
            .filter(|v| !v.is_empty())
    }

    /// The certificate chain and private key, as Istio reads them: `cert`/`key` first, else
    /// `tls.crt`/`tls.key`. `None` when neither pair is complete.
    pub fn certificate_and_key(&self) -> Option<(&[u8], &[u8])> {
        [(GENERIC_CERT, GENERIC_KEY), (TLS_CERT, TLS_KEY)]
            .into_iter()
            .find_map(|(c, k)| Some((self.value(c)?, self.value(k)?)))
    }

    /// The CA bundle client certificates are verified against: `cacert` first, else
    /// `ca.crt`.
    pub fn ca_certificate(&self) -> Option<&[u8]> {
        self.value(GENERIC_CA).or_else(|| self.value(TLS_CA))
    }
}

/// How many PEM blocks of certificates, and whether one is a private key.
fn pem_blocks(bytes: &[u8]) -> Option<Vec<String>> {
    let blocks = pem::parse_many(bytes).ok()?;
    (!blocks.is_empty()).then(|| blocks.iter().map(|b| b.tag().to_string()).collect())
}

fn is_certificates(bytes: &[u8]) -> bool {
    pem_blocks(bytes).is_some_and(|tags| tags.iter().all(|t| t == "CERTIFICATE"))
}

fn is_private_key(bytes: &[u8]) -> bool {
    pem_blocks(bytes).is_some_and(|tags| tags.len() == 1 && tags[0].ends_with("PRIVATE KEY"))
}

/// Light checks of the keys a gateway would be served: PEM that parses, certificates where
/// certificates belong and one private key where the key belongs. Messages name the key,
/// never its content.
pub(crate) fn validate(v: &mut Validator, s: &Secret) {
    if s.type_.as_deref() == Some(TLS_TYPE) {
        for key in [TLS_CERT, TLS_KEY] {
            if !s.data.contains_key(key) {
                v.error(
                    format!("data.{key}"),
                    format!("a {TLS_TYPE} Secret must have {key:?}"),
                );
            }
        }
    }
    // Only complete pairs are TLS credentials; a lone `key` may be anything else.
    for (c, k) in [(GENERIC_CERT, GENERIC_KEY), (TLS_CERT, TLS_KEY)] {
        let (Some(cert), Some(key)) = (s.value(c), s.value(k)) else {
            continue;
        };
        if !is_certificates(cert) {
            v.error(
                format!("data.{c}"),
                "is not a PEM certificate chain (value not shown)",
            );
        }
        if !is_private_key(key) {
            v.error(
                format!("data.{k}"),
                "is not one PEM private key (value not shown)",
            );
        }
    }
    for c in [GENERIC_CA, TLS_CA] {
        if let Some(ca) = s.value(c)
            && !is_certificates(ca)
        {
            v.error(
                format!("data.{c}"),
                "is not a PEM certificate bundle (value not shown)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAwQF\n-----END PRIVATE KEY-----\n";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn parse(yaml: &str) -> Secret {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn data_is_decoded_and_string_data_wins() {
        let s = parse(&format!(
            "metadata: {{name: a}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n  ca.crt: {}\nstringData:\n  ca.crt: |\n    {}",
            b64(CERT),
            b64(KEY),
            b64("old"),
            CERT.replace('\n', "\n    ")
        ));
        assert_eq!(
            s.certificate_and_key(),
            Some((CERT.as_bytes(), KEY.as_bytes()))
        );
        assert_eq!(
            s.ca_certificate()
                .map(|c| String::from_utf8_lossy(c).trim().to_string()),
            Some(CERT.trim().to_string())
        );
    }

    #[test]
    fn istio_prefers_the_generic_keys() {
        let s = Secret {
            data: [
                ("cert", "generic-cert"),
                ("key", "generic-key"),
                ("tls.crt", "tls-cert"),
                ("tls.key", "tls-key"),
                ("ca.crt", "tls-ca"),
                ("cacert", "generic-ca"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), SecretBytes::new(v.as_bytes().to_vec())))
            .collect(),
            ..Default::default()
        };
        assert_eq!(
            s.certificate_and_key(),
            Some((&b"generic-cert"[..], &b"generic-key"[..]))
        );
        assert_eq!(s.ca_certificate(), Some(&b"generic-ca"[..]));
        // An empty value does not count.
        let mut s = s;
        s.data.insert("cacert".into(), SecretBytes::default());
        assert_eq!(s.ca_certificate(), Some(&b"tls-ca"[..]));
    }

    #[test]
    fn values_never_print_or_serialize() {
        let s = parse(&format!(
            "metadata: {{name: a}}\nstringData: {{tls.key: {:?}}}",
            "TOP-SECRET-KEY"
        ));
        let debug = format!("{s:?}");
        assert!(!debug.contains("TOP-SECRET"), "{debug}");
        assert!(debug.contains("redacted: 14 bytes"), "{debug}");
        let json = serde_json::to_string(&s).expect("serializes");
        assert!(!json.contains("TOP-SECRET"), "{json}");
    }

    #[test]
    fn bad_base64_is_an_error_without_the_value() {
        let err = serde_json::from_str::<Secret>(r#"{"data": {"tls.key": "not*base64!"}}"#)
            .expect_err("rejected")
            .to_string();
        assert!(err.contains("not valid base64"), "{err}");
        assert!(!err.contains("not*base64"), "{err}");
    }
}
