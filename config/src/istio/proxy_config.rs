//! `ProxyConfig` (`networking.istio.io/v1beta1`): per mesh (root namespace), namespace or
//! workload (`selector`), settings of the proxy process itself. Istio's injector and agent
//! read them when a workload starts; nothing in them changes xDS, so shoal validates and
//! reports them (a change needs a workload restart) rather than translating them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Attached, PolicySelector, PolicyTarget};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfigSpec {
    /// Workloads this applies to; none: every workload of the namespace (of the mesh in
    /// the root namespace).
    #[serde(default)]
    pub selector: Option<PolicySelector>,
    /// Envoy worker threads (0: one per core).
    #[serde(default)]
    pub concurrency: Option<i64>,
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
    #[serde(default)]
    pub image: Option<ProxyImage>,
}

impl Attached for ProxyConfigSpec {
    fn target(&self) -> PolicyTarget<'_> {
        PolicyTarget::selector(self.selector.as_ref())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyImage {
    #[serde(default)]
    pub image_type: Option<String>,
}
