//! Initial-sync benchmark of `shoal serve --kubernetes` (BENCHMARKS.md, "Kubernetes
//! source"): an emulated cluster of PODS Pods (realistic ones: containers, probes, status
//! conditions, managed fields), SERVICES Services and as many EndpointSlices, then shoal
//! started on it; reports the time from start to `/ready` (every kind listed and the first
//! build done, so the first push can go out) and shoal's RSS, against the same for an empty
//! cluster.
//!
//! `cargo run --release -p shoal-kube-emulator --example sync_bench -- SHOAL_BIN [PODS] [SERVICES]`

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_kube_emulator::{Emulator, Options};

fn pod(i: usize, services: usize) -> Value {
    let svc = i % services;
    let ns = format!("ns-{}", svc % 20);
    let ip = format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("svc-{svc}-{i}"), "namespace": ns,
            "labels": {"app": format!("svc-{svc}"), "version": "v1", "pod-template-hash": "5d8f7c9b4"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("svc-{svc}-5d8f7c9b4"), "uid": "0d8f3c1e-7d1c-4d2e-9a55-111111111111", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:version": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}}}}}}],
        },
        "spec": {
            "nodeName": format!("node-{}", i % 50), "serviceAccountName": format!("svc-{svc}"),
            "containers": [{
                "name": "app", "image": "registry.example/app:1.2.3",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "production"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
        },
        "status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": format!("192.168.0.{}", i % 50),
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-01T00:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T00:00:05Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-01T00:00:05Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T00:00:00Z"},
            ],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "registry.example/app:1.2.3",
                "imageID": "registry.example/app@sha256:0123456789abcdef", "containerID": "containerd://0123456789abcdef",
                "state": {"running": {"startedAt": "2026-12-01T00:00:03Z"}}}],
            "startTime": "2026-12-01T00:00:00Z", "qosClass": "Burstable",
        },
    })
}

fn service(svc: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{svc}"), "namespace": format!("ns-{}", svc % 20), "labels": {"app": format!("svc-{svc}")}},
        "spec": {"selector": {"app": format!("svc-{svc}")}, "clusterIP": format!("172.20.{}.{}", svc / 256, svc % 256),
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    })
}

fn slice(svc: usize, pods: usize, services: usize) -> Value {
    let endpoints: Vec<Value> = (svc..pods)
        .step_by(services)
        .map(|i| {
            let ip = format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256);
            json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false},
                   "nodeName": format!("node-{}", i % 50),
                   "targetRef": {"kind": "Pod", "name": format!("svc-{svc}-{i}"), "namespace": format!("ns-{}", svc % 20)}})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{svc}-abcde"), "namespace": format!("ns-{}", svc % 20),
                     "labels": {"kubernetes.io/service-name": format!("svc-{svc}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn rss_kib(child: &Child) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Starts shoal on the cluster; returns (time to /ready, RSS in KiB once ready and settled).
async fn measure(
    shoal: &str,
    emu: &Emulator,
    dir: &std::path::Path,
) -> anyhow::Result<(Duration, u64)> {
    let kubeconfig = dir.join("kubeconfig");
    emu.kubeconfig(&kubeconfig)?;
    let empty = dir.join("config");
    std::fs::create_dir_all(&empty)?;
    let admin = free_port()?;
    let start = Instant::now();
    let mut child = Command::new(shoal)
        .args(["serve", "--no-ca", "--kubernetes", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--config-dir")
        .arg(&empty)
        .args(["--xds-addr", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let ready = loop {
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            anyhow::bail!("shoal not ready within 300 s");
        }
        let ok = std::net::TcpStream::connect(("127.0.0.1", admin))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /ready HTTP/1.0\r\n\r\n").ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                out.split_whitespace()
                    .nth(1)
                    .is_some_and(|code| code == "200")
                    .then_some(())
            });
        if ok.is_some() {
            break start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let allocations settle (the list buffers are released) before reading RSS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = rss_kib(&child).unwrap_or(0);
    child.kill()?;
    child.wait()?;
    Ok((ready, rss))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let shoal = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: sync_bench SHOAL_BIN [PODS] [SERVICES]"))?;
    let pods: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let services: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let dir = tempfile::tempdir()?;
    let opts = Options {
        max_history: pods + 4 * services + 100,
        ..Options::default()
    };

    let empty = Emulator::start(opts.clone()).await?;
    for ns in 0..20 {
        empty.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{ns}")}}))?;
    }
    let (empty_ready, empty_rss) = measure(&shoal, &empty, dir.path()).await?;
    drop(empty);

    let emu = Emulator::start(opts).await?;
    for ns in 0..20 {
        emu.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{ns}")}}))?;
    }
    let t = Instant::now();
    for svc in 0..services {
        emu.apply(service(svc))?;
        emu.apply(slice(svc, pods, services))?;
    }
    let mut bytes = 0usize;
    for i in 0..pods {
        let p = pod(i, services);
        bytes += p.to_string().len();
        emu.apply(p)?;
    }
    println!(
        "cluster: {pods} pods ({} bytes of JSON each on average), {services} services, {services} endpoint slices, loaded in {:.1?}",
        bytes / pods.max(1),
        t.elapsed()
    );
    let (ready, rss) = measure(&shoal, &emu, dir.path()).await?;
    println!("empty cluster:  ready in {empty_ready:.2?}, RSS {empty_rss} KiB");
    println!("loaded cluster: ready in {ready:.2?}, RSS {rss} KiB");
    println!(
        "RSS per pod (RSS difference over pods, services and slices included): {:.2} KiB",
        (rss.saturating_sub(empty_rss)) as f64 / pods.max(1) as f64
    );
    Ok(())
}
