//! The churn scenario: config edits one after another, each timed from the write to the
//! last proxy that acknowledged it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shoal_api::ResourceType;

use super::*;

/// One edit of the churn scenario: what it does and which resource shows it.
struct Change {
    label: String,
    /// The files written, all at once.
    files: Vec<(PathBuf, String)>,
    /// The resources that show the change, of type `ty`.
    watched: Vec<Arc<str>>,
    ty: ResourceType,
    /// Proxies expected to receive the update (`None`: everyone who holds a watched name).
    expected: Option<usize>,
    /// A proxy has the change once it has every watched name (else: the first of them).
    all: bool,
}

/// What the churn scenario has done to each service so far (endpoints, weights).
#[derive(Default)]
struct Edits {
    endpoints: HashMap<usize, usize>,
    weights: HashMap<usize, (u32, u32)>,
    /// Nodes drained so far (their pods deleted).
    drained: Vec<usize>,
}

fn plan_change(
    opts: &Options,
    n: usize,
    fleet: &Fleet,
    config_dir: &std::path::Path,
    edits: &mut Edits,
) -> Change {
    let mesh = &opts.mesh;
    let services = mesh.services.max(1);
    // Changes touch services of the namespaces the fleet lives in, so someone is watching.
    let grpc = opts.kind == Kind::Grpc;
    let svc = if grpc {
        n % mesh.namespaces.max(1)
    } else {
        (n * 7 + 3) % services
    };
    let port = if grpc { 7070 } else { 80 };
    // Endpoint assignments an added (or removed) endpoint changes: the service's and its
    // subset's (the new endpoint's pod is labelled v1 or v2 alternately).
    let changed_clas = |svc: usize| {
        let mut v = vec![
            fleet
                .ctx
                .names
                .get(&format!("outbound|{port}||{}", mesh.host(svc))),
        ];
        if mesh.has_dr(svc) {
            let subset = 1 + mesh.endpoints % 2;
            v.push(
                fleet
                    .ctx
                    .names
                    .get(&format!("outbound|{port}|v{subset}|{}", mesh.host(svc))),
            );
        }
        v
    };
    let endpoints_of =
        |edits: &Edits, svc: usize| edits.endpoints.get(&svc).copied().unwrap_or(mesh.endpoints);
    let weights_of =
        |edits: &Edits, svc: usize| edits.weights.get(&svc).copied().unwrap_or((90, 10));
    if opts.kind == Kind::Ztunnel && n % 4 == 3 && mesh.pods {
        // A node drained: every pod on it goes at once (its services rewritten together).
        let node = (n / 4) % 100;
        edits.drained.push(node);
        let mut files = Vec::new();
        let mut watched = Vec::new();
        for i in 0..services {
            let endpoints = endpoints_of(edits, i);
            let gone: Vec<usize> = (0..endpoints)
                .filter(|e| mesh.node_of(i, *e) == node)
                .collect();
            if gone.is_empty() {
                continue;
            }
            for e in gone {
                let uid = format!("Kubernetes//Pod/{}/svc-{i}-{e}", mesh.namespace_of(i));
                watched.push(fleet.ctx.names.get(&uid));
            }
            files.push((
                mesh.path(config_dir, i),
                mesh.service_yaml_drained(i, endpoints, weights_of(edits, i), &edits.drained),
            ));
        }
        return Change {
            label: format!("node-{node} drained ({} pods)", watched.len()),
            files,
            watched,
            ty: ResourceType::Address,
            expected: Some(fleet.proxies.len()),
            all: true,
        };
    }
    if opts.kind == Kind::Ztunnel {
        // A pod comes or goes (the mesh has a Pod per endpoint, `--pods`): its workload
        // reaches every ztunnel, added or removed.
        let endpoints = if endpoints_of(edits, svc) > mesh.endpoints {
            mesh.endpoints
        } else {
            mesh.endpoints + 1
        };
        edits.endpoints.insert(svc, endpoints);
        let uid = format!(
            "Kubernetes//Pod/{}/svc-{svc}-{}",
            mesh.namespace_of(svc),
            mesh.endpoints
        );
        return Change {
            label: format!(
                "pod {uid} {}",
                if endpoints > mesh.endpoints {
                    "added"
                } else {
                    "removed"
                }
            ),
            files: vec![(
                mesh.path(config_dir, svc),
                mesh.service_yaml_drained(svc, endpoints, weights_of(edits, svc), &edits.drained),
            )],
            watched: vec![fleet.ctx.names.get(&uid)],
            ty: ResourceType::Address,
            expected: Some(fleet.proxies.len()),
            all: false,
        };
    }
    match if grpc || opts.endpoint_churn {
        0
    } else {
        n % 3
    } {
        // Scale a service's endpoints up by one, or back down (a global one when the mesh has
        // them: every proxy sees those).
        0 => {
            let svc = if mesh.global_services > 0 && !grpc {
                mesh.global((n / 3) % mesh.global_services)
            } else {
                svc
            };
            let endpoints = if endpoints_of(edits, svc) > mesh.endpoints {
                mesh.endpoints
            } else {
                mesh.endpoints + 1
            };
            edits.endpoints.insert(svc, endpoints);
            Change {
                label: format!("scale {} to {endpoints} endpoints", mesh.host(svc)),
                files: vec![(
                    mesh.path(config_dir, svc),
                    mesh.service_yaml_drained(
                        svc,
                        endpoints,
                        weights_of(edits, svc),
                        &edits.drained,
                    ),
                )],
                watched: changed_clas(svc),
                ty: ResourceType::Endpoint,
                expected: None,
                all: false,
            }
        }
        // Shift a VirtualService's weights (route configs change).
        1 => {
            let svc = (0..services)
                .map(|i| (svc + i) % services)
                .find(|i| mesh.has_vs(*i))
                .unwrap_or(svc);
            let w = if weights_of(edits, svc) == (90, 10) {
                (50, 50)
            } else {
                (90, 10)
            };
            edits.weights.insert(svc, w);
            Change {
                label: format!("weights of {} to {}/{}", mesh.host(svc), w.0, w.1),
                files: vec![(
                    mesh.path(config_dir, svc),
                    mesh.service_yaml_drained(svc, endpoints_of(edits, svc), w, &edits.drained),
                )],
                watched: vec![fleet.ctx.names.get("80")],
                ty: ResourceType::Route,
                expected: Some(
                    fleet
                        .proxies
                        .iter()
                        .filter(|p| mesh.sees(&p.namespace, svc))
                        .count(),
                ),
                all: false,
            }
        }
        // A new service.
        _ => {
            let svc = services + n;
            Change {
                label: format!("new service {}", mesh.host(svc)),
                files: vec![(
                    mesh.path(config_dir, svc),
                    mesh.service_yaml_drained(svc, mesh.endpoints, (90, 10), &edits.drained),
                )],
                watched: vec![
                    fleet
                        .ctx
                        .names
                        .get(&format!("outbound|80||{}", mesh.host(svc))),
                ],
                ty: ResourceType::Cluster,
                expected: Some(
                    fleet
                        .proxies
                        .iter()
                        .filter(|p| mesh.sees(&p.namespace, svc))
                        .count(),
                ),
                all: false,
            }
        }
    }
}

