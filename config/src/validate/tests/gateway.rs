//! Validation of `Gateway`: each malformed field is reported by path, as Istio rejects it,
//! and what shoal does not serve is a warning naming the field.

use super::support::{findings, has};

fn gw(servers: &str) -> Vec<String> {
    findings(&format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {{name: gw, namespace: ns}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}"
    ))
}

#[test]
fn valid_gateways_are_accepted_cleanly() {
    for servers in [
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*/a.example.com', './b.example.com', 'c.example.com', '*']\n",
        "  - port: {number: 80, name: http, protocol: http}\n    hosts: ['*.example.com']\n    tls: {httpsRedirect: true}\n",
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [ns/a.example.com]\n    bind: 127.0.0.1\n    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, minProtocolVersion: TLSV1_2, maxProtocolVersion: TLSV1_3, cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256]}\n",
        // Every terminating mode, on HTTPS and on TLS (then routed by tcp routes).
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: MUTUAL, credentialName: web, subjectAltNames: [client.example.com]}\n",
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: OPTIONAL_MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, caCrl: /crl, verifyCertificateHash: ['df:6f:f7:2f:e9:11:65:21:26:8f:6f:2d:d4:96:6f:51:df:47:98:83:fe:71:4d:d6:1f:b0:1c:f2:2f:db:aa:34'], verifyCertificateSpki: [AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]}\n",
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: ISTIO_MUTUAL}\n",
        "  - port: {number: 9443, name: tls, protocol: TLS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE, credentialName: db}\n",
        "  - port: {number: 9443, name: tls, protocol: TLS}\n    hosts: [a.com]\n    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ['spiffe://cluster.local/ns/a/sa/b']}\n",
    ] {
        assert_eq!(gw(servers), Vec::<String>::new(), "{servers}");
    }
}

#[test]
fn malformed_servers_are_rejected_by_field() {
    let f = findings(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {selector: {a: b}}\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers: a gateway must have at least one server"
        ),
        "{f:?}"
    );
    let f = gw("  - hosts: [a.com]\n");
    assert!(
        has(&f, "error spec.servers[0].port: port is required"),
        "{f:?}"
    );
    let f = gw("  - port: {number: 0, name: a, protocol: HTTP}\n    hosts: []\n");
    assert!(
        has(
            &f,
            "error spec.servers[0].port.number: port 0 is out of range"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].hosts: server config must contain at least one host"
        ),
        "{f:?}"
    );
    let f = gw("  - port: {number: 80, name: a, protocol: SPDY}\n    hosts: [a.com]\n");
    assert!(
        has(&f, "error spec.servers[0].port.protocol: invalid protocol"),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 80, name: a, protocol: HTTP}\n    hosts: ['bad_ns!/a.com', 'x/a.*.com']\n    bind: not-an-ip\n",
    );
    assert!(has(&f, "error spec.servers[0].hosts[0]:"), "{f:?}");
    assert!(has(&f, "error spec.servers[0].hosts[1]:"), "{f:?}");
    assert!(has(&f, "error spec.servers[0].bind:"), "{f:?}");
    let f = gw(
        "  - port: {number: 80, name: a, protocol: HTTP}\n    hosts: [a.com]\n  - port: {number: 81, name: a, protocol: HTTP}\n    hosts: [a.com]\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers[1].port.name: port names in servers must be unique"
        ),
        "{f:?}"
    );
}

#[test]
fn tls_settings_are_checked() {
    let f = gw("  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n");
    assert!(
        has(
            &f,
            "error spec.servers[0].tls: server must have TLS settings"
        ),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE}\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].tls.serverCertificate: SIMPLE TLS requires"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].tls.privateKey: SIMPLE TLS requires"
        ),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].tls.caCertificates: MUTUAL TLS requires"
        ),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: ISTIO_MUTUAL, credentialName: x}\n",
    );
    assert!(
        has(&f, "error spec.servers[0].tls.credentialName: ISTIO_MUTUAL"),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2, cipherSuites: [NOPE]}\n",
    );
    assert!(
        has(&f, "error spec.servers[0].tls.minProtocolVersion:"),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "warning spec.servers[0].tls.cipherSuites[0]: unknown cipher suite"
        ),
        "{f:?}"
    );
    // credentialName secrets are served (to gateways of the Secret's namespace).
    assert!(
        !has(&f, "warning spec.servers[0].tls.credentialName"),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: WHATEVER}\n",
    );
    assert!(has(&f, "error spec.servers[0].tls.mode:"), "{f:?}");
}

