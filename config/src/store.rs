//! The config store: every accepted object, which source defined it, and what each source
//! currently reports as wrong.
//!
//! Sources deliver their content a unit at a time (a file, a Kubernetes object, an etcd key)
//! with [`ConfigStore::apply`]. The store keeps the last good version of an object whose new
//! version is rejected, refuses a second definition of a key that another document already
//! defines (and promotes it when the first goes away), and reports exactly which keys
//! changed. Snapshots are O(1) and immutable.
//!
//! ## Precedence
//!
//! A source applies at a [`Precedence`] ([`ConfigStore::apply_at`]). Config proper (files,
//! the local cluster, etcd) is [`Precedence::Primary`]: two primary definitions of one key
//! are a mistake, reported as a duplicate. What is discovered elsewhere — a remote
//! cluster's Services, a federated peer's — is [`Precedence::Fallback`]: it defines a key
//! only while no primary definition does, and yields *quietly* (no issue) to a primary one,
//! whether that came first or later, and to an earlier fallback one. When the definition in
//! force goes away, the best shadowed one takes over: primary before fallback, then the
//! earliest. **Invariant:** whatever the order of applies and removals, the key holds a
//! primary definition if any source has one, else a fallback one if any has one; only
//! primary-vs-primary clashes are issues.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use imbl::OrdMap;
use serde::Serialize;

use crate::issue::{Issue, Origin};
use crate::meta::{Kind, ObjectKey};
use crate::object::Object;
use crate::parse::{Outcome, ParsedDoc};

/// An accepted object and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub object: Arc<Object>,
    pub origin: Origin,
    pub warnings: Arc<[Issue]>,
}

/// The keys whose object was added, changed or removed by one update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    pub keys: BTreeSet<ObjectKey>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn merge(&mut self, other: ChangeSet) {
        self.keys.extend(other.keys);
    }

    pub fn kinds(&self) -> BTreeSet<Kind> {
        self.keys.iter().map(|k| k.kind).collect()
    }
}

/// How a source's definitions rank against another source's definitions of the same key
/// (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Precedence {
    /// Config proper: a second primary definition of a key is a duplicate (an issue).
    #[default]
    Primary,
    /// Discovered elsewhere (a remote cluster, a federated peer): yields quietly to any
    /// primary definition and to an earlier fallback one, and takes over when they go.
    Fallback,
}

#[derive(Debug, Default)]
struct SourceState {
    precedence: Precedence,
    keys: KeySet,
    issues: Vec<Issue>,
    skipped: usize,
}

/// The keys one source defines, sorted. Most sources (every Kubernetes object) define one,
/// kept in place; a tree set would cost a node of hundreds of bytes, a vector an allocation.
#[derive(Debug)]
enum KeySet {
    One(ObjectKey),
    Sorted(Vec<ObjectKey>),
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet::Sorted(Vec::new())
    }
}

impl KeySet {
    fn insert(&mut self, key: ObjectKey) {
        match self {
            KeySet::Sorted(keys) if keys.is_empty() => *self = KeySet::One(key),
            KeySet::Sorted(keys) => insert_sorted(keys, key),
            KeySet::One(one) if *one == key => {}
            KeySet::One(one) => {
                let mut keys = vec![one.clone()];
                insert_sorted(&mut keys, key);
                *self = KeySet::Sorted(keys);
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, KeySet::Sorted(keys) if keys.is_empty())
    }

    fn remove(&mut self, key: &ObjectKey) {
        match self {
            KeySet::One(one) if one == key => *self = KeySet::default(),
            KeySet::One(_) => {}
            KeySet::Sorted(keys) => {
                if let Ok(at) = keys.binary_search(key) {
                    keys.remove(at);
                }
            }
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, ObjectKey> {
        match self {
            KeySet::One(key) => std::slice::from_ref(key).iter(),
            KeySet::Sorted(keys) => keys.iter(),
        }
    }

    fn shrink(&mut self) {
        if let KeySet::Sorted(keys) = self {
            keys.shrink_to_fit();
        }
    }
}

fn insert_sorted(keys: &mut Vec<ObjectKey>, key: ObjectKey) {
    match keys.last() {
        // Keys mostly arrive in order.
        Some(last) if *last < key => keys.push(key),
        None => keys.push(key),
        Some(_) => {
            if let Err(at) = keys.binary_search(&key) {
                keys.insert(at, key);
            }
        }
    }
}

/// An immutable view of the store at one revision.
#[derive(Debug, Clone, Default)]
pub struct ConfigSnapshot {
    pub revision: u64,
    objects: OrdMap<ObjectKey, Entry>,
}

impl ConfigSnapshot {
    pub fn get(&self, key: &ObjectKey) -> Option<&Entry> {
        self.objects.get(key)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every object of one kind, ordered by namespace and name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&ObjectKey, &Entry)> {
        let start = ObjectKey::new(kind, "", "");
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind)
    }

    /// Every object of one kind in one namespace.
    pub fn of_kind_in(
        &self,
        kind: Kind,
        namespace: &str,
    ) -> impl Iterator<Item = (&ObjectKey, &Entry)> {
        let start = ObjectKey::new(kind, namespace, "");
        let ns: Arc<str> = namespace.into();
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind && k.namespace == ns)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Entry)> {
        self.objects.iter()
    }

    /// Puts an object into this snapshot (for views derived from the store's).
    pub(crate) fn insert(&mut self, key: ObjectKey, entry: Entry) {
        self.objects.insert(key, entry);
    }

    /// Takes an object out of this snapshot; whether it was there.
    pub(crate) fn remove(&mut self, key: &ObjectKey) -> bool {
        self.objects.remove(key).is_some()
    }

    /// Number of objects per kind.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut counts = BTreeMap::new();
        for k in self.objects.keys() {
            *counts.entry(k.kind).or_insert(0) += 1;
        }
        counts
    }
}

