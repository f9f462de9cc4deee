//! AuthorizationPolicy → RBAC, field by field.

#![allow(clippy::unwrap_used)]

use shoal_api::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use shoal_config::istio::AuthorizationPolicySpec;

use super::*;
use crate::model::Policy;

fn policy(name: &str, yaml: &str) -> Arc<AuthorizationPolicyRule> {
    let spec: AuthorizationPolicySpec = serde_saphyr::from_str(yaml).unwrap();
    Arc::new(Policy {
        namespace: "shop".into(),
        name: name.into(),
        spec: Arc::new(spec),
    })
}

fn build_for(policies: &[Arc<AuthorizationPolicyRule>], tcp: bool) -> Vec<RbacConfig> {
    let refs: Vec<&Arc<AuthorizationPolicyRule>> = policies.iter().collect();
    build(
        &refs,
        "cluster.local",
        &[],
        &[],
        tcp,
        PeerSource::Connection,
    )
}

fn actions(c: &[RbacConfig]) -> Vec<(Action, Vec<String>)> {
    c.iter()
        .map(|r| {
            let mut names: Vec<String> = r.policies.keys().cloned().collect();
            names.sort();
            (Action::try_from(r.action).unwrap(), names)
        })
        .collect()
}

fn is_any_permission(p: &Permission) -> bool {
    match &p.rule {
        Some(permission::Rule::AndRules(s)) => {
            s.rules.len() == 1 && s.rules[0].rule == Some(permission::Rule::Any(true))
        }
        _ => false,
    }
}

fn is_any_principal(p: &Principal) -> bool {
    match &p.identifier {
        Some(principal::Identifier::AndIds(s)) => {
            s.ids.len() == 1 && s.ids[0].identifier == Some(principal::Identifier::Any(true))
        }
        _ => false,
    }
}

#[test]
fn allow_nothing_and_allow_all() {
    let nothing = build_for(&[policy("deny-all", "{}")], false);
    assert_eq!(actions(&nothing), vec![(Action::Allow, vec![])]);
    let all = build_for(&[policy("allow-all", "rules: [{}]")], false);
    assert_eq!(
        actions(&all),
        vec![(
            Action::Allow,
            vec!["ns[shop]-policy[allow-all]-rule[0]".to_string()]
        )]
    );
    let p = &all[0].policies["ns[shop]-policy[allow-all]-rule[0]"];
    assert!(is_any_permission(&p.permissions[0]));
    assert!(is_any_principal(&p.principals[0]));
    // A DENY policy without rules denies nothing: no filter at all.
    assert!(build_for(&[policy("d", "action: DENY")], false).is_empty());
    assert!(build_for(&[], false).is_empty());
}

#[test]
fn filters_run_audit_then_deny_then_allow() {
    let c = build_for(
        &[
            policy("a", "rules: [{to: [{operation: {methods: [GET]}}]}]"),
            policy(
                "d",
                "action: DENY\nrules: [{to: [{operation: {paths: [/admin/*]}}]}]",
            ),
            policy("l", "action: AUDIT\nrules: [{}]"),
            policy("c", "action: CUSTOM\nprovider: {name: ext}\nrules: [{}]"),
        ],
        false,
    );
    assert_eq!(
        actions(&c),
        vec![
            (Action::Log, vec!["ns[shop]-policy[l]-rule[0]".to_string()]),
            (
                Action::Deny,
                vec![
                    "istio-ext-authz-ns[shop]-policy[c]-rule[0]-deny-due-to-bad-CUSTOM-action"
                        .to_string(),
                    "ns[shop]-policy[d]-rule[0]".to_string()
                ]
            ),
            (
                Action::Allow,
                vec!["ns[shop]-policy[a]-rule[0]".to_string()]
            ),
        ]
    );
}

