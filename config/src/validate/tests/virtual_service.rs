//! Validation of VirtualService HTTP route features: each malformed value is reported with
//! its field path, mutually exclusive actions are rejected as Istio rejects them, and fields
//! shoal does not act on are warned about rather than ignored.

use super::support::{findings, has};

/// A VirtualService whose single `http[0]` entry is `route` (indented YAML lines).
fn vs(route: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: ns}}\nspec:\n  hosts: [a]\n  http:\n  - {route}\n"
    )
}

const DEST: &str = "route: [{destination: {host: a}}]";

fn one(route: &str) -> Vec<String> {
    findings(&vs(route))
}

#[test]
fn valid_features_are_accepted_cleanly() {
    for route in [
        "redirect: {uri: /x, authority: b, redirectCode: 308, scheme: https, port: 8443}"
            .to_string(),
        "redirect: {derivePort: FROM_REQUEST_PORT}".to_string(),
        "directResponse: {status: 404, body: {string: nope}}".to_string(),
        "directResponse: {status: 200, body: {bytes: aGk=}}".to_string(),
        format!("rewrite: {{uri: /v2, authority: b}}\n    {DEST}"),
        format!("rewrite: {{uriRegexRewrite: {{match: '^/a/(.*)', rewrite: '/\\1'}}}}\n    {DEST}"),
        format!(
            "fault: {{delay: {{fixedDelay: 1s, percentage: {{value: 10}}}}, abort: {{grpcStatus: UNAVAILABLE, percentage: {{value: 100}}}}}}\n    {DEST}"
        ),
        format!("mirror: {{host: b}}\n    mirrorPercentage: {{value: 50}}\n    {DEST}"),
        format!("mirrors: [{{destination: {{host: b}}, percentage: {{value: 5}}}}]\n    {DEST}"),
        format!(
            "corsPolicy: {{allowOrigins: [{{exact: 'https://a'}}], allowMethods: [GET], allowHeaders: [x-a], maxAge: 10s, allowCredentials: true}}\n    {DEST}"
        ),
        format!(
            "headers: {{request: {{set: {{x-a: '1', host: h}}, remove: [x-b]}}, response: {{add: {{x-c: '2'}}}}}}\n    {DEST}"
        ),
        format!(
            "retries: {{attempts: 3, retryRemoteLocalities: true, retryIgnorePreviousHosts: false, backoff: 10ms}}\n    {DEST}"
        ),
    ] {
        assert_eq!(one(&route), Vec::<String>::new(), "{route}");
    }
}

#[test]
fn actions_are_exclusive_as_in_istio() {
    let f = one(&format!("redirect: {{uri: /x}}\n    {DEST}"));
    assert_eq!(
        f,
        vec!["error spec.http[0].redirect: HTTP route cannot contain both route and redirect"]
    );
    let f =
        one("redirect: {uri: /x}\n    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}");
    assert!(
        has(
            &f,
            "error spec.http[0].redirect: HTTP route cannot contain both fault and redirect"
        ),
        "{f:?}"
    );
    let f = one("redirect: {uri: /x}\n    rewrite: {uri: /y}");
    assert!(
        has(
            &f,
            "error spec.http[0].redirect: HTTP route rule cannot contain both rewrite"
        ),
        "{f:?}"
    );
    let f = one(&format!("directResponse: {{status: 200}}\n    {DEST}"));
    assert!(
        has(
            &f,
            "error spec.http[0].directResponse: HTTP route cannot contain both route and direct_response"
        ),
        "{f:?}"
    );
    let f = one("directResponse: {status: 200}\n    redirect: {uri: /x}");
    assert!(
        has(
            &f,
            "error spec.http[0].directResponse: HTTP route cannot contain both redirect"
        ),
        "{f:?}"
    );
    let f = one("name: nothing");
    assert_eq!(
        f,
        vec!["error spec.http[0].route: HTTP route, redirect or direct_response is required"]
    );
}

