//! The parts of a pod the injector reads, typed, and small helpers to edit the pod's JSON.
//!
//! The injected pod is the input JSON with fields added, so that every field shoal does not
//! know is kept as it came; these views only check and read what injection depends on.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use shoal_config::k8s::IntOrString;

use super::{InjectError, PROXY_CONTAINER};

/// `null` reads as the type's default, as Kubernetes' Go types read it.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodView {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: MetaView,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: SpecView,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetaView {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub generate_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub namespace: String,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OwnerReference {
    #[serde(default, deserialize_with = "nullable")]
    pub api_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub controller: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SpecView {
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<ContainerView>,
    #[serde(default, deserialize_with = "nullable")]
    pub init_containers: Vec<ContainerView>,
    #[serde(default, deserialize_with = "nullable")]
    pub volumes: Vec<Named>,
}

/// A list item known by its name (a volume).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Named {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerView {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    #[serde(default)]
    pub liveness_probe: Option<Probe>,
    #[serde(default)]
    pub startup_probe: Option<Probe>,
}

/// `ContainerPort`, serialised in the order of Kubernetes' Go type (as Istio's
/// `ISTIO_META_POD_PORTS` shows it).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// The actions of a probe that the agent can run for the app, in Go field order.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpGet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_headers: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct TcpSocket {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct Grpc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl PodView {
    /// Reads a pod, naming the first field that is not what Kubernetes defines.
    pub fn read(pod: &Value) -> Result<PodView, InjectError> {
        if !pod.is_object() {
            return Err(InjectError::NotAnObject);
        }
        serde_path_to_error::deserialize(pod).map_err(|e| InjectError::Malformed {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// The app containers (every container but the proxy), in order.
    pub fn app_containers(&self) -> impl Iterator<Item = &ContainerView> {
        self.spec
            .containers
            .iter()
            .filter(|c| c.name != PROXY_CONTAINER)
    }

    /// Whether a container (or init container) of this name is in the pod.
    pub fn has_container(&self, name: &str) -> bool {
        self.spec
            .containers
            .iter()
            .chain(&self.spec.init_containers)
            .any(|c| c.name == name)
    }
}

/// The workload a pod belongs to, as Istio derives it from the pod alone
/// (`pkg/kube` `GetDeployMetaFromPod`): the controller of a pod whose name is generated,
/// with a ReplicaSet made by a Deployment read as that Deployment, and a Job made by a
/// CronJob as that CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkloadMeta {
    pub name: String,
    pub kind: String,
    pub api_version: String,
}

impl WorkloadMeta {
    pub fn of(meta: &MetaView) -> WorkloadMeta {
        let mut w = WorkloadMeta {
            name: meta.name.clone(),
            kind: "Pod".to_string(),
            api_version: "v1".to_string(),
        };
        let controller = meta.owner_references.iter().find(|r| r.controller);
        if let Some(owner) = controller.filter(|_| !meta.generate_name.is_empty()) {
            w.api_version = owner.api_version.clone();
            w.kind = owner.kind.clone();
            w.name = owner.name.clone();
            let hash = meta
                .labels
                .get("pod-template-hash")
                .filter(|h| !h.is_empty());
            if owner.kind == "ReplicaSet"
                && let Some(hash) = hash.filter(|h| owner.name.ends_with(h.as_str()))
            {
                let dashed = format!("-{hash}");
                w.name = owner
                    .name
                    .strip_suffix(&dashed)
                    .unwrap_or(&owner.name)
                    .to_string();
                w.kind = "Deployment".to_string();
            } else if owner.kind == "Job"
                && let Some(cron) = cron_job_name(&owner.name)
            {
                w.name = cron.to_string();
                w.kind = "CronJob".to_string();
                w.api_version = "batch/v1".to_string();
            }
        }
        if w.name.is_empty() {
            w.name = meta.name.clone();
        }
        w
    }
}

/// A CronJob names its Jobs `NAME-TIMESTAMP`, the timestamp 8 to 10 digits.
fn cron_job_name(job: &str) -> Option<&str> {
    let (name, stamp) = job.rsplit_once('-')?;
    let digits = (8..=10).contains(&stamp.len()) && stamp.bytes().all(|b| b.is_ascii_digit());
    (digits && !name.is_empty()).then_some(name)
}

/// Go's `strconv.ParseBool`, which Istio uses for boolean annotations.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The object under `key` of `map`, made when absent or `null`.
pub(crate) fn object_at<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Map<String, Value>, InjectError> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| malformed(path, "an object"))
}

/// The array under `key` of `map`, made when absent or `null`.
pub(crate) fn array_at<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Vec<Value>, InjectError> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
        .ok_or_else(|| malformed(path, "an array"))
}

pub(crate) fn malformed(path: &str, expected: &str) -> InjectError {
    InjectError::Malformed {
        path: path.to_string(),
        message: format!("expected {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> MetaView {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn workloads_from_owners() {
        let deploy = meta(json!({
            "generateName": "web-5d9c7b-",
            "labels": {"pod-template-hash": "5d9c7b"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "web-5d9c7b", "controller": true}]
        }));
        assert_eq!(
            WorkloadMeta::of(&deploy),
            WorkloadMeta {
                name: "web".into(),
                kind: "Deployment".into(),
                api_version: "apps/v1".into()
            }
        );
        let cron = meta(json!({
            "generateName": "backup-29012345-",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                 "name": "backup-29012345", "controller": true}]
        }));
        assert_eq!(WorkloadMeta::of(&cron).name, "backup");
        assert_eq!(WorkloadMeta::of(&cron).kind, "CronJob");
        // Without a generated name the pod is its own workload.
        let bare = meta(json!({"name": "debug", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "controller": true}]}));
        assert_eq!(WorkloadMeta::of(&bare).name, "debug");
        assert_eq!(WorkloadMeta::of(&bare).kind, "Pod");
    }

    #[test]
    fn go_booleans() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
