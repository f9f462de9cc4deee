//! The `DownstreamTlsContext` of a TLS-terminating gateway server, as Istio's
//! `BuildListenerTLSContext` builds it for each `ServerTLSSettings` mode:
//!
//! - `SIMPLE`: the server certificate (files, or SDS `kubernetes://CREDENTIAL_NAME`), no
//!   client certificate asked for;
//! - `MUTUAL`: the same, and a client certificate required and verified against
//!   `caCertificates` (a file), or with a `credentialName` the SDS secret
//!   `kubernetes://CREDENTIAL_NAME-cacert` (served from the Secret `NAME-cacert` if it
//!   exists, else from the `cacert`/`ca.crt` key of the Secret `NAME`, as Istio does);
//!   `subjectAltNames`, `verifyCertificateSpki` and `verifyCertificateHash` restrict which
//!   client certificates pass;
//! - `OPTIONAL_MUTUAL`: as `MUTUAL`, but a client without a certificate is let in (one
//!   that presents a certificate must present a valid one);
//! - `ISTIO_MUTUAL`: the gateway's own workload certificate (SDS `default`) and a client
//!   certificate from the mesh CA required (SDS `ROOTCA`), as between sidecars.
//!
//! TLS versions default to TLS 1.2 as the minimum (Istio's gateway default). ALPN offers
//! HTTP/2 and HTTP/1.1 (Istio offers the same on TCP servers; its `istio-peer-exchange`
//! for ISTIO_MUTUAL TCP servers is left out: shoal has no metadata exchange filter).

use shoal_api::pb::envoy::config::core::v3::{DataSource, data_source};
use shoal_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, TlsCertificate,
    TlsParameters,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    tls_parameters::TlsProtocol,
};
use shoal_config::istio::{ServerTlsMode, ServerTlsSettings, TlsProtocolVersion};

use crate::envoy::boolv;
use crate::security::tls;

/// SDS name of a `credentialName`'s certificate and key (Istio's).
fn credential_secret(name: &str) -> String {
    format!("kubernetes://{name}")
}

