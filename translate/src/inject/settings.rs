//! What the injector needs besides the pod: the install's values (Istio's Helm `values.global`
//! and `sidecarInjectorWebhook`) and the MeshConfig fields the injection template reads.

use std::str::FromStr;

use serde_json::Value;

use super::ISTIO_VERSION;

/// Istio's default hub for release images (`values.global.hub` of a release build).
pub const DEFAULT_HUB: &str = "docker.io/istio";
/// The proxy image name (`values.global.proxy.image`).
pub const DEFAULT_IMAGE: &str = "proxyv2";
/// Where proxies find istiod, xDS and CA alike (`istiod.<istio namespace>.svc:15012`).
pub const DEFAULT_ISTIOD_ADDRESS: &str = "istiod.istio-system.svc:15012";
/// `values.global.multiCluster.clusterName` when unset.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// Whether pods of a selected namespace get a sidecar without asking
/// (`values.global.proxy.autoInject`, `--injection-policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InjectionPolicy {
    /// Injected unless the pod opts out (`sidecar.istio.io/inject: "false"`); Istio's default.
    #[default]
    Enabled,
    /// Injected only when the pod opts in (`sidecar.istio.io/inject: "true"`).
    Disabled,
}

/// An injection policy that is neither `enabled` nor `disabled`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown injection policy {0:?} (expected `enabled` or `disabled`)")]
pub struct UnknownPolicy(pub String);

impl FromStr for InjectionPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enabled" => Ok(InjectionPolicy::Enabled),
            "disabled" => Ok(InjectionPolicy::Disabled),
            other => Err(UnknownPolicy(other.to_string())),
        }
    }
}

/// The proxy's resources when the pod's annotations set none (`values.global.proxy.resources`).
/// Values are Kubernetes quantities, written as the API server prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyResources {
    pub requests_cpu: Option<String>,
    pub requests_memory: Option<String>,
    pub limits_cpu: Option<String>,
    pub limits_memory: Option<String>,
}

impl Default for ProxyResources {
    /// Istio's chart defaults (100m and 128Mi requested, 2000m and 1024Mi at most), as the API
    /// server canonicalises them.
    fn default() -> Self {
        ProxyResources {
            requests_cpu: Some("100m".into()),
            requests_memory: Some("128Mi".into()),
            limits_cpu: Some("2".into()),
            limits_memory: Some("1Gi".into()),
        }
    }
}

/// Everything the injector reads that is not the pod. [`Settings::default`] is an Istio
/// install with default values at [`ISTIO_VERSION`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Registry of the proxy image (`values.global.hub`).
    pub hub: String,
    /// Tag of the proxy image (`values.global.tag`).
    pub tag: String,
    /// The proxy image's name, or a full image reference when it contains a `/`
    /// (`values.global.proxy.image`).
    pub image: String,
    /// `imagePullPolicy` of the injected containers; left to Kubernetes when `None`.
    pub image_pull_policy: Option<String>,
    pub policy: InjectionPolicy,
    /// Inject into namespaces without any injection label
    /// (`sidecarInjectorWebhook.enableNamespacesByDefault`).
    pub namespaces_by_default: bool,
    /// Istio CNI sets up traffic capture: no `istio-init`; an unprivileged
    /// `istio-validation` init container checks the node plugin did it.
    pub cni: bool,
    /// ProxyConfig `discoveryAddress` (xDS server); in `PROXY_CONFIG` when not Istio's default.
    pub discovery_address: String,
    /// `CA_ADDR` of the proxy (`values.global.caAddress`); Istio's chart derives
    /// `istiod-REV.istio-system.svc:15012` for a revision, which is for the caller to set
    /// here (and in `discovery_address`).
    pub ca_address: String,
    /// `ISTIO_META_CLUSTER_ID` (`values.global.multiCluster.clusterName`).
    pub cluster_id: String,
    /// `ISTIO_META_NETWORK` (`values.global.network`); a pod's `topology.istio.io/network`
    /// label overrides it.
    pub network: Option<String>,
    /// MeshConfig `trustDomain`.
    pub trust_domain: String,
    /// `ISTIO_META_MESH_ID` (`values.global.meshID`); the trust domain when `None`.
    pub mesh_id: Option<String>,
    /// Kubernetes DNS suffix (`values.global.proxy.clusterDomain`).
    pub domain_suffix: String,
    /// MeshConfig `rootNamespace`: its ProxyConfigs apply mesh-wide.
    pub root_namespace: String,
    /// This control plane's revision (`istio.io/rev`); `None` is the default revision.
    pub revision: Option<String>,
    /// MeshConfig `defaultConfig`: the mesh-wide ProxyConfig, as written.
    pub default_proxy_config: Option<Value>,
    /// Run the proxy as a Kubernetes native sidecar (an init container with
    /// `restartPolicy: Always`) unless a pod says otherwise (`ENABLE_NATIVE_SIDECARS`).
    pub native_sidecars: bool,
    /// Rewrite app probes to go through the agent
    /// (`sidecarInjectorWebhook.rewriteAppHTTPProbe`).
    pub rewrite_app_probes: bool,
    /// MeshConfig `enablePrometheusMerge`: point `prometheus.io/*` at the agent, which
    /// merges the app's metrics with Envoy's.
    pub prometheus_merge: bool,
    pub proxy_resources: ProxyResources,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hub: DEFAULT_HUB.to_string(),
            tag: ISTIO_VERSION.to_string(),
            image: DEFAULT_IMAGE.to_string(),
            image_pull_policy: None,
            policy: InjectionPolicy::Enabled,
            namespaces_by_default: false,
            cni: false,
            discovery_address: DEFAULT_ISTIOD_ADDRESS.to_string(),
            ca_address: DEFAULT_ISTIOD_ADDRESS.to_string(),
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            network: None,
            trust_domain: "cluster.local".to_string(),
            mesh_id: None,
            domain_suffix: shoal_config::host::DEFAULT_DOMAIN_SUFFIX.to_string(),
            root_namespace: "istio-system".to_string(),
            revision: None,
            default_proxy_config: None,
            native_sidecars: false,
            rewrite_app_probes: true,
            prometheus_merge: true,
            proxy_resources: ProxyResources::default(),
        }
    }
}

