//! HTTPRoutes (and GRPCRoutes in their HTTP form, `grpc.rs`) as VirtualServices: of the
//! listeners they attach to (merged per listener and host, routes in Gateway API
//! precedence) and of the Services they name (mesh routing).

use std::collections::BTreeMap;
use std::sync::Arc;

use shoal_config::gateway_api::{
    FilterType, HeaderModifier, HttpRouteFilter, HttpRouteMatch, HttpRouteRule, HttpRouteSpec,
    PathMatchType, PathModifierType, ValueMatchType,
};
use shoal_config::istio::{
    HeaderOperations, Headers, HttpDirectResponse, HttpMatchRequest, HttpMirrorPolicy,
    HttpRedirect, HttpRewrite, HttpRoute, HttpRouteDestination, Percent, RegexRewrite, StringMatch,
    VirtualServiceSpec,
};
use shoal_config::{ConfigSnapshot, Kind, Object, ObjectKey};

use super::refs::{Backends, service_entry_hosts};
use super::{Gateways, RouteKind, attachments};
use crate::model::{Rule, VirtualServiceRule, Visibility};

/// Routes attached to one (Istio gateway, host): sort key and route.
type Attached = BTreeMap<(Arc<str>, Arc<str>, String), Vec<(RouteRank, HttpRoute)>>;

pub(super) fn virtual_services(
    cfg: &ConfigSnapshot,
    gateways: &Gateways,
    suffix: &str,
) -> Vec<Arc<VirtualServiceRule>> {
    let mut attached = Attached::new();
    let mut mesh = Attached::new();
    let mut add = |key: &ObjectKey, kind: RouteKind, spec: &HttpRouteSpec| {
        let hosts_by_gateway = attachments(
            cfg,
            &key.namespace,
            kind,
            &spec.parent_refs,
            &spec.hostnames,
        );
        // Mesh parents: each Service's host, each host of each ServiceEntry (Istio's form
        // for external hosts), with the namespace that owns them and the port named.
        let mut mesh_hosts = Vec::new();
        for parent in spec.parent_refs.iter() {
            let ns = parent.namespace.as_deref().unwrap_or(&key.namespace);
            let port = parent.port.and_then(|p| u32::try_from(p).ok());
            if parent.is_service() {
                let host = format!("{}.{ns}.svc.{suffix}", parent.name);
                mesh_hosts.push((ns.to_string(), host, port));
            } else if parent.is_service_entry() {
                for host in service_entry_hosts(cfg, ns, &parent.name, suffix) {
                    mesh_hosts.push((ns.to_string(), host, port));
                }
            }
        }
        if hosts_by_gateway.is_empty() && mesh_hosts.is_empty() {
            return;
        }
        let backends = Backends {
            cfg,
            route_ns: &key.namespace,
            kind,
            suffix,
        };
        let routes = http_routes(key, spec, &backends, kind == RouteKind::Grpc);
        for (ns, host, port) in mesh_hosts {
            let list = mesh
                .entry((key.namespace.clone(), ns.into(), host))
                .or_default();
            list.extend(
                routes
                    .iter()
                    .cloned()
                    .map(|(rank, r)| (rank, on_port(r, port))),
            );
        }
        for ((gw_ns, gw_name), hosts) in hosts_by_gateway {
            if !gateways.contains_key(&(gw_ns.clone(), gw_name.clone())) {
                continue;
            }
            for h in hosts {
                attached
                    .entry((gw_ns.clone(), gw_name.clone(), h))
                    .or_default()
                    .extend(routes.iter().cloned());
            }
        }
    };
    for (key, e) in cfg.of_kind(Kind::HttpRoute) {
        if let Object::HttpRoute(route) = e.object.as_ref() {
            add(key, RouteKind::Http, &route.spec);
        }
    }
    // GRPCRoutes in their HTTP form, after the HTTPRoutes: merged with those of the same
    // (gateway, host) or Service, ties of precedence going to the HTTPRoutes.
    for (key, e) in cfg.of_kind(Kind::GrpcRoute) {
        if let Object::GrpcRoute(route) = e.object.as_ref() {
            add(
                key,
                RouteKind::Grpc,
                &super::grpc::as_http_route(&route.spec),
            );
        }
    }
    let mesh_vss = mesh.into_iter().map(|((route_ns, svc_ns, h), mut routes)| {
        routes.sort_by_key(|(rank, _)| *rank);
        // Producer routes (the Service's namespace) apply to every client, consumer routes
        // to their own namespace's.
        let visibility = if route_ns == svc_ns {
            Visibility::Public
        } else {
            Visibility::Namespaces([route_ns.clone()].into())
        };
        Arc::new(Rule {
            namespace: route_ns,
            name: format!("{h}.mesh").into(),
            spec: Arc::new(VirtualServiceSpec {
                hosts: vec![h.clone()],
                gateways: vec!["mesh".into()],
                http: routes.into_iter().map(|(_, r)| r).collect(),
                ..Default::default()
            }),
            hosts: vec![h],
            visibility,
        })
    });
    attached
        .into_iter()
        .map(|((ns, gw, h), mut routes)| {
            // Stable: ties keep route (namespace, name) and rule order.
            routes.sort_by_key(|(rank, _)| *rank);
            Arc::new(Rule {
                namespace: ns.clone(),
                name: format!("{gw}.{h}").into(),
                spec: Arc::new(VirtualServiceSpec {
                    hosts: vec![h.clone()],
                    gateways: vec![format!("{ns}/{gw}")],
                    http: routes.into_iter().map(|(_, r)| r).collect(),
                    ..Default::default()
                }),
                hosts: vec![h],
                visibility: Visibility::Public,
            })
        })
        .chain(mesh_vss)
        .collect()
}