/// Proxies whose stream is served by the replica they connected to (with one server: all).
async fn direct_proxies(fleet: &Fleet, servers: &[Server]) -> HashSet<usize> {
    if servers.len() < 2 {
        return (0..fleet.proxies.len()).collect();
    }
    let mut owner: HashMap<String, usize> = HashMap::new();
    for (i, s) in servers.iter().enumerate() {
        let Ok(body) = crate::server::get(s.admin, "/debug/syncz").await else {
            continue;
        };
        if let Ok(serde_json::Value::Array(list)) = serde_json::from_str(&body) {
            for r in list {
                if let Some(id) = r["node_id"].as_str() {
                    owner.insert(id.to_string(), i);
                }
            }
        }
    }
    let channels = fleet.ctx.channels.len();
    fleet
        .proxies
        .iter()
        .filter(|p| owner.get(&p.id) == Some(&((p.index % channels) % servers.len())))
        .map(|p| p.index)
        .collect()
}

pub(super) async fn churn(
    opts: &Options,
    fleet: &Fleet,
    servers: &[Server],
) -> anyhow::Result<ChurnResult> {
    let server = &servers[0];
    let direct = direct_proxies(fleet, servers).await;
    let (mut direct_lat, mut forwarded_lat) = (Vec::new(), Vec::new());
    let pb = bar(opts.progress, opts.changes, "churn");
    let stats = &fleet.ctx.stats;
    let mut changes = Vec::new();
    let mut all = Vec::new();
    let mut updates = fleet.updates.lock().await;
    let mut edits = Edits::default();
    for n in 0..opts.changes {
        let change = plan_change(opts, n, fleet, &server.config_dir, &mut edits);
        let holders = fleet
            .proxies
            .iter()
            .filter(|p| {
                let held = p.held.lock();
                change
                    .watched
                    .iter()
                    .any(|w| held.get(change.ty).contains_key(w))
            })
            .count();
        let expected = change.expected.unwrap_or(holders);
        while updates.try_recv().is_ok() {}
        *fleet.ctx.watched.write() = change.watched.iter().cloned().collect();
        let (b0, m0) = (
            stats.bytes.load(Ordering::Relaxed),
            stats.messages.load(Ordering::Relaxed),
        );
        let t0 = Instant::now();
        for (file, text) in &change.files {
            write_atomic(file, text)?;
        }
        let mut first_at: HashMap<usize, Instant> = HashMap::new();
        let mut got: HashMap<usize, HashSet<Arc<str>>> = HashMap::new();
        let deadline = t0 + Duration::from_secs(30).min(opts.timeout);
        let mut quiet_since = Instant::now();
        loop {
            let wait = if first_at.len() >= expected && expected > 0 {
                Duration::from_millis(300)
            } else {
                Duration::from_millis(1000)
            };
            match tokio::time::timeout(wait, updates.recv()).await {
                Ok(Some(u)) => {
                    let done = if change.all {
                        let names = got.entry(u.proxy).or_default();
                        names.insert(u.name);
                        names.len() >= change.watched.len()
                    } else {
                        true
                    };
                    if done {
                        first_at.entry(u.proxy).or_insert(u.at);
                    }
                    quiet_since = Instant::now();
                }
                Ok(None) => break,
                Err(_)
                    if first_at.len() >= expected
                        || (expected == 0 && quiet_since.elapsed() > Duration::from_secs(1)) =>
                {
                    break;
                }
                Err(_) => {}
            }
            if Instant::now() > deadline {
                break;
            }
        }
        fleet.ctx.watched.write().clear();
        let lat: Vec<f64> = first_at
            .values()
            .map(|at| at.saturating_duration_since(t0).as_secs_f64())
            .collect();
        all.extend(lat.iter().copied());
        for (proxy, at) in &first_at {
            let l = at.saturating_duration_since(t0).as_secs_f64();
            if direct.contains(proxy) {
                direct_lat.push(l);
            } else {
                forwarded_lat.push(l);
            }
        }
        let p = Percentiles::of(lat);
        changes.push(ChangeResult {
            change: change.label,
            watched: change
                .watched
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            receivers: first_at.len(),
            expected,
            first_ms: first_at.values().min().map_or(f64::NAN, |at| {
                at.saturating_duration_since(t0).as_secs_f64() * 1000.0
            }),
            last_ms: p.max_ms,
            latency: p,
            bytes: stats.bytes.load(Ordering::Relaxed) - b0,
            messages: stats.messages.load(Ordering::Relaxed) - m0,
        });
        if let Some(pb) = &pb {
            pb.inc(1);
        }
        let next = t0 + opts.change_interval;
        tokio::time::sleep_until(next.into()).await;
    }
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    // Let the last change settle everywhere before anything else looks.
    let _ = fleet.wait_converged(opts.timeout, None).await;
    let n = changes.len().max(1) as f64;
    Ok(ChurnResult {
        latency: Percentiles::of(all.clone()),
        last: Percentiles::of(changes.iter().map(|c| c.last_ms / 1000.0).collect()),
        bytes_per_change: changes.iter().map(|c| c.bytes as f64).sum::<f64>() / n,
        messages_per_change: changes.iter().map(|c| c.messages as f64).sum::<f64>() / n,
        direct: (servers.len() > 1).then(|| Percentiles::of(direct_lat)),
        forwarded: (servers.len() > 1).then(|| Percentiles::of(forwarded_lat)),
        changes,
        cdf: {
            let mut a = all;
            a.sort_by(f64::total_cmp);
            a
        },
    })
}
