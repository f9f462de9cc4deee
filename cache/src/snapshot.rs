//! Immutable, versioned snapshots of a view's resources.
//!
//! Resource maps are persistent (`imbl`), so the next snapshot after a small change shares
//! almost all of its structure with the previous one, and holding an older snapshot (a
//! stream that has not caught up yet) costs little.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use imbl::OrdMap;
use shoal_api::{Resource, ResourceType};

pub type TypeMap = OrdMap<Arc<str>, Resource>;

pub const TYPES: usize = ResourceType::ALL.len();

/// The resources of one type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeResources {
    /// Sent to wildcard subscribers (and to named subscribers that name them).
    pub wildcard: TypeMap,
    /// Sent only when named.
    pub on_demand: TypeMap,
}

impl TypeResources {
    pub fn get(&self, name: &str) -> Option<&Resource> {
        self.wildcard.get(name).or_else(|| self.on_demand.get(name))
    }

    pub fn len(&self) -> usize {
        self.wildcard.len() + self.on_demand.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a snapshot was made, for latency metrics and logs.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// When the change that led to this snapshot was first seen.
    pub since: Instant,
    /// `config`, `endpoints`, `jwks`, `mesh-config`, `new-view`.
    pub reason: &'static str,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            since: Instant::now(),
            reason: "initial",
        }
    }
}

/// One version of a view.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases by one per published snapshot of the view.
    pub version: u64,
    pub types: [TypeResources; TYPES],
    /// Names (per type) whose resource was added, changed or removed since `version - 1`.
    pub changed: [Arc<BTreeSet<Arc<str>>>; TYPES],
    pub trigger: Trigger,
}

/// The full resource set of a view, as translation produces it.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub wildcard: Vec<(ResourceType, Vec<Resource>)>,
    pub on_demand: Vec<(ResourceType, Vec<Resource>)>,
}

/// A change to some resources of a view.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    /// Added or replaced resources (wildcard set).
    pub upserts: Vec<(ResourceType, Resource)>,
    pub removals: Vec<(ResourceType, Arc<str>)>,
}

fn to_map(list: &[Resource]) -> TypeMap {
    list.iter().map(|r| (r.name.clone(), r.clone())).collect()
}

fn diff_names(old: &TypeMap, new: &TypeMap, out: &mut BTreeSet<Arc<str>>) {
    for (name, r) in new.iter() {
        if old.get(name).map(|o| o.version) != Some(r.version) {
            out.insert(name.clone());
        }
    }
    for name in old.keys() {
        if !new.contains_key(name) {
            out.insert(name.clone());
        }
    }
}

impl Snapshot {
    /// The first snapshot of a view.
    pub fn initial(resources: &Resources, trigger: Trigger) -> Snapshot {
        Snapshot::default().replaced(resources, trigger)
    }

    pub fn get(&self, ty: ResourceType) -> &TypeResources {
        &self.types[ty.index()]
    }

    /// The next snapshot, holding exactly `resources`. Unchanged resources keep their
    /// entries (and versions); `changed` lists what differs.
    pub fn replaced(&self, resources: &Resources, trigger: Trigger) -> Snapshot {
        let mut types: [TypeResources; TYPES] = Default::default();
        for (ty, list) in &resources.wildcard {
            types[ty.index()].wildcard = to_map(list);
        }
        for (ty, list) in &resources.on_demand {
            types[ty.index()].on_demand = to_map(list);
        }
        let mut changed: [Arc<BTreeSet<Arc<str>>>; TYPES] = Default::default();
        for i in 0..TYPES {
            let mut names = BTreeSet::new();
            diff_names(&self.types[i].wildcard, &types[i].wildcard, &mut names);
            diff_names(&self.types[i].on_demand, &types[i].on_demand, &mut names);
            // Keep the previous map when nothing changed, so equal snapshots share memory.
            if names.is_empty() {
                types[i] = self.types[i].clone();
            }
            changed[i] = Arc::new(names);
        }
        Snapshot {
            version: self.version + 1,
            types,
            changed,
            trigger,
        }
    }

    /// The next snapshot with a patch applied to the wildcard sets.
    pub fn patched(&self, patch: &Patch, trigger: Trigger) -> Snapshot {
        let mut types = self.types.clone();
        let mut changed: [BTreeSet<Arc<str>>; TYPES] = Default::default();
        for (ty, r) in &patch.upserts {
            let map = &mut types[ty.index()].wildcard;
            if map.get(&r.name).map(|o| o.version) != Some(r.version) {
                map.insert(r.name.clone(), r.clone());
                changed[ty.index()].insert(r.name.clone());
            }
        }
        for (ty, name) in &patch.removals {
            if types[ty.index()].wildcard.remove(name).is_some() {
                changed[ty.index()].insert(name.clone());
            }
        }
        Snapshot {
            version: self.version + 1,
            types,
            changed: changed.map(Arc::new),
            trigger,
        }
    }

    /// Whether this snapshot changed anything relative to its predecessor.
    pub fn is_noop(&self) -> bool {
        self.changed.iter().all(|c| c.is_empty())
    }

    pub fn resource_count(&self) -> usize {
        self.types.iter().map(TypeResources::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn r(name: &str, body: &str) -> Resource {
        Resource::from_body(name, Bytes::from(body.to_string()))
    }

    #[test]
    fn replace_and_patch_track_changes() {
        let full = Resources {
            wildcard: vec![(ResourceType::Cluster, vec![r("a", "1"), r("b", "1")])],
            on_demand: vec![],
        };
        let s1 = Snapshot::initial(&full, Trigger::default());
        assert_eq!(s1.version, 1);
        assert_eq!(s1.changed[0].len(), 2);
        let full2 = Resources {
            wildcard: vec![(ResourceType::Cluster, vec![r("a", "1"), r("c", "1")])],
            on_demand: vec![],
        };
        let s2 = s1.replaced(&full2, Trigger::default());
        let names: Vec<&str> = s2.changed[0].iter().map(|n| n.as_ref()).collect();
        assert_eq!(names, ["b", "c"]);
        let s3 = s2.patched(
            &Patch {
                upserts: vec![
                    (ResourceType::Cluster, r("a", "2")),
                    (ResourceType::Cluster, r("c", "1")),
                ],
                removals: vec![],
            },
            Trigger::default(),
        );
        assert_eq!(
            s3.changed[0].iter().map(|n| n.as_ref()).collect::<Vec<_>>(),
            ["a"]
        );
        assert!(
            s3.replaced(
                &Resources {
                    wildcard: vec![(ResourceType::Cluster, vec![r("a", "2"), r("c", "1")])],
                    on_demand: vec![]
                },
                Trigger::default()
            )
            .is_noop()
        );
    }
}
