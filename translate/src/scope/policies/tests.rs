//! Which security policies apply to a workload, the modes they compose to, and how they
//! split views.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind};
use shoal_config::parse::parse_yaml;
use shoal_config::{ConfigStore, Labels};

use super::*;
use crate::scope::Scope;
use crate::security::{PeerMode, PeerModes, compose};
use crate::{MeshOptions, Proxy};

fn model(yaml: &str) -> Model {
    let mut store = ConfigStore::new();
    store.apply("t.yaml", parse_yaml("t.yaml", yaml));
    let errors: Vec<String> = store
        .issues()
        .iter()
        .filter(|i| i.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    Model::build(store.snapshot(), MeshOptions::default())
}

fn pa(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
    )
}

fn ap(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
    )
}

fn ra(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
    )
}

const KEYS: &str = r#"'{"keys": []}'"#;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn app(v: &str) -> Labels {
    labels(&[("app", v)])
}

fn names<T>(list: &[&Arc<Policy<T>>]) -> Vec<String> {
    list.iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

#[test]
fn peer_authentication_precedence_and_inheritance() {
    let m = model(
        &(pa("istio-system", "mesh", "  mtls: {mode: STRICT}\n")
            + &pa(
                "istio-system",
                "root-selector",
                "  selector: {matchLabels: {app: a}}\n  mtls: {mode: DISABLE}\n",
            )
            + &pa("shop", "b-ns", "  mtls: {mode: UNSET}\n")
            + &pa("shop", "c-ns", "  mtls: {mode: DISABLE}\n")
            + &pa(
                "shop",
                "w",
                "  selector: {matchLabels: {app: a}}\n  mtls: {mode: PERMISSIVE}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    9090: {mode: UNSET}\n",
            )
            + &pa(
                "other",
                "w",
                "  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
            )),
    );
    let root = "istio-system";
    // The first namespace-wide policy by name wins (b-ns, UNSET: inherits STRICT); the
    // root namespace's selector policy is ignored.
    let chosen = peer_policies_for(&m, "shop", &labels(&[("app", "b")]));
    assert_eq!(names(&chosen), vec!["istio-system/mesh", "shop/b-ns"]);
    let modes = compose(&chosen, root);
    assert_eq!(modes.workload, PeerMode::Strict);
    assert!(modes.ports.is_empty());

    let chosen = peer_policies_for(&m, "shop", &labels(&[("app", "a")]));
    assert_eq!(
        names(&chosen),
        vec!["istio-system/mesh", "shop/b-ns", "shop/w"]
    );
    let modes = compose(&chosen, root);
    assert_eq!(modes.workload, PeerMode::Permissive);
    assert_eq!(modes.port(8080), PeerMode::Disable);
    // UNSET at port level inherits the workload level.
    assert_eq!(modes.port(9090), PeerMode::Permissive);
    assert_eq!(modes.port(1), PeerMode::Permissive);

    // A workload policy without a mode inherits the mesh's for the workload.
    let modes = compose(
        &peer_policies_for(&m, "other", &labels(&[("app", "a")])),
        root,
    );
    assert_eq!(modes.workload, PeerMode::Strict);
    assert_eq!(modes.port(8080), PeerMode::Disable);

    // Nothing applies: PERMISSIVE, as Istio.
    let empty = model("");
    assert_eq!(
        compose(&peer_policies_for(&empty, "shop", &Labels::new()), root),
        PeerModes::default()
    );
    assert_eq!(PeerModes::default().workload, PeerMode::Permissive);
}

#[test]
fn authorization_policy_selection() {
    let m = model(
        &(ap(
            "istio-system",
            "mesh-deny",
            "  action: DENY\n  rules: [{}]\n",
        ) + &ap(
            "istio-system",
            "mesh-app-a",
            "  selector: {matchLabels: {app: a}}\n",
        ) + &ap("shop", "ns-wide", "  rules: [{}]\n")
            + &ap("shop", "only-b", "  selector: {matchLabels: {app: b}}\n")
            + &ap("shop", "gw", "  targetRefs: [{kind: Gateway, name: g}]\n")
            + &ap("other", "x", "  rules: [{}]\n")),
    );
    let got = authorization_policies_for(&m, "shop", &labels(&[("app", "a")]));
    assert_eq!(
        names(&got),
        vec![
            "istio-system/mesh-app-a",
            "istio-system/mesh-deny",
            "shop/ns-wide"
        ]
    );
    let got = authorization_policies_for(&m, "istio-system", &Labels::new());
    assert_eq!(names(&got), vec!["istio-system/mesh-deny"]);
}

fn node(id: &str, app: &str, version: &str, meta: &[(&str, &str)]) -> Node {
    let label = |v: &str| Value {
        kind: Some(Kind::StringValue(v.to_string())),
    };
    let mut fields: std::collections::HashMap<String, Value> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), label(v)))
        .collect();
    fields.insert(
        "LABELS".into(),
        Value {
            kind: Some(Kind::StructValue(Struct {
                fields: [("app", app), ("version", version)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), label(v)))
                    .collect(),
            })),
        },
    );
    Node {
        id: id.into(),
        metadata: Some(Struct { fields }),
        ..Default::default()
    }
}