#[test]
fn unsupported_bits_are_warnings_naming_the_field() {
    let f = gw(
        "  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [a.com]\n    tls: {mode: PASSTHROUGH}\n",
    );
    // PASSTHROUGH and TCP servers are served (from tls and tcp routes): no finding.
    assert!(f.is_empty(), "{f:?}");
    let f = gw("  - port: {number: 9000, name: tcp, protocol: TCP}\n    hosts: [a.com]\n");
    assert!(f.is_empty(), "{f:?}");
    let f = gw(
        "  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: ['*.local']\n    tls: {mode: AUTO_PASSTHROUGH}\n",
    );
    // AUTO_PASSTHROUGH is served (SNI-DNAT clusters): no finding.
    assert!(f.is_empty(), "{f:?}");
    let f = gw(
        "  - port: {number: 31400, name: tcp, protocol: TCP, targetPort: 8080}\n    hosts: [a.com]\n    defaultEndpoint: 127.0.0.1:80\n",
    );
    assert!(has(&f, "warning spec.servers[0].port.targetPort:"), "{f:?}");
    assert!(
        has(
            &f,
            "warning spec.servers[0].defaultEndpoint: field is not supported"
        ),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [a.com]\n    tls: {mode: SIMPLE}\n",
    );
    assert!(
        has(
            &f,
            "warning spec.servers[0].tls: TLS settings on a plain text port"
        ),
        "{f:?}"
    );
}

#[test]
fn client_verification_settings_are_checked() {
    // Client checks outside the modes that ask for a client certificate do nothing.
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE, credentialName: c, subjectAltNames: [x.com], caCertificates: /ca}\n",
    );
    assert!(
        has(
            &f,
            "warning spec.servers[0].tls.subjectAltNames: applies to MUTUAL"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "warning spec.servers[0].tls.caCertificates: applies to MUTUAL"
        ),
        "{f:?}"
    );
    // Pins that Envoy would reject are errors.
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: MUTUAL, credentialName: c, verifyCertificateHash: [abc], verifyCertificateSpki: [not-base64]}\n",
    );
    assert!(
        has(&f, "error spec.servers[0].tls.verifyCertificateHash[0]:"),
        "{f:?}"
    );
    assert!(
        has(&f, "error spec.servers[0].tls.verifyCertificateSpki[0]:"),
        "{f:?}"
    );
    // OPTIONAL_MUTUAL from files needs a CA as MUTUAL does.
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: OPTIONAL_MUTUAL, serverCertificate: /c, privateKey: /k}\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].tls.caCertificates: OPTIONAL_MUTUAL TLS requires"
        ),
        "{f:?}"
    );
}

fn grpc_route(version: &str, rules: &str) -> Vec<String> {
    findings(&format!(
        "apiVersion: gateway.networking.k8s.io/{version}\nkind: GRPCRoute\nmetadata: {{name: g, namespace: ns}}\nspec:\n  parentRefs: [{{name: gw}}, {{group: '', kind: Service, name: echo, port: 9000}}]\n  hostnames: [grpc.example.com]\n  rules:\n{rules}"
    ))
}

#[test]
fn valid_grpc_routes_are_accepted_cleanly() {
    let rules = "  - matches:\n    - method: {service: echo.Echo, method: Who}\n      headers: [{name: x-v, value: '1'}, {type: RegularExpression, name: x-w, value: 'a.*'}]\n    - method: {type: Exact, service: .pkg.v1.Svc}\n    - method: {method: _Get2}\n    - method: {type: RegularExpression, service: 'echo\\..*', method: 'W(ho|hat)'}\n    - headers: [{name: x-only, value: a}]\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: x-a, value: b}], remove: [x-c]}\n    - type: ResponseHeaderModifier\n      responseHeaderModifier: {add: [{name: x-r, value: '1'}]}\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: shadow, port: 9000}}\n    backendRefs: [{name: a, port: 9000, weight: 3}, {name: b, namespace: other, port: 9000}]\n  - backendRefs: [{name: a, port: 9000}]\n";
    for version in ["v1", "v1alpha2"] {
        assert_eq!(
            grpc_route(version, rules),
            Vec::<String>::new(),
            "{version}"
        );
    }
}

#[test]
fn grpc_routes_by_version() {
    use crate::Kind;
    use crate::parse::kind_for;
    let g = |v: &str| format!("gateway.networking.k8s.io/{v}");
    assert_eq!(kind_for(&g("v1"), "GRPCRoute"), Some(Kind::GrpcRoute));
    assert_eq!(kind_for(&g("v1alpha2"), "GRPCRoute"), Some(Kind::GrpcRoute));
    assert_eq!(kind_for(&g("v1beta1"), "GRPCRoute"), None);
    assert_eq!(Kind::GrpcRoute.as_str(), "GRPCRoute");
}

