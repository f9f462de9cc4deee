//! The merge rules of delegate VirtualServices, after Istio's `mergeHTTPRoute`.

use std::sync::Arc;

use shoal_config::istio::{HttpMatchRequest, HttpRoute, VirtualServiceSpec};

use super::*;
use crate::model::Visibility;

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_saphyr::from_str(s).expect("valid test YAML")
}

fn m(s: &str) -> HttpMatchRequest {
    yaml(s)
}

fn route(s: &str) -> HttpRoute {
    yaml(s)
}

fn rule(ns: &str, name: &str, hosts: &[&str], spec: &str) -> Arc<VirtualServiceRule> {
    let spec: VirtualServiceSpec = yaml(spec);
    Arc::new(Rule {
        namespace: ns.into(),
        name: name.into(),
        visibility: Visibility::from_export_to(&spec.export_to, ns),
        spec: Arc::new(spec),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
    })
}

#[test]
fn string_matches_must_narrow_the_root() {
    let conflict = |root: &str, sub: &str| conflicts(&m(root), &m(sub));
    // Prefixes and exact paths under the root's prefix narrow it.
    assert!(!conflict(
        "{uri: {prefix: /api}}",
        "{uri: {prefix: /api/v1}}"
    ));
    assert!(!conflict(
        "{uri: {prefix: /api}}",
        "{uri: {exact: /api/v1}}"
    ));
    assert!(conflict(
        "{uri: {prefix: /api/v1}}",
        "{uri: {prefix: /api}}"
    ));
    assert!(conflict("{uri: {prefix: /api}}", "{uri: {exact: /other}}"));
    // Exact roots admit only the same exact path.
    assert!(!conflict("{uri: {exact: /a}}", "{uri: {exact: /a}}"));
    assert!(conflict("{uri: {exact: /a}}", "{uri: {exact: /b}}"));
    assert!(conflict("{uri: {exact: /a}}", "{uri: {prefix: /a}}"));
    // Regexes cannot be compared.
    assert!(conflict("{uri: {regex: '/a.*'}}", "{uri: {prefix: /a}}"));
    assert!(conflict("{uri: {prefix: /a}}", "{uri: {regex: '/a.*'}}"));
    // Unset on either side: nothing to conflict with.
    assert!(!conflict("{}", "{uri: {regex: '/a.*'}}"));
    assert!(!conflict("{uri: {regex: '/a.*'}}", "{}"));
    // Headers and query parameters by name; method and authority alike.
    assert!(conflict(
        "{headers: {x-v: {exact: a}}}",
        "{headers: {x-v: {exact: b}}}"
    ));
    assert!(!conflict(
        "{headers: {x-v: {exact: a}}}",
        "{headers: {x-w: {exact: b}}}"
    ));
    assert!(conflict(
        "{queryParams: {q: {prefix: a}}}",
        "{queryParams: {q: {prefix: b}}}"
    ));
    assert!(conflict(
        "{method: {exact: GET}}",
        "{method: {exact: POST}}"
    ));
}

#[test]
fn other_match_attributes_must_agree() {
    let conflict = |root: &str, sub: &str| conflicts(&m(root), &m(sub));
    assert!(conflict("{ignoreUriCase: true}", "{}"));
    assert!(conflict("{port: 80}", "{port: 81}"));
    assert!(!conflict("{port: 80}", "{}"));
    assert!(conflict("{sourceNamespace: a}", "{}"));
    assert!(!conflict("{sourceNamespace: a}", "{sourceNamespace: a}"));
    assert!(!conflict("{}", "{sourceNamespace: a}"));
    assert!(conflict(
        "{sourceLabels: {app: a}}",
        "{sourceLabels: {app: b}}"
    ));
    assert!(!conflict(
        "{sourceLabels: {app: a}}",
        "{sourceLabels: {v: '1'}}"
    ));
    assert!(!conflict("{gateways: [ns/a, ns/b]}", "{gateways: [ns/a]}"));
    assert!(conflict("{gateways: [ns/a]}", "{gateways: [ns/b]}"));
}

#[test]
fn merged_matches_combine_both_sides() {
    let root = [m(
        "{name: r, uri: {prefix: /api}, headers: {x-a: {exact: '1'}}, port: 80, sourceLabels: {app: a}}",
    )];
    let sub = [m(
        "{name: s, uri: {prefix: /api/v1}, headers: {x-b: {exact: '2'}}, sourceLabels: {v: '1'}}",
    )];
    let out = merge_matches(&root, &sub).expect("no conflict");
    assert_eq!(out.len(), 1);
    let got = &out[0];
    assert_eq!(got.name.as_deref(), Some("r-s"));
    assert_eq!(
        got.uri.as_ref().and_then(|u| u.prefix.as_deref()),
        Some("/api/v1")
    );
    assert_eq!(got.headers.keys().collect::<Vec<_>>(), vec!["x-a", "x-b"]);
    assert_eq!(got.port, Some(80));
    assert_eq!(got.source_labels.len(), 2);
    // Empty on one side: the other side's matches as they are.
    assert_eq!(merge_matches(&[], &sub).as_deref(), Some(&sub[..]));
    assert_eq!(merge_matches(&root, &[]).as_deref(), Some(&root[..]));
}