#[test]
fn redirects_are_checked() {
    let f = one("redirect: {uri: /x, redirectCode: 200}");
    assert_eq!(
        f,
        vec![
            "error spec.http[0].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx"
        ]
    );
    let f = one("redirect: {uri: /x, redirectCode: 305}");
    assert!(
        has(
            &f,
            "error spec.http[0].redirect.redirectCode: redirect code 305 is not supported"
        ),
        "{f:?}"
    );
    let f = one("redirect: {scheme: ftp}");
    assert!(has(&f, "error spec.http[0].redirect.scheme"), "{f:?}");
    let f = one("redirect: {port: 70000}");
    assert!(
        has(&f, "error spec.http[0].redirect.port: port 70000"),
        "{f:?}"
    );
    let f = one("redirect: {port: 80, derivePort: FROM_REQUEST_PORT}");
    assert!(
        has(&f, "error spec.http[0].redirect.derivePort: only one"),
        "{f:?}"
    );
    let f = one("redirect: {derivePort: SOMEWHERE}");
    assert!(has(&f, "error spec.http[0].redirect.derivePort"), "{f:?}");
    let f = one("redirect: {redirectCode: 302}");
    assert_eq!(
        f,
        vec!["error spec.http[0].redirect: redirect must specify URI, authority, scheme, or port"]
    );
}

#[test]
fn faults_are_checked() {
    let f = one(&format!(
        "fault: {{abort: {{httpStatus: 418, percentage: {{value: 101}}}}}}\n    {DEST}"
    ));
    assert_eq!(
        f,
        vec![
            "error spec.http[0].fault.abort.percentage: percentage 101 must be in range [0.0, 100.0]"
        ]
    );
    let f = one(&format!(
        "fault: {{abort: {{httpStatus: 99, percentage: {{value: 1}}}}}}\n    {DEST}"
    ));
    assert!(
        has(
            &f,
            "error spec.http[0].fault.abort.httpStatus: invalid abort http status 99"
        ),
        "{f:?}"
    );
    let f = one(&format!(
        "fault: {{abort: {{grpcStatus: NOPE, percentage: {{value: 1}}}}}}\n    {DEST}"
    ));
    assert!(
        has(&f, "error spec.http[0].fault.abort.grpcStatus"),
        "{f:?}"
    );
    let f = one(&format!(
        "fault: {{abort: {{percentage: {{value: 1}}}}}}\n    {DEST}"
    ));
    assert!(
        has(
            &f,
            "error spec.http[0].fault.abort: one of httpStatus or grpcStatus is required"
        ),
        "{f:?}"
    );
    let f = one(&format!(
        "fault: {{delay: {{fixedDelay: soon, percentage: {{value: 1}}}}}}\n    {DEST}"
    ));
    assert!(
        has(&f, "error spec.http[0].fault.delay.fixedDelay"),
        "{f:?}"
    );
    let f = one(&format!(
        "fault: {{delay: {{percentage: {{value: -1}}}}}}\n    {DEST}"
    ));
    assert!(
        has(&f, "error spec.http[0].fault.delay.fixedDelay: required"),
        "{f:?}"
    );
    assert!(
        has(&f, "error spec.http[0].fault.delay.percentage"),
        "{f:?}"
    );
    let f = one(&format!("fault: {{}}\n    {DEST}"));
    assert!(
        has(
            &f,
            "error spec.http[0].fault: HTTP fault injection must have an abort and/or a delay"
        ),
        "{f:?}"
    );
    // Istio faults nothing without a percentage: accepted, but said out loud.
    let f = one(&format!("fault: {{delay: {{fixedDelay: 1s}}}}\n    {DEST}"));
    assert_eq!(
        f,
        vec![
            "warning spec.http[0].fault.delay.percentage: not set: as in Istio, no request is delayed"
        ]
    );
    // Unsupported by Istio too: exponential delays and HTTP/2 errors.
    let f = one(&format!(
        "fault: {{delay: {{exponentialDelay: 1s, fixedDelay: 1s, percentage: {{value: 1}}}}}}\n    {DEST}"
    ));
    assert!(
        has(&f, "warning spec.http[0].fault.delay.exponentialDelay"),
        "{f:?}"
    );
}

