//! Validation of the Kubernetes Gateway API kinds with the rules of the API's schema and
//! CEL validations that matter to translation: listener names unique and protocols known,
//! HTTPS/TLS listeners with `tls` (Terminate with a certificate), paths starting with `/`,
//! weights in 0..=1000000, filters whose `type` matches their field, a redirect never with
//! backends or a rewrite; GRPCRoute method matches naming a service or a method (with the
//! API's syntax when `Exact`, compiling when `RegularExpression`). What shoal does not act on
//! is a warning naming the field.

use std::collections::BTreeSet;

use super::Validator;
use crate::gateway_api::{
    BackendKind, FilterType, FromNamespaces, GrpcMethodMatch, GrpcMethodMatchType, GrpcRouteSpec,
    HttpBackendRef, HttpPathModifier, HttpRouteFilter, HttpRouteMatch, HttpRouteRule,
    HttpRouteSpec, KubeGatewaySpec, L4RouteSpec, Listener, ParentReference, PathMatchType,
    PathModifierType, REMOTE_GATEWAY_CLASS, ReferenceGrantSpec, TlsMode, ValueMatchType,
};
use crate::host;

/// Listener protocols of the API's core and extended support.
/// `HBONE` is Istio's, for the listener of a waypoint (class `istio-waypoint`) or of
/// another network's east-west gateway (class `istio-remote`).
const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TLS", "TCP", "UDP", "HBONE"];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const MAX_WEIGHT: i64 = 1_000_000;

pub(super) fn gateway(v: &mut Validator, spec: &KubeGatewaySpec) {
    if spec.gateway_class_name.is_empty() {
        v.error("spec.gatewayClassName", "required");
    }
    if spec.listeners.is_empty() {
        v.error(
            "spec.listeners",
            "a Gateway must have at least one listener",
        );
    }
    // A remote network's gateway is found at its addresses.
    if !spec.addresses.is_empty() && spec.gateway_class_name != REMOTE_GATEWAY_CLASS {
        v.warning(
            "spec.addresses",
            "gateway proxies listen on every address; only Hostname addresses are read, to find the Service reported in the Gateway's status",
        );
    }
    let mut names = BTreeSet::new();
    let mut bindings = BTreeSet::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        let f = format!("spec.listeners[{i}]");
        listener(v, &f, l);
        if !l.name.is_empty() && !names.insert(l.name.as_str()) {
            v.error(
                format!("{f}.name"),
                format!("listener names must be unique: duplicate {:?}", l.name),
            );
        }
        if !bindings.insert((l.port, l.hostname.as_deref().unwrap_or(""))) {
            v.error(
                format!("{f}.hostname"),
                "listeners on one port must have distinct hostnames",
            );
        }
    }
}

