//! A typed config object of any supported kind.

use std::sync::Arc;

use serde::Serialize;

use crate::gateway_api::{
    GrpcRouteSpec, HttpRouteSpec, KubeGatewaySpec, L4RouteSpec, ReferenceGrantSpec,
};
use crate::istio::{
    AuthorizationPolicySpec, DestinationRuleSpec, GatewaySpec, PeerAuthenticationSpec,
    ProxyConfigSpec, RequestAuthenticationSpec, Resource, ServiceEntrySpec, SidecarSpec,
    VirtualServiceSpec, WorkloadEntrySpec,
};
use crate::k8s;
use crate::meta::{Kind, ObjectKey, ObjectMeta};

pub type ServiceEntry = Resource<ServiceEntrySpec>;
pub type WorkloadEntry = Resource<WorkloadEntrySpec>;
pub type VirtualService = Resource<VirtualServiceSpec>;
pub type DestinationRule = Resource<DestinationRuleSpec>;
pub type Sidecar = Resource<SidecarSpec>;
pub type PeerAuthentication = Resource<PeerAuthenticationSpec>;
pub type AuthorizationPolicy = Resource<AuthorizationPolicySpec>;
pub type RequestAuthentication = Resource<RequestAuthenticationSpec>;
pub type Gateway = Resource<GatewaySpec>;
pub type ProxyConfig = Resource<ProxyConfigSpec>;
/// A Kubernetes Gateway API `Gateway`.
pub type KubeGateway = Resource<KubeGatewaySpec>;
pub type HttpRoute = Resource<HttpRouteSpec>;
pub type ReferenceGrant = Resource<ReferenceGrantSpec>;
pub type TlsRoute = Resource<L4RouteSpec>;
pub type TcpRoute = Resource<L4RouteSpec>;
pub type GrpcRoute = Resource<GrpcRouteSpec>;
/// An MCS `ServiceExport`: its name and namespace are those of the Service it exports.
pub type ServiceExport = Resource<ServiceExportSpec>;

/// A `ServiceExport`'s spec: empty in the MCS API (v1alpha1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ServiceExportSpec {}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Service(k8s::Service),
    EndpointSlice(k8s::EndpointSlice),
    Pod(k8s::Pod),
    Node(k8s::Node),
    Namespace(k8s::Namespace),
    ServiceEntry(Box<ServiceEntry>),
    WorkloadEntry(Box<WorkloadEntry>),
    VirtualService(Box<VirtualService>),
    DestinationRule(Box<DestinationRule>),
    Sidecar(Box<Sidecar>),
    PeerAuthentication(Box<PeerAuthentication>),
    AuthorizationPolicy(Box<AuthorizationPolicy>),
    RequestAuthentication(Box<RequestAuthentication>),
    Gateway(Box<Gateway>),
    Secret(k8s::Secret),
    ProxyConfig(Box<ProxyConfig>),
    KubeGateway(Box<KubeGateway>),
    HttpRoute(Box<HttpRoute>),
    ReferenceGrant(Box<ReferenceGrant>),
    TlsRoute(Box<TlsRoute>),
    TcpRoute(Box<TcpRoute>),
    GrpcRoute(Box<GrpcRoute>),
    ServiceExport(Box<ServiceExport>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Pod(_) => Kind::Pod,
            Object::Node(_) => Kind::Node,
            Object::Namespace(_) => Kind::Namespace,
            Object::ServiceEntry(_) => Kind::ServiceEntry,
            Object::WorkloadEntry(_) => Kind::WorkloadEntry,
            Object::VirtualService(_) => Kind::VirtualService,
            Object::DestinationRule(_) => Kind::DestinationRule,
            Object::Sidecar(_) => Kind::Sidecar,
            Object::PeerAuthentication(_) => Kind::PeerAuthentication,
            Object::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Object::RequestAuthentication(_) => Kind::RequestAuthentication,
            Object::Gateway(_) => Kind::Gateway,
            Object::Secret(_) => Kind::Secret,
            Object::ProxyConfig(_) => Kind::ProxyConfig,
            Object::KubeGateway(_) => Kind::KubeGateway,
            Object::HttpRoute(_) => Kind::HttpRoute,
            Object::ReferenceGrant(_) => Kind::ReferenceGrant,
            Object::TlsRoute(_) => Kind::TlsRoute,
            Object::TcpRoute(_) => Kind::TcpRoute,
            Object::GrpcRoute(_) => Kind::GrpcRoute,
            Object::ServiceExport(_) => Kind::ServiceExport,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::ServiceEntry(o) => &o.metadata,
            Object::WorkloadEntry(o) => &o.metadata,
            Object::VirtualService(o) => &o.metadata,
            Object::DestinationRule(o) => &o.metadata,
            Object::Sidecar(o) => &o.metadata,
            Object::PeerAuthentication(o) => &o.metadata,
            Object::AuthorizationPolicy(o) => &o.metadata,
            Object::RequestAuthentication(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ProxyConfig(o) => &o.metadata,
            Object::KubeGateway(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
            Object::TlsRoute(o) => &o.metadata,
            Object::TcpRoute(o) => &o.metadata,
            Object::GrpcRoute(o) => &o.metadata,
            Object::ServiceExport(o) => &o.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
            Object::Namespace(o) => &mut o.metadata,
            Object::ServiceEntry(o) => &mut o.metadata,
            Object::WorkloadEntry(o) => &mut o.metadata,
            Object::VirtualService(o) => &mut o.metadata,
            Object::DestinationRule(o) => &mut o.metadata,
            Object::Sidecar(o) => &mut o.metadata,
            Object::PeerAuthentication(o) => &mut o.metadata,
            Object::AuthorizationPolicy(o) => &mut o.metadata,
            Object::RequestAuthentication(o) => &mut o.metadata,
            Object::Gateway(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ProxyConfig(o) => &mut o.metadata,
            Object::KubeGateway(o) => &mut o.metadata,
            Object::HttpRoute(o) => &mut o.metadata,
            Object::ReferenceGrant(o) => &mut o.metadata,
            Object::TlsRoute(o) => &mut o.metadata,
            Object::TcpRoute(o) => &mut o.metadata,
            Object::GrpcRoute(o) => &mut o.metadata,
            Object::ServiceExport(o) => &mut o.metadata,
        }
    }

    /// Namespace of the object ("" for cluster-scoped kinds).
    pub fn namespace(&self) -> &str {
        self.meta().namespace.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.meta().name
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(self.kind(), self.namespace(), self.name())
    }
}

/// Objects are shared between the store, snapshots and translation.
pub type SharedObject = Arc<Object>;

#[cfg(test)]
mod tests {
    /// A [`super::SharedObject`] is an object after 16 bytes of counts: within 240 bytes it
    /// takes jemalloc's 256-byte size class, above that the 320-byte one, 64 bytes more for
    /// every object in the store. Box a large variant (or a rarely set field) to stay under.
    #[test]
    fn an_object_takes_at_most_240_bytes() {
        assert!(
            size_of::<super::Object>() <= 240,
            "{}",
            size_of::<super::Object>()
        );
    }
}
