//! The pure half of watching one kind: turns watch events into store updates, sending an
//! object only when what shoal keeps of it changed, and diffing a re-list (after a 410
//! Gone, a broken watch, an API server restart) against what was known, so that proxies see
//! only real changes — never a wipe and refill.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::cluster::RemoteCluster;
use super::prune::{fingerprint, prune};
use crate::issue::Origin;
use crate::meta::Kind;
use crate::parse::parse_value;
use crate::source::SourceUpdate;

/// Identifies a kind as the API server serves it: shoal's kind, the API group and the
/// Kubernetes kind name (Istio's `Gateway` and Gateway API's `Gateway` differ by group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindId {
    pub kind: Kind,
    pub group: &'static str,
    pub name: &'static str,
}

impl KindId {
    /// `Kind.group` (`VirtualService.networking.istio.io`), or `Kind` for the core group.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.name.to_string()
        } else {
            format!("{}.{}", self.name, self.group)
        }
    }

    /// The source id of one object: `kubernetes:KIND[.GROUP]/[NAMESPACE/]NAME`. The store
    /// keeps what each source id defines, and every report names it.
    pub fn source_id(&self, namespace: &str, name: &str) -> String {
        if namespace.is_empty() {
            format!("kubernetes:{}/{name}", self.qualified())
        } else {
            format!("kubernetes:{}/{namespace}/{name}", self.qualified())
        }
    }
}

/// What is known of one kind's objects: a fingerprint per source id.
#[derive(Debug)]
pub struct Tracker {
    id: KindId,
    /// The `apiVersion` the objects are read at (list items may omit it).
    api_version: String,
    /// By source id, the one copy of it that the documents' origins (and so the store) share.
    known: HashMap<Arc<str>, u64>,
    /// During a (re-)list: the source ids listed so far.
    listing: Option<HashSet<String>>,
    /// The remote cluster the objects are read from (`None`: the local one).
    cluster: Option<RemoteCluster>,
}

impl Tracker {
    pub fn new(id: KindId, api_version: impl Into<String>) -> Self {
        Tracker {
            id,
            api_version: api_version.into(),
            known: HashMap::new(),
            listing: None,
            cluster: None,
        }
    }

    /// A tracker of objects read from a remote cluster: named, rewritten and ranked as
    /// [`RemoteCluster`] says.
    pub fn remote(id: KindId, api_version: impl Into<String>, cluster: RemoteCluster) -> Self {
        Tracker {
            cluster: Some(cluster),
            ..Tracker::new(id, api_version)
        }
    }

    /// Reads from `cluster` from now on (a remote cluster restarted: its network may have
    /// changed; a re-list follows and sends the objects that read differently now).
    pub fn set_cluster(&mut self, cluster: Option<RemoteCluster>) {
        if self.cluster.is_some() && cluster.is_some() {
            self.cluster = cluster;
        }
    }

    /// The source id of one object (local: [`KindId::source_id`]; remote: with the
    /// cluster's prefix, `kubernetes@CLUSTER:KIND/NAMESPACE/NAME`).
    fn source_id(&self, namespace: &str, name: &str) -> String {
        let local = self.id.source_id(namespace, name);
        match &self.cluster {
            None => local,
            Some(c) => format!(
                "{}{}",
                c.source_prefix(),
                local.strip_prefix("kubernetes:").unwrap_or(&local)
            ),
        }
    }

    /// The objects now known (kept) of this kind.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Reads the kind at another version (its CRD changed); known objects stay.
    pub fn set_api_version(&mut self, api_version: &str) {
        self.api_version = api_version.to_string();
    }

