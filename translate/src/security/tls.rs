//! TLS contexts: Istio mTLS between sidecars (the workload certificate and the mesh trust
//! bundle, both served by shoal over the ADS stream as SDS secrets) and DestinationRule TLS
//! origination (SIMPLE, MUTUAL).
//!
//! Secret names follow Istio: `default` is the workload's certificate and key, `ROOTCA`
//! the trust bundle, `kubernetes://NAME` and `kubernetes://NAME-cacert` a DestinationRule's
//! `credentialName`. Certificate *files* named by a DestinationRule (`clientCertificate`,
//! `privateKey`, `caCertificates`) are read by Envoy itself (`filename` data sources):
//! shoal has no node agent to turn them into `file-cert:`/`file-root:` SDS secrets, and
//! never reads a proxy's file system.

use shoal_api::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, data_source::Specifier, transport_socket::ConfigType,
};
use shoal_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateProviderPluginInstance, CertificateValidationContext, CommonTlsContext,
    DownstreamTlsContext, SdsSecretConfig, SubjectAltNameMatcher, TlsCertificate, TlsParameters,
    UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    subject_alt_name_matcher::SanType,
    tls_parameters::TlsProtocol,
};
use shoal_api::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use shoal_api::pb::google::protobuf::Any;
use shoal_config::istio::{ClientTlsMode, ClientTlsSettings};

use crate::envoy::{ads, boolv, filters};

/// SDS name of the workload's certificate and key.
pub(crate) const WORKLOAD_CERT: &str = "default";
/// SDS name of the mesh trust bundle.
pub(crate) const ROOT_CA: &str = "ROOTCA";
/// ALPN a sidecar offers to another sidecar (Istio's in-mesh ALPN with metadata exchange).
pub(crate) const MESH_ALPN_OUT: [&str; 2] = ["istio-peer-exchange", "istio"];
/// ALPN a sidecar accepts on inbound mTLS.
pub(crate) const MESH_ALPN_IN: [&str; 4] = ["istio-peer-exchange", "istio", "h2", "http/1.1"];
/// Trust bundle for SIMPLE/MUTUAL origination without `caCertificates`: the system CAs (as
/// Istio does with `VERIFY_CERTIFICATE_AT_CLIENT`), at the path of Istio's proxy image.
pub(crate) const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An SDS secret fetched over the same ADS stream.
pub(crate) fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ads()),
    }
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

fn mesh_params() -> TlsParameters {
    TlsParameters {
        tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
        tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
        ..Default::default()
    }
}

/// A transport socket with a TLS context.
pub(crate) fn socket(context: Any) -> TransportSocket {
    TransportSocket {
        name: filters::TLS_TRANSPORT_SOCKET.into(),
        config_type: Some(ConfigType::TypedConfig(context)),
    }
}

/// A subject alternative name a peer may present: an identity, or (for a namespace's
/// SPIFFE identities) its prefix. Never interpreted as a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SanMatch {
    Exact(String),
    Prefix(String),
}

impl SanMatch {
    pub(crate) fn exact_all(sans: &[String]) -> Vec<SanMatch> {
        sans.iter().map(|s| SanMatch::Exact(s.clone())).collect()
    }
}

