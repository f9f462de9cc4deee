//! What the Kubernetes source keeps of an object: the fields translation reads, nothing the
//! API server or other controllers add (managed fields, `kubectl apply`'s copy of the last
//! applied object, status but a Service's load-balancer addresses, a Node's image list, a
//! Pod's containers). Pruning happens before
//! parsing and before the change check, so an update of a field shoal never reads (a Pod's
//! condition, a Node's heartbeat, a status shoal itself writes) costs no rebuild.

use std::hash::Hasher;

use serde_json::{Map, Value};

use crate::k8s::secret::{GENERIC_CA, GENERIC_CERT, GENERIC_KEY, TLS_CA, TLS_CERT, TLS_KEY};
use crate::meta::Kind;

/// `kubectl apply`'s copy of the object, as large as the object itself.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The keys of a Secret that hold gateway credentials (Istio's generic and TLS forms).
const CREDENTIAL_KEYS: [&str; 6] = [
    GENERIC_CERT,
    GENERIC_KEY,
    GENERIC_CA,
    TLS_CERT,
    TLS_KEY,
    TLS_CA,
];

/// The annotation Istio's injector writes on the pods it injected.
const SIDECAR_STATUS: &str = "sidecar.istio.io/status";

/// The object as shoal keeps it, or `None` when shoal keeps nothing of it (a Secret that
/// holds no credentials: service-account tokens, Helm releases, application secrets).
pub fn prune(kind: Kind, object: Value) -> Option<Value> {
    let Value::Object(mut object) = object else {
        return Some(object);
    };
    let mut metadata = object.remove("metadata").map(prune_metadata);
    // A Pod's annotations are read for Istio's only (`sidecar.istio.io/status`,
    // `traffic.sidecar.istio.io/*`, `proxy.istio.io/config`...); controllers and tools
    // annotate pods with much else.
    if kind == Kind::Pod
        && let Some(Value::Object(m)) = &mut metadata
    {
        let mut empty = false;
        if let Some(Value::Object(annotations)) = m.get_mut("annotations") {
            annotations.retain(|k, _| is_istio_key(k));
            // The injector's status (a few hundred bytes of JSON) is read for its presence
            // only: whether the pod runs a sidecar.
            if let Some(status) = annotations.get_mut(SIDECAR_STATUS) {
                *status = Value::String(String::new());
            }
            empty = annotations.is_empty();
        }
        if empty {
            m.remove("annotations");
        }
    }
    let mut kept = Map::new();
    for field in ["apiVersion", "kind"] {
        if let Some(v) = object.remove(field) {
            kept.insert(field.into(), v);
        }
    }
    if let Some(m) = metadata {
        kept.insert("metadata".into(), m);
    }
    match kind {
        // Read for metadata (labels) only.
        Kind::Node | Kind::Namespace => {}
        Kind::Pod => {
            if let Some(spec) = object.remove("spec") {
                kept.insert(
                    "spec".into(),
                    only(spec, &["nodeName", "serviceAccountName", "hostNetwork"]),
                );
            }
            if let Some(status) = object.remove("status") {
                kept.insert(
                    "status".into(),
                    only(status, &["podIP", "podIPs", "hostIP", "phase"]),
                );
            }
        }
        Kind::Secret => {
            let data = object.remove("data").map(|d| only(d, &CREDENTIAL_KEYS));
            let string_data = object
                .remove("stringData")
                .map(|d| only(d, &CREDENTIAL_KEYS));
            let has_any = |v: &Option<Value>| {
                v.as_ref()
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
            };
            if !has_any(&data) && !has_any(&string_data) {
                return None;
            }
            for (field, value) in [("data", data), ("stringData", string_data)] {
                if let Some(v) = value {
                    kept.insert(field.into(), v);
                }
            }
            if let Some(t) = object.remove("type") {
                kept.insert("type".into(), t);
            }
        }
        // A Service's load-balancer addresses are a Gateway's addresses (its status reports
        // them): of its status, only they are kept, and only when there are some.
        Kind::Service => {
            let ingress = object.remove("status").and_then(load_balancer_ingress);
            kept.extend(object);
            if let Some(ingress) = ingress {
                kept.insert(
                    "status".into(),
                    serde_json::json!({"loadBalancer": {"ingress": ingress}}),
                );
            }
        }
        // Everything else is config: all of it but its status (written by controllers,
        // shoal among them).
        _ => {
            object.remove("status");
            kept.extend(object);
        }
    }
    Some(Value::Object(kept))
}