/// A route restricted to the Service port its parent reference names.
fn on_port(mut r: HttpRoute, port: Option<u32>) -> HttpRoute {
    if port.is_some() {
        if r.matches.is_empty() {
            r.matches.push(HttpMatchRequest::default());
        }
        for m in &mut r.matches {
            m.port = port;
        }
    }
    r
}

/// Gateway API precedence, smallest first: path kind (Exact, PathPrefix,
/// RegularExpression, none), longer paths, a method, more headers, more query parameters.
/// A GRPCRoute match in its HTTP form ranks the same way, except that one without a method
/// (no path) comes after every path (its service and method have no characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RouteRank {
    path_kind: u8,
    path_len: std::cmp::Reverse<usize>,
    no_method: bool,
    headers: std::cmp::Reverse<usize>,
    query: std::cmp::Reverse<usize>,
}

fn rank(m: Option<&HttpRouteMatch>, grpc: bool) -> RouteRank {
    use std::cmp::Reverse;
    let Some(m) = m else {
        return RouteRank {
            path_kind: 3,
            path_len: Reverse(0),
            no_method: true,
            headers: Reverse(0),
            query: Reverse(0),
        };
    };
    let (kind, len) = match &m.path {
        None if grpc => (3, 0),
        None => (1, 1),
        Some(p) => (
            match p.match_type() {
                PathMatchType::Exact => 0,
                PathMatchType::PathPrefix => 1,
                PathMatchType::RegularExpression => 2,
            },
            p.value().len(),
        ),
    };
    RouteRank {
        path_kind: kind,
        path_len: Reverse(len),
        no_method: m.method.is_none(),
        headers: Reverse(m.headers.len()),
        query: Reverse(m.query_params.len()),
    }
}

/// One Istio HTTP route per match of every rule (a rule without matches matches all), of an
/// HTTPRoute or of a GRPCRoute in its HTTP form (`grpc`).
fn http_routes(
    key: &ObjectKey,
    spec: &HttpRouteSpec,
    backends: &Backends<'_>,
    grpc: bool,
) -> Vec<(RouteRank, HttpRoute)> {
    let mut out = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let base = rule_route(rule, backends);
        if rule.matches.is_empty() {
            let name = format!("{}.{}.{i}", key.namespace, key.name);
            out.push((
                rank(None, grpc),
                HttpRoute {
                    name: Some(name),
                    ..base
                },
            ));
            continue;
        }
        for (j, m) in rule.matches.iter().enumerate() {
            out.push((
                rank(Some(m), grpc),
                HttpRoute {
                    name: Some(format!("{}.{}.{i}.{j}", key.namespace, key.name)),
                    matches: vec![match_request(m)],
                    ..base.clone()
                },
            ));
        }
    }
    out
}

fn match_request(m: &HttpRouteMatch) -> HttpMatchRequest {
    let string_match = |t: ValueMatchType, v: &str| match t {
        ValueMatchType::Exact => StringMatch {
            exact: Some(v.to_string()),
            ..Default::default()
        },
        ValueMatchType::RegularExpression => StringMatch {
            regex: Some(v.to_string()),
            ..Default::default()
        },
    };
    let uri = m.path.as_ref().map(|p| {
        let v = Some(p.value().to_string());
        match p.match_type() {
            PathMatchType::Exact => StringMatch {
                exact: v,
                ..Default::default()
            },
            PathMatchType::PathPrefix => StringMatch {
                prefix: v,
                ..Default::default()
            },
            PathMatchType::RegularExpression => StringMatch {
                regex: v,
                ..Default::default()
            },
        }
    });
    HttpMatchRequest {
        uri,
        method: m
            .method
            .as_deref()
            .map(|v| string_match(ValueMatchType::Exact, v)),
        headers: m
            .headers
            .iter()
            .map(|h| {
                let t = h.match_type.unwrap_or_default();
                (h.name.to_ascii_lowercase(), string_match(t, &h.value))
            })
            .collect(),
        query_params: m
            .query_params
            .iter()
            .map(|q| {
                (
                    q.name.clone(),
                    string_match(q.match_type.unwrap_or_default(), &q.value),
                )
            })
            .collect(),
        ..Default::default()
    }
}

