//! RDS: virtual hosts and routes from VirtualServices (or the default route).

use std::collections::BTreeSet;

mod features;
mod retry;

use shoal_api::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, Route, RouteAction, RouteMatch, VirtualHost,
    WeightedCluster,
    header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier,
    route::Action,
    route_action::{ClusterSpecifier, HostRewriteSpecifier, MaxStreamDuration},
    route_match::PathSpecifier,
    weighted_cluster::{ClusterWeight, cluster_weight},
};
use shoal_api::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use shoal_config::istio::{HttpMatchRequest, HttpRoute, StringMatch, StringMatchKind};
use shoal_config::{duration, host};

use super::{boolv, duration, outbound_cluster_name, u32v};
use crate::model::{Service, VirtualServiceRule};
use crate::proxy::Generator;
use crate::scope::Scope;
use features::HeaderOps;

pub(super) fn string_matcher(m: &StringMatchKind<'_>, ignore_case: bool) -> StringMatcher {
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
        // Envoy fails an inverted value match on a missing header; `withoutHeaders` means
        // "not this value", which a request without the header satisfies (as in Istio).
        treat_missing_header_as_empty: invert && m.kind().is_some(),
        header_match_specifier: Some(spec),
        invert_match: invert,
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

/// The consistent-hash policy of a destination's DestinationRule (merged for its subset
/// and port). Istio hashes a route only when it has a single destination; weighted routes
/// keep no affinity. Proxyless gRPC clients are not given one.
fn hash_policy(
    scope: &Scope<'_>,
    vs_ns: &str,
    host_name: &str,
    subset: Option<&str>,
    port: u16,
) -> Vec<shoal_api::pb::envoy::config::route::v3::route_action::HashPolicy> {
    if scope.key.generator == Generator::Grpc {
        return Vec::new();
    }
    let h = host::resolve(host_name, vs_ns, &scope.model.options.domain_suffix);
    let Some(svc) = scope.model.service_for(&h, scope.namespace()) else {
        return Vec::new();
    };
    let Some(dr) = scope.destination_rule(&h, &svc.namespace) else {
        return Vec::new();
    };
    let sub = subset.and_then(|name| dr.spec.subsets.iter().find(|s| s.name == name));
    let settings = super::traffic_policy::Settings::merged(
        dr.spec.traffic_policy.as_deref(),
        sub.and_then(|s| s.traffic_policy.as_ref()),
        u32::from(port),
    );
    settings
        .consistent_hash()
        .map(super::traffic_policy::hash_policies)
        .unwrap_or_default()
}

/// Where a destination's traffic goes: its cluster (the destination's port, else the
/// service's only port, else the listener's port). Shared by HTTP and TCP/TLS routes.
pub(crate) fn destination_cluster(
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
        retry_policy: retry::retry_policy(r.and_then(|r| r.retries.as_ref()), flavor),
        ..Default::default()
    };
    match flavor {
        // Istio disables Envoy's 15 s default: no timeout unless the VirtualService sets one,
        // and bounds gRPC requests by their `grpc-timeout` header up to that same timeout
        // (0 = the header alone decides).
        Generator::Envoy => {
            let t = duration(timeout.unwrap_or_default());
            action.timeout = Some(t);
            #[allow(deprecated)]
            {
                action.max_grpc_timeout = Some(t);
            }
        }
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

/// The cluster choice of a forwarding `HTTPRoute`, with the header operations of its
/// destinations: merged into the route's for a single destination (as Istio does), kept per
/// weighted cluster otherwise.
fn clusters(
    scope: &Scope<'_>,
    vs: &VirtualServiceRule,
    r: &HttpRoute,
    port: u16,
    ops: &mut HeaderOps,
) -> Option<(ClusterSpecifier, Option<String>)> {
    let cluster =
        |d: &shoal_config::istio::Destination| destination_cluster(scope, &vs.namespace, d, port);
    match r.route.as_slice() {
        [] => None,
        [d] => {
            let dest_ops = d
                .headers
                .as_ref()
                .map(features::header_ops)
                .unwrap_or_default();
            let authority = dest_ops.authority.clone();
            ops.extend(dest_ops);
            Some((
                ClusterSpecifier::Cluster(cluster(&d.destination)),
                authority,
            ))
        }
        many => {
            let clusters = many
                .iter()
                .filter_map(|d| {
                    // Zero-weight destinations get no traffic; Istio leaves them out.
                    let weight = u32::try_from(d.weight.unwrap_or(0))
                        .ok()
                        .filter(|w| *w > 0)?;
                    let dops = d
                        .headers
                        .as_ref()
                        .map(features::header_ops)
                        .unwrap_or_default();
                    Some(ClusterWeight {
                        name: cluster(&d.destination),
                        weight: Some(u32v(weight)),
                        request_headers_to_add: dops.request_add,
                        request_headers_to_remove: dops.request_remove,
                        response_headers_to_add: dops.response_add,
                        response_headers_to_remove: dops.response_remove,
                        host_rewrite_specifier: dops
                            .authority
                            .map(cluster_weight::HostRewriteSpecifier::HostRewriteLiteral),
                        ..Default::default()
                    })
                })
                .collect();
            Some((
                ClusterSpecifier::WeightedClusters(WeightedCluster {
                    clusters,
                    ..Default::default()
                }),
                None,
            ))
        }
    }
}

/// The route action of a forwarding `HTTPRoute`: clusters, timeout, retries, rewrites and
/// mirrors. `None` when it has no destination.
fn forward(
    scope: &Scope<'_>,
    vs: &VirtualServiceRule,
    r: &HttpRoute,
    port: u16,
    flavor: Generator,
    ops: &mut HeaderOps,
) -> Option<RouteAction> {
    let route_authority = ops.authority.clone();
    let (specifier, dest_authority) = clusters(scope, vs, r, port, ops)?;
    let mut out = action(specifier, Some(r), flavor);
    if let [d] = r.route.as_slice() {
        let dest_port = d
            .destination
            .port
            .map(|p| p.number as u16)
            .filter(|p| *p != 0)
            .unwrap_or(port);
        out.hash_policy = hash_policy(
            scope,
            &vs.namespace,
            &d.destination.host,
            d.destination.subset.as_deref(),
            dest_port,
        );
    }
    if let Some(rw) = &r.rewrite {
        if let Some(rr) = &rw.uri_regex_rewrite {
            out.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(RegexMatcher {
                    regex: rr.pattern.clone().unwrap_or_default(),
                    ..Default::default()
                }),
                substitution: rr.rewrite.clone().unwrap_or_default(),
            });
        } else if let Some(uri) = rw.uri.as_ref().filter(|u| !u.is_empty()) {
            // Envoy swaps the matched prefix, or the whole path for exact and regex matches.
            out.prefix_rewrite = uri.clone();
        }
    }
    // Precedence as in Istio: rewrite.authority, then the route's headers, then a single
    // destination's headers.
    let authority = r
        .rewrite
        .as_ref()
        .and_then(|rw| rw.authority.clone())
        .or(route_authority)
        .or(dest_authority);
    out.host_rewrite_specifier = authority.map(HostRewriteSpecifier::HostRewriteLiteral);
    out.request_mirror_policies =
        features::mirrors(r, |d| destination_cluster(scope, &vs.namespace, d, port));
    Some(out)
}

