//! The resource types shoal serves and their type URLs.

/// Type URLs, as Envoy, gRPC and ztunnel send them.
pub mod type_url {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    pub const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
    pub const AUTHORIZATION: &str = "type.googleapis.com/istio.security.Authorization";
    /// shoal's federation between groups (`shoal.federation.v1.ExportedService`).
    pub const FEDERATION: &str = "type.googleapis.com/shoal.federation.v1.ExportedService";
}

/// A resource type. The declaration order is the push order: clusters before their
/// endpoints, listeners before their routes (the xDS "make before break" sequencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    Secret,
    Address,
    Authorization,
    /// What a peer group exports (shoal's own type).
    Federation,
}

impl ResourceType {
    pub const ALL: [ResourceType; 8] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::Secret,
        ResourceType::Address,
        ResourceType::Authorization,
        ResourceType::Federation,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => type_url::CLUSTER,
            ResourceType::Endpoint => type_url::ENDPOINT,
            ResourceType::Listener => type_url::LISTENER,
            ResourceType::Route => type_url::ROUTE,
            ResourceType::Secret => type_url::SECRET,
            ResourceType::Address => type_url::ADDRESS,
            ResourceType::Authorization => type_url::AUTHORIZATION,
            ResourceType::Federation => type_url::FEDERATION,
        }
    }

    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Short name as Istio's tools print it (CDS, EDS, …).
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoint => "EDS",
            ResourceType::Listener => "LDS",
            ResourceType::Route => "RDS",
            ResourceType::Secret => "SDS",
            ResourceType::Address => "WDS",
            ResourceType::Authorization => "WADS",
            ResourceType::Federation => "FDS",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short_name())
    }
}