#[test]
fn workloads_selected_by_the_same_policies_share_a_view() {
    let m = model(
        &(pa(
            "shop",
            "strict-a",
            "  selector: {matchLabels: {app: a}}\n  mtls: {mode: STRICT}\n",
        ) + &ap(
            "shop",
            "allow-a",
            "  selector: {matchLabels: {app: a}}\n  rules: [{}]\n",
        )),
    );
    let key = |app: &str, version: &str, meta: &[(&str, &str)]| {
        let n = node(
            "sidecar~10.0.0.1~p.shop~shop.svc.cluster.local",
            app,
            version,
            meta,
        );
        ViewKey::for_proxy(&m, &Proxy::from_node(Some(&n)).unwrap())
    };
    let a1 = key("a", "v1", &[]);
    let a2 = key("a", "v2", &[]);
    let b1 = key("b", "v1", &[]);
    assert_eq!(a1, a2, "labels that select no policy do not split views");
    assert_ne!(a1, b1);
    assert_eq!(
        a1.peer_authentication,
        vec![(Arc::from("shop"), Arc::from("strict-a"))]
    );
    assert_eq!(
        a1.authorization,
        vec![(Arc::from("shop"), Arc::from("allow-a"))]
    );
    assert!(
        a1.id()
            .contains("|peerauthn=shop/strict-a|authz=shop/allow-a"),
        "{}",
        a1.id()
    );
    assert!(b1.authorization.is_empty());
    // Without traffic capture there is no inbound listener: policies do not matter.
    let none = key("a", "v1", &[("INTERCEPTION_MODE", "NONE")]);
    assert!(none.peer_authentication.is_empty() && none.authorization.is_empty());
    // The view's inbound security follows the key.
    let sec = Scope::new(&m, &a1).inbound_security();
    assert_eq!(sec.modes.workload, PeerMode::Strict);
    assert_eq!(sec.http_rbac.len(), 1);
    assert_eq!(
        Scope::new(&m, &b1).inbound_security().modes.workload,
        PeerMode::Permissive
    );
}

#[test]
fn selection_is_mesh_namespace_and_selector() {
    let rule = format!("  jwtRules: [{{issuer: i, jwks: {KEYS}}}]\n");
    let m = model(
        &(ra("istio-system", "mesh", &rule)
            + &ra("shop", "ns", &rule)
            + &ra(
                "shop",
                "a-only",
                &format!("  selector: {{matchLabels: {{app: a}}}}\n{rule}"),
            )
            + &ra(
                "shop",
                "gw",
                &format!("  targetRefs: [{{kind: Gateway, name: g}}]\n{rule}"),
            )
            + &ra("other", "elsewhere", &rule)),
    );
    let names = |labels: &Labels| -> Vec<String> {
        request_authentications_for(&m, "shop", labels)
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect()
    };
    assert_eq!(
        names(&app("a")),
        ["istio-system/mesh", "shop/a-only", "shop/ns"]
    );
    assert_eq!(names(&app("b")), ["istio-system/mesh", "shop/ns"]);
    // The view key names them, so workloads selected differently get different views.
    assert_ne!(
        policy_refs(&m, "shop", &app("a")).request_authentication,
        policy_refs(&m, "shop", &app("b")).request_authentication
    );
}
