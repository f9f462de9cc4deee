//! Object identity: kinds, keys and metadata shared by every object.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::labels::Labels;

/// The kinds shoal understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Service,
    EndpointSlice,
    Pod,
    Node,
    /// A Kubernetes `Namespace` (cluster-scoped), read for its labels.
    Namespace,
    ServiceEntry,
    WorkloadEntry,
    VirtualService,
    DestinationRule,
    Sidecar,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    Gateway,
    Secret,
    ProxyConfig,
    /// `gateway.networking.k8s.io` `Gateway` (distinct from Istio's [`Kind::Gateway`]).
    KubeGateway,
    /// `gateway.networking.k8s.io` `HTTPRoute`.
    HttpRoute,
    /// `gateway.networking.k8s.io` `ReferenceGrant`.
    ReferenceGrant,
    /// `gateway.networking.k8s.io` `TLSRoute`.
    TlsRoute,
    /// `gateway.networking.k8s.io` `TCPRoute`.
    TcpRoute,
    /// `gateway.networking.k8s.io` `GRPCRoute`.
    GrpcRoute,
    /// The Multi-Cluster Services API's `ServiceExport` (`multicluster.x-k8s.io`): the
    /// Service of the same name is exported to the clusters of the set.
    ServiceExport,
}

impl Kind {
    pub const ALL: [Kind; 23] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Pod,
        Kind::Node,
        Kind::Namespace,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
        Kind::Gateway,
        Kind::Secret,
        Kind::ProxyConfig,
        Kind::KubeGateway,
        Kind::HttpRoute,
        Kind::ReferenceGrant,
        Kind::TlsRoute,
        Kind::TcpRoute,
        Kind::GrpcRoute,
        Kind::ServiceExport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Pod => "Pod",
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Gateway => "Gateway",
            Kind::Secret => "Secret",
            Kind::ProxyConfig => "ProxyConfig",
            // Qualified with its group (as kubectl names it): Istio's Gateway is "Gateway", and
            // both appear in issues and in the per-kind object count metric.
            Kind::KubeGateway => "Gateway.gateway.networking.k8s.io",
            Kind::HttpRoute => "HTTPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::TlsRoute => "TLSRoute",
            Kind::TcpRoute => "TCPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::ServiceExport => "ServiceExport",
        }
    }

    /// Served by every API server (the core group and `discovery.k8s.io`). The other kinds
    /// are custom resources, served once their CRDs are installed ([`crate::resources`]).
    pub fn builtin(self) -> bool {
        matches!(
            self,
            Kind::Service
                | Kind::EndpointSlice
                | Kind::Pod
                | Kind::Node
                | Kind::Namespace
                | Kind::Secret
        )
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Node | Kind::Namespace)
    }

    /// Whether objects of this kind shape translated config. Secrets are served as they are
    /// (gateway credentials); ProxyConfigs are read by the injector and agent at workload
    /// start. Their changes rebuild no view. Namespaces are translated: their labels decide
    /// which routes a Gateway API listener with `from: Selector` takes, so a change
    /// rebuilds every view (they are not [`Kind::endpoint_only`]).
    pub fn translated(self) -> bool {
        !matches!(self, Kind::Secret | Kind::ProxyConfig)
    }

    /// Kinds whose changes only move endpoints (never listeners, routes or clusters of
    /// Kubernetes services): the cheap incremental path.
    pub fn endpoint_only(self) -> bool {
        matches!(
            self,
            Kind::EndpointSlice | Kind::Pod | Kind::Node | Kind::WorkloadEntry
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The subset of Kubernetes `ObjectMeta` shoal reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
}

/// A `workloadSelector`/`selector`: every label must match. An empty selector selects all.
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
