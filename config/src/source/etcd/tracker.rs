//! The pure half of following a prefix: what was delivered for each key, and the updates
//! that bring the store from that to what etcd holds. A watch event becomes an update only
//! when the key's value changed; a re-read of the whole prefix (after a compaction, a lost
//! connection, an etcd restart) is diffed against what was delivered, so proxies see only
//! real changes — never a wipe and refill. No IO.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::key::{Prefix, source_id};
use super::value::parse_entry;
use crate::source::SourceUpdate;

/// Fingerprint of a value: a key whose value has the same fingerprint is not sent again.
fn fingerprint(value: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What was delivered of one prefix: a fingerprint per key.
#[derive(Debug)]
pub struct Tracker {
    prefix: Prefix,
    range: Vec<u8>,
    delivered: HashMap<Vec<u8>, u64>,
}

impl Tracker {
    pub fn new(prefix: Prefix) -> Tracker {
        Tracker {
            range: prefix.range(),
            prefix,
            delivered: HashMap::new(),
        }
    }

    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// Keys delivered (objects, and keys only reported).
    pub fn len(&self) -> usize {
        self.delivered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty()
    }

    /// `key` was put with `value`: its update, unless the value is what was delivered (or
    /// the key is not below the prefix, which a watch of the prefix never sends).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Option<SourceUpdate> {
        if !key.starts_with(&self.range) {
            return None;
        }
        let print = fingerprint(value);
        if self.delivered.get(key) == Some(&print) {
            return None;
        }
        self.delivered.insert(key.to_vec(), print);
        Some(SourceUpdate::Apply {
            source: source_id(key),
            docs: vec![parse_entry(&self.prefix, key, value)],
        })
    }

    /// `key` was deleted: its removal, if something was delivered for it.
    pub fn delete(&mut self, key: &[u8]) -> Option<SourceUpdate> {
        self.delivered.remove(key).map(|_| SourceUpdate::Remove {
            source: source_id(key),
        })
    }

    /// A complete, consistent read of the prefix: the removals of the keys that are gone,
    /// then the updates of the keys whose value changed or that are new. Nothing else.
    pub fn resync<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Vec<SourceUpdate> {
        let mut present: HashSet<&[u8]> = HashSet::new();
        let mut applies = Vec::new();
        for (key, value) in entries {
            if !key.starts_with(&self.range) {
                continue;
            }
            present.insert(key);
            applies.extend(self.put(key, value));
        }
        let mut gone: Vec<Vec<u8>> = self
            .delivered
            .keys()
            .filter(|k| !present.contains(k.as_slice()))
            .cloned()
            .collect();
        gone.sort();
        let mut updates: Vec<SourceUpdate> = gone.iter().filter_map(|k| self.delete(k)).collect();
        updates.extend(applies);
        updates
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::object::Object;
    use crate::parse::Outcome;

    const PREFIX: &str = "/shoal/config";

    fn vs(host: &str) -> Vec<u8> {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec:\n  hosts: [{host}]\n  http:\n  - route: [{{destination: {{host: {host}}}}}]\n").into_bytes()
    }

    fn key(name: &str) -> Vec<u8> {
        format!("{PREFIX}/VirtualService/default/{name}").into_bytes()
    }

    fn names(updates: &[SourceUpdate]) -> Vec<String> {
        updates
            .iter()
            .map(|u| match u {
                SourceUpdate::Apply { source, .. } => format!("apply {source}"),
                SourceUpdate::Remove { source } => format!("remove {source}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_put_is_sent_only_when_the_value_changed() {
        let mut t = Tracker::new(Prefix::new(PREFIX));
        assert!(t.put(&key("a"), &vs("a")).is_some());
        assert!(t.put(&key("a"), &vs("a")).is_none(), "same value again");
        assert!(t.put(&key("a"), &vs("b")).is_some());
        assert!(
            t.put(b"/elsewhere/VirtualService/default/a", &vs("a"))
                .is_none()
        );
        assert!(t.delete(&key("a")).is_some());
        assert!(t.delete(&key("a")).is_none(), "deleted twice");
        assert!(t.is_empty());
    }

    #[test]
    fn a_reread_sends_only_what_changed_while_the_watch_was_down() {
        let mut t = Tracker::new(Prefix::new(PREFIX));
        let first = t.resync([
            (key("a").as_slice(), vs("a").as_slice()),
            (&key("b"), &vs("b")),
            (&key("c"), &vs("c")),
        ]);
        assert_eq!(first.len(), 3);
        // Meanwhile b changed, c was deleted, d added.
        let updates = t.resync([
            (key("a").as_slice(), vs("a").as_slice()),
            (&key("b"), &vs("b2")),
            (&key("d"), &vs("d")),
        ]);
        assert_eq!(
            names(&updates),
            [
                format!("remove etcd:{PREFIX}/VirtualService/default/c"),
                format!("apply etcd:{PREFIX}/VirtualService/default/b"),
                format!("apply etcd:{PREFIX}/VirtualService/default/d"),
            ]
        );
        assert!(
            t.resync([
                (key("a").as_slice(), vs("a").as_slice()),
                (&key("b"), &vs("b2")),
                (&key("d"), &vs("d")),
            ])
            .is_empty(),
            "an unchanged re-read sends nothing"
        );
    }

    /// What a key's update says, for comparing the store with etcd.
    fn summary(update_docs: &[crate::parse::ParsedDoc]) -> String {
        match update_docs.first().map(|d| &d.outcome) {
            Some(Outcome::Accepted { object, .. }) => match object.as_ref() {
                Object::VirtualService(v) => format!("vs {}", v.spec.hosts.join(",")),
                other => format!("{}", other.key()),
            },
            Some(Outcome::Rejected { key, issues }) => format!(
                "rejected {key:?} {}",
                issues
                    .first()
                    .map(|i| i.message.as_str())
                    .unwrap_or_default()
            ),
            Some(Outcome::Skipped { kind, .. }) => format!("skipped {kind}"),
            None => "nothing".into(),
        }
    }

    /// The keys a test draws from: objects, a key under no kind, a malformed one.
    fn test_key(n: u8) -> Vec<u8> {
        match n {
            0..=3 => key(&format!("vs-{n}")),
            4 => format!("{PREFIX}/ConfigMap/default/x").into_bytes(),
            5 => format!("{PREFIX}/VirtualService/only-a-name").into_bytes(),
            _ => format!("{PREFIX}/Service/default/\u{e9}").into_bytes(),
        }
    }

    /// The values: a few valid ones, an invalid object, a mismatched one, garbage.
    fn test_value(n: u8) -> Vec<u8> {
        match n {
            0..=2 => vs(&format!("host-{n}.example.com")),
            3 => b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {hosts: 7}\n"
                .to_vec(),
            4 => b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: other}\n".to_vec(),
            _ => vec![0xff, 0x00, b'{'],
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        /// The connection breaks: events are lost until the re-read.
        Break,
        /// A re-read of the whole prefix (after a break or a compaction).
        Reread,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u8..7, 0u8..6).prop_map(|(k, v)| Op::Put(k, v)),
            2 => (0u8..7).prop_map(Op::Delete),
            1 => Just(Op::Break),
            1 => Just(Op::Reread),
        ]
    }

    /// Applies updates as the store would, checking that a removal is of something there.
    fn receive(
        store: &mut BTreeMap<String, String>,
        updates: Vec<SourceUpdate>,
    ) -> Result<usize, TestCaseError> {
        let n = updates.len();
        for u in updates {
            match u {
                SourceUpdate::Apply { source, docs } => {
                    store.insert(source, summary(&docs));
                }
                SourceUpdate::Remove { source } => {
                    prop_assert!(
                        store.remove(&source).is_some(),
                        "removed what was not there: {}",
                        source
                    );
                }
                other => prop_assert!(false, "a tracker sends keys only: {:?}", other),
            }
        }
        Ok(n)
    }

    fn expected(etcd: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeMap<String, String> {
        let prefix = Prefix::new(PREFIX);
        etcd.iter()
            .map(|(k, v)| (source_id(k), summary(&[parse_entry(&prefix, k, v)])))
            .collect()
    }

    proptest! {
        /// Whatever etcd does and whichever events are lost, after every re-read the store
        /// holds exactly what etcd holds; a put is sent only when the value changed, a
        /// removal only for a key that was delivered and is gone, and a re-read of an
        /// unchanged prefix sends nothing.
        #[test]
        fn after_every_reread_the_store_equals_etcd(ops in proptest::collection::vec(op(), 1..80)) {
            let mut t = Tracker::new(Prefix::new(PREFIX));
            let mut etcd: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut store: BTreeMap<String, String> = BTreeMap::new();
            let mut watching = true;
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let (key, value) = (test_key(k), test_value(v));
                        let unchanged = etcd.insert(key.clone(), value.clone()) == Some(value.clone());
                        if watching {
                            let sent = receive(&mut store, t.put(&key, &value).into_iter().collect())?;
                            prop_assert_eq!(sent, usize::from(!unchanged), "sent only on change");
                        }
                    }
                    Op::Delete(k) => {
                        let key = test_key(k);
                        let existed = etcd.remove(&key).is_some();
                        if watching {
                            let sent = receive(&mut store, t.delete(&key).into_iter().collect())?;
                            prop_assert_eq!(sent, usize::from(existed));
                        }
                    }
                    Op::Break => watching = false,
                    Op::Reread => {
                        let entries: Vec<(&[u8], &[u8])> = etcd.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
                        receive(&mut store, t.resync(entries.iter().copied()))?;
                        watching = true;
                        prop_assert_eq!(&store, &expected(&etcd));
                        prop_assert!(t.resync(entries.iter().copied()).is_empty(), "an unchanged re-read sent updates");
                    }
                }
                if watching {
                    prop_assert_eq!(&store, &expected(&etcd));
                    prop_assert_eq!(t.len(), etcd.len());
                }
            }
        }

        /// No key or value, however hostile, makes the parser panic, and the update always
        /// names the key.
        #[test]
        fn any_bytes_give_an_update_naming_the_key(
            tail in proptest::collection::vec(any::<u8>(), 0..40),
            kind in prop::sample::select(vec!["VirtualService/", "Namespace/", "Service/default/", ""]),
            value in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut key = format!("{PREFIX}/{kind}").into_bytes();
            key.extend(tail);
            let mut t = Tracker::new(Prefix::new(PREFIX));
            match t.put(&key, &value) {
                Some(SourceUpdate::Apply { source, docs }) => {
                    prop_assert_eq!(&source, &source_id(&key));
                    prop_assert_eq!(docs.len(), 1);
                    prop_assert_eq!(docs[0].origin.source.as_ref(), source.as_str());
                }
                other => prop_assert!(false, "an apply expected: {:?}", other),
            }
        }

        /// Keys built from a kind, a namespace and a name parse back to that object.
        #[test]
        fn keys_round_trip(
            kind in prop::sample::select(crate::meta::Kind::ALL.to_vec()),
            namespace in "[a-z0-9][a-z0-9.-]{0,20}",
            name in "[^/]{1,30}",
        ) {
            let prefix = Prefix::new(PREFIX);
            let key = prefix.key(kind, &namespace, &name);
            let want = crate::meta::ObjectKey::new(kind, if kind.namespaced() { &namespace } else { "" }, &name);
            prop_assert_eq!(prefix.parse(key.as_bytes()), Ok(want));
        }
    }
}
