//! The ProxyConfig a workload starts with, as Istio's injector computes it
//! (`pilot/pkg/model/proxy_config.go`, `EffectiveProxyConfig`): MeshConfig `defaultConfig`,
//! then the root namespace's ProxyConfig without selector, then the workload namespace's,
//! then the `proxy.istio.io/config` annotation, then the ProxyConfig of the workload's
//! namespace whose selector matches its labels. Where several resources could fill one
//! level, Istio takes the oldest; shoal, which keeps no creation times, the first by name.
//!
//! The result is what the injected agent reads from `PROXY_CONFIG`; the injector itself
//! reads `holdApplicationUntilProxyStarts`, `interceptionMode`, `proxyMetadata` and
//! `image.imageType` from it.

use serde_json::{Map, Value};
use shoal_config::istio::{
    Attached, AttachedPolicy, Level, PolicyTarget, ProxyConfigSpec, Workload, applicable,
};
use shoal_config::{ConfigSnapshot, Kind, Labels, Object};

use super::Settings;
use super::settings::DEFAULT_ISTIOD_ADDRESS;

/// The ProxyConfigs that apply to one workload, by level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyConfigLayers {
    /// MeshConfig `defaultConfig`, as written ([`Settings::default_proxy_config`]).
    pub mesh_default: Option<Value>,
    /// The root namespace's ProxyConfig without selector.
    pub mesh: Option<ProxyConfigSpec>,
    /// The workload namespace's ProxyConfig without selector.
    pub namespace: Option<ProxyConfigSpec>,
    /// The ProxyConfig of the workload's namespace that selects its labels.
    pub workload: Option<ProxyConfigSpec>,
}

/// A stored ProxyConfig as [`applicable`] sees it.
struct Stored<'a> {
    namespace: &'a str,
    spec: &'a ProxyConfigSpec,
}

impl AttachedPolicy for Stored<'_> {
    fn namespace(&self) -> &str {
        self.namespace
    }
    fn target(&self) -> PolicyTarget<'_> {
        self.spec.target()
    }
}

impl ProxyConfigLayers {
    /// The layers for a pod of `namespace` with `labels`, from the snapshot's ProxyConfigs
    /// and the settings' mesh default.
    pub fn for_pod(
        snapshot: &ConfigSnapshot,
        settings: &Settings,
        namespace: &str,
        labels: &Labels,
    ) -> ProxyConfigLayers {
        let stored: Vec<Stored<'_>> = snapshot
            .of_kind(Kind::ProxyConfig)
            .filter_map(|(key, entry)| match entry.object.as_ref() {
                Object::ProxyConfig(pc) => Some(Stored {
                    namespace: &key.namespace,
                    spec: &pc.spec,
                }),
                _ => None,
            })
            .collect();
        let mut layers = ProxyConfigLayers {
            mesh_default: settings.default_proxy_config.clone(),
            ..ProxyConfigLayers::default()
        };
        let root = settings.root_namespace.as_str();
        let workload = Workload { namespace, labels };
        for (level, pc) in applicable(&stored, root, workload) {
            let slot = match level {
                Level::Mesh => &mut layers.mesh,
                Level::Namespace => &mut layers.namespace,
                Level::Workload => &mut layers.workload,
                // Istio selects by labels within the workload's own namespace only: a
                // root-namespace selector matches the root namespace's workloads.
                Level::RootSelector if namespace == root => &mut layers.workload,
                Level::RootSelector => continue,
            };
            if slot.is_none() {
                *slot = Some(pc.spec.clone());
            }
        }
        layers
    }

    /// The effective ProxyConfig (a JSON object) with the pod's `proxy.istio.io/config`
    /// annotation, and `discoveryAddress` where it is not Istio's default.
    pub(crate) fn effective(&self, discovery_address: &str, annotation: Option<&Value>) -> Value {
        let mut merged = Value::Object(Map::new());
        if discovery_address != DEFAULT_ISTIOD_ADDRESS {
            merge(
                &mut merged,
                &serde_json::json!({ "discoveryAddress": discovery_address }),
            );
        }
        let resource = |pc: &Option<ProxyConfigSpec>| pc.as_ref().map(resource_json);
        let layers = [
            self.mesh_default.clone(),
            resource(&self.mesh),
            resource(&self.namespace),
            annotation.cloned(),
            resource(&self.workload),
        ];
        for layer in layers.iter().flatten() {
            merge(&mut merged, layer);
        }
        clean(&mut merged);
        merged
    }
}