/// SDS name of a `credentialName`'s CA bundle (Istio's `-cacert` suffix).
fn credential_ca_secret(name: &str) -> String {
    format!("kubernetes://{name}-cacert")
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

fn nonempty(o: &Option<String>) -> Option<&str> {
    o.as_deref().filter(|s| !s.is_empty())
}

fn tls_version(v: Option<TlsProtocolVersion>, default: TlsProtocol) -> i32 {
    (match v {
        None => default,
        Some(TlsProtocolVersion::Auto) => TlsProtocol::TlsAuto,
        Some(TlsProtocolVersion::V1_0) => TlsProtocol::TlSv10,
        Some(TlsProtocolVersion::V1_1) => TlsProtocol::TlSv11,
        Some(TlsProtocolVersion::V1_2) => TlsProtocol::TlSv12,
        Some(TlsProtocolVersion::V1_3) => TlsProtocol::TlSv13,
    }) as i32
}

/// What a client certificate must also satisfy besides its CA: SANs, SPKI and hashes.
fn client_checks(t: &ServerTlsSettings) -> CertificateValidationContext {
    CertificateValidationContext {
        match_typed_subject_alt_names: tls::typed_san_matchers(&t.subject_alt_names),
        verify_certificate_spki: t.verify_certificate_spki.clone(),
        verify_certificate_hash: t.verify_certificate_hash.clone(),
        ..Default::default()
    }
}

/// The server side of a TLS-terminating server. `None` for modes that do not terminate
/// (`PASSTHROUGH`, `AUTO_PASSTHROUGH`).
pub(crate) fn downstream(t: &ServerTlsSettings) -> Option<DownstreamTlsContext> {
    let mode = t.mode();
    let mut common = CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: tls_version(t.min_protocol_version, TlsProtocol::TlSv12),
            tls_maximum_protocol_version: tls_version(t.max_protocol_version, TlsProtocol::TlsAuto),
            cipher_suites: t.cipher_suites.clone(),
            ..Default::default()
        }),
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
        ..Default::default()
    };
    let credential = nonempty(&t.credential_name);
    match mode {
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough => return None,
        ServerTlsMode::IstioMutual => {
            common.tls_certificate_sds_secret_configs = vec![tls::sds(tls::WORKLOAD_CERT)];
            common.validation_context_type = Some(tls::mesh_peer_validation(
                &tls::SanMatch::exact_all(&t.subject_alt_names),
            ));
        }
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            match credential {
                Some(name) => common
                    .tls_certificate_sds_secret_configs
                    .push(tls::sds(&credential_secret(name))),
                None => common.tls_certificates.push(TlsCertificate {
                    certificate_chain: nonempty(&t.server_certificate).map(file),
                    private_key: nonempty(&t.private_key).map(file),
                    ..Default::default()
                }),
            }
            if mode != ServerTlsMode::Simple {
                let checks = client_checks(t);
                common.validation_context_type = Some(match credential {
                    Some(name) => ValidationContextType::CombinedValidationContext(
                        CombinedCertificateValidationContext {
                            default_validation_context: Some(checks),
                            validation_context_sds_secret_config: Some(tls::sds(
                                &credential_ca_secret(name),
                            )),
                            ..Default::default()
                        },
                    ),
                    None => {
                        ValidationContextType::ValidationContext(CertificateValidationContext {
                            trusted_ca: nonempty(&t.ca_certificates).map(file),
                            crl: nonempty(&t.ca_crl).map(file),
                            ..checks
                        })
                    }
                });
            }
        }
    }
    let require = matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::IstioMutual);
    Some(DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: require.then(|| boolv(true)),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: ServerTlsMode) -> ServerTlsSettings {
        ServerTlsSettings {
            mode: Some(mode),
            ..Default::default()
        }
    }

    fn sds_names(ctx: &DownstreamTlsContext) -> (Vec<String>, Option<String>) {
        let common = ctx.common_tls_context.as_ref().expect("common");
        let certs = common
            .tls_certificate_sds_secret_configs
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let ca = match &common.validation_context_type {
            Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
                Some(s.name.clone())
            }
            Some(ValidationContextType::CombinedValidationContext(c)) => c
                .validation_context_sds_secret_config
                .as_ref()
                .map(|s| s.name.clone()),
            _ => None,
        };
        (certs, ca)
    }

    #[test]
    fn each_mode_asks_for_what_istio_asks_for() {
        let with_credential = |mode| ServerTlsSettings {
            credential_name: Some("web".into()),
            ..settings(mode)
        };
        let simple = downstream(&with_credential(ServerTlsMode::Simple)).expect("simple");
        assert_eq!(
            sds_names(&simple),
            (vec!["kubernetes://web".to_string()], None)
        );
        assert_eq!(simple.require_client_certificate, None);

        let mutual = downstream(&with_credential(ServerTlsMode::Mutual)).expect("mutual");
        assert_eq!(
            sds_names(&mutual),
            (
                vec!["kubernetes://web".to_string()],
                Some("kubernetes://web-cacert".to_string())
            )
        );
        assert_eq!(mutual.require_client_certificate, Some(boolv(true)));

        let optional =
            downstream(&with_credential(ServerTlsMode::OptionalMutual)).expect("optional");
        assert_eq!(sds_names(&optional), sds_names(&mutual));
        assert_eq!(optional.require_client_certificate, None);

        let istio = downstream(&settings(ServerTlsMode::IstioMutual)).expect("istio");
        assert_eq!(
            sds_names(&istio),
            (vec!["default".to_string()], Some("ROOTCA".to_string()))
        );
        assert_eq!(istio.require_client_certificate, Some(boolv(true)));

        assert!(downstream(&settings(ServerTlsMode::Passthrough)).is_none());
        assert!(downstream(&settings(ServerTlsMode::AutoPassthrough)).is_none());
    }

    #[test]
    fn mutual_from_files_verifies_against_the_ca_file_and_pins() {
        let t = ServerTlsSettings {
            server_certificate: Some("/c.pem".into()),
            private_key: Some("/k.pem".into()),
            ca_certificates: Some("/ca.pem".into()),
            subject_alt_names: vec!["client.example.com".into()],
            verify_certificate_spki: vec!["spki".into()],
            verify_certificate_hash: vec!["AB:CD".into()],
            ..settings(ServerTlsMode::Mutual)
        };
        let ctx = downstream(&t).expect("mutual");
        let common = ctx.common_tls_context.expect("common");
        let Some(ValidationContextType::ValidationContext(v)) = common.validation_context_type
        else {
            panic!("a validation context");
        };
        assert_eq!(
            v.trusted_ca.and_then(|d| d.specifier),
            Some(data_source::Specifier::Filename("/ca.pem".into()))
        );
        assert_eq!(v.match_typed_subject_alt_names.len(), 1);
        assert_eq!(v.verify_certificate_spki, vec!["spki".to_string()]);
        assert_eq!(v.verify_certificate_hash, vec!["AB:CD".to_string()]);
    }
}
