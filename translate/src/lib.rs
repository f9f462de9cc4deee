//! Pure translation: shoal's service model ([`model`]) into Envoy resources for one *view*
//! of the mesh ([`ViewKey`]: the proxies that see the same config).
//!
//! Envoy sidecars get Istio's shapes and names (`outbound|PORT|SUBSET|HOST` clusters,
//! `0.0.0.0_PORT` listeners with RDS route configs named by port, `VIP_PORT` listeners for
//! TCP and sniffed services (route config `HOST:PORT`), `virtualOutbound` and
//! `virtualInbound`, `inbound|PORT||` clusters); proxyless gRPC clients get `HOST:PORT`
//! api listeners with route configs named `outbound|PORT||HOST`.
//!
//! Istio security (module `security`): PeerAuthentication becomes the mTLS filter chains of
//! `virtualInbound`, RequestAuthentication their `jwt_authn` filter, AuthorizationPolicy
//! their RBAC filters, and DestinationRule TLS (or auto
//! mTLS) the transport sockets of outbound clusters. Certificates are SDS secrets served
//! over the same ADS stream (`default`, `ROOTCA`).
//!
//! Gateway API status ([`gateway_api_status`]): what Istio's gateway controller reports on
//! Gateways of class `istio` and the routes naming them, from the decisions translation
//! takes, for the server to write.
//!
//! Sidecar injection ([`inject`]): Istio's injector without the server, whether a pod gets
//! a sidecar, the pod with it and the admission patch.
//!
//! Invariants:
//! - No IO, no clocks, no randomness: equal inputs give byte-equal resources.
//! - A proxy only gets what its namespace may see (`exportTo`) and its `Sidecar` selects.
//! - Translation never fails as a whole: what cannot be built (an endpoint without an IP,
//!   a domain another virtual host already claimed) is left out, never an error.

pub(crate) mod ambient;
mod envoy;
pub mod federation;
pub mod inject;
mod locality;
pub mod model;
mod proxy;
mod scope;
pub mod sds;
mod security;
mod view;

pub use locality::ClientLocality;
pub use model::{Model, ModelDelta, ObjectStatus, gateway_api_status};
pub use proxy::{
    ClientCertForwarding, GatewayTopology, Generator, Interception, Proxy, ProxyError, ProxyType,
};
pub use scope::ViewKey;
pub use view::{Translator, ViewOutput};

use serde::Serialize;

/// Mesh-wide settings (Istio's MeshConfig subset shoal acts on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeshOptions {
    /// DNS suffix of Kubernetes services (`cluster.local`).
    pub domain_suffix: String,
    /// Namespace whose Sidecar, DestinationRule, PeerAuthentication and AuthorizationPolicy
    /// apply mesh-wide (`istio-system`).
    pub root_namespace: String,
    /// Upstream connect timeout for outbound clusters, in milliseconds.
    pub connect_timeout_ms: u64,
    /// The mesh's SPIFFE trust domain (`cluster.local`): workload identities are
    /// `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`, and authorization principals written for
    /// `cluster.local` mean this trust domain (Istio's alias rule).
    pub trust_domain: String,
    /// MeshConfig `trustDomainAliases`: trust domains whose identities count as the mesh's
    /// own in authorization. A principal of the trust domain, of an alias or of
    /// `cluster.local` matches the same identity in each of them (Istio's trust domain
    /// bundle).
    pub trust_domain_aliases: Vec<String>,
    /// Istio's `enableAutoMtls`: without DestinationRule TLS settings, clients use mTLS to
    /// endpoints that run a sidecar and plaintext to the others.
    pub auto_mtls: bool,
    /// MeshConfig `outboundTrafficPolicy.mode` (a Sidecar's own policy takes precedence).
    pub outbound_traffic_policy: shoal_config::istio::OutboundMode,
    /// Who fetches the keys of RequestAuthentication `jwksUri`s (Istio's
    /// `PILOT_JWT_ENABLE_REMOTE_JWKS`).
    pub jwks_fetch: model::JwksFetch,
    /// MeshConfig `accessLogFile` (with its encoding and format): Envoy proxies log every
    /// request and connection there.
    pub access_log: Option<AccessLogOptions>,
    /// MeshConfig `localityLbSetting`: the locality load balancing of every cluster whose
    /// DestinationRule sets none (`None`: Istio's default, enabled without rules).
    pub locality_lb_setting: Option<shoal_config::istio::LocalityLbSetting>,
    /// MeshConfig `discoverySelectors`: the namespaces in the mesh (all when empty). Applied
    /// before translation ([`shoal_config::discovery`]), by whoever feeds the translator.
    pub discovery_selectors: Vec<shoal_config::k8s::LabelSelector>,
    /// This control plane's revision (`--revision`): config labelled `istio.io/rev` for
    /// another one is ignored.
    pub revision: Option<String>,
    /// MeshConfig `defaultConfig`, the mesh-wide ProxyConfig: nothing of it reaches xDS;
    /// sidecar injection renders it into the pods' `PROXY_CONFIG`.
    pub proxy_defaults: Option<serde_json::Value>,
    /// This cluster's id (Istio's `CLUSTER_ID`, `Kubernetes` by default): the first part of
    /// a workload's uid in ztunnel's workload discovery.
    pub cluster_id: String,
    /// The network of this cluster's workloads (empty: the default network).
    pub network: String,
    /// `--network-gateway`: the east-west gateway (address, mTLS port) of each other
    /// network: sidecars reach endpoints there through it (Istio's multi-network model;
    /// more gateways are found in the config, see `model::NetworkGateway`).
    pub network_gateways: std::collections::BTreeMap<String, (String, u16)>,
    /// Istio's MeshNetworks (`--mesh-networks`, or the `istio` ConfigMap's `meshNetworks`):
    /// the network of endpoints no label places, and more networks' gateways.
    pub mesh_networks: shoal_config::mesh_networks::MeshNetworks,
    /// Which Services this group exports to its federation peers (`--federation-export`).
    pub federation_export: FederationExport,
}

