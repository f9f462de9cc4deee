//! Gateway API status, written back to the cluster as Istio's gateway controller writes it:
//! Gateways of class `istio` (Accepted, Programmed, addresses, listeners with attached
//! route counts) and the routes' parents that controller owns. `kubectl get gateway` shows
//! PROGRAMMED as with Istio.
//!
//! What each object's status should be is computed from the config
//! ([`shoal_translate::gateway_api_status`]); here it is stamped (each condition's
//! `observedGeneration`, and a `lastTransitionTime` that moves only when its status does),
//! merged with what other controllers wrote (their route parents stay), compared with the
//! object's status in the cluster and written only when it differs: no status churn, and
//! a restart writes nothing that is already there. With a shard group only the Raft leader
//! writes; a replica that becomes leader checks every object again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Map, Value};
use shoal_config::source::kubernetes::kinds::{self, WATCHED};
use shoal_config::{ConfigSnapshot, Kind, Object, ObjectKey};
use shoal_shard::Ownership;
use tokio::sync::watch;

use shoal_translate::model::CONTROLLER_NAME as CONTROLLER;
/// Changes settle this long before statuses are written (a burst of edits, one write).
const SETTLE: Duration = Duration::from_millis(300);
/// How often everything is checked again, written or not (someone else may have
/// overwritten a status).
const RECHECK: Duration = Duration::from_secs(60);

