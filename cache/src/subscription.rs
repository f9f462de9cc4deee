//! What a stream asked for, per type: a wildcard flag and a set of names. Equal name sets are
//! interned, so thousands of proxies asking for the same names hold one set between them,
//! and responses computed for one can be reused by all.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use xxhash_rust::xxh3::Xxh3;

/// An interned, immutable set of resource names.
#[derive(Debug)]
pub struct NameSet {
    names: BTreeSet<Arc<str>>,
    hash: u64,
}

impl NameSet {
    pub fn names(&self) -> &BTreeSet<Arc<str>> {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn hash_names(names: &BTreeSet<Arc<str>>) -> u64 {
    let mut h = Xxh3::new();
    for n in names {
        h.update(n.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

/// Hands out one shared `NameSet` per distinct set of names.
#[derive(Debug, Default)]
pub struct Interner {
    sets: Mutex<HashMap<u64, Vec<Weak<NameSet>>>>,
}

impl Interner {
    pub fn intern(&self, names: BTreeSet<Arc<str>>) -> Arc<NameSet> {
        let hash = hash_names(&names);
        let mut sets = self.sets.lock();
        let bucket = sets.entry(hash).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        if let Some(existing) = bucket
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.names == names)
        {
            return existing;
        }
        let set = Arc::new(NameSet { names, hash });
        bucket.push(Arc::downgrade(&set));
        set
    }

    /// Drops buckets whose sets are all gone.
    pub fn prune(&self) {
        self.sets.lock().retain(|_, b| {
            b.retain(|w| w.strong_count() > 0);
            !b.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.sets.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stream's subscription to one type.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub wildcard: bool,
    pub names: Arc<NameSet>,
}

impl Subscription {
    pub fn new(wildcard: bool, names: Arc<NameSet>) -> Self {
        Subscription { wildcard, names }
    }

    /// Nothing subscribed.
    pub fn is_empty(&self) -> bool {
        !self.wildcard && self.names.is_empty()
    }
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        self.wildcard == other.wildcard
            && (Arc::ptr_eq(&self.names, &other.names)
                || (self.names.hash == other.names.hash && self.names.names == other.names.names))
    }
}

impl Eq for Subscription {}

impl Hash for Subscription {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.wildcard.hash(state);
        self.names.hash.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn equal_sets_share_one_allocation() {
        let i = Interner::default();
        let a = i.intern(set(&["x", "y"]));
        let b = i.intern(set(&["y", "x"]));
        assert!(Arc::ptr_eq(&a, &b));
        let c = i.intern(set(&["x"]));
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b, c));
        i.prune();
        assert!(i.is_empty());
    }
}