#[derive(Debug, Default)]
pub struct ConfigStore {
    snapshot: ConfigSnapshot,
    sources: HashMap<Arc<str>, SourceState>,
    /// Definitions of a key that another document's definition is in force for, by key,
    /// in the order they were shadowed (the displaced fallback in front).
    shadowed: BTreeMap<ObjectKey, Vec<(Precedence, Entry)>>,
}

impl ConfigStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> ConfigSnapshot {
        self.snapshot.clone()
    }

    /// Replaces everything `source` defines with the outcome of its documents, as config
    /// proper ([`Precedence::Primary`]).
    pub fn apply(&mut self, source: &str, docs: Vec<ParsedDoc>) -> ChangeSet {
        self.apply_at(source, docs, Precedence::Primary)
    }

    /// Replaces everything `source` defines with the outcome of its documents, its
    /// definitions ranking at `precedence` against other sources' (module documentation).
    pub fn apply_at(
        &mut self,
        source: &str,
        docs: Vec<ParsedDoc>,
        precedence: Precedence,
    ) -> ChangeSet {
        // The documents' origins name the source: one copy of its id serves them all.
        let source: Arc<str> = docs
            .iter()
            .map(|d| &d.origin.source)
            .find(|s| ***s == *source)
            .cloned()
            .unwrap_or_else(|| source.into());
        let mut changes = ChangeSet::default();
        let previous = self.sources.remove(&source).unwrap_or_default();
        // This source's shadowed definitions are re-evaluated below.
        self.shadowed.retain(|_, list| {
            list.retain(|(_, e)| e.origin.source != source);
            !list.is_empty()
        });
        let mut state = SourceState {
            precedence,
            ..SourceState::default()
        };
        let mut shadowing = false;
        let mut keep_everything = false;
        let mut accepted: BTreeMap<ObjectKey, Entry> = BTreeMap::new();
        let mut protected: BTreeSet<ObjectKey> = BTreeSet::new();

        for doc in docs {
            match doc.outcome {
                Outcome::Accepted { object, warnings } => {
                    let key = stored_key(&object);
                    if let Some(first) = accepted.get(&key) {
                        state
                            .issues
                            .push(duplicate(&key, &first.origin).at(Some(&doc.origin), Some(&key)));
                        continue;
                    }
                    state.issues.extend(warnings.iter().cloned());
                    accepted.insert(
                        key,
                        Entry {
                            object,
                            origin: doc.origin,
                            warnings: shared_warnings(warnings),
                        },
                    );
                }
                Outcome::Rejected { key, issues } => {
                    state.issues.extend(issues);
                    match key {
                        Some(k) => {
                            protected.insert(k);
                        }
                        None => keep_everything = true,
                    }
                }
                Outcome::Skipped { .. } => state.skipped += 1,
            }
        }

        // Keys this source defined before and still stands behind (rejected now, or an
        // unreadable document that might have been any of them) keep their last good version.
        for key in previous.keys.iter() {
            let keep = !accepted.contains_key(key) && (keep_everything || protected.contains(key));
            if keep {
                state.keys.insert(key.clone());
            } else if !accepted.contains_key(key) {
                self.remove_key(key, &source, &mut changes);
            }
        }
        for (key, entry) in accepted {
            match self.snapshot.objects.get(&key) {
                Some(existing) if existing.origin.source != source => {
                    let theirs = self
                        .sources
                        .get(&existing.origin.source)
                        .map_or(Precedence::Primary, |s| s.precedence);
                    if precedence < theirs {
                        // A primary definition displaces a fallback one, which waits in
                        // front of the other shadowed ones to take over again.
                        let displaced = existing.clone();
                        if let Some(s) = self.sources.get_mut(&displaced.origin.source) {
                            s.keys.remove(&key);
                        }
                        self.shadowed
                            .entry(key.clone())
                            .or_default()
                            .insert(0, (theirs, displaced));
                        self.snapshot.objects.insert(key.clone(), entry);
                        changes.keys.insert(key.clone());
                        state.keys.insert(key);
                        continue;
                    }
                    if precedence == Precedence::Primary && theirs == Precedence::Primary {
                        state.issues.push(
                            duplicate(&key, &existing.origin).at(Some(&entry.origin), Some(&key)),
                        );
                    }
                    shadowing = true;
                    self.shadowed
                        .entry(key)
                        .or_default()
                        .push((precedence, entry));
                    continue;
                }
                Some(existing) if existing.object == entry.object => {
                    // Same object: keep the shared Arc, refresh where it sits.
                    let entry = Entry {
                        object: existing.object.clone(),
                        ..entry
                    };
                    self.snapshot.objects.insert(key.clone(), entry);
                }
                _ => {
                    self.snapshot.objects.insert(key.clone(), entry);
                    changes.keys.insert(key.clone());
                }
            }
            state.keys.insert(key);
        }
        if !state.keys.is_empty() || !state.issues.is_empty() || state.skipped > 0 || shadowing {
            state.keys.shrink();
            self.sources.insert(source, state);
        }
        if !changes.is_empty() {
            self.snapshot.revision += 1;
        }
        changes
    }

    /// Forgets everything a source defined (a deleted file).
    pub fn remove_source(&mut self, source: &str) -> ChangeSet {
        self.apply(source, Vec::new())
    }

    fn remove_key(&mut self, key: &ObjectKey, source: &Arc<str>, changes: &mut ChangeSet) {
        let owned = self
            .snapshot
            .objects
            .get(key)
            .is_some_and(|e| &e.origin.source == source);
        if !owned {
            return;
        }
        self.snapshot.objects.remove(key);
        changes.keys.insert(key.clone());
        // The best definition that was shadowed by this one takes over: primary before
        // fallback, then the earliest.
        if let Some(list) = self.shadowed.get_mut(key)
            && let Some(best) = list.iter().map(|(p, _)| *p).min()
            && let Some(at) = list.iter().position(|(p, _)| *p == best)
        {
            let (precedence, next) = list.remove(at);
            let state = self
                .sources
                .entry(next.origin.source.clone())
                .or_insert_with(|| SourceState {
                    precedence,
                    ..SourceState::default()
                });
            state.keys.insert(key.clone());
            state.issues.retain(|i| {
                !(i.object.as_ref() == Some(key) && i.message.starts_with("duplicate"))
            });
            self.snapshot.objects.insert(key.clone(), next);
        }
        if self.shadowed.get(key).is_some_and(Vec::is_empty) {
            self.shadowed.remove(key);
        }
    }

    /// Everything currently wrong, per source, sorted by origin.
    pub fn issues(&self) -> Vec<Issue> {
        let mut all: Vec<Issue> = self
            .sources
            .values()
            .flat_map(|s| s.issues.iter().cloned())
            .collect();
        all.sort_by(|a, b| a.origin.cmp(&b.origin).then(a.field.cmp(&b.field)));
        all
    }

    /// Number of documents rejected as a whole or kept at their last good version.
    pub fn rejected_count(&self) -> usize {
        self.sources
            .values()
            .flat_map(|s| s.issues.iter())
            .filter(|i| i.is_error())
            .map(|i| (i.origin.clone(), i.object.clone()))
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// An object's key as the store keeps it: its namespace's name interned, since a namespace
/// holds many objects.
fn stored_key(object: &Object) -> ObjectKey {
    let mut key = object.key();
    key.namespace = crate::labels::intern::string(&key.namespace);
    key
}

/// Most objects have no warnings: they share one empty list.
fn shared_warnings(warnings: Vec<Issue>) -> Arc<[Issue]> {
    static NONE: LazyLock<Arc<[Issue]>> = LazyLock::new(|| Arc::from([]));
    if warnings.is_empty() {
        NONE.clone()
    } else {
        warnings.into()
    }
}

fn duplicate(key: &ObjectKey, first: &Origin) -> Issue {
    Issue::error(
        "metadata.name",
        format!("duplicate definition of {key}: already defined at {first}"),
    )
}

#[cfg(test)]
mod tests;