#[test]
fn malformed_grpc_routes_are_rejected_by_field() {
    let f = grpc_route(
        "v1",
        "  - matches:\n    - method: {type: Exact}\n    - method: {service: 'echo/Echo', method: 'Who?'}\n    - method: {service: '1abc'}\n    - method: {type: RegularExpression, service: '(', method: 'a|b'}\n    - method: {service: ''}\n      headers: [{name: x-a, value: '1'}, {name: X-A, value: '2'}, {name: 'bad name', value: x}]\n    backendRefs: [{name: a, weight: 2000000}]\n  - filters:\n    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: y}]}}\n    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: z}]}}\n    - {type: ResponseHeaderModifier, requestMirror: {backendRef: {name: m, port: 1}}}\n    - {type: ExtensionRef}\n    - {type: RequestMirror, requestMirror: {backendRef: {name: m}}}\n    backendRefs: [{name: a, port: 9000, filters: []}]\n",
    );
    for expected in [
        "error spec.rules[0].matches[0].method: one or both of service and method must be set",
        "error spec.rules[0].matches[1].method.service: \"echo/Echo\" is not a valid gRPC service name",
        "error spec.rules[0].matches[1].method.method: \"Who?\" is not a valid gRPC method name",
        "error spec.rules[0].matches[2].method.service: \"1abc\" is not a valid gRPC service name",
        "error spec.rules[0].matches[3].method.service: invalid regex",
        "warning spec.rules[0].matches[3].method.method: joined with the other part",
        "error spec.rules[0].matches[4].method: one or both",
        "error spec.rules[0].matches[4].headers[1].name: header names must be unique",
        "error spec.rules[0].matches[4].headers[2].name: \"bad name\" is not a valid name",
        "error spec.rules[0].backendRefs[0].weight: weight 2000000 is out of range",
        "error spec.rules[0].backendRefs[0].port: required for a Service backend",
        "error spec.rules[1].filters[1]: this filter type may appear only once per rule",
        "error spec.rules[1].filters[2]: a filter of type ResponseHeaderModifier must set exactly its own field",
        "error spec.rules[1].filters[3].type: ExtensionRef filters are not supported",
        "error spec.rules[1].filters[4].requestMirror.backendRef.port: required",
        "warning spec.rules[1].backendRefs[0].filters: field is not supported",
    ] {
        assert!(has(&f, expected), "{expected}: {f:?}");
    }
    // Filter types of HTTPRoutes only, and unknown fields, are reported as for HTTPRoutes.
    let f = grpc_route(
        "v1",
        "  - filters:\n    - {type: URLRewrite, urlRewrite: {hostname: a.com}}\n",
    );
    assert!(
        has(&f, "error spec.rules[0].filters[0].type: unknown variant"),
        "{f:?}"
    );
    let f = grpc_route(
        "v1",
        "  - matches: [{method: {service: a.B}, queryParams: []}]\n    backendRefs: [{name: a, port: 1}]\n    timeouts: {request: 1s}\n",
    );
    for expected in [
        "warning spec.rules[0].matches[0].queryParams: field is not supported",
        "warning spec.rules[0].timeouts: field is not supported",
    ] {
        assert!(has(&f, expected), "{expected}: {f:?}");
    }
}

/// A Gateway API `Gateway` with the given listeners.
fn kube_gateway(listeners: &str) -> Vec<String> {
    findings(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: ns}}\nspec:\n  gatewayClassName: istio\n  listeners:\n{listeners}"
    ))
}

#[test]
fn listeners_selecting_route_namespaces_by_label_are_accepted_cleanly() {
    let f = kube_gateway(
        "  - name: http\n    port: 80\n    protocol: HTTP\n    allowedRoutes:\n      namespaces:\n        from: Selector\n        selector:\n          matchLabels: {env: prod}\n          matchExpressions:\n          - {key: team, operator: In, values: [a, b]}\n          - {key: kubernetes.io/metadata.name, operator: NotIn, values: [legacy]}\n          - {key: shared, operator: Exists}\n          - {key: blocked, operator: DoesNotExist}\n",
    );
    assert_eq!(f, Vec::<String>::new());
    // An empty selector selects every namespace; a selector with `from: All` is ignored.
    let f = kube_gateway(
        "  - {name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {}}}}\n  - {name: b, port: 81, protocol: HTTP, allowedRoutes: {namespaces: {from: All, selector: {matchLabels: {x: y}}}}}\n",
    );
    assert_eq!(f, Vec::<String>::new());
}

#[test]
fn malformed_namespace_selectors_are_rejected_by_field() {
    let f = kube_gateway(
        "  - {name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}}}\n  - name: b\n    port: 81\n    protocol: HTTP\n    allowedRoutes:\n      namespaces:\n        from: Selector\n        selector:\n          matchLabels: {'no spaces': x}\n          matchExpressions:\n          - {key: env, operator: In}\n          - {key: env, operator: Exists, values: [x]}\n          - {key: env, operator: Matches, values: [x]}\n",
    );
    let n = "spec.listeners[1].allowedRoutes.namespaces.selector";
    for expected in [
        "error spec.listeners[0].allowedRoutes.namespaces.selector: required when `from` is Selector".to_string(),
        format!("error {n}.matchLabels.no spaces: \"no spaces\" is not a valid label key"),
        format!("error {n}.matchExpressions[0].values: operator In needs at least one value"),
        format!("error {n}.matchExpressions[1].values: must be empty for operator Exists"),
        format!("error {n}.matchExpressions[2].operator: unknown operator \"Matches\""),
    ] {
        assert!(has(&f, &expected), "{expected}: {f:?}");
    }
    assert_eq!(f.len(), 5, "{f:#?}");
}