fn listener(v: &mut Validator, f: &str, l: &Listener) {
    if l.name.is_empty() {
        v.error(format!("{f}.name"), "required");
    } else if !host::is_dns1123_subdomain(&l.name) {
        v.error(
            format!("{f}.name"),
            format!("{:?} is not a valid section name", l.name),
        );
    }
    v.port(format!("{f}.port"), l.port);
    if let Some(h) = &l.hostname {
        hostname(v, &format!("{f}.hostname"), h);
    }
    let protocol = l.protocol.as_str();
    if !PROTOCOLS.contains(&protocol) {
        v.error(
            format!("{f}.protocol"),
            format!("unknown protocol {protocol:?} (HTTP, HTTPS, TLS, TCP, UDP or HBONE)"),
        );
        return;
    }
    match (protocol, &l.tls) {
        ("HTTPS" | "TLS", None) => v.error(
            format!("{f}.tls"),
            format!("required for protocol {protocol}"),
        ),
        ("HTTP" | "TCP" | "UDP", Some(_)) => v.error(
            format!("{f}.tls"),
            format!("must not be set for protocol {protocol}"),
        ),
        ("HTTPS", Some(t)) if t.mode() == TlsMode::Passthrough => v.error(
            format!("{f}.tls.mode"),
            "an HTTPS listener terminates TLS (Passthrough needs protocol TLS)",
        ),
        _ => {}
    }
    if let Some(t) = &l.tls
        && t.mode() == TlsMode::Terminate
    {
        if t.certificate_refs.is_empty() {
            v.error(
                format!("{f}.tls.certificateRefs"),
                "a terminating listener needs a certificate",
            );
        }
        for (j, r) in t.certificate_refs.iter().enumerate() {
            let cf = format!("{f}.tls.certificateRefs[{j}]");
            if r.name.is_empty() {
                v.error(format!("{cf}.name"), "required");
            }
            if !r.group.as_deref().unwrap_or("").is_empty()
                || r.kind.as_deref().unwrap_or("Secret") != "Secret"
            {
                v.error(cf.clone(), "only core Secrets are supported");
            }
            if r.namespace.is_some() {
                v.warning(
                    format!("{cf}.namespace"),
                    "gateways are served Secrets of their own namespace only (even with a ReferenceGrant): a certificate of another namespace is not used",
                );
            }
        }
    }
    if protocol == "UDP" {
        v.warning(format!("{f}.protocol"), "UDP listeners are not served");
    }
    if let Some(n) = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    {
        let nf = format!("{f}.allowedRoutes.namespaces");
        match (n.from, &n.selector) {
            (Some(FromNamespaces::Selector), Some(s)) => {
                super::label_selector::label_selector(v, &format!("{nf}.selector"), s);
            }
            (Some(FromNamespaces::Selector), None) => {
                v.error(format!("{nf}.selector"), "required when `from` is Selector");
            }
            _ => {}
        }
    }
}

/// A Gateway API `Hostname`: a DNS name, optionally with a leading `*.`, never an IP.
fn hostname(v: &mut Validator, f: &str, h: &str) {
    if h == "*" || h.parse::<std::net::IpAddr>().is_ok() {
        v.error(
            f,
            format!("{h:?}: a hostname must be a DNS name (not an IP address or `*`)"),
        );
        return;
    }
    v.host(f, h);
}

pub(super) fn http_route(v: &mut Validator, spec: &HttpRouteSpec) {
    parent_refs(v, &spec.parent_refs);
    for (i, h) in spec.hostnames.iter().enumerate() {
        hostname(v, &format!("spec.hostnames[{i}]"), h);
    }
    for (i, r) in spec.rules.iter().enumerate() {
        rule(v, &format!("spec.rules[{i}]"), r);
    }
}

fn parent_refs(v: &mut Validator, refs: &[ParentReference]) {
    for (i, p) in refs.iter().enumerate() {
        let f = format!("spec.parentRefs[{i}]");
        if p.name.is_empty() {
            v.error(format!("{f}.name"), "required");
        }
        if let Some(port) = p.port {
            v.port(format!("{f}.port"), port);
        }
        if !p.is_gateway() && !p.is_service() && !p.is_service_entry() {
            v.warning(
                f,
                "only Gateway, core Service and Istio ServiceEntry parents are supported: ignored",
            );
        }
    }
}

/// A `GRPCRoute`: as an HTTPRoute for parents, hostnames, headers, filters (a subset of
/// the HTTPRoute's) and backends; method matches as the API's CEL rules say.
pub(super) fn grpc_route(v: &mut Validator, spec: &GrpcRouteSpec) {
    parent_refs(v, &spec.parent_refs);
    for (i, h) in spec.hostnames.iter().enumerate() {
        hostname(v, &format!("spec.hostnames[{i}]"), h);
    }
    for (i, r) in spec.rules.iter().enumerate() {
        let f = format!("spec.rules[{i}]");
        for (j, m) in r.matches.iter().enumerate() {
            let mf = format!("{f}.matches[{j}]");
            if let Some(method) = &m.method {
                grpc_method(v, &format!("{mf}.method"), method);
            }
            headers(v, &mf, &m.headers);
        }
        let mut seen = BTreeSet::new();
        for (j, filter) in r.filters.iter().enumerate() {
            let ff = format!("{f}.filters[{j}]");
            route_filter(v, &ff, &filter.to_http());
            let once = !matches!(
                filter.filter_type,
                crate::gateway_api::GrpcFilterType::RequestMirror
            );
            if once && !seen.insert(format!("{:?}", filter.filter_type)) {
                v.error(ff, "this filter type may appear only once per rule");
            }
        }
        backend_refs(v, &f, &r.backend_refs);
    }
}