#[test]
fn each_delegate_match_needs_a_compatible_root_match() {
    let root = [m("{uri: {prefix: /a}}"), m("{uri: {prefix: /b}}")];
    // One delegate match fitting under both roots' prefixes is impossible: it is merged
    // with the one it fits.
    let out = merge_matches(&root, &[m("{uri: {prefix: /b/x}}")]).expect("fits /b");
    assert_eq!(out.len(), 1);
    // A delegate match without a uri narrows each root match.
    let out = merge_matches(&root, &[m("{headers: {x: {exact: y}}}")]).expect("fits both");
    assert_eq!(out.len(), 2);
    // One delegate match that fits no root match drops the whole delegate route.
    assert_eq!(
        merge_matches(
            &root,
            &[m("{uri: {prefix: /b/x}}"), m("{uri: {prefix: /c}}")]
        ),
        None
    );
}

#[test]
fn delegate_routes_take_the_root_settings_they_lack() {
    let root = route(
        "{name: root, match: [{uri: {prefix: /api}}], timeout: 5s, retries: {attempts: 2}, headers: {request: {set: {x-root: '1'}}}, mirror: {host: shadow}, delegate: {name: d}}",
    );
    let sub = route(
        "{name: v1, match: [{uri: {prefix: /api/v1}}], timeout: 1s, mirrors: [{destination: {host: other}}], route: [{destination: {host: v1}}]}",
    );
    let got = merge_route(&root, sub).expect("no conflict");
    assert_eq!(got.name.as_deref(), Some("root-v1"));
    assert_eq!(got.timeout.as_deref(), Some("1s"));
    assert_eq!(got.retries.as_ref().map(|r| r.attempts), Some(2));
    assert!(got.headers.is_some());
    // The delegate mirrors by itself: the root's `mirror` would clash with its `mirrors`.
    assert!(got.mirror.is_none());
    assert_eq!(got.mirrors.len(), 1);
    assert!(got.delegate.is_none());
    let conflicting =
        route("{match: [{uri: {prefix: /other}}], route: [{destination: {host: v1}}]}");
    assert!(merge_route(&root, conflicting).is_none());
}

#[test]
fn roots_get_their_delegates_routes_in_place() {
    let root = rule(
        "front",
        "root",
        &["api.example.com"],
        "hosts: [api.example.com]\nhttp:\n- match: [{uri: {prefix: /x}}]\n  route: [{destination: {host: x}}]\n- match: [{uri: {prefix: /api}}]\n  delegate: {name: d, namespace: team}\n- route: [{destination: {host: fallback}}]\n",
    );
    let delegate = rule(
        "team",
        "d",
        &[],
        "http:\n- match: [{uri: {prefix: /api/v1}, gateways: [gw]}]\n  route: [{destination: {host: v1}}]\n- match: [{uri: {prefix: /elsewhere}}]\n  route: [{destination: {host: lost}}]\n- route: [{destination: {host: v2}}]\n",
    );
    let out = merge(vec![root, delegate], "cluster.local");
    // The delegate itself is no VirtualService of its own.
    assert_eq!(out.len(), 1);
    let http = &out[0].spec.http;
    let hosts: Vec<&str> = http
        .iter()
        .map(|r| r.route[0].destination.host.as_str())
        .collect();
    // Root routes keep their place; the delegate's short names resolve in its namespace;
    // the conflicting `/elsewhere` route is dropped.
    assert_eq!(
        hosts,
        vec![
            "x",
            "v1.team.svc.cluster.local",
            "v2.team.svc.cluster.local",
            "fallback"
        ]
    );
    assert_eq!(http[1].matches[0].gateways, vec!["team/gw"]);
    // A match-less delegate route takes the root route's matches.
    assert_eq!(
        http[2].matches[0]
            .uri
            .as_ref()
            .and_then(|u| u.prefix.as_deref()),
        Some("/api")
    );
}

#[test]
fn missing_or_hidden_delegates_drop_only_their_route() {
    let root = |name: &str| {
        rule(
            "front",
            "root",
            &["a"],
            &format!(
                "hosts: [a]\nhttp:\n- delegate: {{name: {name}}}\n- route: [{{destination: {{host: b}}}}]\n"
            ),
        )
    };
    let hidden = rule(
        "front",
        "hidden",
        &[],
        "exportTo: [other]\nhttp:\n- route: [{destination: {host: c}}]\n",
    );
    for name in ["missing", "hidden"] {
        let out = merge(vec![root(name), hidden.clone()], "cluster.local");
        assert_eq!(out[0].spec.http.len(), 1, "{name}");
        assert_eq!(out[0].spec.http[0].route[0].destination.host, "b");
    }
    // A delegate exported to the root's namespace is merged.
    let shared = rule(
        "team",
        "shared",
        &[],
        "exportTo: [front]\nhttp:\n- route: [{destination: {host: c}}]\n",
    );
    let root = rule(
        "front",
        "root",
        &["a"],
        "hosts: [a]\nhttp:\n- delegate: {name: shared, namespace: team}\n",
    );
    let out = merge(vec![root, shared], "cluster.local");
    assert_eq!(
        out[0].spec.http[0].route[0].destination.host,
        "c.team.svc.cluster.local"
    );
}
