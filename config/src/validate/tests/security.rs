//! Validation of PeerAuthentication, AuthorizationPolicy and DestinationRule TLS settings:
//! every finding names its field.

use super::support::{findings, has};
use crate::parse::parse_yaml;

fn pa(version: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/{version}\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}"
    )
}

fn ap(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a, namespace: ns}}\nspec:\n{spec}"
    )
}

fn dr_tls(tls: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: ns}}\nspec:\n  host: a\n  trafficPolicy:\n    tls: {tls}\n"
    )
}

#[test]
fn peer_authentication_rules() {
    for version in ["v1", "v1beta1"] {
        let ok = pa(
            version,
            "  selector: {matchLabels: {app: a}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    9090: {mode: UNSET}\n",
        );
        assert_eq!(findings(&ok), Vec::<String>::new(), "{version}");
    }
    let f = findings(&pa(
        "v1",
        "  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
    ));
    assert!(
        has(&f, "error spec.portLevelMtls: port-level mTLS needs"),
        "{f:?}"
    );
    let f = findings(&pa(
        "v1",
        "  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    '0': {mode: DISABLE}\n    http: {mode: STRICT}\n",
    ));
    assert!(has(&f, "error spec.portLevelMtls.0: port 0"), "{f:?}");
    assert!(has(&f, "error spec.portLevelMtls.http:"), "{f:?}");
    let f = findings(&pa("v1", "  mtls: {mode: SOMETIMES}\n"));
    assert!(has(&f, "error spec.mtls.mode"), "{f:?}");
    let f = findings(&pa("v1", "  mtls: {mode: STRICT}\n  extra: 1\n"));
    assert_eq!(
        f,
        vec!["warning spec.extra: field is not supported by shoal yet; ignored"]
    );
}