    /// A (re-)list begins.
    pub fn init(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// An object listed or added/modified: its update, if what shoal keeps of it changed.
    pub fn apply(&mut self, object: Value) -> Option<SourceUpdate> {
        let (namespace, name) = names(&object)?;
        let source = self.source_id(&namespace, &name);
        if let Some(listing) = &mut self.listing {
            listing.insert(source.clone());
        }
        let Some(mut kept) = prune(self.id.kind, object) else {
            // No longer of interest (a Secret whose credentials were removed).
            return self
                .known
                .remove(source.as_str())
                .map(|_| SourceUpdate::Remove { source });
        };
        if let Value::Object(m) = &mut kept {
            m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
            m.insert("kind".into(), Value::String(self.id.name.to_string()));
        }
        if let Some(cluster) = &self.cluster {
            cluster.localize(self.id.kind, &mut kept);
        }
        let print = fingerprint(&kept);
        let shared = match self.known.get_key_value(source.as_str()) {
            Some((_, known)) if *known == print => return None,
            Some((shared, _)) => shared.clone(),
            None => Arc::from(source.as_str()),
        };
        self.known.insert(shared.clone(), print);
        let origin = Origin {
            source: shared,
            doc: 1,
            line: 0,
            item: None,
        };
        let docs = parse_value(origin, kept);
        Some(match &self.cluster {
            None => SourceUpdate::Apply { docs, source },
            Some(c) => SourceUpdate::ApplyAt {
                docs,
                source,
                precedence: c.precedence(),
            },
        })
    }

    /// An object deleted.
    pub fn delete(&mut self, object: &Value) -> Option<SourceUpdate> {
        let (namespace, name) = names(object)?;
        let source = self.source_id(&namespace, &name);
        self.known
            .remove(source.as_str())
            .map(|_| SourceUpdate::Remove { source })
    }

    /// The (re-)list is complete: what it did not list is gone.
    pub fn init_done(&mut self) -> Vec<SourceUpdate> {
        let Some(listed) = self.listing.take() else {
            return Vec::new();
        };
        let gone: Vec<Arc<str>> = self
            .known
            .keys()
            .filter(|s| !listed.contains(&***s))
            .cloned()
            .collect();
        gone.into_iter()
            .map(|source| {
                self.known.remove(&source);
                SourceUpdate::Remove {
                    source: source.to_string(),
                }
            })
            .collect()
    }

    /// The kind is no longer served (its CRD was deleted): every object of it is gone.
    pub fn clear(&mut self) -> Vec<SourceUpdate> {
        self.listing = None;
        let mut gone: Vec<String> = self.known.drain().map(|(s, _)| s.to_string()).collect();
        gone.sort();
        gone.into_iter()
            .map(|source| SourceUpdate::Remove { source })
            .collect()
    }
}

/// Namespace (empty for cluster-scoped objects) and name of an object; `None` for an object
/// without a name (which the API server never sends).
fn names(object: &Value) -> Option<(String, String)> {
    let meta = object.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_string();
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((namespace, name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse::Outcome;

    const VS: KindId = KindId {
        kind: Kind::VirtualService,
        group: "networking.istio.io",
        name: "VirtualService",
    };

    fn vs(name: &str, host: &str, rv: u32) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()},
            "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]},
        })
    }

    fn sources(updates: &[SourceUpdate]) -> Vec<String> {
        updates
            .iter()
            .map(|u| match u {
                SourceUpdate::Apply { source, .. } => format!("apply {source}"),
                SourceUpdate::ApplyAt { source, .. } => format!("apply-at {source}"),
                SourceUpdate::Remove { source } => format!("remove {source}"),
                SourceUpdate::Synced { .. } => "synced".into(),
                SourceUpdate::MeshConfig { origin, .. } => format!("mesh {origin}"),
                SourceUpdate::MeshNetworks { origin, .. } => format!("networks {origin}"),
            })
            .collect()
    }

    #[test]
    fn objects_are_parsed_at_the_version_they_were_read_and_named_by_kind_and_key() {
        let mut t = Tracker::new(VS, "networking.istio.io/v1beta1");
        let Some(SourceUpdate::Apply { source, docs }) = t.apply(vs("r", "reviews", 1)) else {
            panic!("an apply")
        };
        assert_eq!(
            source,
            "kubernetes:VirtualService.networking.istio.io/default/r"
        );
        assert!(
            matches!(&docs[0].outcome, Outcome::Accepted { .. }),
            "{docs:?}"
        );
        assert_eq!(docs[0].origin.to_string(), source);
    }

    #[test]
    fn a_redelivered_or_resynced_object_is_not_sent_again() {
        let mut t = Tracker::new(VS, "networking.istio.io/v1");
        assert!(t.apply(vs("r", "reviews", 1)).is_some());
        // Same content, a newer resourceVersion (a status write, a no-op update).
        assert!(t.apply(vs("r", "reviews", 2)).is_none());
        assert!(t.apply(vs("r", "ratings", 3)).is_some());
    }

    #[test]
    fn a_relist_sends_only_what_changed_while_the_watch_was_down() {
        let mut t = Tracker::new(VS, "networking.istio.io/v1");
        for (n, h) in [("a", "a"), ("b", "b"), ("c", "c")] {
            t.apply(vs(n, h, 1));
        }
        // 410 Gone: the watcher lists again. Meanwhile b changed, c was deleted, d added.
        t.init();
        let mut updates: Vec<SourceUpdate> = [vs("a", "a", 5), vs("b", "b2", 6), vs("d", "d", 7)]
            .into_iter()
            .filter_map(|o| t.apply(o))
            .collect();
        updates.extend(t.init_done());
        assert_eq!(
            sources(&updates),
            [
                "apply kubernetes:VirtualService.networking.istio.io/default/b",
                "apply kubernetes:VirtualService.networking.istio.io/default/d",
                "remove kubernetes:VirtualService.networking.istio.io/default/c",
            ]
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn an_unchanged_relist_sends_nothing() {
        let mut t = Tracker::new(VS, "networking.istio.io/v1");
        t.init();
        t.apply(vs("a", "a", 1));
        assert!(t.init_done().is_empty());
        t.init();
        assert!(t.apply(vs("a", "a", 9)).is_none());
        assert!(t.init_done().is_empty());
    }

    #[test]
    fn deletes_and_a_removed_crd_forget_objects() {
        let mut t = Tracker::new(VS, "networking.istio.io/v1");
        t.apply(vs("a", "a", 1));
        t.apply(vs("b", "b", 1));
        assert!(t.delete(&vs("a", "a", 2)).is_some());
        assert!(t.delete(&vs("a", "a", 2)).is_none(), "deleted twice");
        assert_eq!(
            sources(&t.clear()),
            ["remove kubernetes:VirtualService.networking.istio.io/default/b"]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_secret_that_loses_its_credentials_is_removed() {
        let id = KindId {
            kind: Kind::Secret,
            group: "",
            name: "Secret",
        };
        let mut t = Tracker::new(id, "v1");
        let secret = |data: Value| json!({"metadata": {"name": "gw", "namespace": "istio-system"}, "type": "Opaque", "data": data});
        assert!(
            t.apply(secret(json!({"cert": "Y2VydA==", "key": "a2V5"})))
                .is_some()
        );
        assert_eq!(
            sources(
                &t.apply(secret(json!({"other": "eA=="})))
                    .into_iter()
                    .collect::<Vec<_>>()
            ),
            ["remove kubernetes:Secret/istio-system/gw"]
        );
        assert!(t.apply(secret(json!({"other": "eA=="}))).is_none());
    }

    #[test]
    fn an_invalid_object_is_rejected_by_kind_namespace_name_and_field() {
        let mut t = Tracker::new(VS, "networking.istio.io/v1");
        let bad = json!({
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}, "weight": "x"}]}]},
        });
        let Some(SourceUpdate::Apply { docs, .. }) = t.apply(bad) else {
            panic!("an apply")
        };
        let Outcome::Rejected { key, issues } = &docs[0].outcome else {
            panic!("rejected: {docs:?}")
        };
        assert_eq!(
            key.as_ref().map(ToString::to_string).as_deref(),
            Some("VirtualService default/r")
        );
        assert!(
            issues.iter().any(|i| i.field.contains("weight")),
            "{issues:?}"
        );
    }

    #[test]
    fn a_remote_clusters_objects_are_named_by_cluster_renamed_and_ranked_as_fallback() {
        let pods = KindId {
            kind: Kind::Pod,
            group: "",
            name: "Pod",
        };
        let cluster = RemoteCluster::new("cluster2", None);
        let mut t = Tracker::remote(pods, "v1", cluster);
        let pod = json!({"metadata": {"name": "db-0", "namespace": "app"}, "status": {"podIP": "10.0.0.1"}});
        let Some(SourceUpdate::ApplyAt {
            source,
            docs,
            precedence,
        }) = t.apply(pod.clone())
        else {
            panic!("a ranked apply")
        };
        assert_eq!(source, "kubernetes@cluster2:Pod/app/db-0");
        assert_eq!(precedence, crate::store::Precedence::Fallback);
        let Outcome::Accepted { object, .. } = &docs[0].outcome else {
            panic!("accepted: {docs:?}")
        };
        assert_eq!(object.key().name.as_ref(), "db-0.cluster2");
        assert_eq!(
            object.meta().labels.get(crate::k8s::topology::CLUSTER),
            Some("cluster2")
        );
        assert!(t.apply(pod.clone()).is_none(), "unchanged");
        assert_eq!(
            sources(&t.delete(&pod).into_iter().collect::<Vec<_>>()),
            ["remove kubernetes@cluster2:Pod/app/db-0"]
        );
    }

    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        /// What the cluster does between two looks of the watcher.
        #[derive(Debug, Clone)]
        enum Op {
            /// Create or update `name` (one of a few) to point at `host`.
            Set(u8, u8),
            Delete(u8),
            /// The watch breaks: the events so far are lost, and a re-list follows.
            Relist,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u8..6, 0u8..3).prop_map(|(n, h)| Op::Set(n, h)),
                2 => (0u8..6).prop_map(Op::Delete),
                1 => Just(Op::Relist),
            ]
        }

        /// Applies the tracker's updates to what a store would hold: source → host.
        fn receive(store: &mut BTreeMap<String, String>, updates: Vec<SourceUpdate>) -> usize {
            let n = updates.len();
            for u in updates {
                match u {
                    SourceUpdate::Apply { source, docs } => {
                        let host = match &docs[0].outcome {
                            Outcome::Accepted { object, .. } => match object.as_ref() {
                                crate::object::Object::VirtualService(vs) => {
                                    vs.spec.hosts[0].clone()
                                }
                                other => panic!("not a VirtualService: {other:?}"),
                            },
                            other => panic!("not accepted: {other:?}"),
                        };
                        store.insert(source, host);
                    }
                    SourceUpdate::Remove { source } => {
                        assert!(store.remove(&source).is_some(), "removed twice: {source}");
                    }
                    SourceUpdate::Synced { .. }
                    | SourceUpdate::MeshConfig { .. }
                    | SourceUpdate::MeshNetworks { .. }
                    | SourceUpdate::ApplyAt { .. } => {
                        panic!("a local tracker sends objects only, at primary precedence")
                    }
                }
            }
            n
        }

        proptest! {
            /// Whatever the cluster does and whichever events the watcher loses, after
            /// each re-list the store holds exactly the cluster's objects, and an object
            /// is sent only when it changed.
            #[test]
            fn after_every_relist_the_store_equals_the_cluster(ops in proptest::collection::vec(op(), 1..60)) {
                let mut t = Tracker::new(VS, "networking.istio.io/v1");
                let mut cluster: BTreeMap<u8, u8> = BTreeMap::new();
                let mut store: BTreeMap<String, String> = BTreeMap::new();
                let mut rv = 0u32;
                let mut watching = true;
                let name = |n: u8| format!("vs-{n}");
                let host = |h: u8| format!("host-{h}.example.com");
                let source = |n: u8| VS.source_id("default", &name(n));
                for op in ops {
                    rv += 1;
                    match op {
                        Op::Set(n, h) => {
                            let unchanged = cluster.insert(n, h) == Some(h);
                            if watching {
                                let sent = receive(&mut store, t.apply(vs(&name(n), &host(h), rv)).into_iter().collect());
                                prop_assert_eq!(sent, usize::from(!unchanged), "sent only on change");
                            }
                        }
                        Op::Delete(n) => {
                            if cluster.remove(&n).is_some() && watching {
                                receive(&mut store, t.delete(&vs(&name(n), "", rv)).into_iter().collect());
                            }
                        }
                        Op::Relist => {
                            if watching {
                                // The watch breaks: what happens until the re-list is lost.
                                watching = false;
                                continue;
                            }
                            t.init();
                            let mut updates: Vec<SourceUpdate> = cluster
                                .iter()
                                .filter_map(|(n, h)| t.apply(vs(&name(*n), &host(*h), rv)))
                                .collect();
                            updates.extend(t.init_done());
                            receive(&mut store, updates);
                            watching = true;
                            let want: BTreeMap<String, String> =
                                cluster.iter().map(|(n, h)| (source(*n), host(*h))).collect();
                            prop_assert_eq!(&store, &want);
                            // Listing the same state again sends nothing.
                            t.init();
                            let mut again: Vec<SourceUpdate> = cluster
                                .iter()
                                .filter_map(|(n, h)| t.apply(vs(&name(*n), &host(*h), rv + 1)))
                                .collect();
                            again.extend(t.init_done());
                            prop_assert!(again.is_empty(), "an unchanged re-list sent {} updates", again.len());
                        }
                    }
                    if watching {
                        let want: BTreeMap<String, String> =
                            cluster.iter().map(|(n, h)| (source(*n), host(*h))).collect();
                        prop_assert_eq!(&store, &want);
                    }
                }
            }
        }
    }
}