/// Stamps `desired` (a status without times) against `current` (the object's status in the
/// cluster, `Null` when it has none) for an object at `generation`, at time `now`; keeps
/// the route parents of other controllers.
pub fn merge(desired: &Value, current: &Value, generation: i64, now: &str) -> Value {
    let mut out = desired.clone();
    if let Some(conditions) = out.get_mut("conditions") {
        stamp(conditions, current.get("conditions"), generation, now);
    }
    if let Some(Value::Array(listeners)) = out.get_mut("listeners") {
        for l in listeners {
            let before = find(current.get("listeners"), |c| c.get("name") == l.get("name"));
            if let Some(conditions) = l.get_mut("conditions") {
                stamp(
                    conditions,
                    before.and_then(|b| b.get("conditions")),
                    generation,
                    now,
                );
            }
        }
    }
    if let Some(Value::Array(parents)) = out.get_mut("parents") {
        for p in parents.iter_mut() {
            let before = find(current.get("parents"), |c| {
                c.get("parentRef") == p.get("parentRef")
                    && c.get("controllerName") == p.get("controllerName")
            });
            if let Some(conditions) = p.get_mut("conditions") {
                stamp(
                    conditions,
                    before.and_then(|b| b.get("conditions")),
                    generation,
                    now,
                );
            }
        }
        let others = current
            .get("parents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("controllerName").and_then(Value::as_str) != Some(CONTROLLER))
            .cloned();
        let mut all: Vec<Value> = others.collect();
        all.append(parents);
        *parents = all;
    }
    out
}

fn find(list: Option<&Value>, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    list.and_then(Value::as_array)?.iter().find(|v| pred(v))
}

/// Sets each condition's `observedGeneration`, and its `lastTransitionTime` to the current
/// one's when its status did not change (else `now`).
fn stamp(conditions: &mut Value, current: Option<&Value>, generation: i64, now: &str) {
    let Value::Array(list) = conditions else {
        return;
    };
    for c in list {
        let before = find(current, |b| b.get("type") == c.get("type"));
        let time = match before {
            Some(b) if b.get("status") == c.get("status") => b
                .get("lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| now.into()),
            _ => now.into(),
        };
        if let Value::Object(m) = c {
            m.insert("observedGeneration".into(), generation.into());
            m.insert("lastTransitionTime".into(), time);
        }
    }
}

/// The merge patch turning `current` into `wanted` (keys of `current` that `wanted` drops
/// are removed).
fn patch(wanted: &Value, current: &Value) -> Value {
    let mut status = wanted.as_object().cloned().unwrap_or_default();
    if let Some(current) = current.as_object() {
        for k in current.keys() {
            if !status.contains_key(k) {
                status.insert(k.clone(), Value::Null);
            }
        }
    }
    let mut body = Map::new();
    body.insert("status".into(), Value::Object(status));
    Value::Object(body)
}

/// Whether this replica writes: alone, or the shard group's Raft leader.
fn writes(ownership: &Option<watch::Receiver<Arc<Ownership>>>) -> bool {
    ownership.as_ref().is_none_or(|o| {
        let o = o.borrow();
        o.leader == Some(o.me)
    })
}

/// What was last found in (or written to) the cluster for one object: for which object
/// and desired status, so that only a change of either is checked again.
struct Written {
    object: Arc<Object>,
    desired: Value,
}

/// Writes statuses for as long as the config is published.
pub async fn run(
    client: Client,
    mut config: watch::Receiver<ConfigSnapshot>,
    domain_suffix: String,
    mut ownership: Option<watch::Receiver<Arc<Ownership>>>,
) {
    let mut resources: HashMap<Kind, ApiResource> = HashMap::new();
    let mut written: HashMap<ObjectKey, Written> = HashMap::new();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    loop {
        tokio::select! {
            r = config.changed() => if r.is_err() { return },
            _ = recheck.tick() => written.clear(),
            r = async {
                match ownership.as_mut() {
                    Some(o) => o.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if r.is_err() { ownership = None; }
                // A new leader checks everything again.
                written.clear();
            }
        }
        tokio::time::sleep(SETTLE).await;
        if !writes(&ownership) {
            written.clear();
            continue;
        }
        let cfg = config.borrow_and_update().clone();
        let desired = shoal_translate::gateway_api_status(&cfg, &domain_suffix);
        written.retain(|k, _| cfg.get(k).is_some());
        for d in desired {
            let Some(entry) = cfg.get(&d.key) else {
                continue;
            };
            // Only objects read from the cluster have a status there.
            if !entry.origin.source.starts_with("kubernetes:") {
                continue;
            }
            let fresh = written
                .get(&d.key)
                .is_some_and(|w| Arc::ptr_eq(&w.object, &entry.object) && w.desired == d.status);
            if fresh {
                continue;
            }
            match write(&client, &mut resources, &d.key, &d.status).await {
                Ok(()) => {
                    written.insert(
                        d.key,
                        Written {
                            object: entry.object.clone(),
                            desired: d.status,
                        },
                    );
                }
                Err(e) => {
                    metrics::counter!("shoal_kubernetes_status_errors_total").increment(1);
                    tracing::warn!(object = %d.key, error = %e, "writing Gateway API status failed; trying again with the next change");
                }
            }
        }
    }
}

/// Reads the object's status, and writes the stamped `desired` status when it differs.
async fn write(
    client: &Client,
    resources: &mut HashMap<Kind, ApiResource>,
    key: &ObjectKey,
    desired: &Value,
) -> Result<(), kube::Error> {
    let resource = match resources.get(&key.kind) {
        Some(r) => r.clone(),
        None => {
            let Some(watched) = WATCHED.iter().find(|w| w.id.kind == key.kind) else {
                return Ok(());
            };
            let Some(served) = kinds::resolve(client, watched).await? else {
                return Ok(());
            };
            resources.insert(key.kind, served.resource.clone());
            served.resource
        }
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &key.namespace, &resource);
    let Some(object) = api.get_opt(&key.name).await? else {
        return Ok(());
    };
    let current = object.data.get("status").cloned().unwrap_or(Value::Null);
    let generation = object.metadata.generation.unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let wanted = merge(desired, &current, generation, &now);
    if wanted == current {
        return Ok(());
    }
    api.patch_status(
        &key.name,
        &PatchParams::default(),
        &Patch::Merge(patch(&wanted, &current)),
    )
    .await?;
    metrics::counter!("shoal_kubernetes_status_writes_total", "kind" => key.kind.as_str())
        .increment(1);
    tracing::info!(object = %key, "Gateway API status written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(t: &str, s: &str) -> Value {
        json!({"type": t, "status": s, "reason": t, "message": ""})
    }

    #[test]
    fn times_move_only_with_a_status_and_generations_follow_the_object() {
        let desired = json!({"conditions": [cond("Accepted", "True"), cond("Programmed", "False")],
            "listeners": [{"name": "http", "attachedRoutes": 1, "conditions": [cond("Accepted", "True")]}]});
        let first = merge(&desired, &Value::Null, 1, "T1");
        assert_eq!(first["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(
            first["listeners"][0]["conditions"][0]["observedGeneration"],
            1
        );
        // Unchanged: identical to what is there, so nothing is written.
        assert_eq!(merge(&desired, &first, 1, "T2"), first);
        // Programmed flips: only its time moves; a new generation is observed by all.
        let desired = json!({"conditions": [cond("Accepted", "True"), cond("Programmed", "True")],
            "listeners": [{"name": "http", "attachedRoutes": 1, "conditions": [cond("Accepted", "True")]}]});
        let next = merge(&desired, &first, 2, "T3");
        assert_eq!(next["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(next["conditions"][1]["lastTransitionTime"], "T3");
        assert_eq!(next["conditions"][0]["observedGeneration"], 2);
        assert_eq!(
            next["listeners"][0]["conditions"][0]["lastTransitionTime"],
            "T1"
        );
    }

    #[test]
    fn route_parents_of_other_controllers_stay() {
        let theirs = json!({"parentRef": {"name": "other"}, "controllerName": "example.com/gw",
            "conditions": [cond("Accepted", "True")]});
        let ours = |accepted: &str| {
            json!({"parentRef": {"name": "gw"}, "controllerName": CONTROLLER,
                "conditions": [cond("Accepted", accepted)]})
        };
        let current = json!({"parents": [theirs.clone(), ours("False")]});
        let desired = json!({"parents": [ours("True")]});
        let out = merge(&desired, &current, 3, "T");
        let parents = out["parents"].as_array().expect("parents");
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0], theirs);
        assert_eq!(parents[1]["conditions"][0]["status"], "True");
    }

    #[test]
    fn a_patch_removes_what_is_no_longer_wanted() {
        let current = json!({"conditions": [], "addresses": [{"value": "x"}]});
        let wanted = json!({"conditions": []});
        assert_eq!(
            patch(&wanted, &current),
            json!({"status": {"conditions": [], "addresses": null}})
        );
    }
}