#[test]
fn authorization_policy_accepts_istio_fields() {
    let f = findings(&ap(r#"  selector: {matchLabels: {app: a}}
  action: DENY
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/a/sa/b, "*/sa/c", "d*", "*"]
        notNamespaces: [kube-system]
        ipBlocks: [10.0.0.0/8, 1.2.3.4]
    - source:
        serviceAccounts: [shop/web, web]
        notServiceAccounts: [shop/legacy]
    to:
    - operation: {methods: [GET], paths: [/a, /b/*, "*.png", "/c/{*}/d/{**}"], ports: ["8080"], hosts: ["*.example.com"]}
    when:
    - key: request.headers[x-user]
      values: [j*]
    - key: source.ip
      notValues: [10.1.0.0/16]
    - key: destination.port
      values: ["80"]
    - key: connection.sni
      values: [a.example.com]
"#));
    assert_eq!(f, Vec::<String>::new());
    assert_eq!(findings(&ap("  {}\n")), Vec::<String>::new());
    assert_eq!(findings(&ap("  rules: [{}]\n")), Vec::<String>::new());
}

#[test]
fn authorization_policy_rejects_what_it_cannot_enforce() {
    let f = findings(&ap(
        "  rules:\n  - to:\n    - operation: {paths: ['/a/{*}/b', 'x*y']}\n",
    ));
    assert_eq!(
        f,
        vec![
            "error spec.rules[0].to[0].operation.paths[1]: \"x*y\": only a leading or a trailing \"*\" (or \"*\" alone) is supported"
        ]
    );
    let f = findings(&ap(
        "  rules:\n  - when:\n    - key: experimental.envoy.filters.a[b]\n      values: [c]\n    - key: source.nope\n      values: [c]\n    - key: source.ip\n",
    ));
    assert!(
        has(&f, "error spec.rules[0].when[0].key: \"experimental"),
        "{f:?}"
    );
    assert!(
        has(&f, "error spec.rules[0].when[1].key: unknown attribute"),
        "{f:?}"
    );
    assert!(
        has(&f, "error spec.rules[0].when[2]: at least one of values"),
        "{f:?}"
    );
    let f = findings(&ap(
        "  rules:\n  - from:\n    - source: {}\n    - {}\n    to:\n    - operation: {ports: ['99999', http]}\n",
    ));
    assert!(
        has(&f, "error spec.rules[0].from[0].source: a source must set"),
        "{f:?}"
    );
    assert!(
        has(&f, "error spec.rules[0].from[1].source: required"),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.rules[0].to[0].operation.ports[0]: port 99999"
        ),
        "{f:?}"
    );
    assert!(
        has(&f, "error spec.rules[0].to[0].operation.ports[1]:"),
        "{f:?}"
    );
    let f = findings(&ap(
        "  rules:\n  - from:\n    - source: {ipBlocks: [10.0.0.0/33, nope]}\n",
    ));
    assert_eq!(f.len(), 2, "{f:?}");
}

#[test]
fn service_accounts_follow_istio_rules() {
    let ok = findings(&ap(
        "  rules:\n  - from:\n    - source: {serviceAccounts: [shop/web, web], notServiceAccounts: [shop/legacy], ipBlocks: [10.0.0.0/8]}\n    - source: {principals: [cluster.local/ns/a/sa/b]}\n",
    ));
    assert_eq!(ok, Vec::<String>::new());
    // Only the service accounts: still a source that sets a field.
    let ok = findings(&ap(
        "  rules:\n  - from:\n    - source: {notServiceAccounts: [a/b]}\n",
    ));
    assert_eq!(ok, Vec::<String>::new());
    let long = "x".repeat(321);
    let f = findings(&ap(&format!(
        "  rules:\n  - from:\n    - source: {{serviceAccounts: ['', 'a/*', a/b/c, /b, 'a/', {long}]}}\n"
    )));
    let sa = "error spec.rules[0].from[0].source.serviceAccounts";
    assert!(has(&f, &format!("{sa}[0]: empty value")), "{f:?}");
    assert!(
        has(&f, &format!("{sa}[1]: \"a/*\": wildcards are not allowed")),
        "{f:?}"
    );
    for (i, v) in [(2, "a/b/c"), (3, "/b"), (4, "a/")] {
        let want =
            format!("{sa}[{i}]: {v:?}: expected NAMESPACE/SERVICE_ACCOUNT or SERVICE_ACCOUNT");
        assert!(f.contains(&want), "{want} not in {f:?}");
    }
    assert!(has(&f, &format!("{sa}[5]: longer than 320")), "{f:?}");
    assert_eq!(f.len(), 6, "{f:?}");
    let many: Vec<String> = (0..17).map(|i| format!("ns/sa{i}")).collect();
    let f = findings(&ap(&format!(
        "  rules:\n  - from:\n    - source: {{notServiceAccounts: [{}]}}\n",
        many.join(", ")
    )));
    assert_eq!(
        f,
        vec![
            "error spec.rules[0].from[0].source.notServiceAccounts: at most 16 values are allowed, found 17"
        ]
    );
    // Never together with principals or namespaces (Istio's webhook and CRD rule).
    for other in [
        "principals: [a]",
        "notPrincipals: [a]",
        "namespaces: [a]",
        "notNamespaces: [a]",
    ] {
        let f = findings(&ap(&format!(
            "  rules:\n  - from:\n    - source: {{serviceAccounts: [a/b], {other}}}\n"
        )));
        assert_eq!(
            f,
            vec![
                "error spec.rules[0].from[0].source.serviceAccounts: cannot be set together with principals or namespaces (or their not forms) in one source"
            ],
            "{other}"
        );
    }
    let f = findings(&ap(
        "  rules:\n  - from:\n    - source: {notServiceAccounts: [a/b], namespaces: [a]}\n",
    ));
    assert!(
        has(
            &f,
            "error spec.rules[0].from[0].source.notServiceAccounts: cannot be set together"
        ),
        "{f:?}"
    );
}

#[test]
fn path_templates_follow_istio_and_envoy_rules() {
    let ok = findings(&ap(
        "  rules:\n  - to:\n    - operation:\n        paths: ['/api/{*}/orders', '/{**}', '/files/{**}', '/{**}/edit', '/a/{*}/', \"/v1/{*}/x-y_z.~%20!$&'()+,;:@\"]\n        notPaths: ['/{*}/{*}/admin/{**}']\n",
    ));
    assert_eq!(ok, Vec::<String>::new());
    let bad = [
        ("api/{*}", "a path template must start with \"/\""),
        ("/{**}/{*}", "{**} must be the last operator"),
        ("/{**}/a/{**}", "{**} must be the last operator"),
        (
            "/a/{*}.json",
            "segment \"{*}.json\": {*} and {**} must be whole",
        ),
        ("/a/{id}/{*}", "segment \"{id}\""),
        ("/a/*/{*}", "segment \"*\": \"*\" wildcards cannot be mixed"),
        ("/a*/{*}", "segment \"a*\": \"*\" wildcards cannot be mixed"),
        ("/a//{*}", "empty path segment"),
        ("/{*}//", "empty path segment"),
        ("/a=b/{*}", "segment \"a=b\" has characters"),
        ("/a b/{*}", "segment \"a b\" has characters"),
    ];
    for (i, (path, problem)) in bad.iter().enumerate() {
        let f = findings(&ap(&format!(
            "  rules:\n  - to:\n    - operation: {{notPaths: ['{path}']}}\n"
        )));
        let want = format!("error spec.rules[0].to[0].operation.notPaths[0]: {path:?}: {problem}");
        assert!(has(&f, &want), "{i}: {want} not in {f:?}");
        assert_eq!(f.len(), 1, "{f:?}");
    }
    let long = format!("/{}/{{*}}", "a".repeat(260));
    let f = findings(&ap(&format!(
        "  rules:\n  - to:\n    - operation: {{paths: ['{long}']}}\n"
    )));
    assert_eq!(
        f,
        vec![
            "error spec.rules[0].to[0].operation.paths[0]: a path template may have at most 256 characters"
        ]
    );
}

#[test]
fn authorization_policy_unsupported_features_are_named() {
    let f = findings(&ap(
        "  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]\n",
    ));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        has(
            &f,
            "warning spec.action: CUSTOM (external authorization) is not supported"
        ),
        "{f:?}"
    );
    let f = findings(&ap("  action: CUSTOM\n"));
    assert!(
        has(&f, "error spec.provider: CUSTOM action needs a provider"),
        "{f:?}"
    );
    let f = findings(&ap("  provider: {name: ext}\n"));
    assert!(
        has(&f, "error spec.provider: a provider is only allowed"),
        "{f:?}"
    );
    // JWT attributes are served (RequestAuthentication): nothing to report.
    let f = findings(&ap(
        "  rules:\n  - from:\n    - source: {requestPrincipals: ['*']}\n    when:\n    - key: request.auth.claims[groups]\n      values: [admin]\n",
    ));
    assert!(f.is_empty(), "{f:?}");
    // References attach to waypoints: their Gateway, the Services and ServiceEntries they
    // serve, the GatewayClass istio-waypoint.
    let f = findings(&ap(
        "  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}\n  - {kind: Service, group: '', name: reviews}\n  - {kind: ServiceEntry, group: networking.istio.io, name: api}\n",
    ));
    assert!(f.is_empty(), "{f:?}");
    let f = findings(&ap("  targetRef: {kind: Gateway, name: g}\n"));
    assert!(
        has(&f, "warning spec.targetRef: core/Gateway is not a kind"),
        "{f:?}"
    );
    let f = findings(&ap(
        "  targetRefs:\n  - {kind: GatewayClass, group: gateway.networking.k8s.io, name: istio}\n  - {kind: Service}\n",
    ));
    assert!(
        has(
            &f,
            "warning spec.targetRefs[0]: only the GatewayClass istio-waypoint"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.targetRefs[1]: a reference needs a kind and a name"
        ),
        "{f:?}"
    );
    let f = findings(&ap(
        "  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: a}]\n",
    ));
    assert!(
        has(
            &f,
            "error spec.targetRefs: only one of selector or targetRef(s)"
        ),
        "{f:?}"
    );
    let f = findings(&ap("  action: MAYBE\n"));
    assert!(has(&f, "error spec.action"), "{f:?}");
}

