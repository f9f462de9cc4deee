//! The kinds the Kubernetes source watches, and where the API server serves each: built-in
//! kinds at their fixed version (resource names from k8s-openapi), custom resources at the
//! first version their CRD serves that shoal reads, found by discovery.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::core::ApiResource;
use kube::discovery::Scope;
use kube::error::DiscoveryError;

use super::tracker::KindId;
use crate::meta::Kind;
use crate::parse::kind_for;
use crate::resources::{GATEWAY_API, ISTIO_NETWORKING, ISTIO_SECURITY, MULTICLUSTER};

/// A kind the source watches.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    pub id: KindId,
    /// Served by every API server (its resource is known without discovery).
    pub builtin: bool,
}

const fn builtin(kind: Kind, group: &'static str, name: &'static str) -> Watched {
    Watched {
        id: KindId { kind, group, name },
        builtin: true,
    }
}

const fn custom(kind: Kind, group: &'static str, name: &'static str) -> Watched {
    Watched {
        id: KindId { kind, group, name },
        builtin: false,
    }
}

/// Every kind shoal reads from a cluster (the kinds the file source reads).
pub const WATCHED: [Watched; 23] = [
    builtin(Kind::Namespace, "", "Namespace"),
    builtin(Kind::Node, "", "Node"),
    builtin(Kind::Service, "", "Service"),
    builtin(Kind::Pod, "", "Pod"),
    builtin(Kind::Secret, "", "Secret"),
    builtin(Kind::EndpointSlice, "discovery.k8s.io", "EndpointSlice"),
    custom(Kind::ServiceEntry, ISTIO_NETWORKING, "ServiceEntry"),
    custom(Kind::WorkloadEntry, ISTIO_NETWORKING, "WorkloadEntry"),
    custom(Kind::VirtualService, ISTIO_NETWORKING, "VirtualService"),
    custom(Kind::DestinationRule, ISTIO_NETWORKING, "DestinationRule"),
    custom(Kind::Sidecar, ISTIO_NETWORKING, "Sidecar"),
    custom(Kind::Gateway, ISTIO_NETWORKING, "Gateway"),
    custom(Kind::ProxyConfig, ISTIO_NETWORKING, "ProxyConfig"),
    custom(
        Kind::PeerAuthentication,
        ISTIO_SECURITY,
        "PeerAuthentication",
    ),
    custom(
        Kind::AuthorizationPolicy,
        ISTIO_SECURITY,
        "AuthorizationPolicy",
    ),
    custom(
        Kind::RequestAuthentication,
        ISTIO_SECURITY,
        "RequestAuthentication",
    ),
    custom(Kind::KubeGateway, GATEWAY_API, "Gateway"),
    custom(Kind::HttpRoute, GATEWAY_API, "HTTPRoute"),
    custom(Kind::GrpcRoute, GATEWAY_API, "GRPCRoute"),
    custom(Kind::TlsRoute, GATEWAY_API, "TLSRoute"),
    custom(Kind::TcpRoute, GATEWAY_API, "TCPRoute"),
    custom(Kind::ReferenceGrant, GATEWAY_API, "ReferenceGrant"),
    custom(Kind::ServiceExport, MULTICLUSTER, "ServiceExport"),
];

/// What is read from a remote cluster (Istio's multi-primary remote secrets): its service
/// discovery, and its Nodes for its pods' locality; Istio config comes from this cluster's
/// API server.
pub const REMOTE_WATCHED: [Watched; 4] = [
    builtin(Kind::Service, "", "Service"),
    builtin(Kind::Pod, "", "Pod"),
    builtin(Kind::EndpointSlice, "discovery.k8s.io", "EndpointSlice"),
    builtin(Kind::Node, "", "Node"),
];

/// Where a watched kind is served.
#[derive(Debug, Clone)]
pub struct Served {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// A built-in kind's resource.
fn builtin_resource(kind: Kind) -> Option<Served> {
    let (resource, namespaced) = match kind {
        Kind::Namespace => (ApiResource::erase::<Namespace>(&()), false),
        Kind::Node => (ApiResource::erase::<Node>(&()), false),
        Kind::Service => (ApiResource::erase::<Service>(&()), true),
        Kind::Pod => (ApiResource::erase::<Pod>(&()), true),
        Kind::Secret => (ApiResource::erase::<Secret>(&()), true),
        Kind::EndpointSlice => (ApiResource::erase::<EndpointSlice>(&()), true),
        _ => return None,
    };
    Some(Served {
        resource,
        namespaced,
    })
}

/// Where `watched` is served now: `Ok(None)` when the API server does not serve it (its CRD
/// is not installed, or serves no version shoal reads).
pub async fn resolve(client: &Client, watched: &Watched) -> Result<Option<Served>, kube::Error> {
    if watched.builtin {
        return Ok(builtin_resource(watched.id.kind));
    }
    let group = match kube::discovery::group(client, watched.id.group).await {
        Ok(g) => g,
        Err(kube::Error::Discovery(
            DiscoveryError::MissingApiGroup(_) | DiscoveryError::EmptyApiGroup(_),
        )) => return Ok(None),
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    // Versions in the server's preference order; the first that serves the kind at a
    // version shoal parses wins.
    for version in group.versions() {
        let found = group
            .versioned_resources(version)
            .into_iter()
            .find(|(r, _)| r.kind == watched.id.name);
        if let Some((resource, caps)) = found
            && kind_for(&resource.api_version, &resource.kind) == Some(watched.id.kind)
        {
            return Ok(Some(Served {
                namespaced: caps.scope == Scope::Namespaced,
                resource,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_shoal_reads_is_watched_once() {
        let mut kinds: Vec<Kind> = WATCHED.iter().map(|w| w.id.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), WATCHED.len());
        assert_eq!(kinds.len(), Kind::ALL.len());
    }

    #[test]
    fn remote_clusters_are_read_for_built_in_service_discovery_kinds_only() {
        for w in REMOTE_WATCHED {
            assert!(w.builtin, "{}", w.id.name);
            assert!(
                WATCHED.iter().any(|l| l.id == w.id),
                "{} is watched locally too",
                w.id.name
            );
            assert!(matches!(
                w.id.kind,
                Kind::Service | Kind::Pod | Kind::EndpointSlice | Kind::Node
            ));
        }
    }

    #[test]
    fn custom_kinds_are_watched_where_their_crds_serve_them() {
        for w in WATCHED.iter() {
            match crate::resources::custom_resource(w.id.kind) {
                Some(r) => {
                    assert!(!w.builtin, "{}", w.id.name);
                    assert_eq!((w.id.group, w.id.name), (r.group, r.name));
                }
                None => assert!(w.builtin, "{}: no CRD in resources.rs", w.id.name),
            }
        }
    }

    #[test]
    fn built_in_kinds_resolve_to_resources_shoal_parses() {
        for w in WATCHED.iter().filter(|w| w.builtin) {
            let served = builtin_resource(w.id.kind).expect("a resource");
            assert_eq!(served.resource.kind, w.id.name);
            assert_eq!(
                kind_for(&served.resource.api_version, &served.resource.kind),
                Some(w.id.kind)
            );
        }
    }
}
