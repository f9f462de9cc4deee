use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

use proptest::prelude::*;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().copied().collect()
}

#[test]
fn a_map_is_sorted_and_a_later_key_replaces_an_earlier_one() {
    let l = labels(&[("b", "1"), ("a", "2"), ("b", "3")]);
    assert_eq!(l.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
    assert_eq!(l.get("b"), Some("3"));
    assert_eq!(l.get("c"), None);
    assert!(l.contains_key("a") && !l.contains_key("c"));
    assert_eq!(format!("{l:?}"), r#"{"a": "2", "b": "3"}"#);
}

#[test]
fn an_empty_map_holds_no_allocation() {
    assert!(Labels::default().0.is_none());
    assert!(labels(&[]).0.is_none());
    let mut l = labels(&[("a", "1")]);
    l.retain(|_, _| false);
    assert!(l.is_empty() && l.0.is_none());
    assert_eq!(l, Labels::new());
}

#[test]
fn equal_maps_share_one_set() {
    let a = labels(&[("app", "labels-test"), ("version", "v1")]);
    let b: Labels = [("version", "v1"), ("app", "labels-test")].into();
    assert!(Arc::ptr_eq(a.0.as_ref().unwrap(), b.0.as_ref().unwrap()));
}

#[test]
fn a_map_deserializes_as_btreemaps_do() {
    let l: Labels = serde_json::from_str(r#"{"b": "1", "a": "2", "b": "3"}"#).unwrap();
    assert_eq!(l, labels(&[("a", "2"), ("b", "3")]));
    let yaml: Labels = serde_saphyr::from_str("b: x\na: y\n").unwrap();
    assert_eq!(
        serde_json::to_string(&yaml).unwrap(),
        r#"{"a":"y","b":"x"}"#
    );
    for bad in [r#"{"a": 1}"#, r#"["a"]"#, "null"] {
        let ours = serde_json::from_str::<Labels>(bad).unwrap_err().to_string();
        let theirs = serde_json::from_str::<BTreeMap<String, String>>(bad)
            .unwrap_err()
            .to_string();
        assert_eq!(ours, theirs, "{bad}");
    }
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[a-d]{0,2}", "[x-z]{0,2}"), 0..8)
}

proptest! {
    #[test]
    fn a_map_behaves_as_a_btreemap(
        built in pairs(),
        inserted in pairs(),
        removed in proptest::collection::vec("[a-d]{0,2}", 0..3),
        extended in pairs(),
    ) {
        let mut ours: Labels = built.iter().cloned().collect();
        let mut theirs: BTreeMap<String, String> = built.into_iter().collect();
        for (k, v) in inserted {
            let old = ours.insert(&k, &v).map(|s| s.to_string());
            prop_assert_eq!(old, theirs.insert(k, v));
        }
        for k in removed {
            prop_assert_eq!(ours.remove(&k).map(|s| s.to_string()), theirs.remove(&k));
        }
        ours.extend(extended.iter().cloned());
        theirs.extend(extended);
        let want: Vec<(&str, &str)> = theirs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert_eq!(ours.iter().collect::<Vec<_>>(), want);
        prop_assert_eq!(ours.len(), theirs.len());
        prop_assert_eq!(ours.is_empty(), theirs.is_empty());
        for k in ["", "a", "b", "ab", "dd", "e"] {
            prop_assert_eq!(ours.get(k), theirs.get(k).map(String::as_str));
            prop_assert_eq!(ours.contains_key(k), theirs.contains_key(k));
        }
        let s = RandomState::new();
        prop_assert_eq!(s.hash_one(&ours), s.hash_one(&theirs));
        prop_assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
        // Serialized as the map, and read back equal.
        let json = serde_json::to_string(&ours).unwrap();
        prop_assert_eq!(&json, &serde_json::to_string(&theirs).unwrap());
        prop_assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), ours.clone());
        let yaml = serde_saphyr::to_string(&ours).unwrap();
        prop_assert_eq!(serde_saphyr::from_str::<Labels>(&yaml).unwrap(), ours);
    }

    #[test]
    fn maps_order_and_compare_as_btreemaps(a in pairs(), b in pairs()) {
        let (la, lb): (Labels, Labels) = (a.iter().cloned().collect(), b.iter().cloned().collect());
        let ta: BTreeMap<String, String> = a.into_iter().collect();
        let tb: BTreeMap<String, String> = b.into_iter().collect();
        prop_assert_eq!(la.cmp(&lb), ta.cmp(&tb));
        prop_assert_eq!(la == lb, ta == tb);
    }
}
