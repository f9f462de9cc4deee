use super::*;

const MESH: &str = r#"
# leading comment
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: bookinfo
spec:
  ports:
  - name: http
    port: 9080
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    mirrorPercent: 50
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
---
# only a comment
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bad}
spec:
  host: reviews
  subsets:
  - name: v1
  - name: v1
"#;

#[test]
fn documents_are_split_and_numbered() {
    let docs = split_documents(MESH);
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0].0, 3);
    assert!(docs[1].1.contains("VirtualService"));
}

#[test]
fn each_document_has_its_own_outcome() {
    let docs = parse_yaml("mesh.yaml", MESH);
    assert_eq!(docs.len(), 4);
    assert!(
        matches!(&docs[0].outcome, Outcome::Accepted { object, .. } if object.key().to_string() == "Service bookinfo/reviews")
    );
    match &docs[1].outcome {
        Outcome::Accepted { warnings, .. } => {
            assert_eq!(warnings.len(), 1);
            assert_eq!(warnings[0].field, "spec.http[0].mirrorPercent");
            assert!(
                warnings[0].to_string().contains("mesh.yaml:"),
                "{}",
                warnings[0]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&docs[2].outcome, Outcome::Skipped { kind, .. } if kind == "Deployment"));
    match &docs[3].outcome {
        Outcome::Rejected {
            key: Some(key),
            issues,
        } => {
            assert_eq!(key.to_string(), "DestinationRule default/bad");
            let text = issues[0].to_string();
            assert!(text.contains("mesh.yaml:31 (document 4)"), "{text}");
            assert!(text.contains("spec.subsets[1].name"), "{text}");
            assert!(text.contains("duplicate subset"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_yaml_is_rejected_without_a_key() {
    let docs = parse_yaml(
        "x.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: [unclosed\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ok}\n",
    );
    assert_eq!(docs.len(), 2);
    assert!(
        matches!(&docs[0].outcome, Outcome::Rejected { key: None, issues } if issues[0].message.starts_with("malformed YAML"))
    );
    assert!(matches!(&docs[1].outcome, Outcome::Accepted { .. }));
}

#[test]
fn type_errors_name_the_field() {
    let docs = parse_yaml(
        "x.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n      weight: heavy\n",
    );
    match &docs[0].outcome {
        Outcome::Rejected {
            key: Some(k),
            issues,
        } => {
            assert_eq!(k.name.as_ref(), "v");
            assert_eq!(issues[0].field, "spec.http[0].route[0].weight");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lists_are_expanded() {
    let docs = parse_yaml(
        "l.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: b}\n",
    );
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].origin.item, Some(1));
}

#[test]
fn missing_kind_and_scalars_are_errors() {
    for text in [
        "just a string",
        "apiVersion: v1\nmetadata: {name: x}",
        "- a\n- b",
        "kind: Service",
    ] {
        let docs = parse_yaml("e.yaml", text);
        assert!(
            matches!(&docs[0].outcome, Outcome::Rejected { .. }),
            "{text}: {docs:?}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse_yaml("fuzz.yaml", &text);
    }

    #[test]
    fn mutated_documents_never_panic(cut in 0usize..400, junk in "[-:{}\\[\\] a-z0-9\n#&*!|>]{0,20}") {
        let mut text = MESH.to_string();
        let at = cut.min(text.len());
        if text.is_char_boundary(at) {
            text.insert_str(at, &junk);
        }
        let _ = parse_yaml("fuzz.yaml", &text);
    }
}

#[test]
fn split_two() {
    let t = "a: 1\nb: 2\n---\nc: 3\n---\n";
    let d = split_documents(t);
    assert_eq!(d.len(), 2, "{d:?}");
}

#[test]
fn yaml_1_1_booleans_stay_strings() {
    // "y", "no", "on" are names, not booleans (Kubernetes reads strings into string fields).
    let docs = parse_yaml(
        "a",
        "apiVersion: v1\nkind: Service\nmetadata: {name: y, labels: {app: no}}\n",
    );
    assert!(
        matches!(&docs[0].outcome, Outcome::Accepted { .. }),
        "{docs:?}"
    );
}

/// A self-signed certificate and its key, PEM-shaped (the checks read PEM framing only).
const SECRET_CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
const SECRET_KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nAwQF\n-----END EC PRIVATE KEY-----\n";

fn secret_doc(body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: web-cert, namespace: istio-system}}\n{body}"
    )
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every message of a document's outcome, and whether it was accepted.
fn secret_outcome(yaml: &str) -> (bool, Vec<String>) {
    let docs = parse_yaml("s.yaml", yaml);
    assert_eq!(docs.len(), 1);
    match &docs[0].outcome {
        Outcome::Accepted { warnings, .. } => {
            (true, warnings.iter().map(ToString::to_string).collect())
        }
        Outcome::Rejected { issues, .. } => {
            (false, issues.iter().map(ToString::to_string).collect())
        }
        Outcome::Skipped { .. } => panic!("a Secret is read"),
    }
}

#[test]
fn tls_secrets_are_read_from_data_and_string_data() {
    let yaml = secret_doc(&format!(
        "type: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\nstringData:\n  ca.crt: {:?}\n",
        b64(SECRET_CERT),
        b64(SECRET_KEY),
        SECRET_CERT
    ));
    let docs = parse_yaml("s.yaml", &yaml);
    let Outcome::Accepted { object, warnings } = &docs[0].outcome else {
        panic!("{docs:?}");
    };
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(object.key().to_string(), "Secret istio-system/web-cert");
    let Object::Secret(s) = object.as_ref() else {
        panic!("{object:?}")
    };
    assert_eq!(
        s.certificate_and_key(),
        Some((SECRET_CERT.as_bytes(), SECRET_KEY.as_bytes()))
    );
    assert_eq!(s.ca_certificate(), Some(SECRET_CERT.as_bytes()));
    // Nothing of the key in what a log line of the document could show.
    assert!(!format!("{docs:?}").contains("AwQF"));
}

#[test]
fn malformed_secrets_are_rejected_without_showing_values() {
    // Wrong shapes: serde would quote the value; the issue must not.
    for body in [
        "data: SECRETVALUE\n".to_string(),
        "data: {tls.key: [SECRETVALUE]}\n".to_string(),
        "data: {tls.key: 'SECRET*VALUE'}\n".to_string(),
        "stringData: {tls.key: {nested: SECRETVALUE}}\n".to_string(),
    ] {
        let (accepted, messages) = secret_outcome(&secret_doc(&body));
        assert!(!accepted, "{body}");
        let text = messages.join("\n");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("Secret istio-system/web-cert"), "{text}");
    }
    // A TLS Secret without its key, and a pair that is not PEM.
    let (accepted, messages) = secret_outcome(&secret_doc(&format!(
        "type: kubernetes.io/tls\ndata: {{tls.crt: {}}}\n",
        b64(SECRET_CERT)
    )));
    assert!(!accepted);
    assert!(messages.join("\n").contains("data.tls.key"), "{messages:?}");
    let (accepted, messages) = secret_outcome(&secret_doc(
        "stringData: {cert: SECRET-NOT-PEM, key: SECRET-NOT-PEM-EITHER, cacert: SECRET-NOR-THIS}\n",
    ));
    assert!(!accepted);
    let text = messages.join("\n");
    for field in ["data.cert", "data.key", "data.cacert"] {
        assert!(text.contains(field), "{text}");
    }
    assert!(!text.contains("SECRET"), "{text}");
    // Other Secrets (a lone `key`, a token) are accepted and left alone.
    let (accepted, messages) = secret_outcome(&secret_doc(
        "type: Opaque\nstringData: {key: an-api-key, token: abc}\n",
    ));
    assert!(accepted && messages.is_empty(), "{messages:?}");
}

#[test]
fn gateway_api_kinds_do_not_collide_with_istio_gateways() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: ns}\nspec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: ns}\nspec:\n  gatewayClassName: istio\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: gw, namespace: ns}]\n---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\nmetadata: {name: u}\n";
    let docs = parse_yaml("gw.yaml", yaml);
    let keys: Vec<ObjectKey> = docs
        .iter()
        .filter_map(|d| match &d.outcome {
            Outcome::Accepted { object, warnings } => {
                assert!(warnings.is_empty(), "{warnings:?}");
                Some(object.key())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ObjectKey::new(Kind::Gateway, "ns", "gw"),
            ObjectKey::new(Kind::KubeGateway, "ns", "gw"),
            ObjectKey::new(Kind::HttpRoute, "default", "r"),
        ]
    );
    assert_eq!(keys[0].to_string(), "Gateway ns/gw");
    assert_eq!(
        keys[1].to_string(),
        "Gateway.gateway.networking.k8s.io ns/gw"
    );
    assert_eq!(keys[2].to_string(), "HTTPRoute default/r");
    assert!(matches!(&docs[3].outcome, Outcome::Skipped { kind, .. } if kind == "UDPRoute"));
}

#[test]
fn namespaces_are_cluster_scoped_and_read_for_their_labels() {
    // `metadata.namespace` is dropped (cluster-scoped); `spec` and `status` are ignored
    // without warnings, as for every Kubernetes kind.
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n  namespace: ignored\n  labels: {env: prod, kubernetes.io/metadata.name: web}\nspec: {finalizers: [kubernetes]}\nstatus: {phase: Active}\n";
    let docs = parse_yaml("ns.yaml", yaml);
    let Outcome::Accepted { object, warnings } = &docs[0].outcome else {
        panic!("{:?}", docs[0].outcome);
    };
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(object.key(), ObjectKey::new(Kind::Namespace, "", "web"));
    assert_eq!(object.key().to_string(), "Namespace web");
    let Object::Namespace(ns) = object.as_ref() else {
        panic!("{object:?}");
    };
    assert_eq!(ns.metadata.namespace, None);
    assert_eq!(ns.metadata.labels.get("env"), Some("prod"));
    assert!(Kind::Namespace.translated() && !Kind::Namespace.endpoint_only());
    assert!(!Kind::Namespace.namespaced());
    // Only core v1.
    assert!(matches!(
        parse_yaml(
            "ns.yaml",
            "apiVersion: v2\nkind: Namespace\nmetadata: {name: web}\n"
        )[0]
        .outcome,
        Outcome::Skipped { .. }
    ));
}

#[test]
fn namespace_names_are_labels_and_their_labels_valid() {
    let outcome = |yaml: &str| -> (bool, Vec<String>) {
        match &parse_yaml("ns.yaml", yaml)[0].outcome {
            Outcome::Accepted { warnings, .. } => {
                (true, warnings.iter().map(ToString::to_string).collect())
            }
            Outcome::Rejected { issues, .. } => {
                (false, issues.iter().map(ToString::to_string).collect())
            }
            other => panic!("{other:?}"),
        }
    };
    let (ok, found) = outcome("apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n");
    assert!(!ok && found.len() == 1, "{found:?}");
    assert!(found[0].contains("not a valid namespace name"), "{found:?}");
    let (ok, found) =
        outcome("apiVersion: v1\nkind: Namespace\nmetadata: {name: web, labels: {'bad key': x}}\n");
    assert!(
        !ok && found[0].contains("metadata.labels.bad key"),
        "{found:?}"
    );
    // A name label other than the name: the API server would overwrite it.
    let (ok, found) = outcome(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: web, labels: {kubernetes.io/metadata.name: other}}\n",
    );
    assert!(ok && found.len() == 1, "{found:?}");
    assert!(
        found[0].contains("kubernetes.io/metadata.name"),
        "{found:?}"
    );
}
