//! SDS secrets, as Istio names and shapes them: a workload's own `default` (certificate
//! chain and key) and `ROOTCA` (trust bundle), and gateway credentials (`credentialName`)
//! from Kubernetes TLS Secrets, `kubernetes://NAME` and `kubernetes://NAME-cacert`.
//!
//! Pure encoding: which proxy may receive which secret is decided by the server's identity
//! component, never here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shoal_api::Resource;
use shoal_api::pb::envoy::config::core::v3::{DataSource, data_source};
use shoal_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use shoal_config::{ConfigSnapshot, Kind, Object};

/// Name of the SDS secret holding a proxy's own certificate and key (Istio's).
pub const DEFAULT_SECRET: &str = "default";
/// Name of the SDS secret holding the trust bundle (Istio's).
pub const ROOT_SECRET: &str = "ROOTCA";
/// SDS name of a credential's certificate and key (Istio's).
pub const CREDENTIAL_PREFIX: &str = "kubernetes://";
/// Suffix of the SDS name of a credential's CA bundle (Istio's).
pub const CA_SUFFIX: &str = "-cacert";

/// Encoded credentials (`kubernetes://…` secrets) by namespace.
pub type Credentials = BTreeMap<String, Arc<Vec<Resource>>>;

/// A workload's own secrets: `default` with `chain_pem` (leaf and intermediates) and
/// `key_pem`, and `ROOTCA` with the concatenated `bundle` of trusted roots.
pub fn workload_secrets(chain_pem: &str, key_pem: &str, bundle: &[String]) -> Vec<Resource> {
    let default = Secret {
        name: DEFAULT_SECRET.into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(chain_pem.as_bytes().to_vec())),
            private_key: Some(inline(key_pem.as_bytes().to_vec())),
            ..Default::default()
        })),
    };
    vec![
        Resource::encode(DEFAULT_SECRET, &default),
        ca_secret(ROOT_SECRET.to_string(), bundle.concat().as_bytes()),
    ]
}

/// The credentials of every namespace, as Istio's SDS serves them: `kubernetes://NAME` is
/// the certificate and key of the Secret `NAME` (keys `cert`/`key`, else
/// `tls.crt`/`tls.key`); `kubernetes://NAME-cacert` is the CA bundle (`cacert`, else
/// `ca.crt`) of the Secret `NAME-cacert` if there is one, else of the Secret `NAME`. A
/// name ending in `-cacert` is always a CA bundle. Secrets without such keys serve nothing.
pub fn credentials(config: &ConfigSnapshot) -> Credentials {
    let mut by_ns: BTreeMap<String, BTreeMap<String, Resource>> = BTreeMap::new();
    let names: BTreeSet<(&str, &str)> = config
        .of_kind(Kind::Secret)
        .map(|(k, _)| (k.namespace.as_ref(), k.name.as_ref()))
        .collect();
    for (key, entry) in config.of_kind(Kind::Secret) {
        let Object::Secret(secret) = entry.object.as_ref() else {
            continue;
        };
        let out = by_ns.entry(key.namespace.to_string()).or_default();
        let name = key.name.as_ref();
        if name.ends_with(CA_SUFFIX) {
            if let Some(ca) = secret.ca_certificate() {
                let sds = format!("{CREDENTIAL_PREFIX}{name}");
                out.insert(sds.clone(), ca_secret(sds, ca));
            }
        } else if let Some((cert, key)) = secret.certificate_and_key() {
            let sds = format!("{CREDENTIAL_PREFIX}{name}");
            let tls = Secret {
                name: sds.clone(),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: Some(inline(cert.to_vec())),
                    private_key: Some(inline(key.to_vec())),
                    ..Default::default()
                })),
            };
            out.insert(sds.clone(), Resource::encode(sds, &tls));
        }
        let alias = format!("{name}{CA_SUFFIX}");
        if !name.ends_with(CA_SUFFIX)
            && !names.contains(&(key.namespace.as_ref(), alias.as_str()))
            && let Some(ca) = secret.ca_certificate()
        {
            let sds = format!("{CREDENTIAL_PREFIX}{alias}");
            out.insert(sds.clone(), ca_secret(sds, ca));
        }
    }
    by_ns
        .into_iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(ns, m)| (ns, Arc::new(m.into_values().collect())))
        .collect()
}