#[test]
fn rewrites_mirrors_and_direct_responses_are_checked() {
    let f = one(&format!(
        "rewrite: {{uri: /a, uriRegexRewrite: {{match: a, rewrite: b}}}}\n    {DEST}"
    ));
    assert!(
        has(
            &f,
            "error spec.http[0].rewrite: rewrite may only contain one"
        ),
        "{f:?}"
    );
    let f = one(&format!("rewrite: {{}}\n    {DEST}"));
    assert!(
        has(&f, "error spec.http[0].rewrite: rewrite must specify"),
        "{f:?}"
    );
    let f = one(&format!(
        "rewrite: {{uriRegexRewrite: {{match: '(a'}}}}\n    {DEST}"
    ));
    assert!(
        has(
            &f,
            "error spec.http[0].rewrite.uriRegexRewrite: UriRegexRewrite requires both"
        ),
        "{f:?}"
    );
    let f = one(&format!(
        "rewrite: {{uriRegexRewrite: {{match: '(a', rewrite: b}}}}\n    {DEST}"
    ));
    assert!(
        has(
            &f,
            "error spec.http[0].rewrite.uriRegexRewrite.match: invalid regex"
        ),
        "{f:?}"
    );
    let f = one(&format!(
        "rewrite: {{authority: b}}\n    headers: {{request: {{set: {{host: c}}}}}}\n    {DEST}"
    ));
    assert!(
        has(
            &f,
            "error spec.http[0].rewrite.authority: authority rewrite is set in both"
        ),
        "{f:?}"
    );
    let f = one(&format!(
        "mirror: {{host: b}}\n    mirrorPercentage: {{value: 200}}\n    {DEST}"
    ));
    assert!(
        has(&f, "error spec.http[0].mirrorPercentage: percentage 200"),
        "{f:?}"
    );
    let f = one(&format!(
        "mirror: {{host: b}}\n    mirrors: [{{destination: {{host: c}}}}]\n    {DEST}"
    ));
    assert!(
        has(
            &f,
            "error spec.http[0].mirrors: http.Mirror and http.Mirrors cannot both be set"
        ),
        "{f:?}"
    );
    let f = one(&format!(
        "mirrors: [{{percentage: {{value: 1}}}}, {{destination: {{host: '*.b'}}}}]\n    {DEST}"
    ));
    assert!(
        has(&f, "error spec.http[0].mirrors[0].destination: required"),
        "{f:?}"
    );
    assert!(
        has(&f, "error spec.http[0].mirrors[1].destination.host"),
        "{f:?}"
    );
    let f = one("directResponse: {status: 700}");
    assert!(
        has(
            &f,
            "error spec.http[0].directResponse.status: HTTP status 700"
        ),
        "{f:?}"
    );
    let f = one("directResponse: {status: 200, body: {bytes: '!!'}}");
    assert!(
        has(
            &f,
            "error spec.http[0].directResponse.body.bytes: not valid base64"
        ),
        "{f:?}"
    );
}

#[test]
fn cors_and_headers_are_checked() {
    let f = one(&format!(
        "corsPolicy: {{allowOrigins: [{{exact: a, prefix: b}}], allowMethods: [FETCH], allowHeaders: ['bad header'], maxAge: 1500ms, unmatchedPreflights: DROP}}\n    {DEST}"
    ));
    for field in [
        "error spec.http[0].corsPolicy.allowOrigins[0]",
        "error spec.http[0].corsPolicy.allowMethods[0]",
        "error spec.http[0].corsPolicy.allowHeaders[0]",
        "error spec.http[0].corsPolicy.maxAge: max_age duration is accurate only to seconds",
        "error spec.http[0].corsPolicy.unmatchedPreflights",
    ] {
        assert!(has(&f, field), "{field} in {f:?}");
    }
    let f = one(&format!(
        "headers: {{request: {{set: {{':path': /x}}, remove: [host]}}, response: {{set: {{host: h, x-a: \"v\\nw\"}}}}}}\n    {DEST}"
    ));
    for field in [
        "error spec.http[0].headers.request.set.:path: pseudo-headers",
        "error spec.http[0].headers.request.remove[0]: pseudo-headers and host cannot be removed",
        "error spec.http[0].headers.response.set.host: pseudo-headers",
        "error spec.http[0].headers.response.set.x-a: header values cannot contain",
    ] {
        assert!(has(&f, field), "{field} in {f:?}");
    }
    let f = one("route: [{destination: {host: a}, headers: {request: {remove: [':method']}}}]");
    assert!(
        has(&f, "error spec.http[0].route[0].headers.request.remove[0]"),
        "{f:?}"
    );
}

