//! The object store: one global, etcd-like resourceVersion, a bounded event history for
//! watches and consistent (paged) lists, and the side effects of CRDs and Namespaces.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::resources::{CRD_GROUP, CRD_PLURAL, Registry, ResourceDef, crd_def};
use crate::util::{name_suffix, now_rfc3339, uuid};

/// `(namespace or "", name)`, ordered like etcd keys.
pub(crate) type ObjKey = (String, String);

/// Objects of one resource in key order, and the resourceVersion they are consistent at.
pub(crate) type Snapshot = (Vec<(ObjKey, Arc<Value>)>, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change. `object` carries the new resourceVersion (for a deletion, the last
/// state of the object with the deletion's resourceVersion); `prev` the state before.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub group: String,
    pub plural: String,
    pub key: ObjKey,
    pub typ: EventType,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
}

/// Which part of an object a write changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The object; `.status` is kept from storage for kinds with the status subresource.
    Main,
    /// `/status`: only `.status` changes.
    Status,
    /// In-process writes by tests: everything as given.
    All,
}

/// How a deletion ended.
pub(crate) enum Deleted {
    /// Gone; the last state.
    Gone(Arc<Value>),
    /// Has finalizers: marked with `deletionTimestamp` and kept.
    Terminating(Arc<Value>),
}

pub(crate) struct Store {
    pub registry: Registry,
    objects: HashMap<(String, String), BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<Event>>,
    /// The latest resourceVersion handed out.
    pub rv: u64,
    /// Watches and exact lists need `resourceVersion >= floor`; older ones are 410 Expired.
    pub floor: u64,
    max_history: usize,
    next_cluster_ip: u32,
    notify: tokio::sync::watch::Sender<u64>,
}

fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        // Callers pass objects only, and metadata was just made an object.
        _ => unreachable!("metadata is an object"),
    }
}

pub(crate) fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(crate) fn rv_of(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Everything but `metadata` (and `status` where it is a subresource): what `generation`
/// tracks.
fn spec_part(def: &ResourceDef, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if def.status {
            m.remove("status");
        }
    }
    v
}

impl Store {
    pub fn new(max_history: usize, notify: tokio::sync::watch::Sender<u64>) -> Self {
        Store {
            registry: Registry::builtin(),
            objects: HashMap::new(),
            history: VecDeque::new(),
            rv: 0,
            floor: 0,
            max_history: max_history.max(1),
            next_cluster_ip: 1,
            notify,
        }
    }

    fn gr(def: &ResourceDef) -> (String, String) {
        (def.group.clone(), def.plural.clone())
    }

    fn key(def: &ResourceDef, ns: Option<&str>, name: &str) -> ObjKey {
        let ns = if def.namespaced {
            ns.unwrap_or("default")
        } else {
            ""
        };
        (ns.to_string(), name.to_string())
    }