fn grpc_method(v: &mut Validator, f: &str, m: &GrpcMethodMatch) {
    let (service, method) = (m.service(), m.method());
    if service.is_none() && method.is_none() {
        v.error(
            f.to_string(),
            "one or both of service and method must be set",
        );
        return;
    }
    let parts = [("service", service), ("method", method)];
    for (name, value) in parts {
        let Some(value) = value else { continue };
        let field = format!("{f}.{name}");
        if value.len() > 1024 {
            v.error(field, "must be at most 1024 characters");
            continue;
        }
        match m.match_type() {
            GrpcMethodMatchType::Exact => {
                let ok = if name == "service" {
                    is_grpc_service(value)
                } else {
                    is_grpc_identifier(value)
                };
                if !ok {
                    v.error(
                        field,
                        format!(
                            "{value:?} is not a valid gRPC {name} name (Exact matches are literal)"
                        ),
                    );
                }
            }
            GrpcMethodMatchType::RegularExpression => {
                v.regex(field.clone(), value);
                if has_top_level_alternation(value) {
                    v.warning(
                        field,
                        "joined with the other part as /SERVICE/METHOD (as Istio does): an alternation not inside a group spans the '/'",
                    );
                }
            }
        }
    }
}

/// Whether a regex has a `|` outside every group and class (`a|b`, not `(a|b)`).
fn has_top_level_alternation(re: &str) -> bool {
    let (mut depth, mut class, mut escaped) = (0usize, false, false);
    for c in re.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' if !class => class = true,
            ']' if class => class = false,
            _ if class => {}
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => return true,
            _ => {}
        }
    }
    false
}

/// A gRPC method name: `[A-Za-z_][A-Za-z_0-9]*`.
fn is_grpc_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A gRPC service name: dot-separated identifiers, optionally with a leading dot.
fn is_grpc_service(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    s.split('.').all(is_grpc_identifier)
}

/// A `TLSRoute` (`tls`) or `TCPRoute`: Gateway parents only, hostnames for TLS only, one
/// to sixteen rules with backends.
pub(super) fn l4_route(v: &mut Validator, spec: &L4RouteSpec, tls: bool) {
    parent_refs(v, &spec.parent_refs);
    for (i, p) in spec.parent_refs.iter().enumerate() {
        if p.is_service() || p.is_service_entry() {
            v.warning(
                format!("spec.parentRefs[{i}]"),
                "mesh (Service and ServiceEntry) parents are supported for HTTPRoutes and GRPCRoutes only: ignored",
            );
        }
    }
    if tls {
        for (i, h) in spec.hostnames.iter().enumerate() {
            hostname(v, &format!("spec.hostnames[{i}]"), h);
        }
    } else if !spec.hostnames.is_empty() {
        v.error("spec.hostnames", "a TCPRoute has no hostnames");
    }
    if spec.rules.is_empty() || spec.rules.len() > 16 {
        v.error("spec.rules", "a route has 1 to 16 rules");
    }
    for (i, r) in spec.rules.iter().enumerate() {
        let f = format!("spec.rules[{i}]");
        if r.backend_refs.is_empty() {
            v.error(
                format!("{f}.backendRefs"),
                "at least one backend is required",
            );
        }
        backend_refs(v, &f, &r.backend_refs);
    }
}

