//! [`Labels`]: labels and annotations (and every other string-to-string map of a selector),
//! kept compact. A Kubernetes Pod carries half a dozen labels and a few annotations, which
//! as a `BTreeMap<String, String>` cost a tree node of ~540 bytes each plus a heap string
//! per key and value, for each of 10,000s of pods that mostly carry the same ones. Here a
//! map is one pointer to a sorted slice of pairs, and both the slice and its strings are
//! interned ([`intern`]): pods of one Deployment share one set.
//!
//! It behaves as the `BTreeMap<String, String>` it replaces: iteration is sorted by key,
//! equality, order and hashing are the map's, and it is (de)serialized as a map. A map is
//! immutable once built; `insert`, `remove`, `retain` and `extend` build another.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) mod intern;

use intern::Pair;

/// A sorted map of label keys to values (deterministic iteration everywhere).
#[derive(Clone, Default)]
pub struct Labels(Option<Arc<[Pair]>>);

impl Labels {
    pub fn new() -> Self {
        Labels(None)
    }

    /// From pairs sorted by key, each key once.
    fn from_sorted<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Self {
        if pairs.is_empty() {
            Labels(None)
        } else {
            Labels(Some(intern::set(pairs)))
        }
    }

    fn pairs(&self) -> &[Pair] {
        self.0.as_deref().unwrap_or_default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.pairs().binary_search_by(|(k, _)| (**k).cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| &*self.pairs()[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Pairs in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.pairs().iter())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(_, v)| v)
    }

    /// Sets `key` to `value`; the value it had.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Option<Arc<str>> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let mut pairs: Vec<(&str, &str)> = self.iter().collect();
        let old = match self.find(key) {
            Ok(i) => {
                pairs[i].1 = value;
                Some(self.pairs()[i].1.clone())
            }
            Err(i) => {
                pairs.insert(i, (key, value));
                None
            }
        };
        *self = Labels::from_sorted(&pairs);
        old
    }

    /// Removes `key`; the value it had.
    pub fn remove(&mut self, key: &str) -> Option<Arc<str>> {
        let i = self.find(key).ok()?;
        let old = self.pairs()[i].1.clone();
        self.retain(|k, _| k != key);
        Some(old)
    }

    /// Keeps the pairs `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let pairs: Vec<(&str, &str)> = self.iter().filter(|(k, v)| keep(k, v)).collect();
        if pairs.len() != self.len() {
            *self = Labels::from_sorted(&pairs);
        }
    }
}

/// The pairs of a map, in key order.
#[derive(Clone, Debug)]
pub struct Iter<'a>(std::slice::Iter<'a, Pair>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&**k, &**v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (&**k, &**v))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The pairs, in key order (shared strings: no copy is made).
impl IntoIterator for Labels {
    type Item = (Arc<str>, Arc<str>);
    type IntoIter = std::vec::IntoIter<Pair>;

    fn into_iter(self) -> Self::IntoIter {
        self.pairs().to_vec().into_iter()
    }
}

/// As `BTreeMap`'s: a later pair for a key replaces an earlier one.
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: of a key's pairs, the last given is the last of its run.
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let mut sorted: Vec<(K, V)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match sorted.last_mut() {
                Some(last) if last.0.as_ref() == pair.0.as_ref() => *last = pair,
                _ => sorted.push(pair),
            }
        }
        Labels::from_sorted(&sorted)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for Labels {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut added = iter.into_iter().peekable();
        if added.peek().is_none() {
            return;
        }
        let current = self.clone();
        *self = current
            .iter()
            .map(|(k, v)| (Part::Kept(k), Part::Kept(v)))
            .chain(added.map(|(k, v)| (Part::Added(k), Part::Added(v))))
            .collect();
    }
}

/// A key or value of the map being extended, or of the pairs added to it: `extend` merges
/// both in one pass.
enum Part<'a, T> {
    Kept(&'a str),
    Added(T),
}

impl<T: AsRef<str>> AsRef<str> for Part<'_, T> {
    fn as_ref(&self) -> &str {
        match self {
            Part::Kept(s) => s,
            Part::Added(t) => t.as_ref(),
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // Interned: equal sets are mostly the same allocation.
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.pairs() == other.pairs(),
        }
    }
}

impl Eq for Labels {}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// As `BTreeMap`'s: pairs compared in key order.
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

/// As `BTreeMap<String, String>`'s, so hashes of what holds labels do not change.
impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for pair in self {
            pair.hash(state);
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// As `BTreeMap<String, String>`'s: a map of strings, a later key replacing an earlier one.
impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;

        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs: Vec<(String, String)> = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(pairs.into_iter().collect())
            }
        }

        deserializer.deserialize_map(LabelsVisitor)
    }
}

#[cfg(test)]
mod tests;
