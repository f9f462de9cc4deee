//! Status written back to the cluster:
//!
//! - Gateway API status, as Istio's gateway controller writes it: Gateways of class `istio`
//!   (Accepted, Programmed, addresses, listeners with attached route counts) and the routes'
//!   parents that controller owns, so `kubectl get gateway` shows PROGRAMMED as with Istio
//!   (`gateway.rs`; what the status is comes from [`shoal_translate::gateway_api_status`]);
//! - optionally (`--kube-write-analysis`, Istio's `istiod.enableAnalysis`), the analysis
//!   findings that are Istio analysis messages, as `status.validationMessages` of the Istio
//!   objects they are about (`analysis.rs`).
//!
//! Each status is computed from the config, stamped against the object's status in the
//! cluster (generations, transition times that move only with a status, other
//! controllers' entries kept) and written only when it differs: no status churn, and a
//! restart writes nothing that is already there. With a shard group only the Raft leader
//! writes; a replica that becomes leader checks every object again.

mod analysis;
mod gateway;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Map, Value};
use shoal_config::source::kubernetes::kinds::{self, WATCHED};
use shoal_config::{ConfigSnapshot, Kind, Object, ObjectKey};
use tokio::sync::watch;

use shoal_translate::model::CONTROLLER_NAME as CONTROLLER;

use crate::cluster::Leadership;

/// Changes settle this long before statuses are written (a burst of edits, one write).
const SETTLE: Duration = Duration::from_millis(300);
/// How often everything is checked again, written or not (someone else may have
/// overwritten a status).
const RECHECK: Duration = Duration::from_secs(60);

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

/// What was last found in (or written to) the cluster for one object: for which object
/// and desired status, so that only a change of either is checked again.
struct Written {
    object: Arc<Object>,
    part: Part,
    desired: Value,
}

/// What is written.
#[derive(Debug, Clone)]
pub struct Settings {
    pub domain_suffix: String,
    /// Gateway API status.
    pub gateway_api: bool,
    /// Istio analysis messages as `status.validationMessages`.
    pub analysis: bool,
}

/// Which part of a status shoal owns, and so how it is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    GatewayApi,
    ValidationMessages,
}

/// The status one object should have (the part shoal owns).
struct Desired {
    key: ObjectKey,
    part: Part,
    status: Value,
}

/// Every status the config calls for. Objects whose analysis messages were written before
/// and are gone now get an empty list, which removes them.
fn desired(
    cfg: &ConfigSnapshot,
    settings: &Settings,
    written: &HashMap<ObjectKey, Written>,
) -> Vec<Desired> {
    let mut out = Vec::new();
    if settings.gateway_api {
        out.extend(
            shoal_translate::gateway_api_status(cfg, &settings.domain_suffix)
                .into_iter()
                .map(|d| Desired {
                    key: d.key,
                    part: Part::GatewayApi,
                    status: d.status,
                }),
        );
    }
    if settings.analysis {
        let messages = analysis::messages(cfg);
        for (key, w) in written {
            if w.part == Part::ValidationMessages && !messages.contains_key(key) {
                out.push(Desired {
                    key: key.clone(),
                    part: Part::ValidationMessages,
                    status: Value::Array(Vec::new()),
                });
            }
        }
        out.extend(messages.into_iter().map(|(key, list)| Desired {
            key,
            part: Part::ValidationMessages,
            status: list,
        }));
    }
    out
}

/// Writes statuses for as long as the config is published.
pub async fn run(
    client: Client,
    mut config: watch::Receiver<ConfigSnapshot>,
    settings: Settings,
    mut leadership: Leadership,
) {
    let mut resources: HashMap<Kind, ApiResource> = HashMap::new();
    let mut written: HashMap<ObjectKey, Written> = HashMap::new();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    // The config published before this task subscribed counts as a change: statuses are
    // checked at start, not only at the next edit.
    config.mark_changed();
    loop {
        tokio::select! {
            r = config.changed() => if r.is_err() { return },
            _ = recheck.tick() => written.clear(),
            () = leadership.changed() => {
                // A new leader checks everything again.
                written.clear();
            }
        }
        tokio::time::sleep(SETTLE).await;
        if !leadership.is_leader() {
            written.clear();
            continue;
        }
        let cfg = config.borrow_and_update().clone();
        written.retain(|k, _| cfg.get(k).is_some());
        for d in desired(&cfg, &settings, &written) {
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
            match write(&client, &mut resources, &d).await {
                Ok(())
                    if d.part == Part::ValidationMessages
                        && d.status.as_array().is_some_and(Vec::is_empty) =>
                {
                    written.remove(&d.key);
                }
                Ok(()) => {
                    written.insert(
                        d.key,
                        Written {
                            object: entry.object.clone(),
                            part: d.part,
                            desired: d.status,
                        },
                    );
                }
                Err(e) => {
                    metrics::counter!("shoal_kubernetes_status_errors_total").increment(1);
                    tracing::warn!(object = %d.key, error = %e, "writing status failed; trying again with the next change");
                }
            }
        }
    }
}

/// Reads the object's status, and writes the stamped `desired` status when it differs.
async fn write(
    client: &Client,
    resources: &mut HashMap<Kind, ApiResource>,
    desired: &Desired,
) -> Result<(), kube::Error> {
    let key = &desired.key;
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
    metrics::counter!("shoal_kubernetes_status_checks_total").increment(1);
    let Some(object) = api.get_opt(&key.name).await? else {
        return Ok(());
    };
    let current = object.data.get("status").cloned().unwrap_or(Value::Null);
    let generation = object.metadata.generation.unwrap_or_default();
    let wanted = match desired.part {
        Part::GatewayApi => {
            let now = k8s_openapi::jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            gateway::merge(&desired.status, &current, generation, &now)
        }
        Part::ValidationMessages => analysis::merge(&desired.status, &current, generation),
    };
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
    tracing::info!(object = %key, "status written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
