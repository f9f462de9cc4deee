//! Workload identity for tests: a service-account token issuer shoal is told to trust, and
//! Envoy bootstraps that reach shoal's TLS xDS port with such a token.

use std::net::SocketAddr;

/// The issuer tests use (the `iss` of Kubernetes service-account tokens).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A token issuer: an ECDSA key, with its public key in a file for `--jwt-issuer`.
pub struct Issuer {
    key: rcgen::KeyPair,
    file: tempfile::NamedTempFile,
}

impl Issuer {
    pub fn new() -> anyhow::Result<Issuer> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), key.public_key_pem())?;
        Ok(Issuer { key, file })
    }

    /// `--jwt-issuer` value for shoal.
    pub fn arg(&self) -> String {
        format!("{ISSUER}={}", self.file.path().display())
    }

    /// A bound service-account token for `ns`/`sa` (audience `istio-ca`, valid an hour).
    pub fn token(&self, ns: &str, sa: &str) -> anyhow::Result<String> {
        self.token_with(ns, sa, None)
    }

    /// As [`Issuer::token`], for a pod on `node` (the `kubernetes.io.node` claim a bound
    /// service account token carries): what a ztunnel presents.
    pub fn token_on_node(&self, ns: &str, sa: &str, node: &str) -> anyhow::Result<String> {
        self.token_with(ns, sa, Some(node))
    }

    fn token_with(&self, ns: &str, sa: &str, node: Option<&str>) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let mut k8s = serde_json::json!({ "namespace": ns, "serviceaccount": { "name": sa } });
        if let Some(node) = node {
            k8s["node"] = serde_json::json!({ "name": node });
        }
        let claims = serde_json::json!({
            "iss": ISSUER,
            "aud": ["istio-ca"],
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
            "iat": now,
            "exp": now + 3600,
            "kubernetes.io": k8s,
        });
        let enc = jsonwebtoken::EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes())?;
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &enc,
        )?)
    }
}

/// An Envoy bootstrap with delta ADS over TLS to `xds` (trusting `root_pem`, checking the
/// server's name) that authenticates with `token`.
pub fn tls_bootstrap(
    node_id: &str,
    metadata: serde_json::Value,
    xds: SocketAddr,
    admin: SocketAddr,
    root_pem: &str,
    token: &str,
) -> serde_json::Value {
    bootstrap_with(
        node_id,
        metadata,
        xds,
        admin,
        root_pem,
        Some(token),
        None,
        "localhost",
    )
}

/// As [`tls_bootstrap`], verifying the server as `server_name` (what pilot-agent verifies:
/// the host of its discovery address, `istiod.istio-system.svc`).
pub fn tls_bootstrap_named(
    node_id: &str,
    metadata: serde_json::Value,
    xds: SocketAddr,
    admin: SocketAddr,
    root_pem: &str,
    token: &str,
    server_name: &str,
) -> serde_json::Value {
    bootstrap_with(
        node_id,
        metadata,
        xds,
        admin,
        root_pem,
        Some(token),
        None,
        server_name,
    )
}

/// As [`tls_bootstrap`], authenticating with a client certificate (chain PEM, key PEM)
/// instead of a token.
pub fn cert_bootstrap(
    node_id: &str,
    metadata: serde_json::Value,
    xds: SocketAddr,
    admin: SocketAddr,
    root_pem: &str,
    cert: (&str, &str),
) -> serde_json::Value {
    bootstrap_with(
        node_id,
        metadata,
        xds,
        admin,
        root_pem,
        None,
        Some(cert),
        "localhost",
    )
}