#[test]
fn destination_rule_tls_rules() {
    assert_eq!(
        findings(&dr_tls("{mode: ISTIO_MUTUAL}")),
        Vec::<String>::new()
    );
    assert_eq!(
        findings(&dr_tls(
            "{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, subjectAltNames: [a.example.com], sni: a.example.com}"
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        findings(&dr_tls("{mode: SIMPLE, credentialName: my-secret}")),
        Vec::<String>::new()
    );
    let f = findings(&dr_tls("{mode: MUTUAL}"));
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.tls.clientCertificate: required for MUTUAL"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.tls.privateKey: required for MUTUAL"
        ),
        "{f:?}"
    );
    let f = findings(&dr_tls(
        "{mode: SIMPLE, credentialName: s, caCertificates: /ca.pem}",
    ));
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.tls.caCertificates: cannot be set together"
        ),
        "{f:?}"
    );
    let f = findings(&dr_tls(
        "{mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a]}",
    ));
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.tls: caCertificates and subjectAltNames"
        ),
        "{f:?}"
    );
    let f = findings(&dr_tls("{mode: ISTIO_MUTUAL, clientCertificate: /c.pem}"));
    assert!(
        has(
            &f,
            "warning spec.trafficPolicy.tls.clientCertificate: ignored with mode ISTIO_MUTUAL"
        ),
        "{f:?}"
    );
    let f = findings(&dr_tls(
        "{mode: SIMPLE, caCertificates: /ca.pem, caCrl: /crl.pem}",
    ));
    assert!(f.is_empty(), "{f:?}");
    let f = findings(&dr_tls(
        "{mode: SIMPLE, credentialName: c, caCrl: /crl.pem}",
    ));
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.tls.caCrl: cannot be set together with credentialName"
        ),
        "{f:?}"
    );
    let f = findings(&dr_tls("{mode: SOMETIMES}"));
    assert!(has(&f, "error spec.trafficPolicy.tls.mode"), "{f:?}");
    let f = findings(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: a\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 80}\n      tls: {mode: MUTUAL, clientCertificate: /c}\n    - port: {number: 80}\n    - tls: {mode: DISABLE}\n  subsets:\n  - name: v1\n    trafficPolicy: {tls: {mode: MUTUAL}}\n",
    );
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.portLevelSettings[0].tls.privateKey: required"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.portLevelSettings[1].port.number: duplicate"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.portLevelSettings[2].port: required"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.subsets[0].trafficPolicy.tls.clientCertificate: required"
        ),
        "{f:?}"
    );
}

#[test]
fn second_namespace_wide_peer_authentication_is_reported() {
    let mut store = crate::ConfigStore::new();
    let text = pa("v1", "  mtls: {mode: STRICT}\n").replace("name: p,", "name: a,")
        + "---\n"
        + &pa("v1", "  mtls: {mode: DISABLE}\n").replace("name: p,", "name: b,")
        + "---\n"
        + &pa("v1", "  selector: {matchLabels: {app: x}}\n");
    store.apply("t.yaml", parse_yaml("t.yaml", &text));
    let found: Vec<String> = crate::analyze::analyze(&store.snapshot())
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i.object
                    .as_ref()
                    .map(|k| k.name.to_string())
                    .unwrap_or_default(),
                i.message
            )
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .starts_with("b namespace ns already has a PeerAuthentication without selector (a)"),
        "{found:?}"
    );
}