/// A rule's actions (everything but its matches).
fn rule_route(rule: &HttpRouteRule, backends: &Backends<'_>) -> HttpRoute {
    let mut r = HttpRoute {
        timeout: rule.timeouts.as_ref().and_then(|t| t.request.clone()),
        ..Default::default()
    };
    let mut headers = Headers::default();
    for f in &rule.filters {
        apply_filter(f, &mut r, &mut headers, backends);
    }
    if headers != Headers::default() {
        r.headers = Some(headers);
    }
    r.route = rule
        .backend_refs
        .iter()
        .filter_map(|b| {
            let weight = b.weight.unwrap_or(1);
            let dest = backends.destination(&b.backend())?;
            (weight > 0).then_some(HttpRouteDestination {
                destination: dest,
                weight: Some(weight),
                headers: None,
            })
        })
        .collect();
    if r.route.is_empty() && r.redirect.is_none() {
        // Gateway API: a rule with no valid backend (and no redirect) answers 500.
        r.rewrite = None;
        r.mirrors.clear();
        r.direct_response = Some(HttpDirectResponse {
            status: 500,
            body: None,
        });
    }
    r
}

fn apply_filter(
    f: &HttpRouteFilter,
    r: &mut HttpRoute,
    headers: &mut Headers,
    backends: &Backends<'_>,
) {
    let ops = |m: &HeaderModifier| HeaderOperations {
        set: m
            .set
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.clone()))
            .collect(),
        add: m
            .add
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.clone()))
            .collect(),
        remove: m.remove.iter().map(|h| h.to_ascii_lowercase()).collect(),
    };
    match f.filter_type {
        FilterType::RequestHeaderModifier => {
            headers.request = f.request_header_modifier.as_ref().map(ops)
        }
        FilterType::ResponseHeaderModifier => {
            headers.response = f.response_header_modifier.as_ref().map(ops)
        }
        FilterType::RequestRedirect => {
            let Some(rd) = &f.request_redirect else {
                return;
            };
            let uri = rd.path.as_ref().and_then(|p| match p.modifier_type {
                PathModifierType::ReplaceFullPath => p.replace_full_path.clone(),
                PathModifierType::ReplacePrefixMatch => None,
            });
            r.redirect = Some(HttpRedirect {
                uri,
                authority: rd.hostname.clone(),
                port: rd.port.and_then(|p| u32::try_from(p).ok()),
                derive_port: None,
                scheme: rd.scheme.clone(),
                redirect_code: Some(
                    rd.status_code
                        .and_then(|c| u32::try_from(c).ok())
                        .unwrap_or(302),
                ),
            });
        }
        FilterType::UrlRewrite => {
            let Some(rw) = &f.url_rewrite else { return };
            let mut rewrite = HttpRewrite {
                authority: rw.hostname.clone(),
                ..Default::default()
            };
            if let Some(p) = &rw.path {
                match p.modifier_type {
                    PathModifierType::ReplacePrefixMatch => {
                        rewrite.uri = p.replace_prefix_match.clone();
                    }
                    PathModifierType::ReplaceFullPath => {
                        rewrite.uri_regex_rewrite = Some(RegexRewrite {
                            pattern: Some("^/.*$".into()),
                            rewrite: p.replace_full_path.clone(),
                        });
                    }
                }
            }
            r.rewrite = Some(rewrite);
        }
        FilterType::RequestMirror => {
            let Some(m) = &f.request_mirror else { return };
            if let Some(dest) = backends.destination(&m.backend_ref) {
                r.mirrors.push(HttpMirrorPolicy {
                    destination: Some(dest),
                    percentage: m.percent.map(|p| Percent { value: p as f64 }),
                });
            }
        }
        FilterType::ExtensionRef => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_puts_exact_then_longer_prefixes_first() {
        let m = |t: PathMatchType, v: &str, method: bool| HttpRouteMatch {
            path: Some(shoal_config::gateway_api::HttpPathMatch {
                match_type: Some(t),
                value: Some(v.into()),
            }),
            method: method.then(|| "GET".into()),
            ..Default::default()
        };
        let mut ranks = [
            rank(None, false),
            rank(Some(&m(PathMatchType::PathPrefix, "/", false)), false),
            rank(
                Some(&m(PathMatchType::RegularExpression, "/.*", false)),
                false,
            ),
            rank(Some(&m(PathMatchType::PathPrefix, "/abc", false)), false),
            rank(Some(&m(PathMatchType::PathPrefix, "/abc", true)), false),
            rank(Some(&m(PathMatchType::Exact, "/a", false)), false),
        ];
        let expect = [ranks[5], ranks[4], ranks[3], ranks[1], ranks[2], ranks[0]];
        ranks.sort();
        assert_eq!(ranks, expect);
    }
}
