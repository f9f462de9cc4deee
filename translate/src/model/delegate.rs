//! Delegate VirtualServices, merged into their roots as Istio does
//! (`mergeVirtualServicesIfNeeded` in Istio's pilot): a VirtualService without `hosts` is a
//! delegate, reachable only through an `http[].delegate` of a root VirtualService. Each
//! delegating route of a root is replaced, in place, by the delegate's routes, whose matches
//! are merged with the root route's (a delegate match must narrow a root match; routes
//! whose matches conflict with all of the root's are dropped) and which take the root
//! route's settings they do not set themselves. Delegation is one level deep.
//!
//! This runs once per model build, so every route builder (sidecars, gateways, proxyless
//! gRPC) sees merged roots and never a delegate. Whether a delegate exists and is exported
//! to its root's namespace needs every object: a route naming a missing or hidden delegate
//! is skipped here (as in Istio), and the cross-object analysis (`shoal_config::analyze`,
//! `shoal validate`, the server's config findings) reports it.

use std::collections::BTreeMap;
use std::sync::Arc;

use shoal_config::host;
use shoal_config::istio::{HttpMatchRequest, HttpRoute, StringMatch, StringMatchKind};

use super::{Rule, VirtualServiceRule};
use crate::scope::qualify_gateway;

/// The VirtualServices routes are built from: roots with their delegates merged in and
/// plain ones as they are; delegates themselves are left out.
pub(super) fn merge(
    vss: Vec<Arc<VirtualServiceRule>>,
    suffix: &str,
) -> Vec<Arc<VirtualServiceRule>> {
    let (delegates, vss): (Vec<_>, Vec<_>) = vss.into_iter().partition(|vs| vs.hosts.is_empty());
    let delegates: BTreeMap<(&str, &str), &Arc<VirtualServiceRule>> = delegates
        .iter()
        .map(|d| ((d.namespace.as_ref(), d.name.as_ref()), d))
        .collect();
    vss.into_iter()
        .map(|vs| {
            if vs.spec.http.iter().all(|r| r.delegate.is_none()) {
                return vs;
            }
            let mut http = Vec::new();
            for r in &vs.spec.http {
                let Some(d) = &r.delegate else {
                    http.push(r.clone());
                    continue;
                };
                let ns = d.namespace.as_deref().unwrap_or(&vs.namespace);
                let Some(delegate) = delegates.get(&(ns, d.name.as_str())) else {
                    tracing::debug!(
                        root = %format!("{}/{}", vs.namespace, vs.name),
                        delegate = %format!("{ns}/{}", d.name),
                        "delegate VirtualService not found (or it has hosts): route skipped"
                    );
                    continue;
                };
                if !delegate.visibility.visible_from(&vs.namespace) {
                    tracing::debug!(
                        root = %format!("{}/{}", vs.namespace, vs.name),
                        delegate = %format!("{ns}/{}", d.name),
                        "delegate VirtualService is not exported to its root's namespace: route skipped"
                    );
                    continue;
                }
                http.extend(merge_routes(r, &vs.namespace, delegate, suffix));
            }
            let mut spec = (*vs.spec).clone();
            spec.http = http;
            Arc::new(Rule {
                namespace: vs.namespace.clone(),
                name: vs.name.clone(),
                spec: Arc::new(spec),
                hosts: vs.hosts.clone(),
                visibility: vs.visibility.clone(),
            })
        })
        .collect()
}

/// The routes replacing a root's delegating route: one per delegate route that does not
/// conflict with it. The delegate's names are resolved in its own namespace first, since
/// the merged routes belong to the root.
fn merge_routes(
    root: &HttpRoute,
    root_ns: &str,
    delegate: &VirtualServiceRule,
    suffix: &str,
) -> Vec<HttpRoute> {
    let root = localized(root.clone(), root_ns, suffix);
    delegate
        .spec
        .http
        .iter()
        // Only one level: a delegate's own delegating routes are invalid and ignored.
        .filter(|r| r.delegate.is_none())
        .filter_map(|r| merge_route(&root, localized(r.clone(), &delegate.namespace, suffix)))
        .collect()
}

/// A route with the names its VirtualService's namespace decides made absolute: destination
/// and mirror hosts as FQDNs, gateways of matches as `NS/NAME`.
fn localized(mut r: HttpRoute, ns: &str, suffix: &str) -> HttpRoute {
    let fqdn = |h: &mut String| *h = host::resolve(h, ns, suffix);
    for d in &mut r.route {
        fqdn(&mut d.destination.host);
    }
    if let Some(m) = &mut r.mirror {
        fqdn(&mut m.host);
    }
    for m in &mut r.mirrors {
        if let Some(d) = &mut m.destination {
            fqdn(&mut d.host);
        }
    }
    for m in &mut r.matches {
        for g in &mut m.gateways {
            if let Some(q) = qualify_gateway(g, ns) {
                *g = q;
            }
        }
    }
    r
}

