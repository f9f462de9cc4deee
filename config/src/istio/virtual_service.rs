use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PortSelector, StringMatch};
use crate::meta::Labels;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// Routes for opaque TCP traffic (non-HTTP, non-TLS ports).
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Routes for TLS traffic not terminated by the proxy, selected by SNI.
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    #[serde(default)]
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Answer with a redirect instead of forwarding (exclusive with `route`).
    #[serde(default)]
    pub redirect: Option<HttpRedirect>,
    /// Answer directly instead of forwarding (exclusive with `route` and `redirect`).
    #[serde(default)]
    pub direct_response: Option<HttpDirectResponse>,
    #[serde(default)]
    pub rewrite: Option<HttpRewrite>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    #[serde(default)]
    pub fault: Option<HttpFaultInjection>,
    /// Single mirror destination (exclusive with `mirrors`); mirrored at 100% unless
    /// `mirrorPercentage` says otherwise.
    #[serde(default)]
    pub mirror: Option<Destination>,
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    /// Deprecated `mirrorPercent` (a whole percentage), still honoured by Istio when
    /// `mirrorPercentage` is not set.
    #[serde(default)]
    pub mirror_percent: Option<u32>,
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    #[serde(default)]
    pub cors_policy: Option<CorsPolicy>,
    #[serde(default)]
    pub headers: Option<Headers>,
    /// Hands this route over to a delegate VirtualService (one without `hosts`), whose
    /// routes replace it, merged with its matches and settings. Exclusive with `route`,
    /// `redirect` and `directResponse`.
    #[serde(default)]
    pub delegate: Option<Delegate>,
}

/// `Delegate`: the VirtualService an `HTTPRoute` hands its traffic over to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegate {
    #[serde(default)]
    pub name: String,
    /// Defaults to the namespace of the delegating VirtualService.
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<StringMatch>,
    #[serde(default)]
    pub method: Option<StringMatch>,
    #[serde(default)]
    pub authority: Option<StringMatch>,
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub ignore_uri_case: bool,
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Applies only to client workloads carrying all these labels (decided by the control
    /// plane per client proxy, not by Envoy).
    #[serde(default)]
    pub source_labels: Labels,
    /// Applies only to client workloads in this namespace.
    #[serde(default)]
    pub source_namespace: Option<String>,
}

/// `TCPRoute`: the first rule whose match applies decides where a connection goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    #[serde(default, rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `TLSRoute`: like a TCP route, but each match must name the SNI hosts it applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `L4MatchAttributes`: what a TCP route's match looks at (connection metadata only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4MatchAttributes {
    /// IPs or CIDR blocks of the original destination.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub source_labels: Labels,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub source_namespace: Option<String>,
}

/// `TLSMatchAttributes`: an L4 match plus the SNI values (required) of the ClientHello.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub source_labels: Labels,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub source_namespace: Option<String>,
}

/// `RouteDestination`: a weighted destination of a TCP or TLS route (no header operations,
/// which only HTTP routes have).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDestination {
    #[serde(default)]
    pub destination: Destination,
    #[serde(default)]
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    #[serde(default)]
    pub destination: Destination,
    #[serde(default)]
    pub weight: Option<i64>,
    /// Header operations applied only when this destination is chosen.
    #[serde(default)]
    pub headers: Option<Headers>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub subset: Option<String>,
    #[serde(default)]
    pub port: Option<PortSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    #[serde(default)]
    pub attempts: i64,
    #[serde(default)]
    pub per_try_timeout: Option<String>,
    #[serde(default)]
    pub retry_on: Option<String>,
    #[serde(default)]
    pub retry_remote_localities: Option<bool>,
    #[serde(default)]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval of Envoy's exponential back-off between retries.
    #[serde(default)]
    pub backoff: Option<String>,
}

/// `Percent`: a percentage as a double in 0..=100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

