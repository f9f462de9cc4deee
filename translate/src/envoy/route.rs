//! RDS: virtual hosts and routes from VirtualServices (or the default route).

use std::collections::BTreeSet;

use shoal_api::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RetryPolicy, Route, RouteAction, RouteMatch, VirtualHost,
    WeightedCluster,
    header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier,
    retry_policy::RetryHostPredicate,
    route::Action,
    route_action::{ClusterSpecifier, MaxStreamDuration},
    route_match::PathSpecifier,
    weighted_cluster::ClusterWeight,
};
use shoal_api::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use shoal_api::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use shoal_config::istio::{HttpMatchRequest, HttpRetry, HttpRoute, StringMatch, StringMatchKind};
use shoal_config::{duration, host};

use super::{PASSTHROUGH, boolv, duration, outbound_cluster_name, u32v};
use crate::model::{Service, VirtualServiceRule};
use crate::proxy::Generator;
use crate::scope::Scope;

/// Istio's retry conditions when a VirtualService does not set `retryOn`.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Retry conditions gRPC's xDS client understands (gRPC status names).
const GRPC_RETRY_ON: &[&str] = &[
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

fn string_matcher(m: &StringMatchKind<'_>, ignore_case: bool) -> StringMatcher {
    let pattern = match m {
        StringMatchKind::Exact(s) => MatchPattern::Exact(s.to_string()),
        StringMatchKind::Prefix(s) => MatchPattern::Prefix(s.to_string()),
        StringMatchKind::Regex(r) => MatchPattern::SafeRegex(RegexMatcher {
            regex: r.to_string(),
            ..Default::default()
        }),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    }
}

fn header_matcher(name: &str, m: &StringMatch, invert: bool) -> HeaderMatcher {
    let spec = match m.kind() {
        Some(k) => HeaderMatchSpecifier::StringMatch(string_matcher(&k, false)),
        // An empty match tests presence.
        None => HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(spec),
        invert_match: invert,
        ..Default::default()
    }
}

/// Translates one `HTTPMatchRequest`; `None` when it cannot apply on this port.
fn route_match(m: &HttpMatchRequest, port: u16, flavor: Generator) -> Option<RouteMatch> {
    if m.port.is_some_and(|p| p != u32::from(port)) {
        return None;
    }
    let path = match m.uri.as_ref().and_then(StringMatch::kind) {
        Some(StringMatchKind::Exact(p)) => PathSpecifier::Path(p.to_string()),
        Some(StringMatchKind::Prefix(p)) => PathSpecifier::Prefix(p.to_string()),
        Some(StringMatchKind::Regex(r)) => PathSpecifier::SafeRegex(RegexMatcher {
            regex: r.to_string(),
            ..Default::default()
        }),
        None => PathSpecifier::Prefix("/".into()),
    };
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    for (name, sm) in &m.headers {
        headers.push(header_matcher(name, sm, false));
    }
    for (name, sm) in &m.without_headers {
        headers.push(header_matcher(name, sm, true));
    }
    if let Some(sm) = &m.method {
        headers.push(header_matcher(":method", sm, false));
    }
    if let Some(sm) = &m.authority {
        headers.push(header_matcher(":authority", sm, false));
    }
    let query_parameters = if flavor == Generator::Grpc {
        // gRPC ignores routes that match query parameters; RPCs have none.
        Vec::new()
    } else {
        m.query_params
            .iter()
            .map(|(name, sm)| QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(match sm.kind() {
                    Some(k) => QueryParameterMatchSpecifier::StringMatch(string_matcher(&k, false)),
                    None => QueryParameterMatchSpecifier::PresentMatch(true),
                }),
            })
            .collect()
    };
    Some(RouteMatch {
        path_specifier: Some(path),
        case_sensitive: m.ignore_uri_case.then(|| boolv(false)),
        headers,
        query_parameters,
        ..Default::default()
    })
}

fn catch_all() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".into())),
        ..Default::default()
    }
}