impl Settings {
    /// Takes what an Istio MeshConfig sets (fields it leaves out keep their values).
    pub fn apply_mesh_config(&mut self, mesh: &shoal_config::mesh_config::MeshConfig) {
        if let Some(td) = &mesh.trust_domain {
            self.trust_domain = td.clone();
        }
        if let Some(root) = &mesh.root_namespace {
            self.root_namespace = root.clone();
        }
        if let Some(pc) = &mesh.default_config {
            self.default_proxy_config = Some(pc.clone());
        }
        if let Some(merge) = mesh
            .others
            .get("enablePrometheusMerge")
            .and_then(Value::as_bool)
        {
            self.prometheus_merge = merge;
        }
    }

    /// The revision name pods and namespaces select this control plane by.
    pub fn revision_name(&self) -> &str {
        self.revision.as_deref().unwrap_or("default")
    }

    /// Whether this is the default revision, which also serves `istio-injection=enabled`
    /// namespaces and pods labelled `sidecar.istio.io/inject=true`.
    pub fn is_default_revision(&self) -> bool {
        self.revision_name() == "default"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_istio_spells_them() {
        assert_eq!("enabled".parse(), Ok(InjectionPolicy::Enabled));
        assert_eq!("disabled".parse(), Ok(InjectionPolicy::Disabled));
        assert_eq!(
            "on".parse::<InjectionPolicy>(),
            Err(UnknownPolicy("on".into()))
        );
    }

    #[test]
    fn mesh_config_sets_what_the_injector_reads() {
        let (mesh, _) = shoal_config::mesh_config::parse(
            "trustDomain: corp.example\nrootNamespace: mesh\nenablePrometheusMerge: false\n\
             defaultConfig: {holdApplicationUntilProxyStarts: true}\n",
        )
        .unwrap();
        let mut s = Settings::default();
        s.apply_mesh_config(&mesh);
        assert_eq!(s.trust_domain, "corp.example");
        assert_eq!(s.root_namespace, "mesh");
        assert!(!s.prometheus_merge);
        assert_eq!(
            s.default_proxy_config,
            Some(serde_json::json!({"holdApplicationUntilProxyStarts": true}))
        );
    }

    #[test]
    fn revisions() {
        let mut s = Settings::default();
        assert!(s.is_default_revision());
        s.revision = Some("canary".into());
        assert_eq!(s.revision_name(), "canary");
        assert!(!s.is_default_revision());
    }
}
