use super::*;
use crate::snapshot::{Resources, Trigger};
use crate::subscription::Interner;
use bytes::Bytes;

fn r(name: &str, body: &str) -> Resource {
    Resource::from_body(name, Bytes::from(body.to_string()))
}

fn clusters(list: &[(&str, &str)]) -> Resources {
    Resources {
        wildcard: vec![(
            ResourceType::Cluster,
            list.iter().map(|(n, b)| r(n, b)).collect(),
        )],
        on_demand: vec![],
    }
}

fn names(d: &DeltaDiff) -> (Vec<String>, Vec<String>) {
    (
        d.upserts.iter().map(|r| r.name.to_string()).collect(),
        d.removed.iter().map(|n| n.to_string()).collect(),
    )
}

#[test]
fn fast_and_slow_paths_agree() {
    let i = Interner::default();
    let wild = Subscription::new(true, i.intern(Default::default()));
    let view = View::new(
        "v",
        Snapshot::initial(&clusters(&[("a", "1"), ("b", "1")]), Trigger::default()),
    );
    let s1 = view.current();
    view.publish(s1.replaced(&clusters(&[("a", "2"), ("c", "1")]), Trigger::default()));
    let s2 = view.current();
    let known = Known::At {
        snapshot: s1.clone(),
        sub: wild.clone(),
    };
    let fast = delta(
        &view,
        ResourceType::Cluster,
        &known,
        &s2,
        &wild,
        &BTreeSet::new(),
    );
    let slow = delta(
        &view,
        ResourceType::Cluster,
        &Known::Explicit(Arc::new(known.materialize(ResourceType::Cluster))),
        &s2,
        &wild,
        &BTreeSet::new(),
    );
    assert_eq!(
        names(&fast),
        (vec!["a".into(), "c".into()], vec!["b".into()])
    );
    assert_eq!(fast, slow);
}

#[test]
fn named_subscriptions_learn_what_does_not_exist_once() {
    let i = Interner::default();
    let view = View::new(
        "v",
        Snapshot::initial(&clusters(&[("a", "1")]), Trigger::default()),
    );
    let s = view.current();
    let sub = Subscription::new(
        false,
        i.intern(["a", "ghost"].iter().map(|n| Arc::from(*n)).collect()),
    );
    let d = delta(
        &view,
        ResourceType::Cluster,
        &Known::nothing(),
        &s,
        &sub,
        &BTreeSet::new(),
    );
    assert_eq!(names(&d), (vec!["a".into()], vec!["ghost".into()]));
    let again = delta(
        &view,
        ResourceType::Cluster,
        &Known::At {
            snapshot: s.clone(),
            sub: sub.clone(),
        },
        &s,
        &sub,
        &BTreeSet::new(),
    );
    assert!(again.is_empty());
}

#[test]
fn resuming_with_versions_sends_only_differences() {
    let i = Interner::default();
    let wild = Subscription::new(true, i.intern(Default::default()));
    let view = View::new(
        "v",
        Snapshot::initial(&clusters(&[("a", "1"), ("b", "1")]), Trigger::default()),
    );
    let s = view.current();
    let a = s.get(ResourceType::Cluster).get("a").unwrap().version;
    let held: HashMap<Arc<str>, Option<Version>> = [
        (Arc::from("a"), Some(a)),
        (Arc::from("b"), None),
        (Arc::from("gone"), Some(Version(7))),
    ]
    .into_iter()
    .collect();
    let d = delta(
        &view,
        ResourceType::Cluster,
        &Known::Explicit(Arc::new(held)),
        &s,
        &wild,
        &BTreeSet::new(),
    );
    assert_eq!(names(&d), (vec!["b".into()], vec!["gone".into()]));
}

#[test]
fn sotw_versions_depend_only_on_content() {
    let i = Interner::default();
    let wild = Subscription::new(true, i.intern(Default::default()));
    let a = Snapshot::initial(&clusters(&[("a", "1")]), Trigger::default());
    let b = Snapshot::initial(&clusters(&[("a", "1")]), Trigger::default())
        .replaced(&clusters(&[("a", "1")]), Trigger::default());
    assert_eq!(
        sotw(&a, ResourceType::Cluster, &wild).1,
        sotw(&b, ResourceType::Cluster, &wild).1
    );
    let c = Snapshot::initial(&clusters(&[("a", "2")]), Trigger::default());
    assert_ne!(
        sotw(&a, ResourceType::Cluster, &wild).1,
        sotw(&c, ResourceType::Cluster, &wild).1
    );
}