impl HttpRoute {
    /// How much of the traffic `mirror` receives: `mirrorPercentage`, else the deprecated
    /// `mirrorPercent` (as Istio reads them), else all of it (`None`).
    pub fn mirror_fraction(&self) -> Option<Percent> {
        self.mirror_percentage
            .or(self.mirror_percent.map(|p| Percent {
                value: f64::from(p),
            }))
    }
}

/// `HTTPRedirect`. `port` and `derivePort` are a oneof in Istio's API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRedirect {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub port: Option<u32>,
    /// `FROM_PROTOCOL_DEFAULT` or `FROM_REQUEST_PORT`.
    #[serde(default)]
    pub derive_port: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub redirect_code: Option<u32>,
}

/// `HTTPDirectResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpDirectResponse {
    #[serde(default)]
    pub status: u32,
    #[serde(default)]
    pub body: Option<HttpBody>,
}

/// `HTTPBody`: a oneof of `string` and `bytes` (base64, as protobuf's JSON mapping says).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpBody {
    #[serde(default)]
    pub string: Option<String>,
    #[serde(default)]
    pub bytes: Option<String>,
}

impl HttpBody {
    /// The decoded `bytes`; `None` when it is absent or not valid base64 (a validation
    /// error, so translation never sees it).
    pub fn decoded_bytes(&self) -> Option<Vec<u8>> {
        self.bytes.as_deref().and_then(decode_base64)
    }
}

/// Decodes standard or URL-safe base64, padded or not (protobuf's JSON mapping accepts
/// both). Hand-written because it is the only base64 this crate needs.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character carries fewer than 8 bits: not valid base64.
    (bits < 6).then_some(out)
}

/// `HTTPRewrite`: `uri` and `uriRegexRewrite` are exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRewrite {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `RegexRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegexRewrite {
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    #[serde(default)]
    pub rewrite: Option<String>,
}

/// `HTTPFaultInjection`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpFaultInjection {
    #[serde(default)]
    pub delay: Option<FaultDelay>,
    #[serde(default)]
    pub abort: Option<FaultAbort>,
}

/// `HTTPFaultInjection.Delay` (only `fixedDelay`; `exponentialDelay` is unsupported, as in
/// Istio).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    #[serde(default)]
    pub fixed_delay: Option<String>,
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// `HTTPFaultInjection.Abort`: `httpStatus` or `grpcStatus` (a gRPC status name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    #[serde(default)]
    pub http_status: Option<i64>,
    #[serde(default)]
    pub grpc_status: Option<String>,
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// gRPC status names as Istio accepts them in `grpcStatus`, with their codes.
pub const GRPC_STATUSES: &[(&str, u32)] = &[
    ("OK", 0),
    ("CANCELLED", 1),
    ("UNKNOWN", 2),
    ("INVALID_ARGUMENT", 3),
    ("DEADLINE_EXCEEDED", 4),
    ("NOT_FOUND", 5),
    ("ALREADY_EXISTS", 6),
    ("PERMISSION_DENIED", 7),
    ("RESOURCE_EXHAUSTED", 8),
    ("FAILED_PRECONDITION", 9),
    ("ABORTED", 10),
    ("OUT_OF_RANGE", 11),
    ("UNIMPLEMENTED", 12),
    ("INTERNAL", 13),
    ("UNAVAILABLE", 14),
    ("DATA_LOSS", 15),
    ("UNAUTHENTICATED", 16),
];

/// The code of a gRPC status name.
pub fn grpc_status_code(name: &str) -> Option<u32> {
    GRPC_STATUSES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
}

/// `HTTPMirrorPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpMirrorPolicy {
    #[serde(default)]
    pub destination: Option<Destination>,
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// `CorsPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age: Option<String>,
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    /// `UNSPECIFIED`, `FORWARD` or `IGNORE`.
    #[serde(default)]
    pub unmatched_preflights: Option<String>,
}

/// `Headers`: operations on request and response headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers {
    #[serde(default)]
    pub request: Option<HeaderOperations>,
    #[serde(default)]
    pub response: Option<HeaderOperations>,
}

/// `Headers.HeaderOperations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderOperations {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}
