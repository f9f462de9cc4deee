//! Heap held per object by the Kubernetes source's path into the config store: Pods,
//! Services and EndpointSlices as the API server returns them (managedFields, last-applied
//! annotation, full Pod spec and status), through the tracker (prune, fingerprint, parse)
//! into a `ConfigStore`. Counts live heap bytes with a jemalloc's statistics (`stats.allocated`); the figures go
//! to BENCHMARKS.md.
//!
//! `cargo run --release -p shoal-config --features kubernetes --example store_memory [PODS]`

use serde_json::{Value, json};
use shoal_config::ConfigStore;
use shoal_config::source::SourceUpdate;
use shoal_config::source::kubernetes::kinds::WATCHED;
use shoal_config::source::kubernetes::tracker::Tracker;
use tikv_jemalloc_ctl::{epoch, stats};

// The allocator shoal runs with: its statistics are the measure.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes allocated and not freed, now.
fn live() -> isize {
    epoch::advance().expect("jemalloc epoch");
    stats::allocated::read().expect("jemalloc stats") as isize
}

/// A Pod as a Deployment's ReplicaSet creates it and the API server returns it.
fn pod(i: usize) -> Value {
    let app = format!("app-{}", i % 1000);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{app}-7d6cfb7dfd-{i:05}"), "namespace": format!("ns-{}", i % 50),
            "uid": format!("5f0c3a4e-1b2c-4d5e-8f90-{i:012}"), "resourceVersion": format!("{}", 100000 + i),
            "generateName": format!("{app}-7d6cfb7dfd-"), "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": {"app": app, "version": "v1", "pod-template-hash": "7d6cfb7dfd",
                       "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": app},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-01T09:59:00Z",
                            "sidecar.istio.io/status": "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"volumes\":[\"istio-envoy\",\"istio-data\",\"istio-podinfo\",\"istio-token\",\"istiod-ca-cert\"]}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-7d6cfb7dfd"), "uid": "0f1e2d3c", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-12-01T10:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}, "f:version": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:image": {}}}}}}],
        },
        "spec": {
            "nodeName": format!("node-{}", i % 100), "serviceAccountName": app,
            "containers": [
                {"name": "app", "image": format!("registry.example.com/{app}:1.2.3"), "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}, "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]},
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                 "env": [{"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}, {"name": "PILOT_CERT_PROVIDER", "value": "istiod"}]},
            ],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": {
            "phase": "Running", "podIP": format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256),
            "podIPs": [{"ip": format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256)}],
            "hostIP": format!("192.168.0.{}", i % 100), "startTime": "2026-12-01T10:00:01Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:00:05Z"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "x", "imageID": "sha256:abc", "containerID": "containerd://0123", "state": {"running": {"startedAt": "2026-12-01T10:00:03Z"}}}],
        },
    })
}

fn service(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("app-{i}"), "namespace": format!("ns-{}", i % 50), "uid": format!("svc-{i}"),
                     "resourceVersion": "1", "labels": {"app": format!("app-{i}")},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"spec\":{\"ports\":[{\"name\":\"http\",\"port\":80}]}}"}},
        "spec": {"clusterIP": format!("10.96.{}.{}", i / 256, i % 256), "clusterIPs": [format!("10.96.{}.{}", i / 256, i % 256)],
                 "selector": {"app": format!("app-{i}")}, "type": "ClusterIP", "sessionAffinity": "None",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        "status": {"loadBalancer": {}},
    })
}

fn slice(i: usize, pods: usize) -> Value {
    let per = pods / 1000;
    let endpoints: Vec<Value> = (0..per)
        .map(|k| {
            let p = i + 1000 * k;
            json!({"addresses": [format!("10.{}.{}.{}", 1 + p / 65536, (p / 256) % 256, p % 256)],
                   "conditions": {"ready": true, "serving": true, "terminating": false},
                   "nodeName": format!("node-{}", p % 100),
                   "targetRef": {"kind": "Pod", "namespace": format!("ns-{}", p % 50), "name": format!("pod-{p}"), "uid": "u"}})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("app-{i}-abcde"), "namespace": format!("ns-{}", i % 50), "resourceVersion": "1",
                     "labels": {"kubernetes.io/service-name": format!("app-{i}"), "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

/// Applies `objects` of kind `name` through a tracker into `store`; returns the bytes the
/// store and the tracker hold afterwards, and the tracker.
fn load(
    store: &mut ConfigStore,
    name: &str,
    objects: impl Iterator<Item = Value>,
) -> (isize, Tracker) {
    let watched = WATCHED
        .iter()
        .find(|w| w.id.name == name)
        .expect("a watched kind");
    let before = live();
    let mut tracker = Tracker::new(watched.id, "v1");
    tracker.init();
    let mut applied = 0;
    for o in objects {
        if let Some(SourceUpdate::Apply { source, docs }) = tracker.apply(o) {
            store.apply(&source, docs);
            applied += 1;
        }
    }
    let listed = tracker.init_done();
    assert!(listed.is_empty(), "nothing removed");
    assert!(applied > 0);
    (live() - before, tracker)
}

/// Makes the i-th object of a kind.
type Make<'a> = &'a dyn Fn(usize) -> Value;

fn main() {
    let pods: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut store = ConfigStore::new();
    let mut trackers = Vec::new();
    println!(
        "{:<14} {:>8} {:>14} {:>12}",
        "kind", "objects", "heap (bytes)", "per object"
    );
    let kinds: [(&str, usize, Make); 3] = [
        ("Service", 1000, &service),
        ("EndpointSlice", 1000, &|i| slice(i, pods)),
        ("Pod", pods, &pod),
    ];
    for (name, n, make) in kinds {
        // Each object is made as the watch would deliver it and dropped once applied: what
        // remains is what the store and the tracker keep.
        let (total, tracker) = load(&mut store, name, (0..n).map(make));
        println!("{name:<14} {n:>8} {total:>14} {:>12}", total / n as isize);
        trackers.push(tracker);
    }
    // What the tracker's fingerprints cost, apart from the store.
    let before = live();
    drop(trackers);
    let trackers = before - live();
    println!("(of which the trackers' fingerprints: {trackers} bytes for all kinds)");
    println!("store objects: {}", store.snapshot().len());
}