fn ca_secret(name: String, ca: &[u8]) -> Resource {
    let secret = Secret {
        name: name.clone(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(inline(ca.to_vec())),
                ..Default::default()
            },
        )),
    };
    Resource::encode(name, &secret)
}

fn inline(bytes: Vec<u8>) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use shoal_config::ConfigStore;
    use shoal_config::parse::parse_yaml;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAwQF\n-----END PRIVATE KEY-----\n";

    fn secret_yaml(ns: &str, name: &str, keys: &[&str]) -> String {
        let data: Vec<String> = keys
            .iter()
            .map(|k| {
                let v = if k.ends_with("key") { KEY } else { CERT };
                format!("  {k}: {v:?}")
            })
            .collect();
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n{}\n---\n",
            data.join("\n")
        )
    }

    fn config(yaml: &str) -> ConfigSnapshot {
        let mut store = ConfigStore::new();
        store.apply("c.yaml", parse_yaml("c.yaml", yaml));
        assert!(store.issues().is_empty(), "{:?}", store.issues());
        store.snapshot()
    }

    fn names(c: &Credentials, ns: &str) -> Vec<String> {
        c.get(ns)
            .map(|l| l.iter().map(|r| r.name.to_string()).collect())
            .unwrap_or_default()
    }

    fn decode(r: &Resource) -> Secret {
        prost::Message::decode(r.body.as_ref()).unwrap()
    }

    #[test]
    fn credentials_follow_istio_names_per_namespace() {
        let c = credentials(&config(
            &[
                secret_yaml("gw", "web", &["tls.crt", "tls.key", "ca.crt"]),
                secret_yaml("gw", "api", &["cert", "key"]),
                // `api`'s CA is a Secret of its own, `NAME-cacert`.
                secret_yaml("gw", "api-cacert", &["cacert"]),
                secret_yaml("gw", "token", &["token"]),
                secret_yaml("other", "web", &["tls.crt", "tls.key"]),
            ]
            .concat(),
        ));
        assert_eq!(
            names(&c, "gw"),
            [
                "kubernetes://api",
                "kubernetes://api-cacert",
                "kubernetes://web",
                "kubernetes://web-cacert"
            ]
        );
        assert_eq!(names(&c, "other"), ["kubernetes://web"]);
        let gw = c.get("gw").unwrap();
        assert!(matches!(
            decode(&gw[0]).r#type,
            Some(secret::Type::TlsCertificate(_))
        ));
        assert!(matches!(
            decode(&gw[1]).r#type,
            Some(secret::Type::ValidationContext(_))
        ));
    }

    #[test]
    fn a_workload_gets_its_chain_key_and_bundle() {
        let own = workload_secrets(CERT, KEY, &[CERT.to_string(), CERT.to_string()]);
        let names: Vec<&str> = own.iter().map(|r| r.name.as_ref()).collect();
        assert_eq!(names, [DEFAULT_SECRET, ROOT_SECRET]);
        let Some(secret::Type::TlsCertificate(tls)) = decode(&own[0]).r#type else {
            panic!("default is a certificate")
        };
        let bytes = |d: Option<DataSource>| match d.and_then(|d| d.specifier) {
            Some(data_source::Specifier::InlineBytes(b)) => b,
            other => panic!("{other:?}"),
        };
        assert_eq!(bytes(tls.private_key), KEY.as_bytes());
        let Some(secret::Type::ValidationContext(v)) = decode(&own[1]).r#type else {
            panic!("ROOTCA is a validation context")
        };
        assert_eq!(bytes(v.trusted_ca), [CERT, CERT].concat().as_bytes());
    }
}
