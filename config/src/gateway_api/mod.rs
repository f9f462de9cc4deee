//! Kubernetes Gateway API (`gateway.networking.k8s.io` v1, with the v1beta1 alias):
//! `Gateway` and `HTTPRoute`, `GRPCRoute` (v1, with the v1alpha2 alias; [`grpc`]),
//! `ReferenceGrant` (v1beta1), `TLSRoute` and `TCPRoute` (v1alpha2), field names as in the
//! API. Istio converts them into its own
//! Gateway and VirtualService model; so does shoal (`translate/src/model/gateway_api.rs`).
//! Fields shoal does not act on are reported by the parser rather than silently ignored.

use serde::{Deserialize, Serialize};

pub mod grpc;

pub use grpc::{
    GrpcFilterType, GrpcMethodMatch, GrpcMethodMatchType, GrpcRouteFilter, GrpcRouteMatch,
    GrpcRouteRule, GrpcRouteSpec,
};

/// The group of both kinds.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The class of a `Gateway` that names another network's east-west gateway (Istio's
/// multi-network ambient): its `spec.addresses` and `HBONE` listener say where it is.
pub const REMOTE_GATEWAY_CLASS: &str = "istio-remote";

/// `GatewaySpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeGatewaySpec {
    #[serde(default)]
    pub gateway_class_name: String,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Addresses requested for the gateway; shoal binds every address (`0.0.0.0`). Only
    /// `Hostname` addresses are read, as the Service whose addresses the Gateway's status
    /// reports (a manual deployment, as Istio has it).
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
}

/// `Listener`: one port, protocol and (optional) hostname routes attach to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub port: i64,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP` or `UDP`.
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub tls: Option<GatewayTlsConfig>,
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `GatewayTLSConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTlsConfig {
    #[serde(default)]
    pub mode: Option<TlsMode>,
    #[serde(default)]
    pub certificate_refs: Vec<SecretObjectReference>,
}

impl GatewayTlsConfig {
    /// The mode, with the API's default (`Terminate`).
    pub fn mode(&self) -> TlsMode {
        self.mode.unwrap_or(TlsMode::Terminate)
    }
}

/// `TLSModeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsMode {
    Terminate,
    Passthrough,
}

/// `SecretObjectReference` (a `Secret` in the core group unless said otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl SecretObjectReference {
    /// Whether it names a core `Secret` (group and kind defaulted as the API says).
    pub fn is_secret(&self) -> bool {
        self.group.as_deref().unwrap_or("").is_empty()
            && self.kind.as_deref().unwrap_or("Secret") == "Secret"
    }
}

/// `AllowedRoutes`: which routes may attach to a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
    #[serde(default)]
    pub kinds: Vec<RouteGroupKind>,
}

/// `RouteNamespaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    #[serde(default)]
    pub from: Option<FromNamespaces>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

/// `FromNamespaces` (default `Same`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromNamespaces {
    All,
    #[default]
    Same,
    Selector,
}

/// A Kubernetes `LabelSelector` (`matchLabels` and `matchExpressions`).
pub use crate::k8s::LabelSelector;

/// `RouteGroupKind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: String,
}

/// `GatewayAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    #[serde(default, rename = "type")]
    pub address_type: Option<String>,
    #[serde(default)]
    pub value: String,
}

/// `HTTPRouteSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// `ParentReference`: a Gateway (default) or, for mesh routing (GAMMA), a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub section_name: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
}

impl ParentReference {
    /// Whether it names a Gateway (group and kind defaulted as the API says).
    pub fn is_gateway(&self) -> bool {
        self.group.as_deref().unwrap_or(GROUP) == GROUP
            && self.kind.as_deref().unwrap_or("Gateway") == "Gateway"
    }

    /// Whether it names a core `Service` (mesh routing, GAMMA).
    pub fn is_service(&self) -> bool {
        self.group.as_deref().unwrap_or("").is_empty() && self.kind.as_deref() == Some("Service")
    }

    /// Whether it names an Istio `ServiceEntry`: mesh routing for its hosts, as Istio
    /// offers it (the Gateway API form of its egress-gateway task).
    pub fn is_service_entry(&self) -> bool {
        self.group.as_deref() == Some(ISTIO_NETWORKING)
            && self.kind.as_deref() == Some("ServiceEntry")
    }
}

/// The API group of Istio's networking kinds, which Istio accepts as route parents
/// (`ServiceEntry`) and backends (`ServiceEntry`, `Hostname`).
pub const ISTIO_NETWORKING: &str = "networking.istio.io";

/// What a backend reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A core `Service` (the default).
    Service,
    /// Istio's `Hostname`: a host of the registry by name, e.g. a ServiceEntry's host.
    Hostname,
    /// An Istio `ServiceEntry`, by name: its (first) host.
    ServiceEntry,
    /// Anything else: not routable.
    Other,
}

/// `HTTPRouteRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    #[serde(default)]
    pub timeouts: Option<HttpRouteTimeouts>,
}

