//! The Kubernetes kinds shoal reads, reduced to the fields it uses. Other fields of these
//! objects are accepted and ignored silently: Kubernetes objects carry much that a control
//! plane has no use for. A `Secret` is read for gateway credentials only (`secret.rs`), a
//! `Namespace` for its labels (`namespace.rs`), which [`LabelSelector`]s select.

use serde::{Deserialize, Serialize};

use crate::meta::{Labels, ObjectMeta};

mod label_selector;
mod namespace;
pub mod secret;
pub use label_selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
pub(crate) use namespace::validate as validate_namespace;
pub use namespace::{NAMESPACE_NAME_LABEL, Namespace, namespace_labels};
pub(crate) use secret::validate as validate_secret;
pub use secret::{Secret, SecretBytes};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
    /// Only its load balancer's addresses are kept (a Gateway's status reports them).
    #[serde(default)]
    pub status: ServiceStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub selector: Option<Labels>,
    #[serde(default)]
    pub external_name: Option<String>,
}

impl ServiceSpec {
    /// The Service's virtual IPs (`clusterIPs`, then `clusterIP`), each once; none for a
    /// headless Service (`None`).
    pub fn virtual_ips(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for ip in self.cluster_ips.iter().chain(self.cluster_ip.iter()) {
            if !ip.is_empty() && ip != "None" && !out.contains(ip) {
                out.push(ip.clone());
            }
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: i64,
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

/// `ServiceStatus`, reduced to the addresses its load balancer was given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
}

/// `LoadBalancerStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerStatus {
    /// A boxed slice, 8 bytes shorter than a vector: a [`Service`] is the largest unboxed
    /// variant of [`crate::Object`], which so stays within 240 bytes (see its size test).
    #[serde(default)]
    pub ingress: Box<[LoadBalancerIngress]>,
}

/// `LoadBalancerIngress`: an IP, a hostname, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerIngress {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}

/// Kubernetes' `IntOrString` (a port number or a named container port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub address_type: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    pub ports: Vec<SlicePort>,
}

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl EndpointSlice {
    pub fn service_name(&self) -> Option<&str> {
        self.metadata.labels.get(SERVICE_NAME_LABEL)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: EndpointConditions,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub target_ref: Option<ObjectReference>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    #[serde(default)]
    pub ready: Option<bool>,
    #[serde(default)]
    pub serving: Option<bool>,
    #[serde(default)]
    pub terminating: Option<bool>,
}

impl EndpointConditions {
    /// Kubernetes: a nil `ready` means ready.
    pub fn is_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlicePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// The pod shares its node's network (and so its IP with other pods).
    #[serde(default)]
    pub host_network: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    #[serde(default)]
    pub phase: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIp {
    #[serde(default)]
    pub ip: String,
}

impl Pod {
    /// Whether the pod has ended (`Succeeded` or `Failed`): its IPs may already belong to
    /// another pod, so, as in Istio, it is no workload any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// Every IP of the pod, primary first.
    pub fn ips(&self) -> Vec<&str> {
        let mut ips: Vec<&str> = self.status.pod_ip.iter().map(String::as_str).collect();
        for ip in &self.status.pod_ips {
            if !ips.contains(&ip.ip.as_str()) {
                ips.push(&ip.ip);
            }
        }
        ips
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// Well-known topology labels (Kubernetes and Istio).
pub mod topology {
    pub const REGION: &str = "topology.kubernetes.io/region";
    pub const ZONE: &str = "topology.kubernetes.io/zone";
    pub const SUBZONE: &str = "topology.istio.io/subzone";
    /// Pod label overriding the locality (`region/zone/subzone`).
    pub const ISTIO_LOCALITY: &str = "istio-locality";
    /// The network a workload is on (Istio's multi-network model).
    pub const NETWORK: &str = "topology.istio.io/network";
    /// The cluster a workload runs in (set on workloads a federated peer exported, and on
    /// what is read from a remote cluster).
    pub const CLUSTER: &str = "topology.istio.io/cluster";

    /// The cluster of an object with these labels: its `topology.istio.io/cluster` label,
    /// else `own` (this cluster's id: objects without the label are this cluster's).
    pub fn cluster_of<'a>(labels: &'a crate::Labels, own: &'a str) -> &'a str {
        labels.get(CLUSTER).unwrap_or(own)
    }
}