/// Whether a match applies to the client proxies of this view, decided here rather than by
/// Envoy, as Istio does (`sourceMatchHTTP`): a match bound to gateways applies only where
/// one of them is served (`mesh` for sidecars), whatever its source conditions; any other
/// only to workloads with all of its `sourceLabels` and in its `sourceNamespace`.
fn client_applies(scope: &Scope<'_>, vs: &VirtualServiceRule, m: &HttpMatchRequest) -> bool {
    if m.gateways.is_empty() {
        scope.source_applies(&m.source_labels, m.source_namespace.as_deref())
    } else {
        crate::scope::match_applies(scope.gateway.as_deref(), &vs.namespace, &m.gateways)
    }
}

/// Routes of one `HTTPRoute` on a port (one Envoy route per match); none when no match
/// applies to this view's clients.
fn http_route(
    scope: &Scope<'_>,
    vs: &VirtualServiceRule,
    r: &HttpRoute,
    port: u16,
    flavor: Generator,
) -> Vec<Route> {
    let mut ops = r
        .headers
        .as_ref()
        .map(features::header_ops)
        .unwrap_or_default();
    let action = if let Some(rd) = &r.redirect {
        match features::redirect(rd, port) {
            Some(a) => Action::Redirect(a),
            None => return Vec::new(),
        }
    } else if let Some(d) = &r.direct_response {
        Action::DirectResponse(features::direct_response(d))
    } else {
        match forward(scope, vs, r, port, flavor, &mut ops) {
            Some(a) => Action::Route(a),
            None => return Vec::new(),
        }
    };
    let per_filter = features::per_filter_config(r, flavor);
    let name = r.name.clone().unwrap_or_default();
    // Istio names a route `ROUTE.MATCH` when the match has a name.
    let matches: Vec<(String, RouteMatch)> = if r.matches.is_empty() {
        vec![(name, catch_all())]
    } else {
        r.matches
            .iter()
            .filter_map(|m| {
                let route_name = match &m.name {
                    Some(n) if !n.is_empty() => format!("{name}.{n}"),
                    _ => name.clone(),
                };
                if !client_applies(scope, vs, m) {
                    return None;
                }
                Some((route_name, route_match(m, port, flavor)?))
            })
            .collect()
    };
    matches
        .into_iter()
        .map(|(name, m)| Route {
            name,
            r#match: Some(m),
            action: Some(action.clone()),
            request_headers_to_add: ops.request_add.clone(),
            request_headers_to_remove: ops.request_remove.clone(),
            response_headers_to_add: ops.response_add.clone(),
            response_headers_to_remove: ops.response_remove.clone(),
            typed_per_filter_config: per_filter.clone(),
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
    let mut routes = default_routes(&outbound_cluster_name(port, "", &svc.host), flavor);
    let hash = hash_policy(scope, &svc.namespace, &svc.host, None, port);
    for r in &mut routes {
        if let Some(Action::Route(a)) = r.action.as_mut() {
            a.hash_policy = hash.clone();
        }
    }
    routes
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