/// An annotation of Istio's (`*.istio.io/...`).
fn is_istio_key(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(prefix, _)| prefix == "istio.io" || prefix.ends_with(".istio.io"))
}

fn prune_metadata(metadata: Value) -> Value {
    let mut metadata = only(metadata, &["name", "namespace", "labels", "annotations"]);
    let mut none_left = false;
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.remove(LAST_APPLIED);
        none_left = annotations.is_empty();
    }
    if none_left && let Value::Object(m) = &mut metadata {
        m.remove("annotations");
    }
    metadata
}

/// The `ip` and `hostname` of each `status.loadBalancer.ingress` entry; `None` when there
/// are none (a ClusterIP Service, a load balancer not provisioned yet).
fn load_balancer_ingress(mut status: Value) -> Option<Value> {
    let ingress = status.pointer_mut("/loadBalancer/ingress")?.take();
    let Value::Array(entries) = ingress else {
        return None;
    };
    let kept: Vec<Value> = entries
        .into_iter()
        .map(|e| only(e, &["ip", "hostname"]))
        .filter(|e| e.as_object().is_some_and(|m| !m.is_empty()))
        .collect();
    (!kept.is_empty()).then_some(Value::Array(kept))
}

/// `value` with only `fields` (a non-object is kept as it is, for parsing to report).
fn only(value: Value, fields: &[&str]) -> Value {
    match value {
        Value::Object(mut m) => Value::Object(
            fields
                .iter()
                .filter_map(|f| m.remove(*f).map(|v| ((*f).to_string(), v)))
                .collect(),
        ),
        other => other,
    }
}