/// A ProxyConfig resource as the MeshConfig ProxyConfig fields it sets (Istio's
/// `toMeshConfigProxyConfig`): `environmentVariables` are the agent's `proxyMetadata`.
fn resource_json(spec: &ProxyConfigSpec) -> Value {
    let mut pc = Map::new();
    if let Some(c) = spec.concurrency {
        pc.insert("concurrency".into(), c.into());
    }
    if !spec.environment_variables.is_empty() {
        let env = spec
            .environment_variables
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())));
        pc.insert("proxyMetadata".into(), Value::Object(env.collect()));
    }
    if let Some(image) = &spec.image {
        let mut i = Map::new();
        if let Some(t) = &image.image_type {
            i.insert("imageType".into(), t.clone().into());
        }
        pc.insert("image".into(), Value::Object(i));
    }
    Value::Object(pc)
}

/// Lays `top` over `base`: objects field by field (so `proxyMetadata` merges by variable),
/// any other value replaced.
fn merge(base: &mut Value, top: &Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Leaves out what the agent assumes anyway, as Istio's `cleanProxyConfig` does for the
/// fields shoal can see: the default discovery address and empty metadata.
fn clean(pc: &mut Value) {
    let Some(fields) = pc.as_object_mut() else {
        return;
    };
    if fields.get("discoveryAddress").and_then(Value::as_str) == Some(DEFAULT_ISTIOD_ADDRESS) {
        fields.remove("discoveryAddress");
    }
    if fields
        .get("proxyMetadata")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        fields.remove("proxyMetadata");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shoal_config::ConfigStore;
    use shoal_config::parse::parse_yaml;

    const CONFIGS: &str = "
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: mesh, namespace: istio-system}
spec: {concurrency: 1, environmentVariables: {A: mesh, B: mesh}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: ns, namespace: shop}
spec: {environmentVariables: {B: ns}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: cart, namespace: shop}
spec: {selector: {matchLabels: {app: cart}}, concurrency: 4}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: root-selector, namespace: istio-system}
spec: {selector: {matchLabels: {app: cart}}, concurrency: 8}
";

    fn snapshot() -> ConfigSnapshot {
        let mut store = ConfigStore::new();
        store.apply("pc.yaml", parse_yaml("pc.yaml", CONFIGS));
        store.snapshot()
    }

    #[test]
    fn layers_are_picked_by_level() {
        let labels = Labels::from([("app", "cart")]);
        let settings = Settings::default();
        let l = ProxyConfigLayers::for_pod(&snapshot(), &settings, "shop", &labels);
        assert_eq!(l.mesh.as_ref().and_then(|p| p.concurrency), Some(1));
        assert!(l.namespace.is_some());
        // The shop selector, not the root namespace's.
        assert_eq!(l.workload.as_ref().and_then(|p| p.concurrency), Some(4));
        let other = ProxyConfigLayers::for_pod(&snapshot(), &settings, "web", &labels);
        assert!(other.namespace.is_none() && other.workload.is_none());
    }

    #[test]
    fn precedence_follows_istio() {
        let labels = Labels::from([("app", "cart")]);
        let settings = Settings {
            default_proxy_config: Some(json!({"concurrency": 0, "proxyMetadata": {"M": "1"}})),
            ..Settings::default()
        };
        let l = ProxyConfigLayers::for_pod(&snapshot(), &settings, "shop", &labels);
        let annotation = json!({"concurrency": 3, "holdApplicationUntilProxyStarts": true});
        assert_eq!(
            l.effective(DEFAULT_ISTIOD_ADDRESS, Some(&annotation)),
            json!({
                // The selecting resource wins over the annotation.
                "concurrency": 4,
                "holdApplicationUntilProxyStarts": true,
                "proxyMetadata": {"A": "mesh", "B": "ns", "M": "1"},
            })
        );
    }

    #[test]
    fn a_custom_discovery_address_is_kept() {
        let l = ProxyConfigLayers::default();
        assert_eq!(l.effective(DEFAULT_ISTIOD_ADDRESS, None), json!({}));
        assert_eq!(
            l.effective("istiod-canary.istio-system.svc:15012", None),
            json!({"discoveryAddress": "istiod-canary.istio-system.svc:15012"})
        );
    }
}