/// `HTTPRouteMatch`: every condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    #[serde(default)]
    pub path: Option<HttpPathMatch>,
    #[serde(default)]
    pub headers: Vec<HttpHeaderMatch>,
    #[serde(default)]
    pub query_params: Vec<HttpHeaderMatch>,
    #[serde(default)]
    pub method: Option<String>,
}

/// `HTTPPathMatch` (default: `PathPrefix` `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<PathMatchType>,
    #[serde(default)]
    pub value: Option<String>,
}

impl HttpPathMatch {
    pub fn match_type(&self) -> PathMatchType {
        self.match_type.unwrap_or(PathMatchType::PathPrefix)
    }

    pub fn value(&self) -> &str {
        self.value.as_deref().unwrap_or("/")
    }
}

/// `PathMatchType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatchType {
    Exact,
    PathPrefix,
    RegularExpression,
}

/// `HTTPHeaderMatch` and `HTTPQueryParamMatch` (same shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeaderMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<ValueMatchType>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// `HeaderMatchType` / `QueryParamMatchType` (default `Exact`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatchType {
    #[default]
    Exact,
    RegularExpression,
}

/// `HTTPRouteFilter`: `type` names the one field that applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub filter_type: FilterType,
    #[serde(default)]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default)]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default)]
    pub request_redirect: Option<RequestRedirect>,
    #[serde(default, rename = "urlRewrite")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default)]
    pub request_mirror: Option<RequestMirror>,
}

/// `HTTPRouteFilterType`. `ExtensionRef` (implementation-specific) is not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestRedirect,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    RequestMirror,
    ExtensionRef,
}

/// `HTTPHeaderFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    #[serde(default)]
    pub set: Vec<HttpHeader>,
    #[serde(default)]
    pub add: Vec<HttpHeader>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `HTTPHeader`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// `HTTPRequestRedirectFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<HttpPathModifier>,
    #[serde(default)]
    pub port: Option<i64>,
    /// 301 or 302 (default 302).
    #[serde(default)]
    pub status_code: Option<i64>,
}

/// `HTTPURLRewriteFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<HttpPathModifier>,
}

/// `HTTPPathModifier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathModifier {
    #[serde(rename = "type")]
    pub modifier_type: PathModifierType,
    #[serde(default)]
    pub replace_full_path: Option<String>,
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

/// `HTTPPathModifierType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathModifierType {
    ReplaceFullPath,
    ReplacePrefixMatch,
}

/// `HTTPRequestMirrorFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    #[serde(default)]
    pub backend_ref: BackendRef,
    /// Percent of requests mirrored (default all).
    #[serde(default)]
    pub percent: Option<i64>,
}

/// `BackendObjectReference` (a core `Service` unless said otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
}

impl BackendRef {
    /// Whether it names a core `Service`.
    pub fn is_service(&self) -> bool {
        self.kind() == BackendKind::Service
    }

    /// What it names (group and kind defaulted as the API says).
    pub fn kind(&self) -> BackendKind {
        match (
            self.group.as_deref().unwrap_or(""),
            self.kind.as_deref().unwrap_or("Service"),
        ) {
            ("", "Service") => BackendKind::Service,
            (ISTIO_NETWORKING, "Hostname") => BackendKind::Hostname,
            (ISTIO_NETWORKING, "ServiceEntry") => BackendKind::ServiceEntry,
            _ => BackendKind::Other,
        }
    }
}

/// `HTTPBackendRef`: a backend and its weight (default 1). Per-backend `filters` are not
/// supported (reported as an unknown field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub weight: Option<i64>,
}

impl HttpBackendRef {
    /// The referenced backend, without the weight.
    pub fn backend(&self) -> BackendRef {
        BackendRef {
            group: self.group.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            port: self.port,
        }
    }
}

/// `HTTPRouteTimeouts` (Gateway API durations, a subset of Go's syntax).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub backend_request: Option<String>,
}

/// `ReferenceGrantSpec`: which objects of other namespaces may refer to objects of the
/// grant's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

/// `ReferenceGrantFrom`: a kind of object (group `""` is core) in a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
}

/// `ReferenceGrantTo`: a kind of object of the grant's namespace, all of them or the one
/// named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl ReferenceGrantSpec {
    /// Whether it lets a `from_kind` of `from_ns` refer to the `to_kind` named `to_name`
    /// (of the grant's namespace).
    pub fn allows(
        &self,
        (from_group, from_kind, from_ns): (&str, &str, &str),
        (to_group, to_kind, to_name): (&str, &str, &str),
    ) -> bool {
        self.from
            .iter()
            .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_ns)
            && self.to.iter().any(|t| {
                t.group == to_group
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|n| n == to_name)
            })
    }
}

/// `TLSRouteSpec` and `TCPRouteSpec` (a TCPRoute has no hostnames): connections routed by
/// SNI (TLS, not terminated) or by port alone (TCP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<L4RouteRule>,
}

/// `TLSRouteRule` / `TCPRouteRule`: weighted backends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
}