#[test]
fn fields_become_ands_of_ors_with_nots() {
    let c = build_for(
        &[policy(
            "p",
            r#"
rules:
- from:
  - source: {principals: [cluster.local/ns/default/sa/sleep], notNamespaces: [bad]}
  - source: {ipBlocks: [10.0.0.0/8]}
  to:
  - operation: {methods: [GET, HEAD], paths: [/api/*], ports: ["8080"]}
  when:
  - key: request.headers[x-user]
    values: [jane]
"#,
        )],
        false,
    );
    let p = &c[0].policies["ns[shop]-policy[p]-rule[0]"];
    assert_eq!(p.principals.len(), 2, "one principal per from");
    assert_eq!(p.permissions.len(), 1, "one permission per to");
    let Some(principal::Identifier::AndIds(first)) = &p.principals[0].identifier else {
        panic!("{:?}", p.principals[0]);
    };
    // principals, notNamespaces, then the when condition on the header.
    assert_eq!(first.ids.len(), 3);
    let Some(principal::Identifier::OrIds(or)) = &first.ids[0].identifier else {
        panic!("{:?}", first.ids[0]);
    };
    let Some(principal::Identifier::Authenticated(a)) = &or.ids[0].identifier else {
        panic!("{:?}", or.ids[0]);
    };
    assert_eq!(
        a.principal_name
            .as_ref()
            .and_then(|m| m.match_pattern.clone()),
        Some(MatchPattern::Exact(
            "spiffe://cluster.local/ns/default/sa/sleep".into()
        ))
    );
    assert!(matches!(
        first.ids[1].identifier,
        Some(principal::Identifier::NotId(_))
    ));
    assert!(matches!(
        &first.ids[2].identifier,
        Some(principal::Identifier::OrIds(s)) if matches!(s.ids[0].identifier, Some(principal::Identifier::Header(_)))
    ));
    let Some(principal::Identifier::AndIds(second)) = &p.principals[1].identifier else {
        panic!();
    };
    let Some(principal::Identifier::OrIds(or)) = &second.ids[0].identifier else {
        panic!();
    };
    assert!(matches!(
        or.ids[0].identifier,
        Some(principal::Identifier::DirectRemoteIp(_))
    ));
    let Some(permission::Rule::AndRules(perm)) = &p.permissions[0].rule else {
        panic!();
    };
    // methods (two values in one OR), paths, ports.
    assert_eq!(perm.rules.len(), 3);
    let Some(permission::Rule::OrRules(methods)) = &perm.rules[0].rule else {
        panic!();
    };
    assert_eq!(methods.rules.len(), 2);
    let Some(permission::Rule::OrRules(ports)) = &perm.rules[2].rule else {
        panic!();
    };
    assert_eq!(
        ports.rules[0].rule,
        Some(permission::Rule::DestinationPort(8080))
    );
}

#[test]
fn tcp_chains_drop_allow_rules_and_widen_deny_rules_with_http_fields() {
    let policies = [
        policy(
            "a",
            "rules:\n- to: [{operation: {methods: [GET]}}]\n- from: [{source: {namespaces: [ns1]}}]\n  to: [{operation: {ports: ['80']}}]\n",
        ),
        policy(
            "d",
            "action: DENY\nrules:\n- to: [{operation: {methods: [GET]}}]\n- from: [{source: {requestPrincipals: ['*'], namespaces: [ns1]}}]\n",
        ),
    ];
    let c = build_for(&policies, true);
    assert_eq!(
        actions(&c),
        vec![
            (
                Action::Deny,
                vec![
                    "ns[shop]-policy[d]-rule[0]".to_string(),
                    "ns[shop]-policy[d]-rule[1]".to_string()
                ]
            ),
            (
                Action::Allow,
                vec!["ns[shop]-policy[a]-rule[1]".to_string()]
            ),
        ]
    );
    // The DENY rule on methods denies every TCP connection.
    let d0 = &c[0].policies["ns[shop]-policy[d]-rule[0]"];
    assert!(is_any_permission(&d0.permissions[0]));
    // The request principal is ignored, the namespace kept.
    let d1 = &c[0].policies["ns[shop]-policy[d]-rule[1]"];
    let Some(principal::Identifier::AndIds(ids)) = &d1.principals[0].identifier else {
        panic!();
    };
    assert_eq!(ids.ids.len(), 1);
    // On HTTP chains, every rule is there.
    let http = build_for(&policies, false);
    assert_eq!(http[1].policies.len(), 2);
}

#[test]
fn trust_domain_rewrites_default_principals() {
    let p = policy(
        "p",
        "rules: [{from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]}]",
    );
    let c = build(
        &[&p],
        "example.org",
        &[],
        &[],
        false,
        PeerSource::Connection,
    );
    let text = format!("{:?}", c[0].policies["ns[shop]-policy[p]-rule[0]"]);
    assert!(text.contains("spiffe://example.org/ns/a/sa/b"), "{text}");
    assert!(!text.contains("cluster.local"), "{text}");
}

/// The exact URIs an `authenticated` principal set matches, in order.
fn exact_uris(p: &Principal) -> Vec<String> {
    match &p.identifier {
        Some(principal::Identifier::Authenticated(a)) => {
            match a
                .principal_name
                .as_ref()
                .and_then(|m| m.match_pattern.as_ref())
            {
                Some(MatchPattern::Exact(s)) => vec![s.clone()],
                other => vec![format!("{other:?}")],
            }
        }
        Some(principal::Identifier::OrIds(s) | principal::Identifier::AndIds(s)) => {
            s.ids.iter().flat_map(exact_uris).collect()
        }
        Some(principal::Identifier::NotId(p)) => exact_uris(p)
            .into_iter()
            .map(|u| format!("not {u}"))
            .collect(),
        other => vec![format!("{other:?}")],
    }
}

#[test]
fn trust_domain_aliases_expand_principals_and_conditions() {
    let p = policy(
        "p",
        "rules:\n- from:\n  - source:\n      principals: [cluster.local/ns/a/sa/b, old.example/ns/c/sa/d, other.org/ns/e/sa/f, '*/ns/g/sa/h']\n      notPrincipals: [new.example/ns/x/sa/y]\n  when:\n  - {key: source.principal, values: [old.example/ns/w/sa/v]}\n",
    );
    let aliases = ["old.example".to_string()];
    for tcp in [false, true] {
        let c = build(
            &[&p],
            "new.example",
            &aliases,
            &[],
            tcp,
            PeerSource::Connection,
        );
        let rule = &c[0].policies["ns[shop]-policy[p]-rule[0]"];
        assert_eq!(
            exact_uris(&rule.principals[0]),
            [
                // principals: the mesh's trust domain first, then its aliases.
                "spiffe://new.example/ns/a/sa/b",
                "spiffe://old.example/ns/a/sa/b",
                "spiffe://new.example/ns/c/sa/d",
                "spiffe://old.example/ns/c/sa/d",
                // Not of the bundle: as written.
                "spiffe://other.org/ns/e/sa/f",
                // Any trust domain: as written (a regex).
                r#"Some(SafeRegex(RegexMatcher { regex: "spiffe://.*/ns/g/sa/h", engine_type: None }))"#,
                // notPrincipals.
                "not spiffe://new.example/ns/x/sa/y",
                "not spiffe://old.example/ns/x/sa/y",
                // source.principal conditions.
                "spiffe://new.example/ns/w/sa/v",
                "spiffe://old.example/ns/w/sa/v",
            ],
            "{rule:?}"
        );
    }
    // Without aliases, `cluster.local` principals still mean the mesh's trust domain, and
    // an old trust domain is kept as written.
    let c = build(
        &[&p],
        "new.example",
        &[],
        &[],
        false,
        PeerSource::Connection,
    );
    let uris = exact_uris(&c[0].policies["ns[shop]-policy[p]-rule[0]"].principals[0]);
    assert_eq!(uris[0], "spiffe://new.example/ns/a/sa/b");
    assert_eq!(uris[1], "spiffe://old.example/ns/c/sa/d");
    assert_eq!(uris.len(), 6, "{uris:#?}");
    // `cluster.local` as an alias keeps identities of that trust domain matching.
    let local = ["cluster.local".to_string()];
    let c = build(
        &[&p],
        "new.example",
        &local,
        &[],
        false,
        PeerSource::Connection,
    );
    let uris = exact_uris(&c[0].policies["ns[shop]-policy[p]-rule[0]"].principals[0]);
    assert_eq!(
        uris[..2],
        [
            "spiffe://new.example/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b"
        ]
    );
}

#[test]
fn jwt_attributes_read_the_verified_payload() {
    let p = policy(
        "p",
        "rules:\n- from: [{source: {requestPrincipals: ['https://idp/alice'], notRequestPrincipals: ['nobody/x']}}]\n  when:\n  - {key: 'request.auth.claims[groups]', values: [admin]}\n  - {key: request.auth.audiences, values: [shop]}\n  - {key: request.auth.presenter, values: [web]}\n  - {key: request.auth.principal, values: ['https://idp/*']}\n",
    );
    let issuers = ["https://idp".to_string()];
    let c = build(
        &[&p],
        "cluster.local",
        &[],
        &issuers,
        false,
        PeerSource::Connection,
    );
    let text = format!("{:?}", c[0].policies["ns[shop]-policy[p]-rule[0]"]);
    for needle in [
        "envoy.filters.http.jwt_authn",
        r#"Key("payload")"#,
        r#"Key("iss")"#,
        r#"Exact("https://idp")"#,
        r#"Key("sub")"#,
        r#"Exact("alice")"#,
        r#"Key("groups")"#,
        r#"Key("aud")"#,
        r#"Key("azp")"#,
        "OrMatch",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!text.contains("istio_authn"), "{text}");
    // `nobody/x` names an issuer the workload does not verify: NOT(never) matches all.
    let Some(principal::Identifier::AndIds(ids)) =
        &c[0].policies["ns[shop]-policy[p]-rule[0]"].principals[0].identifier
    else {
        panic!();
    };
    let nots: Vec<&Principal> = ids
        .ids
        .iter()
        .filter(|p| matches!(p.identifier, Some(principal::Identifier::NotId(_))))
        .collect();
    assert_eq!(nots.len(), 1);
    // Without a verifying issuer, a required principal matches nothing.
    let c = build_for(std::slice::from_ref(&p), false);
    let text = format!("{:?}", c[0].policies["ns[shop]-policy[p]-rule[0]"]);
    assert!(
        text.contains("NotId(Principal { identifier: Some(Any(true)) })"),
        "{text}"
    );
    // On TCP chains the ALLOW rule cannot be evaluated: dropped (ALLOW without rules).
    let tcp = build(
        &[&p],
        "cluster.local",
        &[],
        &issuers,
        true,
        PeerSource::Connection,
    );
    assert_eq!(tcp.len(), 1);
    assert!(tcp[0].policies.is_empty());
}

/// The regex of an `authenticated` principal, if that is what `p` is.
fn authenticated_regex(p: &Principal) -> Option<&str> {
    match &p.identifier {
        Some(principal::Identifier::Authenticated(a)) => {
            match a.principal_name.as_ref()?.match_pattern.as_ref()? {
                MatchPattern::SafeRegex(r) => Some(r.regex.as_str()),
                _ => None,
            }
        }
        _ => None,
    }
}

#[test]
fn service_accounts_match_the_peer_identity_in_any_trust_domain() {
    let p = policy(
        "p",
        "rules:\n- from:\n  - source: {serviceAccounts: [web, other/api], notServiceAccounts: [shop/legacy]}\n",
    );
    // The mesh's trust domain does not matter (Istio matches any).
    for td in ["cluster.local", "example.org"] {
        for tcp in [false, true] {
            let c = build(&[&p], td, &[], &[], tcp, PeerSource::Connection);
            let rule = &c[0].policies["ns[shop]-policy[p]-rule[0]"];
            let Some(principal::Identifier::AndIds(and)) = &rule.principals[0].identifier else {
                panic!("{rule:?}");
            };
            assert_eq!(and.ids.len(), 2, "{and:?}");
            let Some(principal::Identifier::OrIds(or)) = &and.ids[0].identifier else {
                panic!("{and:?}");
            };
            let yes: Vec<Option<&str>> = or.ids.iter().map(authenticated_regex).collect();
            assert_eq!(
                yes,
                [
                    // Without a namespace: the policy's.
                    Some(r"spiffe://.+/ns/shop/(.+/|)sa/web(/.+)?"),
                    Some(r"spiffe://.+/ns/other/(.+/|)sa/api(/.+)?"),
                ]
            );
            let Some(principal::Identifier::NotId(not)) = &and.ids[1].identifier else {
                panic!("{and:?}");
            };
            let Some(principal::Identifier::OrIds(or)) = &not.identifier else {
                panic!("{not:?}");
            };
            assert_eq!(
                authenticated_regex(&or.ids[0]),
                Some(r"spiffe://.+/ns/shop/(.+/|)sa/legacy(/.+)?")
            );
        }
    }
}

/// The `uri_template` path of a permission, if that is what `p` is.
fn uri_template(p: &Permission) -> Option<String> {
    use shoal_api::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
    match &p.rule {
        Some(permission::Rule::UriTemplate(t)) => {
            assert_eq!(t.name, "uri-template");
            let any = t.typed_config.as_ref()?;
            assert_eq!(
                any.type_url,
                "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
            );
            let c: UriTemplateMatchConfig = prost::Message::decode(any.value.as_slice()).ok()?;
            Some(c.path_template)
        }
        _ => None,
    }
}

#[test]
fn path_templates_become_uri_template_permissions() {
    let p = policy(
        "p",
        "rules:\n- to:\n  - operation: {paths: ['/api/{*}/orders', /static/*, '/files/{**}'], notPaths: ['/{**}/admin']}\n",
    );
    let c = build_for(std::slice::from_ref(&p), false);
    let rule = &c[0].policies["ns[shop]-policy[p]-rule[0]"];
    let Some(permission::Rule::AndRules(and)) = &rule.permissions[0].rule else {
        panic!("{rule:?}");
    };
    let Some(permission::Rule::OrRules(paths)) = &and.rules[0].rule else {
        panic!("{and:?}");
    };
    let templates: Vec<Option<String>> = paths.rules.iter().map(uri_template).collect();
    assert_eq!(
        templates,
        [
            Some("/api/*/orders".to_string()),
            None,
            Some("/files/**".to_string())
        ]
    );
    // The other paths keep their url_path matchers.
    assert!(matches!(
        paths.rules[1].rule,
        Some(permission::Rule::UrlPath(_))
    ));
    let Some(permission::Rule::NotRule(not)) = &and.rules[1].rule else {
        panic!("{and:?}");
    };
    let Some(permission::Rule::OrRules(not_paths)) = &not.rule else {
        panic!("{not:?}");
    };
    assert_eq!(
        uri_template(&not_paths.rules[0]).as_deref(),
        Some("/**/admin")
    );
    // Paths are HTTP-only: on TCP chains the ALLOW rule is dropped, as for other paths.
    let tcp = build_for(&[p], true);
    assert!(tcp[0].policies.is_empty());
}

#[test]
fn a_source_service_account_condition_matches_like_the_field() {
    let p = policy(
        "p",
        "rules:\n- when:\n  - {key: source.serviceAccount, values: [web, other/api]}\n",
    );
    let c = build_for(std::slice::from_ref(&p), false);
    let rule = &c[0].policies["ns[shop]-policy[p]-rule[0]"];
    let Some(principal::Identifier::AndIds(and)) = &rule.principals[0].identifier else {
        panic!("{rule:?}");
    };
    let Some(principal::Identifier::OrIds(or)) = &and.ids[0].identifier else {
        panic!("{and:?}");
    };
    let found: Vec<Option<&str>> = or.ids.iter().map(authenticated_regex).collect();
    assert_eq!(
        found,
        [
            Some(r"spiffe://.+/ns/shop/(.+/|)sa/web(/.+)?"),
            Some(r"spiffe://.+/ns/other/(.+/|)sa/api(/.+)?"),
        ]
    );
}
