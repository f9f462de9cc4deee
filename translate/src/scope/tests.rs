use super::*;

#[test]
fn match_gateways_apply_where_their_gateway_is_served() {
    let gws = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Sidecars: no gateways, or `mesh`.
    assert!(match_applies(None, "app", &[]));
    assert!(match_applies(None, "app", &gws(&["mesh", "gw"])));
    assert!(!match_applies(None, "app", &gws(&["gw"])));
    // Gateways: by `NS/NAME`, or `NAME` in the VirtualService's namespace.
    let gw = Some("app/gw");
    assert!(match_applies(gw, "app", &[]));
    assert!(match_applies(gw, "app", &gws(&["gw"])));
    assert!(match_applies(gw, "other", &gws(&["app/gw"])));
    assert!(!match_applies(gw, "other", &gws(&["gw", "mesh"])));
    assert_eq!(qualify_gateway("mesh", "app"), None);
}

fn model(yaml: &str) -> Model {
    let mut store = shoal_config::ConfigStore::new();
    store.apply("t.yaml", shoal_config::parse::parse_yaml("t.yaml", yaml));
    Model::build(store.snapshot(), crate::MeshOptions::default())
}

fn proxy(labels: &[(&str, &str)]) -> Proxy {
    use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind};
    let string = |v: &str| Value {
        kind: Some(Kind::StringValue(v.to_string())),
    };
    let labels = Struct {
        fields: labels
            .iter()
            .map(|(k, v)| (k.to_string(), string(v)))
            .collect(),
    };
    let meta = Struct {
        fields: [(
            "LABELS".to_string(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        )]
        .into(),
    };
    let node = shoal_api::pb::envoy::config::core::v3::Node {
        id: "sidecar~10.0.0.1~c.app~app.svc.cluster.local".into(),
        metadata: Some(meta),
        ..Default::default()
    };
    Proxy::from_node(Some(&node)).expect("valid node")
}

#[test]
fn source_labels_split_views_only_while_a_virtual_service_compares_them() {
    let a = proxy(&[("app", "a"), ("version", "v1")]);
    let b = proxy(&[("app", "b"), ("version", "v1")]);
    let plain = model(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: app}\nspec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n",
    );
    assert_eq!(plain.source_label_keys, None);
    assert_eq!(
        ViewKey::for_proxy(&plain, &a),
        ViewKey::for_proxy(&plain, &b)
    );
    let by_app = model(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: app}\nspec:\n  hosts: [r]\n  http:\n  - match: [{sourceLabels: {app: a}}]\n    route: [{destination: {host: r}}]\n",
    );
    let (ka, kb) = (
        ViewKey::for_proxy(&by_app, &a),
        ViewKey::for_proxy(&by_app, &b),
    );
    assert_ne!(ka, kb);
    assert!(ka.id().ends_with("|source=app=a"), "{}", ka.id());
    // Only the compared keys: `version` does not split views.
    let a2 = proxy(&[("app", "a"), ("version", "v2")]);
    assert_eq!(ka, ViewKey::for_proxy(&by_app, &a2));
    let scope = Scope::new(&by_app, &ka);
    let labels = |l: &[(&str, &str)]| l.iter().copied().collect::<Labels>();
    assert!(scope.source_applies(&labels(&[("app", "a")]), None));
    assert!(scope.source_applies(&labels(&[]), Some("app")));
    assert!(!scope.source_applies(&labels(&[("app", "b")]), None));
    assert!(!scope.source_applies(&labels(&[("app", "a")]), Some("other")));
}