#[allow(clippy::too_many_arguments)]
fn bootstrap_with(
    node_id: &str,
    metadata: serde_json::Value,
    xds: SocketAddr,
    admin: SocketAddr,
    root_pem: &str,
    token: Option<&str>,
    cert: Option<(&str, &str)>,
    server_name: &str,
) -> serde_json::Value {
    let initial_metadata: Vec<serde_json::Value> = token
        .map(|t| serde_json::json!({ "key": "authorization", "value": format!("Bearer {t}") }))
        .into_iter()
        .collect();
    let certificates: Vec<serde_json::Value> = cert
        .map(|(chain, key)| {
            serde_json::json!({
                "certificate_chain": { "inline_string": chain },
                "private_key": { "inline_string": key }
            })
        })
        .into_iter()
        .collect();
    serde_json::json!({
        "node": { "id": node_id, "cluster": "test", "metadata": metadata },
        "bootstrap_extensions": crate::envoy::internal_listeners(),
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{
                    "envoy_grpc": { "cluster_name": "xds" },
                    "initial_metadata": initial_metadata
                }]
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
            "lds_config": { "ads": {}, "resource_api_version": "V3" }
        },
        "static_resources": { "clusters": [{
            "name": "xds",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": { "http2_protocol_options": {} }
                }
            },
            "transport_socket": { "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": server_name,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "tls_certificates": certificates,
                    "validation_context": {
                        "trusted_ca": { "inline_string": root_pem },
                        "match_typed_subject_alt_names": [{ "san_type": "DNS", "matcher": { "exact": server_name } }]
                    }
                }
            } },
            "load_assignment": { "cluster_name": "xds", "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": xds.ip().to_string(), "port_value": xds.port() }
            } } }] }] }
        }] },
        "admin": { "address": { "socket_address": { "address": admin.ip().to_string(), "port_value": admin.port() } } }
    })
}

/// The URI SANs of the certificates an Envoy holds (its `/certs`).
pub async fn envoy_cert_uris(admin: SocketAddr) -> Vec<String> {
    let Ok((_, body)) = crate::http_get(admin, "/certs", &[]).await else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut out = Vec::new();
    for c in v["certificates"].as_array().into_iter().flatten() {
        for cert in c["cert_chain"].as_array().into_iter().flatten() {
            for san in cert["subject_alt_names"].as_array().into_iter().flatten() {
                if let Some(uri) = san["uri"].as_str() {
                    out.push(uri.to_string());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What an Envoy's `/certs` says about its SDS certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldCerts {
    /// Serial numbers of its own (leaf) certificates.
    pub leaves: Vec<String>,
    /// The most CA certificates one validation context trusts.
    pub roots: usize,
}

pub async fn envoy_certs(admin: SocketAddr) -> HeldCerts {
    let Ok((_, body)) = crate::http_get(admin, "/certs", &[]).await else {
        return HeldCerts::default();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut held = HeldCerts::default();
    for c in v["certificates"].as_array().into_iter().flatten() {
        let roots = c["ca_cert"].as_array().map_or(0, Vec::len);
        held.roots = held.roots.max(roots);
        for cert in c["cert_chain"].as_array().into_iter().flatten() {
            if let Some(s) = cert["serial_number"].as_str() {
                held.leaves.push(s.to_string());
            }
        }
    }
    held.leaves.sort();
    held.leaves.dedup();
    held
}

/// The URI SANs of the first certificate of a PEM chain.
pub fn pem_uris(pem: &[u8]) -> Vec<String> {
    let Ok((_, p)) = x509_parser::pem::parse_x509_pem(pem) else {
        return Vec::new();
    };
    let Ok(cert) = p.parse_x509() else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

/// A gRPC client of shoal's TLS port that trusts `root_pem` (no client certificate).
pub fn tls_channel(port: u16, root_pem: &str) -> anyhow::Result<tonic::transport::Channel> {
    let config = crate::https::client_config(root_pem)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http2()
        .build();
    Ok(
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))?
            .connect_with_connector_lazy(https),
    )
}

/// A CSR (PEM) for a key generated here, with `uri` as its only SAN.
pub fn csr_for(uri: &str) -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into()?)];
    Ok(params.serialize_request(&key)?.pem()?)
}

/// A workload certificate from shoal's CA for `ns`/`sa`, asked for as Istio's agent asks
/// (a CSR and the service account's token): (chain PEM, key PEM).
pub async fn workload_cert(
    shoal: &crate::Shoal,
    issuer: &Issuer,
    ns: &str,
    sa: &str,
) -> anyhow::Result<(String, String)> {
    let root = std::fs::read_to_string(shoal.data_dir().join("ca/shoal-root/root-cert.pem"))?;
    let channel = crate::xds::tls_channel(shoal.xds_tls(), &root).await?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let uri = format!("spiffe://cluster.local/ns/{ns}/sa/{sa}");
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.as_str().try_into()?)];
    let csr = params.serialize_request(&key)?.pem()?;
    let resp = create_certificate(&channel, &issuer.token(ns, sa)?, csr).await?;
    // The response ends with the root, which a peer already trusts.
    let leaf_and_intermediates = &resp.cert_chain[..resp.cert_chain.len().saturating_sub(1)];
    Ok((leaf_and_intermediates.concat(), key.serialize_pem()))
}

