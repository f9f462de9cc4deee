//! Which part of the store the control plane considers, as istiod decides it:
//!
//! - MeshConfig `discoverySelectors`: when any is set, only namespaces whose labels one of
//!   them matches are in the mesh; every object of another namespace is ignored as if it did
//!   not exist (Istio's enhanced resource scoping: Kubernetes and Istio kinds alike). A
//!   namespace needs its `Namespace` object to be selected, whose labels (with
//!   `kubernetes.io/metadata.name`) the selectors see; the root namespace is always in.
//! - `--revision`: an Istio or Gateway API object labelled `istio.io/rev` with another
//!   revision belongs to another control plane and is ignored; unlabelled ones belong to
//!   every revision (Istio's `ObjectInRevision`). Workload kinds (Service, Pod,
//!   EndpointSlice, Secret) are not filtered by revision: their label means injection.
//!
//! [`Scoped`] keeps the considered part as a snapshot of its own, updated from the store's
//! change sets, so that a relabelled `Namespace` joins or leaves the mesh live and the
//! translator sees exactly which keys came and went.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::k8s::{LabelSelector, namespace_labels};
use crate::meta::{Kind, ObjectKey};
use crate::object::Object;
use crate::store::{ChangeSet, ConfigSnapshot};

/// The label that ties an object to one control-plane revision.
pub const REVISION_LABEL: &str = "istio.io/rev";

/// What is in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryScope {
    /// MeshConfig `discoverySelectors` (ORed). Empty: every namespace.
    pub selectors: Vec<LabelSelector>,
    /// This control plane's revision; `None` for the default one (which reads every object).
    pub revision: Option<String>,
    /// Always in scope (the mesh-wide policies live there).
    pub root_namespace: String,
}

impl DiscoveryScope {
    /// Whether everything is in scope (nothing to filter).
    pub fn is_everything(&self) -> bool {
        self.selectors.is_empty() && self.revision.is_none()
    }

    /// Whether namespace `name` (with its object, if any) is in the mesh.
    pub fn selects_namespace(&self, name: &str, object: Option<&Object>) -> bool {
        if self.selectors.is_empty() || name == self.root_namespace {
            return true;
        }
        let Some(Object::Namespace(ns)) = object else {
            return false;
        };
        let labels = namespace_labels(name, Some(ns));
        self.selectors.iter().any(|s| s.matches(&labels))
    }

    /// Whether an object of a selected namespace (or a cluster-scoped one) belongs to this
    /// revision.
    fn in_revision(&self, object: &Object) -> bool {
        let Some(revision) = &self.revision else {
            return true;
        };
        // The config kinds (custom resources); on workload kinds the label means injection.
        if object.kind().builtin() {
            return true;
        }
        object
            .meta()
            .labels
            .get(REVISION_LABEL)
            .is_none_or(|r| r == revision)
    }
}

/// The in-scope part of the store, kept up to date.
#[derive(Debug, Default)]
pub struct Scoped {
    scope: DiscoveryScope,
    /// Namespaces in the mesh (only kept while selectors are set).
    selected: BTreeSet<Arc<str>>,
    view: ConfigSnapshot,
}

impl Scoped {
    pub fn new(scope: DiscoveryScope) -> Self {
        Scoped {
            scope,
            ..Default::default()
        }
    }

    pub fn scope(&self) -> &DiscoveryScope {
        &self.scope
    }

    /// Namespaces in the mesh, when selectors are set (`None`: all).
    pub fn selected_namespaces(&self) -> Option<&BTreeSet<Arc<str>>> {
        (!self.scope.selectors.is_empty()).then_some(&self.selected)
    }

