//! `GRPCRoute` (`gateway.networking.k8s.io` v1, with the v1alpha2 alias): gRPC requests
//! matched by service and method (the `/SERVICE/METHOD` path of gRPC over HTTP/2) and
//! headers, with header filters, mirrors and weighted backends. Field names as in the API;
//! what shoal does not act on is reported by the parser.

use serde::{Deserialize, Serialize};

use super::{HeaderModifier, HttpBackendRef, HttpHeaderMatch, ParentReference, RequestMirror};

/// `GRPCRouteSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<GrpcRouteRule>,
}

/// `GRPCRouteRule`. Backends have the shape of an HTTPRoute's (per-backend `filters` are
/// not supported and reported as an unknown field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<GrpcRouteMatch>,
    #[serde(default)]
    pub filters: Vec<GrpcRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
}

/// `GRPCRouteMatch`: every condition must hold; no `method` matches every service and
/// method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteMatch {
    #[serde(default)]
    pub method: Option<GrpcMethodMatch>,
    /// `GRPCHeaderMatch` (the shape of an `HTTPHeaderMatch`).
    #[serde(default)]
    pub headers: Vec<HttpHeaderMatch>,
}

/// `GRPCMethodMatch`: at least one of `service` and `method`; a missing one matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMethodMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<GrpcMethodMatchType>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

impl GrpcMethodMatch {
    /// The type, with the API's default (`Exact`).
    pub fn match_type(&self) -> GrpcMethodMatchType {
        self.match_type.unwrap_or_default()
    }

    /// The service, `None` when unset or empty (the API treats both as "any").
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref().filter(|s| !s.is_empty())
    }

    /// The method, `None` when unset or empty.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref().filter(|s| !s.is_empty())
    }
}

/// `GRPCMethodMatchType` (default `Exact`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrpcMethodMatchType {
    #[default]
    Exact,
    RegularExpression,
}

/// `GRPCRouteFilter`: `type` names the one field that applies. `ExtensionRef`
/// (implementation-specific) is not supported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteFilter {
    #[serde(rename = "type")]
    pub filter_type: GrpcFilterType,
    #[serde(default)]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default)]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default)]
    pub request_mirror: Option<RequestMirror>,
}

/// `GRPCRouteFilterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrpcFilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestMirror,
    ExtensionRef,
}

impl GrpcRouteFilter {
    /// The same filter as an HTTPRoute's (GRPCRoute filters are a subset of those, with the
    /// same fields), so that both kinds share validation and conversion.
    pub fn to_http(&self) -> super::HttpRouteFilter {
        use super::FilterType;
        super::HttpRouteFilter {
            filter_type: match self.filter_type {
                GrpcFilterType::RequestHeaderModifier => FilterType::RequestHeaderModifier,
                GrpcFilterType::ResponseHeaderModifier => FilterType::ResponseHeaderModifier,
                GrpcFilterType::RequestMirror => FilterType::RequestMirror,
                GrpcFilterType::ExtensionRef => FilterType::ExtensionRef,
            },
            request_header_modifier: self.request_header_modifier.clone(),
            response_header_modifier: self.response_header_modifier.clone(),
            request_redirect: None,
            url_rewrite: None,
            request_mirror: self.request_mirror.clone(),
        }
    }
}