#[test]
fn unsupported_fields_are_warned_about() {
    let f = one(&format!("mirrorPercent: 5\n    {DEST}"));
    assert!(
        has(
            &f,
            "warning spec.http[0].mirrorPercent: deprecated (still honoured, as by Istio)"
        ),
        "{f:?}"
    );
    let f = one(&format!("mirrorPercent: 101\n    {DEST}"));
    assert!(
        has(&f, "error spec.http[0].mirrorPercent: percentage 101"),
        "{f:?}"
    );
    let f = one(&format!("corsPolicy: {{allowOrigin: [a]}}\n    {DEST}"));
    assert!(
        has(&f, "warning spec.http[0].corsPolicy.allowOrigin"),
        "{f:?}"
    );
    let f = one(&format!(
        "fault: {{abort: {{http2Error: REFUSED_STREAM, httpStatus: 500, percentage: {{value: 1}}}}}}\n    {DEST}"
    ));
    assert!(
        has(&f, "warning spec.http[0].fault.abort.http2Error"),
        "{f:?}"
    );
}

/// A VirtualService for hosts `[a.example.com]` with the given `tcp`/`tls` section.
fn l4(section: &str) -> Vec<String> {
    findings(&format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: ns}}\nspec:\n  hosts: [a.example.com]\n{section}"
    ))
}

#[test]
fn tcp_and_tls_routes_are_accepted_cleanly() {
    let ok = l4(
        "  tcp:\n  - match: [{port: 9000, destinationSubnets: [10.0.0.0/8, 10.1.2.3], gateways: [mesh]}]\n    route: [{destination: {host: b, subset: v1, port: {number: 9000}}, weight: 80}, {destination: {host: c}, weight: 20}]\n  tls:\n  - match: [{sniHosts: [a.example.com], port: 443}]\n    route: [{destination: {host: b}}]\n",
    );
    assert!(ok.is_empty(), "{ok:?}");
}

#[test]
fn tcp_route_issues_name_their_field() {
    let f = l4(
        "  tcp:\n  - match: [{port: 70000, destinationSubnets: [nope], gateways: ['bad name']}]\n  - route: [{destination: {host: ''}, weight: -1}, {destination: {host: b}, weight: 0}]\n",
    );
    for prefix in [
        "error spec.tcp[0].match[0].port: port 70000",
        "error spec.tcp[0].match[0].destinationSubnets[0]:",
        "error spec.tcp[0].match[0].gateways[0]:",
        "error spec.tcp[0].route: TCP route is required",
        "error spec.tcp[1].route[0].destination.host: required",
        "error spec.tcp[1].route[0].weight:",
        "error spec.tcp[1].route: destination weights sum to 0",
    ] {
        assert!(has(&f, prefix), "{prefix} not in {f:?}");
    }
}

#[test]
fn tls_routes_need_sni_hosts_within_the_virtual_service_hosts() {
    let f = l4(
        "  tls:\n  - route: [{destination: {host: b}}]\n  - match: [{port: 443}, {sniHosts: [b.example.com, 'x..y']}]\n",
    );
    for prefix in [
        "error spec.tls[0].match: TLS route must have at least one match",
        "error spec.tls[1].match[0].sniHosts: TLS match must have at least one SNI host",
        "error spec.tls[1].match[1].sniHosts[0]: SNI host \"b.example.com\" is not a compatible subset",
        "error spec.tls[1].match[1].sniHosts[1]:",
        "error spec.tls[1].route: TLS route is required",
    ] {
        assert!(has(&f, prefix), "{prefix} not in {f:?}");
    }
}

#[test]
fn tcp_and_tls_source_matches_are_checked() {
    let f = l4(
        "  tcp:\n  - match: [{sourceLabels: {app: x}, sourceNamespace: other}]\n    route: [{destination: {host: b}}]\n  tls:\n  - match: [{sniHosts: ['*.example.com'], sourceNamespace: Bad_NS}]\n    route: [{destination: {host: b}}]\n",
    );
    assert!(!f.iter().any(|l| l.starts_with("warning")), "{f:?}");
    assert!(
        has(&f, "error spec.tls[0].match[0].sourceNamespace:"),
        "{f:?}"
    );
}

