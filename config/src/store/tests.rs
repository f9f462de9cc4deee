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

fn port_of(store: &ConfigStore, name: &str) -> Option<u32> {
    let snap = store.snapshot();
    match snap
        .get(&ObjectKey::new(Kind::Service, "default", name))?
        .object
        .as_ref()
    {
        Object::Service(s) => u32::try_from(s.spec.ports[0].port).ok(),
        _ => None,
    }
}

#[test]
fn a_fallback_definition_yields_quietly_to_a_primary_one_and_takes_over_when_it_goes() {
    let mut store = ConfigStore::new();
    let remote = |port| parse_yaml("remote", &svc("x", port));
    // Only the fallback defines x: it is in force.
    let c = store.apply_at("remote", remote(90), Precedence::Fallback);
    assert_eq!(keys(&c), ["x"]);
    assert_eq!(port_of(&store, "x"), Some(90));
    // A primary definition arrives: it wins, and nobody reports a duplicate.
    let c = store.apply("a.yaml", parse_yaml("a.yaml", &svc("x", 80)));
    assert_eq!(keys(&c), ["x"]);
    assert_eq!(port_of(&store, "x"), Some(80));
    assert!(store.issues().is_empty(), "{:?}", store.issues());
    // The fallback changes meanwhile: nothing changes in force.
    let c = store.apply_at("remote", remote(91), Precedence::Fallback);
    assert!(c.is_empty(), "{c:?}");
    assert_eq!(port_of(&store, "x"), Some(80));
    // The primary goes: the fallback's latest definition takes over.
    let c = store.remove_source("a.yaml");
    assert_eq!(keys(&c), ["x"]);
    assert_eq!(port_of(&store, "x"), Some(91));
    // And goes itself.
    let c = store.remove_source("remote");
    assert_eq!(keys(&c), ["x"]);
    assert!(store.snapshot().is_empty());
    assert!(store.issues().is_empty());
}

#[test]
fn a_fallback_arriving_after_a_primary_is_shadowed_quietly_and_promoted_later() {
    let mut store = ConfigStore::new();
    store.apply("a.yaml", parse_yaml("a.yaml", &svc("x", 80)));
    let c = store.apply_at(
        "remote",
        parse_yaml("remote", &(svc("x", 90) + &svc("only-remote", 70))),
        Precedence::Fallback,
    );
    assert_eq!(keys(&c), ["only-remote"], "x stays the primary's");
    assert!(store.issues().is_empty(), "{:?}", store.issues());
    let c = store.remove_source("a.yaml");
    assert_eq!(keys(&c), ["x"]);
    assert_eq!(port_of(&store, "x"), Some(90));
}

#[test]
fn two_primaries_still_clash_when_a_fallback_stood_between() {
    let mut store = ConfigStore::new();
    store.apply_at(
        "remote",
        parse_yaml("remote", &svc("x", 90)),
        Precedence::Fallback,
    );
    store.apply("a.yaml", parse_yaml("a.yaml", &svc("x", 80)));
    store.apply("b.yaml", parse_yaml("b.yaml", &svc("x", 70)));
    let issues = store.issues();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(issues[0].message.contains("duplicate definition"));
    assert_eq!(
        issues[0].origin.as_ref().map(|o| o.source.as_ref()),
        Some("b.yaml")
    );
    // a.yaml goes: b.yaml (primary) takes over before the earlier fallback.
    store.remove_source("a.yaml");
    assert_eq!(port_of(&store, "x"), Some(70));
    assert!(store.issues().is_empty());
    store.remove_source("b.yaml");
    assert_eq!(port_of(&store, "x"), Some(90));
}

mod precedence_properties {
    use proptest::prelude::*;

    use super::*;

    /// Sources 0 and 1 are primary, 2 and 3 fallback.
    const SOURCES: [(&str, Precedence); 4] = [
        ("p0", Precedence::Primary),
        ("p1", Precedence::Primary),
        ("f0", Precedence::Fallback),
        ("f1", Precedence::Fallback),
    ];

    proptest! {
        /// Whatever the order of definitions and removals: the key holds a primary
        /// definition when some source defines it primarily, else a fallback one, always
        /// some defining source's current one; duplicates are reported exactly for the
        /// primaries beyond the first, never for a fallback.
        #[test]
        fn the_best_definition_is_in_force(ops in proptest::collection::vec((0usize..4, proptest::option::of(1u32..4)), 1..40)) {
            let mut store = ConfigStore::new();
            let mut defined: [Option<u32>; 4] = [None; 4];
            for (i, port) in ops {
                let (name, precedence) = SOURCES[i];
                let before = port_of(&store, "x");
                let docs = port.map(|p| parse_yaml(name, &svc("x", p))).unwrap_or_default();
                let changes = store.apply_at(name, docs, precedence);
                defined[i] = port;
                let now = port_of(&store, "x");
                if before != now {
                    prop_assert!(!changes.is_empty(), "a change in force is reported");
                }
                let snap = store.snapshot();
                let key = ObjectKey::new(Kind::Service, "default", "x");
                let in_force = snap.get(&key).map(|e| e.origin.source.to_string());
                let best = SOURCES
                    .iter()
                    .zip(defined)
                    .filter(|(_, d)| d.is_some())
                    .map(|((_, p), _)| *p)
                    .min();
                match (&in_force, best) {
                    (None, None) => {}
                    (Some(src), Some(best)) => {
                        let at = SOURCES.iter().position(|(n, _)| n == src).expect("a known source");
                        prop_assert_eq!(SOURCES[at].1, best, "{} in force", src);
                        prop_assert_eq!(now, defined[at], "its current definition");
                    }
                    (got, want) => prop_assert!(false, "in force {:?}, best precedence {:?}", got, want),
                }
                let primaries = defined[..2].iter().filter(|d| d.is_some()).count();
                let issues = store.issues();
                prop_assert_eq!(issues.len(), primaries.saturating_sub(1), "{:?}", issues);
                prop_assert!(issues
                    .iter()
                    .all(|i| i.origin.as_ref().is_some_and(|o| o.source.starts_with('p'))));
            }
        }
    }
}