/// Istio's `mergeHTTPRoute`: the delegate route with merged matches, a combined name, and
/// the root's settings where it has none. `None` when its matches conflict with the root's.
fn merge_route(root: &HttpRoute, mut sub: HttpRoute) -> Option<HttpRoute> {
    sub.matches = merge_matches(&root.matches, &sub.matches)?;
    sub.name = joined(root.name.as_deref(), sub.name.take());
    sub.delegate = None;
    sub.rewrite = sub.rewrite.or_else(|| root.rewrite.clone());
    sub.timeout = sub.timeout.or_else(|| root.timeout.clone());
    sub.retries = sub.retries.or_else(|| root.retries.clone());
    sub.fault = sub.fault.or_else(|| root.fault.clone());
    sub.cors_policy = sub.cors_policy.or_else(|| root.cors_policy.clone());
    sub.headers = sub.headers.or_else(|| root.headers.clone());
    // `mirror` and `mirrors` exclude each other: a delegate route that mirrors either way
    // keeps its own, unlike Istio, which could end up with both set.
    if sub.mirror.is_none() && sub.mirrors.is_empty() {
        sub.mirror.clone_from(&root.mirror);
        sub.mirrors.clone_from(&root.mirrors);
    }
    sub.mirror_percentage = sub.mirror_percentage.or(root.mirror_percentage);
    sub.mirror_percent = sub.mirror_percent.or(root.mirror_percent);
    Some(sub)
}

/// `ROOT-SUB`, or whichever is set.
fn joined(root: Option<&str>, sub: Option<String>) -> Option<String> {
    match (
        root.filter(|n| !n.is_empty()),
        sub.filter(|n| !n.is_empty()),
    ) {
        (Some(r), Some(s)) => Some(format!("{r}-{s}")),
        (None, s) => s,
        (Some(r), None) => Some(r.to_string()),
    }
}

/// Istio's `mergeHTTPMatchRequests`: every delegate match merged with each root match it
/// does not conflict with; `None` when some delegate match conflicts with all of them.
fn merge_matches(
    root: &[HttpMatchRequest],
    sub: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(sub.to_vec());
    }
    if sub.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for s in sub {
        let before = out.len();
        out.extend(
            root.iter()
                .filter(|r| !conflicts(r, s))
                .map(|r| merge_match(r, s)),
        );
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// Istio's `mergeHTTPMatchRequest`: the delegate's conditions, completed by the root's.
fn merge_match(root: &HttpMatchRequest, sub: &HttpMatchRequest) -> HttpMatchRequest {
    let union = |r: &BTreeMap<String, StringMatch>, s: &BTreeMap<String, StringMatch>| {
        let mut m = r.clone();
        m.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
        m
    };
    let mut out = sub.clone();
    out.name = joined(root.name.as_deref(), sub.name.clone());
    out.uri = sub.uri.clone().or_else(|| root.uri.clone());
    out.method = sub.method.clone().or_else(|| root.method.clone());
    out.authority = sub.authority.clone().or_else(|| root.authority.clone());
    out.headers = union(&root.headers, &sub.headers);
    out.without_headers = union(&root.without_headers, &sub.without_headers);
    out.query_params = union(&root.query_params, &sub.query_params);
    out.port = sub.port.or(root.port);
    out.source_labels = root.source_labels.clone();
    out.source_labels.extend(&sub.source_labels);
    out.source_namespace = sub
        .source_namespace
        .clone()
        .or_else(|| root.source_namespace.clone());
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    out
}

/// Istio's `hasConflict`: whether a delegate match cannot narrow a root match.
fn conflicts(root: &HttpMatchRequest, sub: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &sub.uri),
        (&root.method, &sub.method),
        (&root.authority, &sub.authority),
    ];
    if pairs
        .into_iter()
        .any(|(r, s)| string_conflict(r.as_ref(), s.as_ref()))
    {
        return true;
    }
    let map_conflict = |r: &BTreeMap<String, StringMatch>, s: &BTreeMap<String, StringMatch>| {
        s.iter().any(|(k, sm)| string_conflict(r.get(k), Some(sm)))
    };
    if map_conflict(&root.headers, &sub.headers)
        || map_conflict(&root.without_headers, &sub.without_headers)
        || map_conflict(&root.query_params, &sub.query_params)
    {
        return true;
    }
    if root.ignore_uri_case != sub.ignore_uri_case {
        return true;
    }
    if let (Some(r), Some(s)) = (root.port.filter(|p| *p != 0), sub.port.filter(|p| *p != 0))
        && r != s
    {
        return true;
    }
    if root
        .source_namespace
        .as_ref()
        .is_some_and(|ns| sub.source_namespace.as_ref() != Some(ns))
    {
        return true;
    }
    if sub
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    // The delegate may only narrow the root's gateways.
    !root.gateways.is_empty()
        && !sub.gateways.is_empty()
        && !sub.gateways.iter().all(|g| root.gateways.contains(g))
}

/// Istio's `stringMatchConflict`: a delegate's string match must select a subset of what
/// the root's selects; regexes cannot be compared, so they only combine with nothing.
fn string_conflict(root: Option<&StringMatch>, sub: Option<&StringMatch>) -> bool {
    let (Some(root), Some(sub)) = (root, sub) else {
        return false;
    };
    match (root.kind(), sub.kind()) {
        (Some(StringMatchKind::Regex(_)), _) | (_, Some(StringMatchKind::Regex(_))) => true,
        (Some(StringMatchKind::Exact(r)), Some(StringMatchKind::Exact(s))) => r != s,
        (Some(StringMatchKind::Prefix(r)), Some(StringMatchKind::Exact(s)))
        | (Some(StringMatchKind::Prefix(r)), Some(StringMatchKind::Prefix(s))) => !s.starts_with(r),
        _ => true,
    }
}

#[cfg(test)]
mod tests;
