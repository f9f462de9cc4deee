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