/// Which Services a group exports to its federation peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FederationExport {
    /// Every public Service (`exportTo` `*`, Istio's default visibility).
    #[default]
    All,
    /// Only Services with a Multi-Cluster Services `ServiceExport` of the same name and
    /// namespace.
    ServiceExport,
}

/// Where and how Envoy proxies write access logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogOptions {
    /// A file path (`/dev/stdout` for the container log).
    pub path: String,
    /// JSON lines rather than text.
    pub json: bool,
    /// A custom format (for JSON, a JSON object of fields); Istio's default otherwise.
    pub format: Option<String>,
}

impl MeshOptions {
    /// This cluster's network: `--network`, else the one MeshNetworks assigns this cluster
    /// (`fromRegistry`), else the default (empty) network.
    pub fn own_network(&self) -> &str {
        if !self.network.is_empty() {
            return &self.network;
        }
        self.mesh_networks
            .of_registry(&self.cluster_id)
            .unwrap_or_default()
    }

    /// Takes what an Istio MeshConfig sets (fields it leaves out keep their values).
    pub fn apply_mesh_config(&mut self, mesh: &shoal_config::mesh_config::MeshConfig) {
        if let Some(td) = &mesh.trust_domain {
            self.trust_domain = td.clone();
        }
        if !mesh.trust_domain_aliases.is_empty() {
            self.trust_domain_aliases = mesh.trust_domain_aliases.clone();
        }
        if let Some(root) = &mesh.root_namespace {
            self.root_namespace = root.clone();
        }
        if let Some(auto) = mesh.enable_auto_mtls {
            self.auto_mtls = auto;
        }
        if let Some(t) = mesh.connect_timeout() {
            self.connect_timeout_ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        }
        if let Some(mode) = mesh.outbound_mode() {
            self.outbound_traffic_policy = mode;
        }
        if let Some(l) = &mesh.locality_lb_setting {
            self.locality_lb_setting = Some(l.clone());
        }
        self.discovery_selectors = mesh.discovery_selectors.clone();
        self.proxy_defaults = mesh.default_config.clone();
        if let Some(path) = mesh.access_log_file.as_deref() {
            // An empty path turns access logs off, as in Istio.
            self.access_log = (!path.is_empty()).then(|| AccessLogOptions {
                path: path.to_string(),
                json: mesh.access_log_encoding
                    == Some(shoal_config::mesh_config::AccessLogEncoding::Json),
                format: mesh.access_log_format.clone().filter(|f| !f.is_empty()),
            });
        }
    }
}

impl MeshOptions {
    /// The part of the config these options put in the mesh.
    pub fn discovery_scope(&self) -> shoal_config::discovery::DiscoveryScope {
        shoal_config::discovery::DiscoveryScope {
            selectors: self.discovery_selectors.clone(),
            revision: self.revision.clone(),
            root_namespace: self.root_namespace.clone(),
        }
    }
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            domain_suffix: shoal_config::host::DEFAULT_DOMAIN_SUFFIX.to_string(),
            root_namespace: "istio-system".to_string(),
            connect_timeout_ms: 10_000,
            trust_domain: "cluster.local".to_string(),
            trust_domain_aliases: Vec::new(),
            auto_mtls: true,
            outbound_traffic_policy: shoal_config::istio::OutboundMode::AllowAny,
            jwks_fetch: model::JwksFetch::Shoal,
            locality_lb_setting: None,
            access_log: None,
            discovery_selectors: Vec::new(),
            revision: None,
            proxy_defaults: None,
            cluster_id: "Kubernetes".to_string(),
            network: String::new(),
            network_gateways: std::collections::BTreeMap::new(),
            mesh_networks: Default::default(),
            federation_export: FederationExport::All,
        }
    }
}
