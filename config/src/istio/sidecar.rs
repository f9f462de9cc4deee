use serde::{Deserialize, Serialize};

use super::{Attached, PolicyTarget, WorkloadSelector};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub ingress: Vec<IstioIngressListener>,
    #[serde(default)]
    pub egress: Vec<IstioEgressListener>,
    #[serde(default)]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Connection limits towards the application for every inbound port (an ingress
    /// listener's own `connectionPool` takes precedence).
    #[serde(default)]
    pub inbound_connection_pool: Option<super::ConnectionPoolSettings>,
}

/// A Sidecar selects like a policy (an absent or empty `workloadSelector` makes it the
/// namespace's default), but its selector never reaches other namespaces.
impl Attached for SidecarSpec {
    fn target(&self) -> PolicyTarget<'_> {
        PolicyTarget {
            selector: self.workload_selector.as_ref().map(|w| &w.labels),
            ..PolicyTarget::default()
        }
    }
}

/// `IstioIngressListener`: a port the workload receives traffic on, replacing the ports
/// derived from the services that select it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioIngressListener {
    #[serde(default)]
    pub port: Option<SidecarPort>,
    /// Address a bound (`captureMode: NONE`) listener listens on; `0.0.0.0` by default.
    #[serde(default)]
    pub bind: Option<String>,
    #[serde(default)]
    pub capture_mode: Option<CaptureMode>,
    /// Where the sidecar sends the traffic: `127.0.0.1:PORT`, `0.0.0.0:PORT` (the
    /// workload's own address) or `unix:///path`; by default the original destination.
    #[serde(default)]
    pub default_endpoint: Option<String>,
    /// TLS the sidecar terminates for this port (instead of mesh mTLS).
    #[serde(default)]
    pub tls: Option<super::ServerTlsSettings>,
    /// Limits on connections to the application.
    #[serde(default)]
    pub connection_pool: Option<super::ConnectionPoolSettings>,
}

/// Where traffic to hosts outside the registry goes: passed through (`ALLOW_ANY`, or to
/// `egressProxy`) or dropped (`REGISTRY_ONLY`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundTrafficPolicy {
    #[serde(default)]
    pub mode: Option<OutboundMode>,
    #[serde(default)]
    pub egress_proxy: Option<super::Destination>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    RegistryOnly,
    #[default]
    AllowAny,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioEgressListener {
    #[serde(default)]
    pub port: Option<SidecarPort>,
    #[serde(default)]
    pub bind: Option<String>,
    #[serde(default)]
    pub capture_mode: Option<CaptureMode>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `SidecarPort` (Istio's `Port` in a Sidecar listener).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarPort {
    #[serde(default)]
    pub number: i64,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    Default,
    Iptables,
    None,
}
