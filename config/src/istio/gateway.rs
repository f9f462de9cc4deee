//! `Gateway` (networking.istio.io): the ports, hosts and TLS settings a gateway proxy (an
//! Envoy started as `router~…`) serves. VirtualServices bind to a Gateway through their
//! `gateways` field to route what it accepts.

use serde::{Deserialize, Serialize};

use crate::meta::Labels;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Labels of the gateway workloads this Gateway configures. Empty selects every
    /// gateway proxy (see `translate/src/scope.rs`).
    #[serde(default)]
    pub selector: Labels,
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// One `Server`: a port, the hosts it accepts, and how TLS is handled on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    #[serde(default)]
    pub port: Option<ServerPort>,
    /// The address the listener binds to (default `0.0.0.0`).
    #[serde(default)]
    pub bind: Option<String>,
    /// `[NAMESPACE/]HOST`: which VirtualServices (by namespace) may serve which hosts.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub tls: Option<ServerTlsSettings>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A gateway server's `Port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerPort {
    #[serde(default)]
    pub number: i64,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub target_port: Option<i64>,
}

/// `ServerTLSSettings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsSettings {
    /// On a plain HTTP server: answer every request with a redirect to HTTPS.
    #[serde(default)]
    pub https_redirect: bool,
    #[serde(default)]
    pub mode: Option<ServerTlsMode>,
    #[serde(default)]
    pub server_certificate: Option<String>,
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub ca_certificates: Option<String>,
    #[serde(default)]
    pub credential_name: Option<String>,
    /// A CRL file (MUTUAL/OPTIONAL_MUTUAL with certificate files).
    #[serde(default)]
    pub ca_crl: Option<String>,
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// Base64 SHA-256 hashes of client certificates' SPKI, any of which must match.
    #[serde(default)]
    pub verify_certificate_spki: Vec<String>,
    /// Hex SHA-256 hashes of client certificates, any of which must match.
    #[serde(default)]
    pub verify_certificate_hash: Vec<String>,
    #[serde(default)]
    pub min_protocol_version: Option<TlsProtocolVersion>,
    #[serde(default)]
    pub max_protocol_version: Option<TlsProtocolVersion>,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
}

impl ServerTlsSettings {
    /// The mode, with Istio's default (`PASSTHROUGH`, the enum's zero value).
    pub fn mode(&self) -> ServerTlsMode {
        self.mode.unwrap_or(ServerTlsMode::Passthrough)
    }
}

/// `ServerTLSSettings.TLSmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    OptionalMutual,
}

/// `ServerTLSSettings.TLSProtocol`, ordered from oldest to newest (`TLS_AUTO` first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsProtocolVersion {
    #[serde(rename = "TLS_AUTO")]
    Auto,
    #[serde(rename = "TLSV1_0")]
    V1_0,
    #[serde(rename = "TLSV1_1")]
    V1_1,
    #[serde(rename = "TLSV1_2")]
    V1_2,
    #[serde(rename = "TLSV1_3")]
    V1_3,
}
