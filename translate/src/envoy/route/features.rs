//! The parts of an `HTTPRoute` beyond matching and choosing a cluster, translated as Istio
//! does (`pilot/pkg/networking/core/route`): redirects, direct responses, rewrites, header
//! operations, mirrors, and the per-route configs of the fault and CORS filters (the filters
//! themselves are in every HTTP connection manager, see [`super::super::listener::hcm`]).

use std::collections::HashMap;

use shoal_api::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, RuntimeFractionalPercent, data_source,
    header_value_option::HeaderAppendAction,
};
use shoal_api::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    route_action::RequestMirrorPolicy,
};
use shoal_api::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use shoal_api::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use shoal_api::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use shoal_api::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use shoal_api::pb::google::protobuf::Any;
use shoal_config::duration;
use shoal_config::istio::{
    self, HeaderOperations, Headers, HttpDirectResponse, HttpFaultInjection, HttpRedirect,
    HttpRoute, Percent, grpc_status_code,
};

use super::super::{boolv, duration};
use super::string_matcher;
use crate::envoy::filters;
use crate::proxy::Generator;

/// Istio's `Percent` (a double) as parts per million.
fn fraction(p: Percent) -> FractionalPercent {
    FractionalPercent {
        numerator: (p.value * 10_000.0).clamp(0.0, 1_000_000.0) as u32,
        denominator: DenominatorType::Million as i32,
    }
}

/// A whole percentage (Istio's integer percents and its 100 % default).
fn hundredths(n: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: n,
        denominator: DenominatorType::Hundred as i32,
    }
}

/// Header operations of one `Headers`, and the authority a request `set`/`add` of
/// `host`/`:authority` asks for (Envoy cannot modify those headers; Istio rewrites the host
/// instead).
#[derive(Debug, Clone, Default)]
pub(super) struct HeaderOps {
    pub request_add: Vec<HeaderValueOption>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderValueOption>,
    pub response_remove: Vec<String>,
    pub authority: Option<String>,
}