    /// Brings the view to `full`, the store after `changes`. Returns the view and the keys
    /// that changed in it (objects of namespaces that joined or left included).
    pub fn update(
        &mut self,
        full: &ConfigSnapshot,
        changes: &ChangeSet,
    ) -> (ConfigSnapshot, ChangeSet) {
        if self.scope.is_everything() {
            self.view = full.clone();
            return (self.view.clone(), changes.clone());
        }
        let mut out = ChangeSet::default();
        if !self.scope.selectors.is_empty()
            && changes.keys.iter().any(|k| k.kind == Kind::Namespace)
        {
            let selected = selected_namespaces(&self.scope, full);
            let flipped: Vec<Arc<str>> = selected
                .symmetric_difference(&self.selected)
                .cloned()
                .collect();
            self.selected = selected;
            for ns in flipped {
                for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
                    let keys: Vec<ObjectKey> = full
                        .of_kind_in(kind, &ns)
                        .map(|(k, _)| k.clone())
                        .chain(self.view.of_kind_in(kind, &ns).map(|(k, _)| k.clone()))
                        .collect();
                    for key in keys {
                        self.sync_key(full, &key, &mut out);
                    }
                }
            }
        }
        self.view.revision = full.revision;
        for key in &changes.keys {
            self.sync_key(full, key, &mut out);
        }
        (self.view.clone(), out)
    }

    /// Moves to another scope; every key whose presence changed is in the change set.
    pub fn set_scope(
        &mut self,
        scope: DiscoveryScope,
        full: &ConfigSnapshot,
    ) -> (ConfigSnapshot, ChangeSet) {
        self.scope = scope;
        self.selected = selected_namespaces(&self.scope, full);
        let before = std::mem::take(&mut self.view);
        let mut view = ConfigSnapshot::default();
        view.revision = full.revision;
        for (key, entry) in full.iter() {
            if self.in_scope(key, &entry.object) {
                view.insert(key.clone(), entry.clone());
            }
        }
        let mut out = ChangeSet::default();
        for (key, _) in before.iter() {
            if view.get(key).is_none() {
                out.keys.insert(key.clone());
            }
        }
        for (key, entry) in view.iter() {
            if before
                .get(key)
                .is_none_or(|b| !Arc::ptr_eq(&b.object, &entry.object))
            {
                out.keys.insert(key.clone());
            }
        }
        self.view = view;
        (self.view.clone(), out)
    }

    fn in_scope(&self, key: &ObjectKey, object: &Object) -> bool {
        let namespace_ok = !key.kind.namespaced()
            || self.scope.selectors.is_empty()
            || self.selected.contains(&key.namespace);
        namespace_ok && self.scope.in_revision(object)
    }

    /// Copies `key` from `full` into the view when in scope, removes it otherwise; notes it
    /// in `out` when the view changed.
    fn sync_key(&mut self, full: &ConfigSnapshot, key: &ObjectKey, out: &mut ChangeSet) {
        match full.get(key) {
            Some(entry) if self.in_scope(key, &entry.object) => {
                let same = self
                    .view
                    .get(key)
                    .is_some_and(|v| Arc::ptr_eq(&v.object, &entry.object));
                if !same {
                    self.view.insert(key.clone(), entry.clone());
                    out.keys.insert(key.clone());
                }
            }
            _ => {
                if self.view.remove(key) {
                    out.keys.insert(key.clone());
                }
            }
        }
    }
}

/// The namespaces `scope`'s selectors admit among those `full` has objects of.
fn selected_namespaces(scope: &DiscoveryScope, full: &ConfigSnapshot) -> BTreeSet<Arc<str>> {
    if scope.selectors.is_empty() {
        return BTreeSet::new();
    }
    let mut out: BTreeSet<Arc<str>> = full
        .of_kind(Kind::Namespace)
        .filter(|(k, e)| scope.selects_namespace(&k.name, Some(&e.object)))
        .map(|(k, _)| k.name.clone())
        .collect();
    out.insert(scope.root_namespace.as_str().into());
    out
}

#[cfg(test)]
#[path = "discovery/tests.rs"]
mod tests;