/// A `ReferenceGrant`: every `from` and `to` names a kind, `from` a namespace.
pub(super) fn reference_grant(v: &mut Validator, spec: &ReferenceGrantSpec) {
    if spec.from.is_empty() {
        v.error("spec.from", "at least one entry is required");
    }
    if spec.to.is_empty() {
        v.error("spec.to", "at least one entry is required");
    }
    for (i, f) in spec.from.iter().enumerate() {
        if f.kind.is_empty() {
            v.error(format!("spec.from[{i}].kind"), "required");
        }
        if f.namespace.is_empty() {
            v.error(format!("spec.from[{i}].namespace"), "required");
        }
    }
    for (i, t) in spec.to.iter().enumerate() {
        if t.kind.is_empty() {
            v.error(format!("spec.to[{i}].kind"), "required");
        }
        if t.name.as_deref() == Some("") {
            v.error(format!("spec.to[{i}].name"), "must not be empty when set");
        }
    }
}

fn rule(v: &mut Validator, f: &str, r: &HttpRouteRule) {
    for (i, m) in r.matches.iter().enumerate() {
        route_match(v, &format!("{f}.matches[{i}]"), m);
    }
    let mut seen = BTreeSet::new();
    for (i, filter) in r.filters.iter().enumerate() {
        let ff = format!("{f}.filters[{i}]");
        route_filter(v, &ff, filter);
        let once = !matches!(filter.filter_type, FilterType::RequestMirror);
        if once && !seen.insert(format!("{:?}", filter.filter_type)) {
            v.error(ff.clone(), "this filter type may appear only once per rule");
        }
        if let Some(HttpPathModifier {
            modifier_type: PathModifierType::ReplacePrefixMatch,
            ..
        }) = filter
            .url_rewrite
            .as_ref()
            .and_then(|u| u.path.as_ref())
            .or(filter
                .request_redirect
                .as_ref()
                .and_then(|r| r.path.as_ref()))
        {
            let prefix_only = r.matches.iter().all(|m| {
                m.path
                    .as_ref()
                    .is_none_or(|p| p.match_type() == PathMatchType::PathPrefix)
            });
            if !prefix_only {
                v.error(
                    format!("{ff}.type"),
                    "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
                );
            }
        }
    }
    let has = |t: &str| seen.contains(t);
    if has("RequestRedirect") && has("UrlRewrite") {
        v.error(
            format!("{f}.filters"),
            "RequestRedirect and URLRewrite cannot be used together",
        );
    }
    if has("RequestRedirect") && !r.backend_refs.is_empty() {
        v.error(
            format!("{f}.backendRefs"),
            "a rule with a RequestRedirect must not have backendRefs",
        );
    }
    backend_refs(v, f, &r.backend_refs);
    if let Some(t) = &r.timeouts {
        let zero = std::time::Duration::ZERO;
        if let Some(d) = &t.request {
            v.duration(format!("{f}.timeouts.request"), d, zero);
        }
        if let Some(d) = &t.backend_request {
            v.duration(format!("{f}.timeouts.backendRequest"), d, zero);
            v.warning(
                format!("{f}.timeouts.backendRequest"),
                "not supported yet; ignored",
            );
        }
    }
}

fn backend_refs(v: &mut Validator, f: &str, refs: &[HttpBackendRef]) {
    for (i, b) in refs.iter().enumerate() {
        let bf = format!("{f}.backendRefs[{i}]");
        if b.name.is_empty() {
            v.error(format!("{bf}.name"), "required");
        }
        if let Some(w) = b.weight
            && !(0..=MAX_WEIGHT).contains(&w)
        {
            v.error(
                format!("{bf}.weight"),
                format!("weight {w} is out of range 0-{MAX_WEIGHT}"),
            );
        }
        backend_port(v, &bf, b.backend().kind(), b.port);
    }
}