/// SAN matchers, each typed by the name's form: `scheme://…` is a URI (SPIFFE identities),
/// an IP address an IP SAN, anything else a DNS name.
fn san_matchers(sans: &[SanMatch]) -> Vec<SubjectAltNameMatcher> {
    sans.iter()
        .map(|san| {
            let (s, pattern) = match san {
                SanMatch::Exact(s) => (s, MatchPattern::Exact(s.clone())),
                SanMatch::Prefix(s) => (s, MatchPattern::Prefix(s.clone())),
            };
            let san_type = if s.contains("://") {
                SanType::Uri
            } else if s.parse::<std::net::IpAddr>().is_ok() {
                SanType::IpAddress
            } else {
                SanType::Dns
            };
            SubjectAltNameMatcher {
                san_type: san_type as i32,
                matcher: Some(StringMatcher {
                    match_pattern: Some(pattern),
                    ignore_case: false,
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// The mesh trust bundle over SDS, with the SANs a peer must present (if any).
fn mesh_validation(sans: &[SanMatch]) -> ValidationContextType {
    if sans.is_empty() {
        return ValidationContextType::ValidationContextSdsSecretConfig(sds(ROOT_CA));
    }
    ValidationContextType::CombinedValidationContext(CombinedCertificateValidationContext {
        default_validation_context: Some(CertificateValidationContext {
            match_typed_subject_alt_names: san_matchers(sans),
            ..Default::default()
        }),
        validation_context_sds_secret_config: Some(sds(ROOT_CA)),
        ..Default::default()
    })
}

/// The mesh trust bundle (SDS `ROOTCA`) as a validation context, with the SANs a peer must
/// present (if any): for contexts built elsewhere (a gateway's ISTIO_MUTUAL server).
pub(crate) fn mesh_peer_validation(sans: &[SanMatch]) -> ValidationContextType {
    mesh_validation(sans)
}

/// Exact SAN matchers typed by each name's form (URI, IP address or DNS name).
pub(crate) fn typed_san_matchers(sans: &[String]) -> Vec<SubjectAltNameMatcher> {
    san_matchers(&SanMatch::exact_all(sans))
}

/// Inbound mTLS on a sidecar: the workload certificate, a client certificate from the mesh
/// CA required.
pub(crate) fn downstream_mesh() -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(mesh_params()),
            tls_certificate_sds_secret_configs: vec![sds(WORKLOAD_CERT)],
            validation_context_type: Some(mesh_validation(&[])),
            alpn_protocols: MESH_ALPN_IN.map(String::from).to_vec(),
            ..Default::default()
        }),
        require_client_certificate: Some(boolv(true)),
        ..Default::default()
    }
}

/// Istio's SNI for mesh mTLS to a cluster: `outbound_.PORT_.SUBSET_.HOST`.
pub(crate) fn mesh_sni(port: u16, subset: &str, host: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{host}")
}

/// Outbound mTLS to another sidecar (ISTIO_MUTUAL, and auto mTLS): the workload
/// certificate, the mesh trust bundle, and the identities the destination may present.
pub(crate) fn upstream_mesh(sni: String, sans: &[SanMatch]) -> UpstreamTlsContext {
    UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(mesh_params()),
            tls_certificate_sds_secret_configs: vec![sds(WORKLOAD_CERT)],
            validation_context_type: Some(mesh_validation(sans)),
            alpn_protocols: MESH_ALPN_OUT.map(String::from).to_vec(),
            ..Default::default()
        }),
        sni,
        ..Default::default()
    }
}

/// The certificate-provider instance a proxyless gRPC workload's bootstrap defines for its
/// workload certificate and trust bundle (Istio's agent writes a `file_watcher` instance of
/// this name).
pub(crate) const GRPC_CERT_PROVIDER: &str = "default";