    pub fn get(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&Self::gr(def))?
            .get(&Self::key(def, ns, name))
            .cloned()
    }

    /// Records a change: bumps the resourceVersion, stamps it on the object, keeps the event.
    fn commit(
        &mut self,
        def: &ResourceDef,
        key: ObjKey,
        typ: EventType,
        mut obj: Value,
    ) -> Arc<Value> {
        self.rv += 1;
        meta(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let obj = Arc::new(obj);
        let store = self.objects.entry(Self::gr(def)).or_default();
        let prev = if typ == EventType::Deleted {
            store.remove(&key)
        } else {
            store.insert(key.clone(), obj.clone())
        };
        self.history.push_back(Arc::new(Event {
            rv: self.rv,
            group: def.group.clone(),
            plural: def.plural.clone(),
            key,
            typ,
            object: obj.clone(),
            prev,
        }));
        while self.history.len() > self.max_history {
            if let Some(e) = self.history.pop_front() {
                self.floor = e.rv;
            }
        }
        self.notify.send_replace(self.rv);
        obj
    }

    /// Drops the event history: watches and exact lists from older versions get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
        self.notify.send_replace(self.rv);
    }

    /// Events of one resource after `after`, or `None` when history no longer reaches back.
    pub fn events_after(&self, after: u64, group: &str, plural: &str) -> Option<Vec<Arc<Event>>> {
        if after < self.floor {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= after);
        Some(
            self.history
                .range(start..)
                .filter(|e| e.group == group && e.plural == plural)
                .cloned()
                .collect(),
        )
    }

    /// The objects of one resource (optionally one namespace) as of `at` (default: now), in
    /// key order, with the resourceVersion they are consistent at.
    pub fn snapshot(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        at: Option<u64>,
    ) -> Option<Snapshot> {
        let mut map: BTreeMap<ObjKey, Arc<Value>> = self
            .objects
            .get(&Self::gr(def))
            .cloned()
            .unwrap_or_default();
        let at = match at {
            Some(at) if at < self.rv => {
                if at < self.floor {
                    return None;
                }
                let start = self.history.partition_point(|e| e.rv <= at);
                for e in self.history.range(start..).rev() {
                    if e.group != def.group || e.plural != def.plural {
                        continue;
                    }
                    match (&e.typ, &e.prev) {
                        (EventType::Added, _) | (_, None) => {
                            map.remove(&e.key);
                        }
                        (_, Some(prev)) => {
                            map.insert(e.key.clone(), prev.clone());
                        }
                    }
                }
                at
            }
            _ => self.rv,
        };
        let items = map
            .into_iter()
            .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
            .collect();
        Some((items, at))
    }

    fn require_namespace(&self, def: &ResourceDef, ns: &str) -> Result<(), ApiError> {
        if !def.namespaced {
            return Ok(());
        }
        let exists = self
            .objects
            .get(&(String::new(), "namespaces".to_string()))
            .is_some_and(|m| m.contains_key(&(String::new(), ns.to_string())));
        if exists {
            Ok(())
        } else {
            Err(ApiError::not_found("", "namespaces", ns))
        }
    }

    /// Fills in what the server owns on create: name from generateName, uid, timestamps,
    /// generation, and a few kind-specific defaults.
    pub fn create(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        mut obj: Value,
        part: Part,
    ) -> Result<Arc<Value>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let m = meta(&mut obj);
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match m.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    name = format!("{prefix}{}", name_suffix());
                    m.insert("name".into(), json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        &def.group,
                        &def.kind,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            }
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                &def.group,
                &def.kind,
                &name,
                "metadata.name",
                "Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
            ));
        }
        let key = Self::key(def, ns, &name);
        if def.namespaced {
            m.insert("namespace".into(), json!(key.0));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uuid()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        m.remove("resourceVersion");
        self.require_namespace(def, &key.0)?;
        if self.get(def, ns, &name).is_some() {
            return Err(ApiError::already_exists(&def.group, &def.plural, &name));
        }
        if def.status
            && part != Part::All
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        self.defaults(def, &mut obj)?;
        Ok(self.commit(def, key, EventType::Added, obj))
    }

    /// Kind-specific work of the real server's registries and controllers.
    fn defaults(&mut self, def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
        match (def.group.as_str(), def.plural.as_str()) {
            ("", "namespaces") => {
                let name = name_of(obj).to_string();
                let labels = meta(obj).entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
                if obj.pointer("/status/phase").is_none() {
                    obj["status"] = json!({"phase": "Active"});
                }
            }
            ("", "services") => {
                let headless_or_external = obj.pointer("/spec/type").and_then(Value::as_str)
                    == Some("ExternalName")
                    || obj.pointer("/spec/clusterIP").is_some();
                if !headless_or_external && obj.get("spec").is_some_and(Value::is_object) {
                    let n = self.next_cluster_ip;
                    self.next_cluster_ip += 1;
                    let ip = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
                    obj["spec"]["clusterIP"] = json!(ip);
                    obj["spec"]["clusterIPs"] = json!([ip]);
                }
            }
            (CRD_GROUP, CRD_PLURAL) => {
                let crd = crd_def(obj).map_err(|why| {
                    let (field, why) = why.split_once(": ").unwrap_or(("spec", &why));
                    ApiError::invalid(CRD_GROUP, &def.kind, name_of(obj), field, why)
                })?;
                if let Some(other) = self.registry.find_storage(&crd.group, &crd.plural)
                    && !other.custom
                {
                    return Err(ApiError::invalid(
                        CRD_GROUP,
                        &def.kind,
                        name_of(obj),
                        "spec.group",
                        "Invalid value: the group and plural belong to a built-in resource",
                    ));
                }
                let now = now_rfc3339();
                let storage = obj
                    .pointer("/spec/versions")
                    .and_then(Value::as_array)
                    .and_then(|vs| {
                        vs.iter()
                            .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    })
                    .and_then(|v| v.get("name"))
                    .cloned()
                    .unwrap_or(Value::Null);
                obj["status"] = json!({
                    "acceptedNames": obj.pointer("/spec/names").cloned().unwrap_or(json!({})),
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                         "message": "no conflicts found", "lastTransitionTime": now},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                         "message": "the initial names have been accepted", "lastTransitionTime": now},
                    ],
                    "storedVersions": [storage],
                });
                self.registry.register_crd(crd);
            }
            _ => {}
        }
        Ok(())
    }

    /// Replaces an object (or its status). A non-empty `metadata.resourceVersion` in the body
    /// must match the stored one (409 otherwise). An unchanged object is not written again.
    pub fn update(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        part: Part,
    ) -> Result<Arc<Value>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let old = self
            .get(def, ns, name)
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))?;
        let body_rv = rv_of(&obj);
        if !body_rv.is_empty() && body_rv != rv_of(&old) {
            return Err(ApiError::conflict(&def.group, &def.plural, name));
        }
        let mut new = match part {
            Part::Status => {
                let mut n = (*old).clone();
                match obj.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(o) = n.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                n
            }
            Part::Main | Part::All => {
                if part == Part::Main && def.status {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(o) = obj.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
                obj
            }
        };
        // What the server owns stays as stored.
        let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
        let m = meta(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        m.insert("name".into(), json!(name));
        if def.namespaced {
            m.insert("namespace".into(), old_meta["namespace"].clone());
        } else {
            m.remove("namespace");
        }
        m.insert("resourceVersion".into(), json!(rv_of(&old)));
        if spec_part(def, &new) != spec_part(def, &old) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta(&mut new).insert("generation".into(), json!(g + 1));
        }
        let key = Self::key(def, ns, name);
        if def.group == CRD_GROUP && def.plural == CRD_PLURAL {
            // Re-register with the new spec; keep the server-written status.
            let status = new.get("status").cloned();
            self.defaults(def, &mut new)?;
            if part == Part::Status
                && let Some(s) = status
            {
                new["status"] = s;
            }
        }
        if new == *old {
            return Ok(old);
        }
        let finalized = old_meta.get("deletionTimestamp").is_some()
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if finalized {
            return Ok(self.remove(def, key, new));
        }
        Ok(self.commit(def, key, EventType::Modified, new))
    }

    /// Deletes an object, its dependents first (a Namespace's objects, a CRD's resources).
    fn remove(&mut self, def: &ResourceDef, key: ObjKey, last: Value) -> Arc<Value> {
        if def.group.is_empty() && def.plural == "namespaces" {
            let namespaced: Vec<ResourceDef> = self
                .registry
                .all()
                .iter()
                .filter(|d| d.namespaced)
                .cloned()
                .collect();
            for d in namespaced {
                let keys: Vec<(ObjKey, Arc<Value>)> = self
                    .objects
                    .get(&Self::gr(&d))
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| k.0 == key.1)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                for (k, v) in keys {
                    self.commit(&d, k, EventType::Deleted, (*v).clone());
                }
            }
        }
        if def.group == CRD_GROUP
            && def.plural == CRD_PLURAL
            && let Ok(crd) = crd_def(&last)
        {
            let all: Vec<(ObjKey, Arc<Value>)> = self
                .objects
                .get(&Self::gr(&crd))
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            for (k, v) in all {
                self.commit(&crd, k, EventType::Deleted, (*v).clone());
            }
            self.objects.remove(&Self::gr(&crd));
            self.registry.unregister(&crd.group, &crd.plural);
        }
        self.commit(def, key, EventType::Deleted, last)
    }

    pub fn delete(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        precondition_rv: Option<&str>,
    ) -> Result<Deleted, ApiError> {
        let old = self
            .get(def, ns, name)
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))?;
        if precondition_rv.is_some_and(|rv| rv != rv_of(&old)) {
            return Err(ApiError::conflict(&def.group, &def.plural, name));
        }
        let key = Self::key(def, ns, name);
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Deleted::Terminating(old));
            }
            let mut marked = (*old).clone();
            let m = meta(&mut marked);
            m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            return Ok(Deleted::Terminating(self.commit(
                def,
                key,
                EventType::Modified,
                marked,
            )));
        }
        Ok(Deleted::Gone(self.remove(def, key, (*old).clone())))
    }
}

/// A DNS-1123 subdomain, as the real server wants names.
fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}