fn retry_policy(retries: Option<&HttpRetry>, flavor: Generator) -> Option<RetryPolicy> {
    let (attempts, per_try, retry_on) = match retries {
        Some(r) => (
            r.attempts,
            r.per_try_timeout.as_deref(),
            r.retry_on.as_deref(),
        ),
        None if flavor == Generator::Grpc => return None,
        None => (2, None, None),
    };
    if attempts <= 0 {
        return None;
    }
    let retry_on = retry_on.unwrap_or(DEFAULT_RETRY_ON);
    let retry_on = if flavor == Generator::Grpc {
        let codes: Vec<&str> = retry_on
            .split(',')
            .map(str::trim)
            .filter(|c| GRPC_RETRY_ON.contains(c))
            .collect();
        if codes.is_empty() {
            return None;
        }
        codes.join(",")
    } else {
        retry_on.to_string()
    };
    let mut policy = RetryPolicy {
        retriable_status_codes: retry_on
            .split(',')
            .filter_map(|c| c.trim().parse::<u32>().ok())
            .collect(),
        retry_on,
        num_retries: Some(u32v(u32::try_from(attempts).unwrap_or(u32::MAX))),
        per_try_timeout: per_try.and_then(|t| duration::parse(t).ok()).map(duration),
        ..Default::default()
    };
    if flavor == Generator::Envoy {
        if policy.retry_on.contains("retriable-status-codes")
            && policy.retriable_status_codes.is_empty()
        {
            policy.retriable_status_codes = vec![503];
        }
        policy.retry_host_predicate = vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(shoal_api::pb::envoy::config::route::v3::retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                shoal_api::pack(&PreviousHostsPredicate::default()),
            )),
        }];
        policy.host_selection_retry_max_attempts = 5;
    }
    Some(policy)
}

/// Where a destination's traffic goes: its cluster name.
fn destination_cluster(
    scope: &Scope<'_>,
    vs_ns: &str,
    dest: &shoal_config::istio::Destination,
    port: u16,
) -> String {
    let h = host::resolve(&dest.host, vs_ns, &scope.model.options.domain_suffix);
    let dest_port = dest
        .port
        .map(|p| p.number as u16)
        .filter(|p| *p != 0)
        .or_else(|| {
            let svc = scope.model.service_for(&h, scope.namespace())?;
            (svc.ports.len() == 1).then(|| svc.ports[0].port)
        });
    outbound_cluster_name(
        dest_port.unwrap_or(port),
        dest.subset.as_deref().unwrap_or_default(),
        &h,
    )
}

fn action(cluster: ClusterSpecifier, r: Option<&HttpRoute>, flavor: Generator) -> RouteAction {
    let timeout = r
        .and_then(|r| r.timeout.as_deref())
        .and_then(|t| duration::parse(t).ok());
    let mut action = RouteAction {
        cluster_specifier: Some(cluster),
        retry_policy: retry_policy(r.and_then(|r| r.retries.as_ref()), flavor),
        ..Default::default()
    };
    match flavor {
        // Istio disables Envoy's 15 s default: no timeout unless the VirtualService sets one.
        Generator::Envoy => action.timeout = Some(duration(timeout.unwrap_or_default())),
        Generator::Grpc => {
            action.max_stream_duration = timeout.map(|t| MaxStreamDuration {
                max_stream_duration: Some(duration(t)),
                grpc_timeout_header_max: Some(duration(t)),
                ..Default::default()
            })
        }
    }
    action
}