/// The TLS context of a proxyless gRPC workload: its certificate and the trust bundle
/// from its bootstrap's certificate provider, and the SANs a peer must present.
// `match_subject_alt_names` is deprecated in Envoy for the typed matchers, which gRPC's
// xDS clients do not read (gRFC A29 specifies the untyped field).
#[allow(deprecated)]
fn grpc_mesh_context(sans: &[SanMatch]) -> CommonTlsContext {
    let instance = |certificate_name: &str| CertificateProviderPluginInstance {
        instance_name: GRPC_CERT_PROVIDER.into(),
        certificate_name: certificate_name.into(),
    };
    let match_subject_alt_names = sans
        .iter()
        .map(|san| StringMatcher {
            match_pattern: Some(match san {
                SanMatch::Exact(s) => MatchPattern::Exact(s.clone()),
                SanMatch::Prefix(s) => MatchPattern::Prefix(s.clone()),
            }),
            ignore_case: false,
        })
        .collect();
    CommonTlsContext {
        tls_certificate_provider_instance: Some(instance(WORKLOAD_CERT)),
        validation_context_type: Some(ValidationContextType::ValidationContext(
            CertificateValidationContext {
                ca_certificate_provider_instance: Some(instance(ROOT_CA)),
                match_subject_alt_names,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Outbound mTLS from a proxyless gRPC client (gRFC A29): gRPC takes no SDS; its
/// certificate and trust bundle come from the bootstrap's certificate-provider instance,
/// named here, and it checks SANs with the untyped `match_subject_alt_names` (gRPC matches
/// them against the URI and DNS SANs).
pub(crate) fn upstream_grpc_mesh(sans: &[SanMatch]) -> UpstreamTlsContext {
    UpstreamTlsContext {
        common_tls_context: Some(grpc_mesh_context(sans)),
        ..Default::default()
    }
}

/// Inbound mTLS of a proxyless gRPC server: its certificate and the mesh trust bundle
/// from the bootstrap's certificate provider (gRPC servers check no SANs, as in Istio).
/// The caller decides whether a client certificate is required.
pub(crate) fn downstream_grpc_mesh() -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(grpc_mesh_context(&[])),
        ..Default::default()
    }
}

/// TLS origination with a DestinationRule's SIMPLE or MUTUAL settings. `None` for the
/// other modes.
pub(crate) fn upstream_settings(t: &ClientTlsSettings) -> Option<UpstreamTlsContext> {
    let mode = t.mode();
    if !matches!(mode, ClientTlsMode::Simple | ClientTlsMode::Mutual) {
        return None;
    }
    let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
    let credential = nonempty(&t.credential_name);
    let mut common = CommonTlsContext::default();
    if mode == ClientTlsMode::Mutual {
        match &credential {
            Some(name) => {
                common.tls_certificate_sds_secret_configs =
                    vec![sds(&format!("kubernetes://{name}"))];
            }
            None => {
                common.tls_certificates = vec![TlsCertificate {
                    certificate_chain: nonempty(&t.client_certificate).map(|p| file(&p)),
                    private_key: nonempty(&t.private_key).map(|p| file(&p)),
                    ..Default::default()
                }];
            }
        }
    }
    if t.insecure_skip_verify != Some(true) {
        let sans = san_matchers(&SanMatch::exact_all(&t.subject_alt_names));
        common.validation_context_type = Some(match &credential {
            Some(name) => ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: sans,
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(&format!(
                        "kubernetes://{name}-cacert"
                    ))),
                    ..Default::default()
                },
            ),
            None => ValidationContextType::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(file(
                    nonempty(&t.ca_certificates).as_deref().unwrap_or(SYSTEM_CA),
                )),
                match_typed_subject_alt_names: sans,
                crl: nonempty(&t.ca_crl).map(|p| file(&p)),
                ..Default::default()
            }),
        });
    }
    Some(UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: t.sni.clone().unwrap_or_default(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_types() {
        let sans = [
            "spiffe://cluster.local/ns/a/sa/b".to_string(),
            "10.0.0.1".to_string(),
            "api.example.com".to_string(),
        ];
        let types: Vec<i32> = san_matchers(&SanMatch::exact_all(&sans))
            .iter()
            .map(|m| m.san_type)
            .collect();
        assert_eq!(
            types,
            vec![
                SanType::Uri as i32,
                SanType::IpAddress as i32,
                SanType::Dns as i32
            ]
        );
    }

    #[test]
    fn simple_without_ca_trusts_system_roots_unless_insecure() {
        let t = ClientTlsSettings {
            mode: Some(ClientTlsMode::Simple),
            sni: Some("api.example.com".into()),
            ..Default::default()
        };
        let ctx = upstream_settings(&t).expect("simple");
        assert_eq!(ctx.sni, "api.example.com");
        let common = ctx.common_tls_context.expect("common");
        assert!(common.tls_certificates.is_empty());
        match common.validation_context_type {
            Some(ValidationContextType::ValidationContext(v)) => assert_eq!(
                v.trusted_ca.and_then(|d| d.specifier),
                Some(Specifier::Filename(SYSTEM_CA.into()))
            ),
            other => panic!("{other:?}"),
        }
        let insecure = ClientTlsSettings {
            insecure_skip_verify: Some(true),
            ..t
        };
        let common = upstream_settings(&insecure)
            .and_then(|c| c.common_tls_context)
            .expect("common");
        assert!(common.validation_context_type.is_none());
        let disabled = ClientTlsSettings {
            mode: Some(ClientTlsMode::Disable),
            ..Default::default()
        };
        assert!(upstream_settings(&disabled).is_none());
    }

    #[test]
    fn a_crl_file_checks_the_server_certificate() {
        let t = ClientTlsSettings {
            mode: Some(ClientTlsMode::Simple),
            ca_certificates: Some("/etc/certs/ca.pem".into()),
            ca_crl: Some("/etc/certs/ca.crl".into()),
            ..Default::default()
        };
        let common = upstream_settings(&t)
            .and_then(|c| c.common_tls_context)
            .expect("common");
        match common.validation_context_type {
            Some(ValidationContextType::ValidationContext(v)) => assert_eq!(
                v.crl.and_then(|d| d.specifier),
                Some(Specifier::Filename("/etc/certs/ca.crl".into()))
            ),
            other => panic!("{other:?}"),
        }
    }
}