fn backend_port(v: &mut Validator, f: &str, kind: BackendKind, port: Option<i64>) {
    let what = match kind {
        BackendKind::Service => "a Service",
        BackendKind::Hostname => "a Hostname",
        BackendKind::ServiceEntry => "a ServiceEntry",
        BackendKind::Other => {
            v.warning(
                f.to_string(),
                "only core Services and Istio's Hostname and ServiceEntry are supported as backends: its share of traffic gets 500",
            );
            return;
        }
    };
    match port {
        Some(p) => {
            v.port(format!("{f}.port"), p);
        }
        None => v.error(format!("{f}.port"), format!("required for {what} backend")),
    }
}

fn route_match(v: &mut Validator, f: &str, m: &HttpRouteMatch) {
    if let Some(p) = &m.path {
        let value = p.value();
        match p.match_type() {
            PathMatchType::Exact | PathMatchType::PathPrefix => {
                if !value.starts_with('/') {
                    v.error(format!("{f}.path.value"), "must be an absolute path");
                } else if value.contains("//") || value.contains("/./") || value.contains("/../") {
                    v.error(
                        format!("{f}.path.value"),
                        "must not contain '//', '/./' or '/../'",
                    );
                }
            }
            PathMatchType::RegularExpression => v.regex(format!("{f}.path.value"), value),
        }
    }
    headers(v, f, &m.headers);
    for (i, q) in m.query_params.iter().enumerate() {
        let qf = format!("{f}.queryParams[{i}]");
        value_match(v, &qf, &q.name, &q.value, q.match_type.unwrap_or_default());
    }
    if let Some(method) = &m.method
        && !METHODS.contains(&method.as_str())
    {
        v.error(format!("{f}.method"), format!("unknown method {method:?}"));
    }
}

/// Header matches of an HTTPRoute or GRPCRoute match: valid names, unique ignoring case.
fn headers(v: &mut Validator, f: &str, headers: &[crate::gateway_api::HttpHeaderMatch]) {
    let mut names = BTreeSet::new();
    for (i, h) in headers.iter().enumerate() {
        let hf = format!("{f}.headers[{i}]");
        value_match(v, &hf, &h.name, &h.value, h.match_type.unwrap_or_default());
        if !names.insert(h.name.to_ascii_lowercase()) {
            v.error(
                format!("{hf}.name"),
                "header names must be unique in a match",
            );
        }
    }
}

fn value_match(v: &mut Validator, f: &str, name: &str, value: &str, t: ValueMatchType) {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        v.error(format!("{f}.name"), format!("{name:?} is not a valid name"));
    }
    if t == ValueMatchType::RegularExpression {
        v.regex(format!("{f}.value"), value);
    }
}

