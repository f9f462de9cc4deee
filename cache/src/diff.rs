//! What a client holds, and what to send it: the pure core of both protocol variants.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use shoal_api::{Resource, ResourceType, Version};
use xxhash_rust::xxh3::Xxh3;

use crate::snapshot::Snapshot;
use crate::subscription::Subscription;
use crate::view::View;

/// What a client holds of one type.
#[derive(Debug, Clone)]
pub enum Known {
    /// Exactly the resources of `snapshot` its subscription `sub` covered.
    At {
        snapshot: Arc<Snapshot>,
        sub: Subscription,
    },
    /// Exactly these names at these versions (`None`: present, version unknown).
    Explicit(Arc<HashMap<Arc<str>, Option<Version>>>),
}

impl Known {
    pub fn nothing() -> Known {
        Known::Explicit(Arc::default())
    }

    /// The name → version map this state stands for.
    pub fn materialize(&self, ty: ResourceType) -> HashMap<Arc<str>, Option<Version>> {
        match self {
            Known::At { snapshot, sub } => relevant(snapshot, ty, sub)
                .map(|r| (r.name.clone(), Some(r.version)))
                .collect(),
            Known::Explicit(m) => (**m).clone(),
        }
    }

    pub fn snapshot_version(&self) -> Option<u64> {
        match self {
            Known::At { snapshot, .. } => Some(snapshot.version),
            Known::Explicit(_) => None,
        }
    }
}

/// The resources of `ty` in `snap` that `sub` covers, in name order.
pub fn relevant<'a>(
    snap: &'a Snapshot,
    ty: ResourceType,
    sub: &'a Subscription,
) -> Box<dyn Iterator<Item = &'a Resource> + 'a> {
    let t = snap.get(ty);
    if sub.wildcard {
        let extra = sub
            .names
            .names()
            .iter()
            .filter_map(move |n| t.on_demand.get(n));
        Box::new(t.wildcard.values().chain(extra))
    } else {
        Box::new(sub.names.names().iter().filter_map(move |n| t.get(n)))
    }
}

fn relevant_get<'a>(
    snap: &'a Snapshot,
    ty: ResourceType,
    sub: &Subscription,
    name: &str,
) -> Option<&'a Resource> {
    let t = snap.get(ty);
    if sub.wildcard {
        t.wildcard.get(name).or_else(|| {
            sub.names
                .contains(name)
                .then(|| t.on_demand.get(name))
                .flatten()
        })
    } else if sub.names.contains(name) {
        t.get(name)
    } else {
        None
    }
}

/// A delta response's content.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaDiff {
    pub upserts: Vec<Resource>,
    pub removed: Vec<Arc<str>>,
}

impl DeltaDiff {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty()
    }
}

/// What to send a delta client holding `known` so that it holds what `sub` covers in
/// `target`. `force` names are sent even if unchanged (endpoints of re-sent clusters).
pub fn delta(
    view: &View,
    ty: ResourceType,
    known: &Known,
    target: &Snapshot,
    sub: &Subscription,
    force: &BTreeSet<Arc<str>>,
) -> DeltaDiff {
    let mut upserts: BTreeMap<Arc<str>, Resource> = BTreeMap::new();
    let mut removed: BTreeSet<Arc<str>> = BTreeSet::new();
    // Fast path: the client is at an older version of this view with the same subscription;
    // only the names changed in between can differ.
    let fast = match known {
        Known::At {
            snapshot: a,
            sub: s,
        } if s == sub => view
            .changed_between(ty, a.version, target.version)
            .map(|changed| (a.clone(), changed)),
        _ => None,
    };
    if let Some((a, changed)) = fast {
        for name in &changed {
            let new = relevant_get(target, ty, sub, name);
            let old = relevant_get(&a, ty, sub, name);
            match (old, new) {
                (_, Some(n)) if old.map(|o| o.version) != Some(n.version) => {
                    upserts.insert(name.clone(), n.clone());
                }
                (Some(_), None) => {
                    removed.insert(name.clone());
                }
                _ => {}
            }
        }
    } else {
        let have = known.materialize(ty);
        let previously_named: Option<&Subscription> = match known {
            Known::At { sub: s, .. } => Some(s),
            Known::Explicit(_) => None,
        };
        for r in relevant(target, ty, sub) {
            if have.get(&r.name) != Some(&Some(r.version)) {
                upserts.insert(r.name.clone(), r.clone());
            }
        }
        for name in have.keys() {
            let subscribed = sub.wildcard || sub.names.contains(name);
            if subscribed && relevant_get(target, ty, sub, name).is_none() {
                removed.insert(name.clone());
            }
        }
        // Newly named resources that do not exist: say so (via removed_resources), once.
        for name in sub.names.names() {
            let told =
                previously_named.is_some_and(|s| s.names.contains(name)) || have.contains_key(name);
            if !told && name.as_ref() != "*" && relevant_get(target, ty, sub, name).is_none() {
                removed.insert(name.clone());
            }
        }
    }
    for name in force {
        if let Some(r) = relevant_get(target, ty, sub, name) {
            upserts.entry(name.clone()).or_insert_with(|| r.clone());
        }
    }
    DeltaDiff {
        upserts: upserts.into_values().collect(),
        removed: removed.into_iter().collect(),
    }
}

/// A SotW response's resources and version: everything the subscription covers, with a
/// version derived from the resources' versions (equal on every replica).
pub fn sotw(target: &Snapshot, ty: ResourceType, sub: &Subscription) -> (Vec<Resource>, String) {
    let resources: Vec<Resource> = relevant(target, ty, sub).cloned().collect();
    let mut h = Xxh3::new();
    for r in &resources {
        h.update(r.name.as_bytes());
        h.update(&r.version.0.to_le_bytes());
    }
    (resources, format!("{:016x}", h.digest()))
}

#[cfg(test)]
mod tests;