#[test]
fn http_source_matches_are_accepted_and_checked() {
    let ok = one(&format!(
        "match: [{{sourceLabels: {{app: client, example.com/tier: front-1}}, sourceNamespace: app}}]\n    {DEST}"
    ));
    assert_eq!(ok, Vec::<String>::new());
    let f = one(&format!(
        "match: [{{sourceLabels: {{'-bad': x, ok: 'not ok'}}, sourceNamespace: Bad_NS}}]\n    {DEST}"
    ));
    for prefix in [
        "error spec.http[0].match[0].sourceLabels.-bad: \"-bad\" is not a valid label key",
        "error spec.http[0].match[0].sourceLabels.ok: \"not ok\" is not a valid label value",
        "error spec.http[0].match[0].sourceNamespace: \"Bad_NS\" is not a valid namespace",
    ] {
        assert!(has(&f, prefix), "{prefix} not in {f:?}");
    }
    // As in Istio, a match naming gateways ignores its source conditions.
    let f = one(&format!(
        "match: [{{gateways: [mesh], sourceNamespace: app}}]\n    {DEST}"
    ));
    assert!(
        has(
            &f,
            "warning spec.http[0].match[0]: sourceLabels and sourceNamespace are ignored"
        ),
        "{f:?}"
    );
}

/// A VirtualService with the given spec lines (indented YAML).
fn spec(lines: &str) -> Vec<String> {
    findings(&format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: ns}}\nspec:\n{lines}"
    ))
}

#[test]
fn roots_and_delegates_are_accepted_cleanly() {
    let root = spec(
        "  hosts: [a]\n  http:\n  - match: [{uri: {prefix: /api}}]\n    timeout: 5s\n    headers: {request: {set: {x-a: '1'}}}\n    delegate: {name: api, namespace: team}\n  - route: [{destination: {host: a}}]\n",
    );
    assert_eq!(root, Vec::<String>::new());
    let delegate = spec(
        "  exportTo: [front]\n  http:\n  - match: [{uri: {prefix: /api/v1}}]\n    route: [{destination: {host: v1}}]\n  - redirect: {uri: /api/v1}\n",
    );
    assert_eq!(delegate, Vec::<String>::new());
}

#[test]
fn a_delegating_route_only_delegates() {
    let f = one(&format!(
        "delegate: {{name: d}}\n    redirect: {{uri: /x}}\n    directResponse: {{status: 200}}\n    {DEST}"
    ));
    for prefix in [
        "error spec.http[0].route: a root HTTP route that delegates must not specify route",
        "error spec.http[0].redirect: a root HTTP route that delegates must not specify redirect",
        "error spec.http[0].directResponse: a root HTTP route that delegates must not specify directResponse",
    ] {
        assert!(has(&f, prefix), "{prefix} not in {f:?}");
    }
    let f = one("delegate: {name: 'Not_A_Name', namespace: 'Bad NS'}");
    assert!(has(&f, "error spec.http[0].delegate.name:"), "{f:?}");
    assert!(has(&f, "error spec.http[0].delegate.namespace:"), "{f:?}");
    let f = one("delegate: {namespace: team}");
    assert!(
        has(&f, "error spec.http[0].delegate.name: required"),
        "{f:?}"
    );
}

#[test]
fn delegates_have_http_routes_only_and_do_not_delegate_again() {
    let f = spec(
        "  gateways: [gw]\n  http:\n  - delegate: {name: other}\n  tcp:\n  - route: [{destination: {host: b}}]\n",
    );
    for prefix in [
        "error spec.gateways: a delegate VirtualService (without hosts) must have no gateways",
        "error spec.tcp: a delegate VirtualService (without hosts) must have no tcp routes",
        "error spec.http[0].delegate: a delegate VirtualService (without hosts) cannot delegate again",
    ] {
        assert!(has(&f, prefix), "{prefix} not in {f:?}");
    }
    // Neither hosts nor routes: not a delegate either.
    assert_eq!(
        spec("  exportTo: ['*']\n"),
        vec!["error spec.hosts: at least one host is required"]
    );
}
