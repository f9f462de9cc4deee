use super::*;
use crate::parse::parse_yaml;

fn svc(name: &str, port: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: {port}}}]\n---\n"
    )
}

fn keys(c: &ChangeSet) -> Vec<String> {
    c.keys.iter().map(|k| k.name.to_string()).collect()
}

#[test]
fn reapplying_reports_only_real_changes() {
    let mut store = ConfigStore::new();
    let c = store.apply(
        "a.yaml",
        parse_yaml("a.yaml", &(svc("x", 80) + &svc("y", 80))),
    );
    assert_eq!(keys(&c), ["x", "y"]);
    let c = store.apply(
        "a.yaml",
        parse_yaml("a.yaml", &(svc("x", 80) + &svc("y", 81))),
    );
    assert_eq!(keys(&c), ["y"]);
    let c = store.apply("a.yaml", parse_yaml("a.yaml", &svc("x", 80)));
    assert_eq!(keys(&c), ["y"]);
    assert_eq!(store.snapshot().len(), 1);
    let c = store.remove_source("a.yaml");
    assert_eq!(keys(&c), ["x"]);
    assert!(store.snapshot().is_empty());
}

#[test]
fn a_rejected_update_keeps_the_last_good_version() {
    let mut store = ConfigStore::new();
    store.apply(
        "a.yaml",
        parse_yaml("a.yaml", &(svc("x", 80) + &svc("y", 80))),
    );
    let c = store.apply(
        "a.yaml",
        parse_yaml("a.yaml", &(svc("x", 99999) + &svc("y", 81))),
    );
    assert_eq!(keys(&c), ["y"]);
    let snap = store.snapshot();
    let x = snap
        .get(&ObjectKey::new(Kind::Service, "default", "x"))
        .unwrap();
    match x.object.as_ref() {
        Object::Service(s) => assert_eq!(s.spec.ports[0].port, 80),
        _ => unreachable!(),
    }
    assert_eq!(store.issues().len(), 1);
    assert!(store.issues()[0].to_string().contains("Service default/x"));
    // Fixing it clears the issue.
    store.apply(
        "a.yaml",
        parse_yaml("a.yaml", &(svc("x", 82) + &svc("y", 81))),
    );
    assert!(store.issues().is_empty());
}

#[test]
fn an_unreadable_document_keeps_everything_the_file_had() {
    let mut store = ConfigStore::new();
    store.apply(
        "a.yaml",
        parse_yaml("a.yaml", &(svc("x", 80) + &svc("y", 80))),
    );
    let c = store.apply(
        "a.yaml",
        parse_yaml("a.yaml", &(svc("x", 81) + "kind: [broken\n")),
    );
    assert_eq!(keys(&c), ["x"]);
    assert_eq!(store.snapshot().len(), 2);
}

#[test]
fn duplicates_are_refused_then_promoted() {
    let mut store = ConfigStore::new();
    store.apply("a.yaml", parse_yaml("a.yaml", &svc("x", 80)));
    let c = store.apply("b.yaml", parse_yaml("b.yaml", &svc("x", 90)));
    assert!(c.is_empty());
    assert!(
        store.issues()[0].message.contains("duplicate definition"),
        "{:?}",
        store.issues()
    );
    // a.yaml drops it: b.yaml's definition takes over.
    let c = store.apply("a.yaml", Vec::new());
    assert_eq!(keys(&c), ["x"]);
    match store
        .snapshot()
        .get(&ObjectKey::new(Kind::Service, "default", "x"))
        .unwrap()
        .object
        .as_ref()
    {
        Object::Service(s) => assert_eq!(s.spec.ports[0].port, 90),
        _ => unreachable!(),
    }
    assert!(store.issues().is_empty(), "{:?}", store.issues());
}

#[test]
fn snapshots_are_immutable() {
    let mut store = ConfigStore::new();
    store.apply("a.yaml", parse_yaml("a.yaml", &svc("x", 80)));
    let before = store.snapshot();
    store.apply("a.yaml", parse_yaml("a.yaml", &svc("z", 80)));
    assert_eq!(before.of_kind(Kind::Service).count(), 1);
    assert_eq!(
        before
            .of_kind(Kind::Service)
            .next()
            .unwrap()
            .0
            .name
            .as_ref(),
        "x"
    );
    assert!(store.snapshot().revision > before.revision);
}

#[test]
fn a_source_id_is_kept_once_shared_with_its_documents_origins() {
    let mut store = ConfigStore::new();
    let docs = parse_yaml("a.yaml", &(svc("x", 80) + &svc("y", 80)));
    let origin = docs[0].origin.source.clone();
    store.apply("a.yaml", docs);
    let (kept, _) = store
        .sources
        .get_key_value("a.yaml")
        .expect("the source is kept");
    assert!(Arc::ptr_eq(kept, &origin));
    for (_, entry) in store.snapshot.iter() {
        assert!(Arc::ptr_eq(&entry.origin.source, &origin));
    }
}