/// Routes of one `HTTPRoute` on a port (one Envoy route per match).
fn http_route(
    scope: &Scope<'_>,
    vs: &VirtualServiceRule,
    r: &HttpRoute,
    port: u16,
    flavor: Generator,
) -> Vec<Route> {
    let clusters: Vec<(String, u32)> = r
        .route
        .iter()
        .map(|d| {
            let weight = u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0);
            (
                destination_cluster(scope, &vs.namespace, &d.destination, port),
                weight,
            )
        })
        .collect();
    let specifier = match clusters.as_slice() {
        [] => return Vec::new(),
        [(name, _)] => ClusterSpecifier::Cluster(name.clone()),
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .filter(|(_, w)| *w > 0)
                .map(|(name, w)| ClusterWeight {
                    name: name.clone(),
                    weight: Some(u32v(*w)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let matches: Vec<RouteMatch> = if r.matches.is_empty() {
        vec![catch_all()]
    } else {
        r.matches
            .iter()
            .filter_map(|m| route_match(m, port, flavor))
            .collect()
    };
    let name = r.name.clone().unwrap_or_default();
    matches
        .into_iter()
        .map(|m| Route {
            name: name.clone(),
            r#match: Some(m),
            action: Some(Action::Route(action(specifier.clone(), Some(r), flavor))),
            ..Default::default()
        })
        .collect()
}

/// Routes for a service port: its VirtualService's, or one default route to the service.
pub(crate) fn routes(
    scope: &Scope<'_>,
    vs: Option<&VirtualServiceRule>,
    svc: &Service,
    port: u16,
    flavor: Generator,
) -> Vec<Route> {
    if let Some(vs) = vs {
        return vs
            .spec
            .http
            .iter()
            .flat_map(|r| http_route(scope, vs, r, port, flavor))
            .collect();
    }
    default_routes(&outbound_cluster_name(port, "", &svc.host), flavor)
}

pub(crate) fn default_routes(cluster: &str, flavor: Generator) -> Vec<Route> {
    vec![Route {
        name: "default".into(),
        r#match: Some(catch_all()),
        action: Some(Action::Route(action(
            ClusterSpecifier::Cluster(cluster.to_string()),
            None,
            flavor,
        ))),
        ..Default::default()
    }]
}

/// Routes of a VirtualService whose hosts match no service, on a port.
pub(crate) fn vs_routes(
    scope: &Scope<'_>,
    vs: &VirtualServiceRule,
    port: u16,
    flavor: Generator,
) -> Vec<Route> {
    vs.spec
        .http
        .iter()
        .flat_map(|r| http_route(scope, vs, r, port, flavor))
        .collect()
}

/// The names a client may use for a service on a port: the FQDN, the short forms for
/// clients in the service's namespace, and the virtual IPs — each bare and with `:PORT`.
pub(crate) fn domains(svc: &Service, port: u16, client_ns: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = vec![svc.host.to_string()];
    let k8s_suffix = format!(".svc.{suffix}");
    if let Some(stem) = svc.host.strip_suffix(&k8s_suffix) {
        // name.ns.svc and name.ns work from anywhere; name only from the same namespace.
        names.push(format!("{stem}.svc"));
        names.push(stem.to_string());
        if svc.namespace.as_ref() == client_ns
            && let Some((name, _)) = stem.split_once('.')
        {
            names.push(name.to_string());
        }
    }
    names.extend(svc.addresses.iter().filter(|a| !a.contains('/')).cloned());
    let mut out = Vec::with_capacity(names.len() * 2);
    for n in names {
        out.push(format!("{n}:{port}"));
        out.push(n);
    }
    out
}

/// A virtual host, dropping domains another virtual host of the same route config claimed
/// (Envoy rejects duplicates).
pub(crate) fn virtual_host(
    name: String,
    domains: Vec<String>,
    routes: Vec<Route>,
    used: &mut BTreeSet<String>,
) -> Option<VirtualHost> {
    let domains: Vec<String> = domains
        .into_iter()
        .filter(|d| used.insert(d.clone()))
        .collect();
    if domains.is_empty() {
        return None;
    }
    Some(VirtualHost {
        name,
        domains,
        routes,
        ..Default::default()
    })
}

/// Istio's `allow_any` virtual host: unknown hosts pass through to their original
/// destination.
pub(crate) fn allow_any(used: &mut BTreeSet<String>) -> Option<VirtualHost> {
    virtual_host(
        "allow_any".into(),
        vec!["*".into()],
        default_routes(PASSTHROUGH, Generator::Envoy),
        used,
    )
}