/// An HTTP header name character (RFC 7230 `tchar`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn route_filter(v: &mut Validator, f: &str, filter: &HttpRouteFilter) {
    let set = [
        (
            FilterType::RequestHeaderModifier,
            filter.request_header_modifier.is_some(),
        ),
        (
            FilterType::ResponseHeaderModifier,
            filter.response_header_modifier.is_some(),
        ),
        (
            FilterType::RequestRedirect,
            filter.request_redirect.is_some(),
        ),
        (FilterType::UrlRewrite, filter.url_rewrite.is_some()),
        (FilterType::RequestMirror, filter.request_mirror.is_some()),
    ];
    if filter.filter_type == FilterType::ExtensionRef {
        v.error(
            format!("{f}.type"),
            "ExtensionRef filters are not supported",
        );
        return;
    }
    for (t, present) in set {
        if present != (t == filter.filter_type) {
            v.error(
                f.to_string(),
                format!(
                    "a filter of type {:?} must set exactly its own field",
                    filter.filter_type
                ),
            );
            return;
        }
    }
    for (name, m) in [
        ("requestHeaderModifier", &filter.request_header_modifier),
        ("responseHeaderModifier", &filter.response_header_modifier),
    ] {
        let Some(m) = m else { continue };
        let names = m.set.iter().chain(&m.add).map(|h| h.name.as_str());
        for n in names.chain(m.remove.iter().map(String::as_str)) {
            if n.is_empty() || !n.bytes().all(is_token_byte) {
                v.error(format!("{f}.{name}"), format!("{n:?} is not a header name"));
            }
        }
    }
    if let Some(r) = &filter.request_redirect {
        if let Some(code) = r.status_code
            && ![301, 302, 303, 307, 308].contains(&code)
        {
            v.error(
                format!("{f}.requestRedirect.statusCode"),
                format!("{code} is not a redirect status (301, 302, 303, 307 or 308)"),
            );
        }
        if let Some(s) = &r.scheme
            && s != "http"
            && s != "https"
        {
            v.error(
                format!("{f}.requestRedirect.scheme"),
                "must be http or https",
            );
        }
        if let Some(p) = r.port {
            v.port(format!("{f}.requestRedirect.port"), p);
        }
        if let Some(h) = &r.hostname {
            hostname(v, &format!("{f}.requestRedirect.hostname"), h);
        }
        if let Some(p) = &r.path {
            path_modifier(v, &format!("{f}.requestRedirect.path"), p);
            if p.modifier_type == PathModifierType::ReplacePrefixMatch {
                v.warning(
                    format!("{f}.requestRedirect.path"),
                    "ReplacePrefixMatch redirects are not supported yet: the path is kept",
                );
            }
        }
    }
    if let Some(u) = &filter.url_rewrite {
        if let Some(h) = &u.hostname {
            hostname(v, &format!("{f}.urlRewrite.hostname"), h);
        }
        if let Some(p) = &u.path {
            path_modifier(v, &format!("{f}.urlRewrite.path"), p);
        }
    }
    if let Some(m) = &filter.request_mirror {
        let mf = format!("{f}.requestMirror.backendRef");
        if m.backend_ref.name.is_empty() {
            v.error(format!("{mf}.name"), "required");
        }
        backend_port(v, &mf, m.backend_ref.kind(), m.backend_ref.port);
        if let Some(p) = m.percent
            && !(0..=100).contains(&p)
        {
            v.error(format!("{f}.requestMirror.percent"), "must be in 0-100");
        }
    }
}

