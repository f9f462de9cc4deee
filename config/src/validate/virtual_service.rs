//! Validation of the `HTTPRoute` features beyond matching and destinations: redirect,
//! direct response, rewrite, fault injection, mirroring, CORS and header operations, and of
//! the `tcp` and `tls` routes. Rules follow Istio's validation webhook, so a VirtualService
//! Istio rejects is rejected here too.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Validator;
use crate::host;
use crate::istio::{
    CorsPolicy, Delegate, Destination, FaultAbort, FaultDelay, HeaderOperations, Headers,
    HttpDirectResponse, HttpFaultInjection, HttpRedirect, HttpRewrite, HttpRoute, Percent,
    RouteDestination, VirtualServiceSpec, grpc_status_code,
};
use crate::meta::Labels;

/// Istio's limit on direct response bodies: larger ones bloat every proxy's routes.
const MAX_DIRECT_RESPONSE_BODY: usize = 1024 * 1024;

/// HTTP methods CORS may allow (Istio's list).
const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Redirect codes Envoy's `RedirectAction` can express.
pub(crate) const REDIRECT_CODES: &[u32] = &[301, 302, 303, 307, 308];

/// Everything about an `HTTPRoute` other than its weighted destinations and the request
/// attributes of its matches: the matches' source conditions, delegation, and features.
pub(super) fn http_route_features(v: &mut Validator, f: &str, r: &HttpRoute) {
    for (j, m) in r.matches.iter().enumerate() {
        let mf = format!("{f}.match[{j}]");
        source_match(v, &mf, &m.source_labels, m.source_namespace.as_deref());
        if !m.gateways.is_empty() && (!m.source_labels.is_empty() || m.source_namespace.is_some()) {
            v.warning(
                &mf,
                "sourceLabels and sourceNamespace are ignored when the match names gateways (as in Istio)",
            );
        }
    }
    if let Some(d) = &r.delegate {
        // A root route only hands its traffic over: the delegate's routes say what to do.
        for (set, field) in [
            (!r.route.is_empty(), "route"),
            (r.redirect.is_some(), "redirect"),
            (r.direct_response.is_some(), "directResponse"),
        ] {
            if set {
                v.error(
                    format!("{f}.{field}"),
                    format!("a root HTTP route that delegates must not specify {field}"),
                );
            }
        }
        delegate_ref(v, &format!("{f}.delegate"), d);
    } else if r.redirect.is_some() {
        if !r.route.is_empty() {
            v.error(
                format!("{f}.redirect"),
                "HTTP route cannot contain both route and redirect",
            );
        }
        if r.fault.is_some() {
            v.error(
                format!("{f}.redirect"),
                "HTTP route cannot contain both fault and redirect",
            );
        }
        if r.rewrite.is_some() {
            v.error(
                format!("{f}.redirect"),
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
    } else if r.route.is_empty() && r.direct_response.is_none() {
        v.error(
            format!("{f}.route"),
            "HTTP route, redirect or direct_response is required",
        );
    }
    if r.direct_response.is_some() && r.delegate.is_none() {
        let df = format!("{f}.directResponse");
        if !r.route.is_empty() {
            v.error(
                &df,
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if r.fault.is_some() {
            v.error(
                &df,
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        if r.rewrite.is_some() {
            v.error(
                &df,
                "HTTP route rule cannot contain both rewrite and direct_response",
            );
        }
        if r.redirect.is_some() {
            v.error(
                &df,
                "HTTP route cannot contain both redirect and direct_response",
            );
        }
    }
    if let Some(rd) = &r.redirect {
        redirect(v, &format!("{f}.redirect"), rd);
    }
    if let Some(d) = &r.direct_response {
        direct_response(v, &format!("{f}.directResponse"), d);
    }
    if let Some(rw) = &r.rewrite {
        rewrite(v, &format!("{f}.rewrite"), rw);
        let header_authority = r
            .headers
            .as_ref()
            .and_then(|h| h.request.as_ref())
            .is_some_and(|ops| {
                ops.set
                    .keys()
                    .chain(ops.add.keys())
                    .any(|k| is_authority(k))
            });
        if rw.authority.is_some() && header_authority {
            v.error(
                format!("{f}.rewrite.authority"),
                "authority rewrite is set in both rewrite and headers",
            );
        }
    }
    if let Some(fault) = &r.fault {
        fault_injection(v, &format!("{f}.fault"), fault);
    }
    if let Some(m) = &r.mirror {
        destination(v, &format!("{f}.mirror"), m);
        if !r.mirrors.is_empty() {
            v.error(
                format!("{f}.mirrors"),
                "http.Mirror and http.Mirrors cannot both be set",
            );
        }
    }
    if let Some(p) = r.mirror_percent {
        if p > 100 {
            v.error(
                format!("{f}.mirrorPercent"),
                format!("percentage {p} is not between 0 and 100"),
            );
        } else if r.mirror_percentage.is_some() {
            v.warning(
                format!("{f}.mirrorPercent"),
                "deprecated, and ignored beside mirrorPercentage",
            );
        } else {
            v.warning(
                format!("{f}.mirrorPercent"),
                "deprecated (still honoured, as by Istio): use mirrorPercentage",
            );
        }
    }
    if let Some(p) = &r.mirror_percentage {
        percent(v, &format!("{f}.mirrorPercentage"), p);
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let mf = format!("{f}.mirrors[{i}]");
        match &m.destination {
            Some(d) => destination(v, &format!("{mf}.destination"), d),
            None => v.error(format!("{mf}.destination"), "required"),
        }
        if let Some(p) = &m.percentage {
            percent(v, &format!("{mf}.percentage"), p);
        }
    }
    if let Some(c) = &r.cors_policy {
        cors(v, &format!("{f}.corsPolicy"), c);
    }
    if let Some(h) = &r.headers {
        headers(v, &format!("{f}.headers"), h);
    }
    for (k, d) in r.route.iter().enumerate() {
        if let Some(h) = &d.headers {
            headers(v, &format!("{f}.route[{k}].headers"), h);
        }
    }
}

/// A destination's host, subset and port (shared by routes and mirrors).
pub(super) fn destination(v: &mut Validator, f: &str, dest: &Destination) {
    if dest.host.is_empty() {
        v.error(format!("{f}.host"), "required");
    } else if dest.host.contains('*') {
        v.error(
            format!("{f}.host"),
            "a destination host cannot be a wildcard",
        );
    } else {
        v.host(format!("{f}.host"), &dest.host);
    }
    if let Some(s) = &dest.subset
        && !host::is_dns_label(s)
    {
        v.error(
            format!("{f}.subset"),
            format!("{s:?} is not a valid subset name"),
        );
    }
    if let Some(p) = &dest.port {
        v.port(format!("{f}.port.number"), i64::from(p.number));
    }
}

fn percent(v: &mut Validator, f: &str, p: &Percent) {
    if !(0.0..=100.0).contains(&p.value) {
        v.error(
            f,
            format!("percentage {} must be in range [0.0, 100.0]", p.value),
        );
    }
}

fn redirect(v: &mut Validator, f: &str, r: &HttpRedirect) {
    if r.uri.is_none()
        && r.authority.is_none()
        && r.port.is_none()
        && r.derive_port.is_none()
        && r.scheme.is_none()
    {
        v.error(f, "redirect must specify URI, authority, scheme, or port");
    }
    if let Some(code) = r.redirect_code {
        if !(300..=399).contains(&code) {
            v.error(
                format!("{f}.redirectCode"),
                format!("{code} is not a valid redirect code, must be 3xx"),
            );
        } else if !REDIRECT_CODES.contains(&code) {
            // Istio accepts these and then builds a route without an action, which Envoy
            // rejects; refusing the object keeps its last good version in force instead.
            v.error(
                format!("{f}.redirectCode"),
                format!("redirect code {code} is not supported (301, 302, 303, 307 or 308)"),
            );
        }
    }
    if let Some(s) = &r.scheme
        && s != "http"
        && s != "https"
    {
        v.error(
            format!("{f}.scheme"),
            "invalid redirect scheme, must be \"http\" or \"https\"",
        );
    }
    if let Some(p) = r.port {
        v.port(format!("{f}.port"), i64::from(p));
    }
    if let Some(d) = &r.derive_port {
        if r.port.is_some() {
            v.error(
                format!("{f}.derivePort"),
                "only one of port or derivePort may be set",
            );
        }
        if d != "FROM_PROTOCOL_DEFAULT" && d != "FROM_REQUEST_PORT" {
            v.error(
                format!("{f}.derivePort"),
                format!("{d:?} is not FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT"),
            );
        }
    }
}

fn direct_response(v: &mut Validator, f: &str, d: &HttpDirectResponse) {
    if !(200..=599).contains(&d.status) {
        v.error(
            format!("{f}.status"),
            format!("HTTP status {} is not in range 200-599", d.status),
        );
    }
    let Some(body) = &d.body else { return };
    let size = match (&body.string, &body.bytes) {
        (Some(_), Some(_)) => {
            v.error(
                format!("{f}.body"),
                "only one of string or bytes may be set",
            );
            return;
        }
        (Some(s), None) => s.len(),
        (None, Some(_)) => match body.decoded_bytes() {
            Some(b) => b.len(),
            None => {
                v.error(format!("{f}.body.bytes"), "not valid base64");
                return;
            }
        },
        (None, None) => 0,
    };
    if size > MAX_DIRECT_RESPONSE_BODY {
        v.error(
            format!("{f}.body"),
            "large direct_responses may impact control plane performance, must be less than 1MB",
        );
    }
}

fn rewrite(v: &mut Validator, f: &str, r: &HttpRewrite) {
    if r.uri.is_some() && r.uri_regex_rewrite.is_some() {
        v.error(f, "rewrite may only contain one of URI or UriRegexRewrite");
    }
    if r.uri.is_none() && r.uri_regex_rewrite.is_none() && r.authority.is_none() {
        v.error(
            f,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
        );
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        match (&rr.pattern, &rr.rewrite) {
            (Some(p), Some(_)) => v.regex(format!("{f}.uriRegexRewrite.match"), p),
            _ => v.error(
                format!("{f}.uriRegexRewrite"),
                "UriRegexRewrite requires both Rewrite and Match fields to be specified",
            ),
        }
    }
}

fn fault_injection(v: &mut Validator, f: &str, fault: &HttpFaultInjection) {
    if fault.abort.is_none() && fault.delay.is_none() {
        v.error(f, "HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(d) = &fault.delay {
        delay(v, &format!("{f}.delay"), d);
    }
    if let Some(a) = &fault.abort {
        abort(v, &format!("{f}.abort"), a);
    }
}

fn delay(v: &mut Validator, f: &str, d: &FaultDelay) {
    match &d.fixed_delay {
        Some(t) => v.duration(format!("{f}.fixedDelay"), t, Duration::from_millis(1)),
        None => v.error(format!("{f}.fixedDelay"), "required"),
    }
    match &d.percentage {
        Some(p) => percent(v, &format!("{f}.percentage"), p),
        None => v.warning(
            format!("{f}.percentage"),
            "not set: as in Istio, no request is delayed",
        ),
    }
}

fn abort(v: &mut Validator, f: &str, a: &FaultAbort) {
    match (a.http_status, &a.grpc_status) {
        (Some(_), Some(_)) => v.error(f, "only one of httpStatus or grpcStatus may be set"),
        (Some(s), None) if !(200..=599).contains(&s) => v.error(
            format!("{f}.httpStatus"),
            format!("invalid abort http status {s}: must be in range 200-599"),
        ),
        (None, Some(g)) if grpc_status_code(g).is_none() => v.error(
            format!("{f}.grpcStatus"),
            format!("{g:?} is not a gRPC status name"),
        ),
        (None, None) => v.error(f, "one of httpStatus or grpcStatus is required"),
        _ => {}
    }
    match &a.percentage {
        Some(p) => percent(v, &format!("{f}.percentage"), p),
        None => v.warning(
            format!("{f}.percentage"),
            "not set: as in Istio, no request is aborted",
        ),
    }
}

fn cors(v: &mut Validator, f: &str, c: &CorsPolicy) {
    for (i, o) in c.allow_origins.iter().enumerate() {
        let of = format!("{f}.allowOrigins[{i}]");
        match o.kind() {
            Some(_) => {
                if let Some(r) = &o.regex {
                    v.regex(format!("{of}.regex"), r);
                }
                if [&o.exact, &o.prefix, &o.regex]
                    .into_iter()
                    .flatten()
                    .any(String::is_empty)
                {
                    v.error(&of, "the origin match cannot be empty");
                }
            }
            None => v.error(&of, "exactly one of exact, prefix or regex is required"),
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !HTTP_METHODS.contains(&m.as_str()) {
            v.error(
                format!("{f}.allowMethods[{i}]"),
                format!("{m:?} is not a supported HTTP method"),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            header_name(v, &format!("{f}.{field}[{i}]"), h);
        }
    }
    if let Some(age) = &c.max_age {
        let af = format!("{f}.maxAge");
        match crate::duration::parse(age) {
            Ok(d) if d.subsec_nanos() != 0 => {
                v.error(af, "max_age duration is accurate only to seconds precision")
            }
            Ok(_) => {}
            Err(e) => v.error(af, e),
        }
    }
    if let Some(u) = &c.unmatched_preflights
        && !["UNSPECIFIED", "FORWARD", "IGNORE"].contains(&u.as_str())
    {
        v.error(
            format!("{f}.unmatchedPreflights"),
            format!("{u:?} is not UNSPECIFIED, FORWARD or IGNORE"),
        );
    }
}

/// `host` and `:authority` in request `set`/`add` become an authority rewrite.
pub(crate) fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// An RFC 7230 token, as Envoy requires of header names.
pub(super) fn header_name(v: &mut Validator, f: &str, name: &str) {
    if name.is_empty() {
        v.error(f, "header name cannot be empty");
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        v.error(f, format!("{name:?} is not a valid header name"));
    }
}

fn header_ops(v: &mut Validator, f: &str, ops: &HeaderOperations, request: bool) {
    let maps: [(&str, &BTreeMap<String, String>); 2] = [("set", &ops.set), ("add", &ops.add)];
    for (op, map) in maps {
        for (name, value) in map {
            let hf = format!("{f}.{op}.{name}");
            if request && is_authority(name) {
                // Translated into an authority (host) rewrite, not a header operation.
            } else if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
                v.error(&hf, "pseudo-headers and host cannot be modified");
            } else {
                header_name(v, &hf, name);
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                v.error(&hf, "header values cannot contain CR, LF or NUL");
            }
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        let hf = format!("{f}.remove[{i}]");
        if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
            v.error(&hf, "pseudo-headers and host cannot be removed");
        } else {
            header_name(v, &hf, name);
        }
    }
}

fn headers(v: &mut Validator, f: &str, h: &Headers) {
    if let Some(ops) = &h.request {
        header_ops(v, &format!("{f}.request"), ops, true);
    }
    if let Some(ops) = &h.response {
        header_ops(v, &format!("{f}.response"), ops, false);
    }
}

/// The `tcp` and `tls` routes of a VirtualService. Istio requires every TLS route to match
/// on SNI hosts that fall within the VirtualService's hosts (the SNI is all a proxy that
/// does not terminate TLS can route on).
pub(super) fn l4_routes(v: &mut Validator, s: &VirtualServiceSpec) {
    for (i, r) in s.tcp.iter().enumerate() {
        let f = format!("spec.tcp[{i}]");
        for (j, m) in r.matches.iter().enumerate() {
            let mf = format!("{f}.match[{j}]");
            l4_match(v, &mf, &m.destination_subnets, m.port, &m.gateways);
            source_match(v, &mf, &m.source_labels, m.source_namespace.as_deref());
        }
        if r.route.is_empty() {
            v.error(format!("{f}.route"), "TCP route is required");
        }
        route_destinations(v, &f, &r.route);
    }
    for (i, r) in s.tls.iter().enumerate() {
        let f = format!("spec.tls[{i}]");
        if r.matches.is_empty() {
            v.error(
                format!("{f}.match"),
                "TLS route must have at least one match condition",
            );
        }
        for (j, m) in r.matches.iter().enumerate() {
            let mf = format!("{f}.match[{j}]");
            if m.sni_hosts.is_empty() {
                v.error(
                    format!("{mf}.sniHosts"),
                    "TLS match must have at least one SNI host",
                );
            }
            for (k, sni) in m.sni_hosts.iter().enumerate() {
                let sf = format!("{mf}.sniHosts[{k}]");
                if sni.parse::<std::net::IpAddr>().is_err() && host::validate_host(sni).is_err() {
                    v.host(&sf, sni);
                } else if !s.hosts.iter().any(|h| host::matches(h, sni)) {
                    v.error(
                        &sf,
                        format!(
                            "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts"
                        ),
                    );
                }
            }
            l4_match(v, &mf, &m.destination_subnets, m.port, &m.gateways);
            source_match(v, &mf, &m.source_labels, m.source_namespace.as_deref());
        }
        if r.route.is_empty() {
            v.error(format!("{f}.route"), "TLS route is required");
        }
        route_destinations(v, &f, &r.route);
    }
}

/// The connection attributes TCP and TLS matches share.
fn l4_match(v: &mut Validator, f: &str, subnets: &[String], port: Option<u32>, gws: &[String]) {
    for (k, s) in subnets.iter().enumerate() {
        v.ip_or_cidr(format!("{f}.destinationSubnets[{k}]"), s);
    }
    if let Some(p) = port {
        v.port(format!("{f}.port"), i64::from(p));
    }
    for (k, g) in gws.iter().enumerate() {
        let name = g.rsplit('/').next().unwrap_or_default();
        if g != "mesh" && !host::is_dns1123_subdomain(name) {
            v.error(
                format!("{f}.gateways[{k}]"),
                format!("{g:?} is not a gateway reference"),
            );
        }
    }
}

/// `sourceLabels` (Kubernetes label keys and values) and `sourceNamespace` (a namespace
/// name) of a match.
fn source_match(v: &mut Validator, f: &str, labels: &Labels, ns: Option<&str>) {
    for (k, val) in labels {
        let lf = format!("{f}.sourceLabels.{k}");
        if !is_label_key(k) {
            v.error(&lf, format!("{k:?} is not a valid label key"));
        }
        if !is_label_value(val) {
            v.error(&lf, format!("{val:?} is not a valid label value"));
        }
    }
    if let Some(ns) = ns
        && !is_namespace(ns)
    {
        v.error(
            format!("{f}.sourceNamespace"),
            format!("{ns:?} is not a valid namespace name"),
        );
    }
}

/// A namespace name: a lowercase DNS label.
fn is_namespace(ns: &str) -> bool {
    host::is_dns_label(ns) && !ns.bytes().any(|b| b.is_ascii_uppercase())
}

/// A label name: at most 63 alphanumerics, `-`, `_` and `.`, starting and ending with an
/// alphanumeric.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A Kubernetes label key: a name, optionally prefixed by a DNS subdomain and `/`.
pub(super) fn is_label_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            prefix.len() <= 253 && host::is_dns1123_subdomain(prefix) && is_label_name(name)
        }
        None => is_label_name(k),
    }
}

/// A Kubernetes label value: empty, or a label name.
pub(super) fn is_label_value(v: &str) -> bool {
    v.is_empty() || is_label_name(v)
}

/// The `delegate` of a root route: the name (and namespace) of a VirtualService. Whether it
/// exists, has no hosts and is exported to the root's namespace is only known with every
/// object: translation skips the route otherwise (see `shoal_translate`'s delegate merge).
fn delegate_ref(v: &mut Validator, f: &str, d: &Delegate) {
    if d.name.is_empty() {
        v.error(format!("{f}.name"), "required");
    } else if !host::is_dns1123_subdomain(&d.name) {
        v.error(
            format!("{f}.name"),
            format!("{:?} is not a valid VirtualService name", d.name),
        );
    }
    if let Some(ns) = &d.namespace
        && !is_namespace(ns)
    {
        v.error(
            format!("{f}.namespace"),
            format!("{ns:?} is not a valid namespace name"),
        );
    }
}

/// A VirtualService without `hosts` is a delegate (Istio's delegation): only reachable
/// through a root VirtualService's `http[].delegate`, so it may have HTTP routes only, bound
/// to no gateway (the root's decide), and may not delegate again (one level only). One
/// with neither hosts nor HTTP routes is no use at all.
pub(super) fn hosts_or_delegate(v: &mut Validator, s: &VirtualServiceSpec) {
    if !s.hosts.is_empty() {
        return;
    }
    if s.http.is_empty() && s.tcp.is_empty() && s.tls.is_empty() {
        v.error("spec.hosts", "at least one host is required");
        return;
    }
    if !s.gateways.is_empty() {
        v.error(
            "spec.gateways",
            "a delegate VirtualService (without hosts) must have no gateways",
        );
    }
    if !s.tcp.is_empty() {
        v.error(
            "spec.tcp",
            "a delegate VirtualService (without hosts) must have no tcp routes",
        );
    }
    if !s.tls.is_empty() {
        v.error(
            "spec.tls",
            "a delegate VirtualService (without hosts) must have no tls routes",
        );
    }
    for (i, r) in s.http.iter().enumerate() {
        if r.delegate.is_some() {
            v.error(
                format!("spec.http[{i}].delegate"),
                "a delegate VirtualService (without hosts) cannot delegate again: only a VirtualService with hosts may delegate",
            );
        }
    }
}

/// Weighted destinations of a TCP or TLS route, checked as HTTP ones are.
fn route_destinations(v: &mut Validator, f: &str, route: &[RouteDestination]) {
    let mut total: i64 = 0;
    for (k, d) in route.iter().enumerate() {
        let df = format!("{f}.route[{k}]");
        destination(v, &format!("{df}.destination"), &d.destination);
        match d.weight {
            Some(w) if !(0..=i64::from(u32::MAX)).contains(&w) => v.error(
                format!("{df}.weight"),
                format!("weight {w} must be between 0 and {}", u32::MAX),
            ),
            Some(w) => total += w,
            None => {}
        }
    }
    if route.len() > 1 && total == 0 {
        v.error(
            format!("{f}.route"),
            "destination weights sum to 0: no destination would get traffic",
        );
    }
}