/// A fingerprint of a pruned object, to tell a real change from a re-delivery (a re-list,
/// a resync, an update of a pruned field).
pub fn fingerprint(object: &Value) -> u64 {
    /// Feeds serialized bytes straight into the hasher (no string per object per event).
    struct Hashing(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(Default::default());
    // serde_json's maps are ordered (BTreeMap), so equal objects serialize equally; writing
    // to the hasher cannot fail.
    let _ = serde_json::to_writer(&mut h, object);
    h.0.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn server_and_controller_fields_are_dropped() {
        let vs = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {
                "name": "reviews", "namespace": "default", "resourceVersion": "42",
                "uid": "u", "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}],
                "labels": {"app": "reviews"},
                "annotations": {LAST_APPLIED: "{…}"},
            },
            "spec": {"hosts": ["reviews"]},
            "status": {"validationMessages": []},
        });
        let kept = prune(Kind::VirtualService, vs).expect("kept");
        assert_eq!(
            kept,
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "reviews", "namespace": "default", "labels": {"app": "reviews"}},
                "spec": {"hosts": ["reviews"]},
            })
        );
    }

    #[test]
    fn a_pod_keeps_identity_placement_and_addresses_only() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "nodeName": "n1", "serviceAccountName": "web",
                "containers": [{"name": "web", "image": "web:1", "env": [{"name": "A", "value": "b"}]}],
                "volumes": [{"name": "v"}],
            },
            "status": {
                "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}], "hostIP": "192.168.0.1",
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null}],
                "containerStatuses": [{"name": "web", "restartCount": 0}],
            },
        });
        let kept = prune(Kind::Pod, pod).expect("kept");
        assert_eq!(
            kept["spec"],
            json!({"nodeName": "n1", "serviceAccountName": "web"})
        );
        assert_eq!(
            kept["status"],
            json!({"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}], "hostIP": "192.168.0.1", "phase": "Running"})
        );
    }

    #[test]
    fn a_pods_condition_change_is_not_a_change() {
        let pod = |ready: &str, restarts: u32| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": restarts.to_string()},
                "spec": {"nodeName": "n1"},
                "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": ready}],
                           "containerStatuses": [{"restartCount": restarts}]},
            })
        };
        let a = prune(Kind::Pod, pod("True", 0)).expect("kept");
        let b = prune(Kind::Pod, pod("False", 3)).expect("kept");
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn a_pod_keeps_istios_annotations_only() {
        let pod = |annotations: serde_json::Value| {
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "web-1", "namespace": "shop", "annotations": annotations}})
        };
        let kept = prune(
            Kind::Pod,
            pod(
                json!({"sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}", "proxy.istio.io/config": "{}",
                       "kubectl.kubernetes.io/restartedAt": "now", "prometheus.io/port": "9090",
                       "notistio.io/x": "y"}),
            ),
        )
        .expect("kept");
        assert_eq!(
            kept["metadata"]["annotations"],
            json!({"sidecar.istio.io/status": "", "proxy.istio.io/config": "{}"})
        );
        let kept = prune(Kind::Pod, pod(json!({"a/b": "c"}))).expect("kept");
        assert!(kept["metadata"].get("annotations").is_none(), "{kept}");
        // Other kinds keep every annotation (their config may be read from them).
        let svc = json!({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": "s", "annotations": {"a/b": "c"}}});
        assert_eq!(
            prune(Kind::Service, svc).expect("kept")["metadata"]["annotations"],
            json!({"a/b": "c"})
        );
    }

    #[test]
    fn only_secrets_with_credentials_are_kept_and_only_their_credentials() {
        let token = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "default-token", "namespace": "shop"},
            "data": {"token": "dG9rZW4=", "namespace": "c2hvcA=="},
        });
        assert_eq!(prune(Kind::Secret, token), None);
        let tls = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "gw-cert", "namespace": "istio-system"},
            "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5", "other": "eA=="},
        });
        let kept = prune(Kind::Secret, tls).expect("kept");
        assert_eq!(
            kept["data"],
            json!({"tls.crt": "Y2VydA==", "tls.key": "a2V5"})
        );
        assert_eq!(kept["type"], json!("kubernetes.io/tls"));
        let generic = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "istio-system"},
            "stringData": {"cacert": "PEM"},
        });
        assert!(prune(Kind::Secret, generic).is_some());
    }

    #[test]
    fn a_service_keeps_its_load_balancer_addresses_only_of_its_status() {
        let svc = |status: Value| {
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "gw-istio", "namespace": "edge"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                "status": status,
            })
        };
        let assigned = json!({
            "loadBalancer": {"ingress": [
                {"ip": "203.0.113.7", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]},
                {"hostname": "lb.example.com"},
            ]},
            "conditions": [{"type": "x", "status": "True"}],
        });
        let kept = prune(Kind::Service, svc(assigned)).expect("kept");
        assert_eq!(
            kept["status"],
            json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}})
        );
        assert_eq!(kept["spec"]["type"], json!("LoadBalancer"));
        // No address yet (or a ClusterIP Service): no status at all, so nothing changes
        // until one is assigned.
        let pending = prune(Kind::Service, svc(json!({"loadBalancer": {}}))).expect("kept");
        assert_eq!(pending.get("status"), None);
        let odd = prune(
            Kind::Service,
            svc(json!({"loadBalancer": {"ingress": "x"}})),
        );
        assert_eq!(odd.expect("kept").get("status"), None);
        assert_eq!(
            fingerprint(&pending),
            fingerprint(&prune(Kind::Service, svc(json!({}))).expect("kept"))
        );
    }

    #[test]
    fn a_node_keeps_its_labels_only() {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a"}},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {"images": [{"names": ["x"], "sizeBytes": 1}]},
        });
        let kept = prune(Kind::Node, node).expect("kept");
        assert_eq!(
            kept,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a"}}})
        );
    }

    #[test]
    fn malformed_shapes_are_left_for_parsing_to_report() {
        assert_eq!(prune(Kind::Service, json!([1, 2])), Some(json!([1, 2])));
        let odd = prune(Kind::Pod, json!({"kind": "Pod", "spec": "text"})).expect("kept");
        assert_eq!(odd["spec"], json!("text"));
    }
}