fn path_modifier(v: &mut Validator, f: &str, p: &HttpPathModifier) {
    let (value, other) = match p.modifier_type {
        PathModifierType::ReplaceFullPath => (&p.replace_full_path, &p.replace_prefix_match),
        PathModifierType::ReplacePrefixMatch => (&p.replace_prefix_match, &p.replace_full_path),
    };
    match value {
        None => v.error(
            f.to_string(),
            format!("{:?} needs its value", p.modifier_type),
        ),
        Some(s) if !s.starts_with('/') => v.error(f.to_string(), "must be an absolute path"),
        Some(_) => {}
    }
    if other.is_some() {
        v.error(f.to_string(), "sets the value of another modifier type");
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::support::{findings, has};

    fn gateway(listeners: &str) -> Vec<String> {
        findings(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: ns}}\nspec:\n  gatewayClassName: istio\n  listeners:\n{listeners}"
        ))
    }

    fn route(rules: &str) -> Vec<String> {
        findings(&format!(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: ns}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [a.example.com]\n  rules:\n{rules}"
        ))
    }

    #[test]
    fn valid_gateways_and_routes_are_accepted_cleanly() {
        let f = gateway(
            "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n  - name: https\n    port: 443\n    protocol: HTTPS\n    hostname: '*.example.com'\n    tls: {mode: Terminate, certificateRefs: [{name: cert}]}\n  - {name: tls, port: 8443, protocol: TLS, tls: {mode: Passthrough}}\n",
        );
        assert_eq!(f, Vec::<String>::new());
        let f = route(
            "  - matches:\n    - path: {type: PathPrefix, value: /a}\n      headers: [{name: x-v, value: '1'}, {type: RegularExpression, name: x-w, value: 'a.*'}]\n      queryParams: [{name: q, value: v}]\n      method: GET\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: x-a, value: b}], remove: [x-c]}\n    - type: URLRewrite\n      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}\n    backendRefs: [{name: a, port: 80, weight: 3}, {name: b, port: 80}]\n    timeouts: {request: 10s}\n  - filters:\n    - type: RequestRedirect\n      requestRedirect: {scheme: https, statusCode: 301}\n",
        );
        assert_eq!(f, Vec::<String>::new());
    }

    #[test]
    fn malformed_gateways_are_rejected_by_field() {
        let f = gateway(
            "  - {name: a, port: 80, protocol: HTTP}\n  - {name: a, port: 81, protocol: HTTPS}\n  - {name: b, port: 70000, protocol: QUIC}\n  - {name: c, port: 82, protocol: HTTP, tls: {certificateRefs: [{name: x}]}}\n  - {name: d, port: 83, protocol: TLS, tls: {mode: Terminate}}\n",
        );
        for expected in [
            "error spec.listeners[1].name: listener names must be unique",
            "error spec.listeners[1].tls: required for protocol HTTPS",
            "error spec.listeners[2].port: port 70000 is out of range",
            "error spec.listeners[2].protocol: unknown protocol \"QUIC\"",
            "error spec.listeners[3].tls: must not be set for protocol HTTP",
            "error spec.listeners[4].tls.certificateRefs: a terminating listener needs a certificate",
        ] {
            assert!(has(&f, expected), "{expected}: {f:?}");
        }
        let f = gateway("  - {name: a, port: 80, protocol: HTTP, foo: 1}\n");
        assert!(
            has(&f, "warning spec.listeners[0].foo: field is not supported"),
            "{f:?}"
        );
    }

    #[test]
    fn malformed_routes_are_rejected_by_field() {
        let f = route(
            "  - matches:\n    - path: {type: Exact, value: a}\n      method: FETCH\n    - path: {type: RegularExpression, value: '('}\n    backendRefs: [{name: a, port: 80, weight: -1}, {name: b}]\n  - filters:\n    - {type: RequestRedirect, requestRedirect: {statusCode: 200}}\n    backendRefs: [{name: a, port: 80}]\n",
        );
        for expected in [
            "error spec.rules[0].matches[0].path.value: must be an absolute path",
            "error spec.rules[0].matches[0].method: unknown method",
            "error spec.rules[0].matches[1].path.value: invalid regex",
            "error spec.rules[0].backendRefs[0].weight: weight -1 is out of range",
            "error spec.rules[0].backendRefs[1].port: required for a Service backend",
            "error spec.rules[1].filters[0].requestRedirect.statusCode",
            "error spec.rules[1].backendRefs: a rule with a RequestRedirect must not have backendRefs",
        ] {
            assert!(has(&f, expected), "{expected}: {f:?}");
        }
        let f = route(
            "  - filters:\n    - {type: RequestHeaderModifier, responseHeaderModifier: {}}\n    backendRefs: [{name: a, port: 80, filters: []}]\n",
        );
        assert!(
            has(&f, "error spec.rules[0].filters[0]: a filter of type"),
            "{f:?}"
        );
        assert!(
            has(
                &f,
                "warning spec.rules[0].backendRefs[0].filters: field is not supported"
            ),
            "{f:?}"
        );
    }
    #[test]
    fn l4_routes_and_reference_grants_are_validated() {
        let ok = findings(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: t, namespace: ns}\nspec:\n  parentRefs: [{name: gw, sectionName: tls}]\n  hostnames: [a.example.com]\n  rules:\n  - backendRefs: [{name: a, port: 443, weight: 2}]\n---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t, namespace: ns}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: db, namespace: data, port: 5432}]\n---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: data}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: ns}]\n  to: [{group: '', kind: Service, name: db}]\n",
        );
        assert_eq!(ok, Vec::<String>::new());
        let f = findings(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t, namespace: ns}\nspec:\n  parentRefs: [{name: gw}, {kind: Service, group: '', name: s}]\n  hostnames: [a.example.com]\n  rules:\n  - backendRefs: [{name: db}]\n  - backendRefs: []\n---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: t, namespace: ns}\nspec:\n  parentRefs: [{name: gw}]\n  hostnames: ['*']\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: data}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: ''}]\n  to: [{group: '', kind: Service, name: ''}]\n",
        );
        for expected in [
            "warning spec.parentRefs[1]: mesh (Service and ServiceEntry) parents",
            "error spec.hostnames: a TCPRoute has no hostnames",
            "error spec.rules[0].backendRefs[0].port: required",
            "error spec.rules[1].backendRefs: at least one backend",
            "error spec.hostnames[0]: \"*\": a hostname must be a DNS name",
            "error spec.rules: a route has 1 to 16 rules",
            "error spec.from[0].kind: required",
            "error spec.from[0].namespace: required",
            "error spec.to[0].name: must not be empty",
        ] {
            assert!(has(&f, expected), "{expected}: {f:?}");
        }
    }

    #[test]
    fn istio_parents_and_backends_are_accepted_as_istio_accepts_them() {
        let route = |parent: &str, backend: &str| {
            findings(&format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: ns}}\nspec:\n  parentRefs: [{parent}]\n  rules:\n  - backendRefs: [{backend}]\n"
            ))
        };
        let ok = route(
            "{kind: ServiceEntry, group: networking.istio.io, name: api}",
            "{kind: Hostname, group: networking.istio.io, name: api.example.com, port: 443}",
        );
        assert_eq!(ok, Vec::<String>::new());
        let f = route(
            "{kind: VirtualService, group: networking.istio.io, name: v}",
            "{kind: Hostname, group: networking.istio.io, name: api.example.com}",
        );
        for expected in [
            "warning spec.parentRefs[0]: only Gateway, core Service and Istio ServiceEntry parents",
            "error spec.rules[0].backendRefs[0].port: required for a Hostname backend",
        ] {
            assert!(has(&f, expected), "{expected}: {f:?}");
        }
    }

    #[test]
    fn reference_grants_allow_only_what_they_name() {
        use crate::gateway_api::{ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo};
        let g = ReferenceGrantSpec {
            from: vec![ReferenceGrantFrom {
                group: crate::gateway_api::GROUP.into(),
                kind: "HTTPRoute".into(),
                namespace: "web".into(),
            }],
            to: vec![ReferenceGrantTo {
                group: String::new(),
                kind: "Service".into(),
                name: Some("db".into()),
            }],
        };
        let from = (crate::gateway_api::GROUP, "HTTPRoute", "web");
        assert!(g.allows(from, ("", "Service", "db")));
        assert!(!g.allows(from, ("", "Service", "other")));
        assert!(!g.allows(from, ("", "Secret", "db")));
        assert!(!g.allows(
            (crate::gateway_api::GROUP, "TCPRoute", "web"),
            ("", "Service", "db")
        ));
        assert!(!g.allows(
            (crate::gateway_api::GROUP, "HTTPRoute", "x"),
            ("", "Service", "db")
        ));
    }

    #[test]
    fn gateway_api_kinds_by_version() {
        use crate::Kind;
        use crate::parse::kind_for;
        let g = |v: &str| format!("gateway.networking.k8s.io/{v}");
        assert_eq!(
            kind_for(&g("v1beta1"), "ReferenceGrant"),
            Some(Kind::ReferenceGrant)
        );
        assert_eq!(
            kind_for(&g("v1"), "ReferenceGrant"),
            Some(Kind::ReferenceGrant)
        );
        assert_eq!(kind_for(&g("v1alpha2"), "TLSRoute"), Some(Kind::TlsRoute));
        assert_eq!(kind_for(&g("v1alpha2"), "TCPRoute"), Some(Kind::TcpRoute));
        assert_eq!(kind_for(&g("v1alpha2"), "HTTPRoute"), None);
        assert_eq!(kind_for(&g("v1"), "TCPRoute"), None);
    }
}