/// Istio's `CreateCertificate` with `token` as the bearer credential.
pub async fn create_certificate(
    channel: &tonic::transport::Channel,
    token: &str,
    csr: String,
) -> Result<shoal_ca::grpc::IstioCertificateResponse, tonic::Status> {
    create_certificate_for(channel, token, csr, None).await
}

/// As [`create_certificate`], asking for `impersonated` (a SPIFFE URI) with Istio's
/// `ImpersonatedIdentity` metadata, as ztunnel asks for the workloads of its node.
pub async fn create_certificate_for(
    channel: &tonic::transport::Channel,
    token: &str,
    csr: String,
    impersonated: Option<&str>,
) -> Result<shoal_ca::grpc::IstioCertificateResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let metadata = impersonated.map(|uri| prost_types::Struct {
        fields: [(
            shoal_ca::grpc::IMPERSONATED_IDENTITY_KEY.to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(uri.to_string())),
            },
        )]
        .into(),
    });
    let mut req = tonic::Request::new(shoal_ca::grpc::IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata,
    });
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("token is not a header value"))?;
    req.metadata_mut().insert("authorization", bearer);
    grpc.unary(
        req,
        http::uri::PathAndQuery::from_static(shoal_ca::grpc::CREATE_CERTIFICATE_PATH),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A CA and a certificate for `names` it signed: (CA PEM, certificate PEM, key PEM).
pub fn ca_and_leaf(ca_name: &str, names: &[&str]) -> anyhow::Result<(String, String, String)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)?.signed_by(&key, &issuer)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// A certificate for `spiffe_uri` issued by the plug-in CA in `dir` (Istio's `cacerts`
/// layout), as that CA would issue it: (chain PEM up to the intermediate, key PEM).
pub fn issued_by(dir: &std::path::Path, spiffe_uri: &str) -> anyhow::Result<(String, String)> {
    let ca_pem = std::fs::read_to_string(dir.join("ca-cert.pem"))?;
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca-key.pem"))?)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(spiffe_uri.try_into()?)];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let cert = params.signed_by(&key, &issuer)?;
    Ok((format!("{}{ca_pem}", cert.pem()), key.serialize_pem()))
}

/// A root CA for plug-in CAs of several clusters (Istio's common root).
pub struct SharedRoot {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl SharedRoot {
    pub fn new(name: &str) -> anyhow::Result<SharedRoot> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key)?;
        Ok(SharedRoot {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// Writes Istio's `cacerts` layout for one cluster into `dir` (an intermediate CA of
    /// this root): what `shoal serve --ca-dir DIR` plugs in.
    pub fn plug_in(&self, dir: &std::path::Path, cluster: &str) -> anyhow::Result<()> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{cluster} intermediate"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca-cert.pem"), cert.pem())?;
        std::fs::write(dir.join("ca-key.pem"), key.serialize_pem())?;
        std::fs::write(dir.join("root-cert.pem"), self.cert.pem())?;
        std::fs::write(
            dir.join("cert-chain.pem"),
            format!("{}{}", cert.pem(), self.cert.pem()),
        )?;
        Ok(())
    }
}