/// `host` and pseudo-headers cannot be touched by Envoy's header operations.
fn internal(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// `set` overwrites, `add` appends; each sorted by name (maps are ordered).
fn options(ops: &HeaderOperations) -> Vec<HeaderValueOption> {
    let set = ops
        .set
        .iter()
        .map(|kv| (kv, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let add = ops
        .add
        .iter()
        .map(|kv| (kv, HeaderAppendAction::AppendIfExistsOrAdd));
    set.chain(add)
        .filter(|((k, _), _)| !internal(k))
        .map(|((k, v), action)| HeaderValueOption {
            header: Some(HeaderValue {
                key: k.clone(),
                value: v.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        })
        .collect()
}

fn removals(names: &[String]) -> Vec<String> {
    names.iter().filter(|n| !internal(n)).cloned().collect()
}

pub(super) fn header_ops(h: &Headers) -> HeaderOps {
    let req = h.request.clone().unwrap_or_default();
    let resp = h.response.clone().unwrap_or_default();
    let authority_in = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| is_authority(k))
            .map(|(_, v)| v.clone())
            .next_back()
    };
    HeaderOps {
        request_add: options(&req),
        request_remove: removals(&req.remove),
        response_add: options(&resp),
        response_remove: removals(&resp.remove),
        // `set` wins over `add`.
        authority: authority_in(&req.set).or_else(|| authority_in(&req.add)),
    }
}

impl HeaderOps {
    /// Appends a destination's operations after the route's (so its `set` wins).
    pub fn extend(&mut self, other: HeaderOps) {
        self.request_add.extend(other.request_add);
        self.request_remove.extend(other.request_remove);
        self.response_add.extend(other.response_add);
        self.response_remove.extend(other.response_remove);
    }
}

pub(super) fn redirect(r: &HttpRedirect, port: u16) -> Option<RedirectAction> {
    let response_code = match r.redirect_code.unwrap_or(301) {
        301 => RedirectResponseCode::MovedPermanently,
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        // Rejected by validation; never build a route Envoy would refuse.
        _ => return None,
    };
    let mut out = RedirectAction {
        host_redirect: r.authority.clone().unwrap_or_default(),
        response_code: response_code as i32,
        path_rewrite_specifier: r.uri.clone().map(PathRewriteSpecifier::PathRedirect),
        scheme_rewrite_specifier: r.scheme.clone().map(SchemeRewriteSpecifier::SchemeRedirect),
        ..Default::default()
    };
    let port_set = r.port.is_some() || r.derive_port.is_some();
    if let Some(p) = r.port {
        out.port_redirect = p;
    } else if r.derive_port.as_deref() == Some("FROM_REQUEST_PORT") {
        // Envoy cannot derive the port, but routes are built per listener port, which is the
        // request's port.
        out.port_redirect = u32::from(port);
    }
    if port_set {
        // No explicit :80 for http or :443 for https (sidecar listeners are plaintext).
        let scheme = r.scheme.as_deref().unwrap_or("http");
        if (out.port_redirect == 80 && scheme == "http")
            || (out.port_redirect == 443 && scheme == "https")
        {
            out.port_redirect = 0;
        }
    }
    Some(out)
}

pub(super) fn direct_response(d: &HttpDirectResponse) -> DirectResponseAction {
    let body = d
        .body
        .as_ref()
        .and_then(|b| match (&b.string, b.decoded_bytes()) {
            (Some(s), _) => Some(data_source::Specifier::InlineString(s.clone())),
            (None, Some(bytes)) => Some(data_source::Specifier::InlineBytes(bytes)),
            (None, None) => None,
        });
    DirectResponseAction {
        status: d.status,
        body: body.map(|s| DataSource {
            specifier: Some(s),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Mirror policies of `mirror` (+ `mirrorPercentage`, or the deprecated `mirrorPercent`)
/// and `mirrors[]`; an explicit 0 %
/// mirrors nothing, an unset percentage mirrors everything.
pub(super) fn mirrors(
    r: &HttpRoute,
    cluster: impl Fn(&istio::Destination) -> String,
) -> Vec<RequestMirrorPolicy> {
    let policy = |dest: &istio::Destination, p: Option<Percent>| {
        let fraction = match p {
            Some(p) if p.value <= 0.0 => return None,
            Some(p) => fraction(p),
            None => hundredths(100),
        };
        Some(RequestMirrorPolicy {
            cluster: cluster(dest),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(fraction),
                ..Default::default()
            }),
            trace_sampled: Some(boolv(false)),
            ..Default::default()
        })
    };
    let single = r
        .mirror
        .as_ref()
        .and_then(|d| policy(d, r.mirror_fraction()));
    let many = r
        .mirrors
        .iter()
        .filter_map(|m| policy(m.destination.as_ref()?, m.percentage));
    single.into_iter().chain(many).collect()
}

fn fault(f: &HttpFaultInjection) -> Option<HttpFault> {
    let delay = f.delay.as_ref().and_then(|d| {
        let fixed = d
            .fixed_delay
            .as_deref()
            .and_then(|t| duration::parse(t).ok())?;
        Some(FaultDelay {
            // Istio: no percentage means the deprecated integer `percent`, i.e. 0.
            percentage: Some(d.percentage.map(fraction).unwrap_or(hundredths(0))),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(duration(fixed))),
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let error_type = match (a.http_status, a.grpc_status.as_deref()) {
            (Some(s), _) => ErrorType::HttpStatus(u32::try_from(s).ok()?),
            (None, Some(g)) => ErrorType::GrpcStatus(grpc_status_code(g)?),
            (None, None) => return None,
        };
        Some(FaultAbort {
            percentage: a.percentage.map(fraction),
            error_type: Some(error_type),
            ..Default::default()
        })
    });
    if delay.is_none() && abort.is_none() {
        return None;
    }
    Some(HttpFault {
        delay,
        abort,
        ..Default::default()
    })
}

fn cors(c: &istio::CorsPolicy) -> CorsPolicy {
    CorsPolicy {
        allow_origin_string_match: c
            .allow_origins
            .iter()
            .filter_map(|m| Some(string_matcher(&m.kind()?, false)))
            .collect(),
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .as_deref()
            .and_then(|a| duration::parse(a).ok())
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.map(boolv),
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(hundredths(100)),
            ..Default::default()
        }),
        // Envoy stopped forwarding unmatched preflights by default; Istio keeps forwarding
        // them unless told IGNORE.
        forward_not_matching_preflights: Some(boolv(
            c.unmatched_preflights.as_deref() != Some("IGNORE"),
        )),
        ..Default::default()
    }
}

/// The route's `typed_per_filter_config`: fault and CORS policies for the filters every HCM
/// carries. gRPC's client has no CORS filter, so it gets only the fault.
pub(super) fn per_filter_config(r: &HttpRoute, flavor: Generator) -> HashMap<String, Any> {
    let mut out = HashMap::new();
    if let Some(f) = r.fault.as_ref().and_then(fault) {
        out.insert(filters::HTTP_FAULT.to_string(), shoal_api::pack(&f));
    }
    if let Some(c) = &r.cors_policy
        && flavor == Generator::Envoy
    {
        out.insert(filters::HTTP_CORS.to_string(), shoal_api::pack(&cors(c)));
    }
    out
}
