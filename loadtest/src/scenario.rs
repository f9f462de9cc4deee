//! The scenarios: `connect`, `churn`, `storm` (and `all`), each bounded in count and time
//! and stopping by itself, with the wire baseline and a correctness check.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use shoal_api::ResourceType;

use crate::baseline;
use crate::fleet::{Fleet, FleetSpec};
use crate::mesh::{MeshSpec, write_atomic};
use crate::proxy::Kind;
use crate::server::{Serve, Server, Usage};

mod churn;
mod verify;

use churn::churn;
pub use verify::{verify, verify_some};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Connect,
    Churn,
    Storm,
    /// Replicas only: kill one (SIGKILL) after connecting, measure how its proxies recover.
    Failover,
    All,
}

/// Where the server comes from.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start `shoal serve` (this binary) on a generated mesh.
    /// Start `shoal serve` (this binary) on a generated mesh; with `replicas` > 1, a shard
    /// group of that many replicas.
    Spawn {
        bin: PathBuf,
        args: Vec<String>,
        replicas: usize,
    },
    /// A server already running on `config_dir`.
    Attach {
        xds: SocketAddr,
        admin: SocketAddr,
        pid: Option<u32>,
        config_dir: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    pub proxies: usize,
    pub kind: Kind,
    pub connections: usize,
    /// Streams started per second (0: all at once).
    pub ramp: f64,
    pub mesh: MeshSpec,
    pub target: Target,
    pub changes: usize,
    pub change_interval: Duration,
    /// Churn scales endpoints only (what a federated peer group's proxies can see change).
    pub endpoint_churn: bool,
    pub timeout: Duration,
    pub baseline: bool,
    /// How long the fleet idles after converging before the server's memory is read.
    pub settle: Duration,
    /// Check that every proxy holds exactly the server's view.
    pub verify: bool,
    pub progress: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut seconds: Vec<f64>) -> Percentiles {
        if seconds.is_empty() {
            return Percentiles::default();
        }
        seconds.sort_by(f64::total_cmp);
        let at = |q: f64| {
            seconds[((seconds.len() as f64 * q).ceil() as usize).clamp(1, seconds.len()) - 1]
                * 1000.0
        };
        Percentiles {
            count: seconds.len(),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectResult {
    pub proxies: usize,
    pub converged: usize,
    pub seconds: f64,
    pub convergence: Percentiles,
    pub bytes: u64,
    pub messages: u64,
    pub server_before: Option<Usage>,
    pub server_after: Option<Usage>,
    /// (RSS with the fleet − RSS without) / proxies.
    pub memory_per_proxy_bytes: Option<f64>,
    pub server_cpu_seconds: Option<f64>,
    /// What the server says it sent (its `shoal_xds_pushed_bytes_total` and
    /// `shoal_xds_pushes_total`), to compare with what the proxies received.
    pub server_pushed_bytes: Option<f64>,
    pub server_pushes: Option<f64>,
    /// In a mixed fleet, each kind's convergence.
    pub by_kind: std::collections::BTreeMap<String, Percentiles>,
    #[serde(skip)]
    pub cdf: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeResult {
    pub change: String,
    pub watched: String,
    pub receivers: usize,
    pub expected: usize,
    pub first_ms: f64,
    pub last_ms: f64,
    pub latency: Percentiles,
    pub bytes: u64,
    pub messages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChurnResult {
    pub changes: Vec<ChangeResult>,
    /// Every proxy's latency from the file write to its update, over all changes.
    pub latency: Percentiles,
    /// Per change, the latency of the last proxy.
    pub last: Percentiles,
    pub bytes_per_change: f64,
    pub messages_per_change: f64,
    /// With replicas: latency of proxies served by the replica they connected to, and of
    /// proxies whose stream that replica forwards to the owner.
    pub direct: Option<Percentiles>,
    pub forwarded: Option<Percentiles>,
    #[serde(skip)]
    pub cdf: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    pub resume: bool,
    pub converged: usize,
    pub seconds: f64,
    pub bytes_resent: u64,
    /// Bytes resent as a share of the full initial push.
    pub resent_ratio: f64,
    pub messages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverResult {
    /// The replica killed (the Raft leader when it was one).
    pub killed: usize,
    pub was_leader: bool,
    /// Proxies whose stream broke (connected to the killed replica).
    pub disconnected: usize,
    /// From the kill until every proxy is served and converged again.
    pub seconds: f64,
    /// From the kill until the survivors marked the victim down, and until every shard
    /// was served again.
    pub detected_seconds: f64,
    pub served_seconds: f64,
    pub converged: usize,
    pub bytes_resent: u64,
    pub resent_ratio: f64,
    /// Streams that never broke and received a response after the kill: forwarded streams
    /// a router re-opened on their shard's new owner (a delta resume gets its first,
    /// empty, responses; a SotW resume with current versions gets nothing, so is not
    /// counted). Times from the kill to that first response.
    pub forwarded_recovery: Percentiles,
    /// Attempts of the surviving routers to re-establish forwarded streams (their
    /// `shoal_router_reestablished_total`, which counts every attempt after the first).
    pub reestablished: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineResult {
    pub seconds: f64,
    pub converged: usize,
    /// Baseline time / shoal time (1.0: as fast as the wire allows).
    pub efficiency: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub scenario: Scenario,
    pub kind: Kind,
    pub proxies: usize,
    pub connections: usize,
    pub mesh: MeshSpec,
    pub connect: Option<ConnectResult>,
    pub churn: Option<ChurnResult>,
    pub storms: Vec<StormResult>,
    pub failover: Option<FailoverResult>,
    pub baseline: Option<BaselineResult>,
    /// Proxies that do not hold exactly the server's view (empty when verified and right).
    pub mismatches: Vec<String>,
    pub errors: Vec<String>,
    pub nacks: u64,
}

fn bar(enabled: bool, len: usize, what: &str) -> Option<ProgressBar> {
    if !enabled {
        return None;
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {prefix:>8} [{bar:40}] {pos}/{len} {elapsed} {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(what.to_string());
    Some(pb)
}

fn fleet_spec(opts: &Options, xds: Vec<SocketAddr>) -> FleetSpec {
    let namespaces: Vec<String> = (0..opts.mesh.namespaces.max(1))
        .map(|n| format!("ns-{n}"))
        .collect();
    let grpc_targets = (0..opts.mesh.namespaces.max(1))
        .map(|n| format!("{}:7070", opts.mesh.host(n)))
        .collect();
    FleetSpec {
        xds,
        proxies: opts.proxies,
        kind: opts.kind,
        connections: opts.connections,
        namespaces,
        grpc_targets,
    }
}

/// Lets this process (and the server it starts) hold many sockets: the hard limit is raised
/// too where allowed (root), else the soft limit goes up to the hard one.
pub fn raise_nofile_limit() {
    const WANT: u64 = 1 << 20;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, WANT, WANT).is_err() {
        let _ = rlimit::increase_nofile_limit(WANT);
    }
}

/// Runs the scenario end to end. The server (when spawned) is stopped on return.
pub async fn run(opts: &Options) -> anyhow::Result<Results> {
    raise_nofile_limit();
    let tmp = tempfile::tempdir()?;
    let mut servers = match &opts.target {
        Target::Spawn {
            bin,
            args,
            replicas,
        } if *replicas > 1 => {
            let dir = tmp.path().join("mesh");
            opts.mesh.write(&dir)?;
            Server::start_cluster(bin, &dir, tmp.path(), *replicas, args).await?
        }
        Target::Spawn { bin, args, .. } => {
            let dir = tmp.path().join("mesh");
            opts.mesh.write(&dir)?;
            let serve = Serve::on_loopback(bin, &dir, &tmp.path().join("data"))
                .args(args)
                .log_filter_from_env("SHOAL_LOG", "warn");
            let log = tmp.path().join("shoal.log");
            vec![Server::start(serve, Some(&log), Duration::from_secs(120)).await?]
        }
        Target::Attach {
            xds,
            admin,
            pid,
            config_dir,
        } => vec![Server::attach(*xds, *admin, *pid, config_dir.clone())],
    };
    let server = &servers[0];
    let idle = server.settled_usage().await;
    let fleet = Fleet::new(&fleet_spec(opts, servers.iter().map(|s| s.xds).collect()))?;
    // One proxy per namespace records what it receives, for the baseline.
    if opts.baseline {
        let mut seen = HashSet::new();
        for p in &fleet.proxies {
            if seen.insert(p.namespace.clone()) {
                *p.recording.lock() = Some(Vec::new());
            }
        }
    }
    let mut results = Results {
        scenario: opts.scenario,
        kind: opts.kind,
        proxies: opts.proxies,
        connections: if opts.connections == 0 {
            opts.proxies
        } else {
            opts.connections
        },
        mesh: opts.mesh.clone(),
        connect: None,
        churn: None,
        storms: Vec::new(),
        failover: None,
        baseline: None,
        mismatches: Vec::new(),
        errors: Vec::new(),
        nacks: 0,
    };

    let connect = connect(opts, &fleet, server, idle).await;
    let all_converged = connect.converged == opts.proxies;
    results.connect = Some(connect);
    if all_converged && opts.verify {
        results.mismatches = verify(&fleet, &servers).await?;
    }
    if all_converged && matches!(opts.scenario, Scenario::Churn | Scenario::All) {
        results.churn = Some(churn(opts, &fleet, &servers).await?);
        if opts.verify {
            results.mismatches.extend(verify(&fleet, &servers).await?);
        }
    }
    if all_converged && opts.scenario == Scenario::Failover {
        anyhow::ensure!(servers.len() > 1, "failover needs replicas (--replicas 3)");
        let full = results.connect.as_ref().map_or(0, |c| c.bytes);
        results.failover = Some(failover(opts, &fleet, &mut servers, full).await?);
        if opts.verify {
            let alive: Vec<&Server> = servers.iter().filter(|s| s.is_running()).collect();
            results
                .mismatches
                .extend(verify_some(&fleet, &alive).await?);
        }
    }
    if all_converged && matches!(opts.scenario, Scenario::Storm | Scenario::All) {
        let full = results.connect.as_ref().map_or(0, |c| c.bytes);
        for resume in [true, false] {
            results.storms.push(storm(opts, &fleet, full, resume).await);
        }
        if opts.verify {
            results.mismatches.extend(verify(&fleet, &servers).await?);
        }
    }
    results.errors = fleet
        .errors()
        .into_iter()
        .map(|(id, e)| format!("{id}: {e}"))
        .take(20)
        .collect();
    results.nacks = fleet.ctx.stats.nacks.load(Ordering::Relaxed);
    fleet.stop().await;
    if opts.baseline && all_converged {
        results.baseline = Some(
            run_baseline(
                opts,
                &fleet,
                results.connect.as_ref().map_or(0.0, |c| c.seconds),
            )
            .await?,
        );
    }
    Ok(results)
}

async fn connect(
    opts: &Options,
    fleet: &Fleet,
    server: &Server,
    idle: Option<Usage>,
) -> ConnectResult {
    let pb = bar(opts.progress, opts.proxies, "connect");
    let stats = &fleet.ctx.stats;
    let (b0, m0) = (
        stats.bytes.load(Ordering::Relaxed),
        stats.messages.load(Ordering::Relaxed),
    );
    let sent0 = server.metric("shoal_xds_pushed_bytes_total").await.ok();
    let pushes0 = server.metric("shoal_xds_pushes_total").await.ok();
    fleet.start(false, opts.ramp, pb.as_ref()).await;
    let outcome = fleet.wait_converged(opts.timeout, pb.as_ref()).await;
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let converged = fleet.converged();
    let sent = server
        .metric("shoal_xds_pushed_bytes_total")
        .await
        .ok()
        .zip(sent0)
        .map(|(a, b)| a - b);
    let pushes = server
        .metric("shoal_xds_pushes_total")
        .await
        .ok()
        .zip(pushes0)
        .map(|(a, b)| a - b);
    // Idle: let the server hand back what pushing took before reading its memory.
    tokio::time::sleep(opts.settle).await;
    let after = server.settled_usage().await;
    let cdf = fleet.convergence_times();
    let by_kind = if opts.kind == Kind::Mixed {
        [Kind::Sidecar, Kind::Ztunnel, Kind::Waypoint]
            .into_iter()
            .map(|k| {
                let times = fleet.convergence_times_of(Some(k));
                (k.as_str().to_string(), Percentiles::of(times))
            })
            .collect()
    } else {
        Default::default()
    };
    ConnectResult {
        by_kind,
        proxies: opts.proxies,
        converged,
        seconds: outcome.map_or(f64::NAN, |d| d.as_secs_f64()),
        convergence: Percentiles::of(cdf.clone()),
        bytes: stats.bytes.load(Ordering::Relaxed) - b0,
        messages: stats.messages.load(Ordering::Relaxed) - m0,
        memory_per_proxy_bytes: match (idle, after) {
            (Some(i), Some(a)) if opts.proxies > 0 => {
                Some((a.rss_bytes as f64 - i.rss_bytes as f64) / opts.proxies as f64)
            }
            _ => None,
        },
        server_cpu_seconds: match (idle, after) {
            (Some(i), Some(a)) => Some(a.cpu_seconds - i.cpu_seconds),
            _ => None,
        },
        server_before: idle,
        server_after: after,
        server_pushed_bytes: sent,
        server_pushes: pushes,
        cdf,
    }
}

async fn storm(opts: &Options, fleet: &Fleet, full_bytes: u64, resume: bool) -> StormResult {
    let stats = &fleet.ctx.stats;
    fleet.stop().await;
    let (b0, m0) = (
        stats.bytes.load(Ordering::Relaxed),
        stats.messages.load(Ordering::Relaxed),
    );
    let pb = bar(
        opts.progress,
        opts.proxies,
        if resume { "resume" } else { "storm" },
    );
    fleet.start(resume, 0.0, None).await;
    let outcome = fleet.wait_converged(opts.timeout, pb.as_ref()).await;
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let bytes = stats.bytes.load(Ordering::Relaxed) - b0;
    StormResult {
        resume,
        converged: fleet.converged(),
        seconds: outcome.map_or(f64::NAN, |d| d.as_secs_f64()),
        bytes_resent: bytes,
        resent_ratio: if full_bytes > 0 {
            bytes as f64 / full_bytes as f64
        } else {
            0.0
        },
        messages: stats.messages.load(Ordering::Relaxed) - m0,
    }
}

async fn failover(
    opts: &Options,
    fleet: &Fleet,
    servers: &mut [Server],
    full_bytes: u64,
) -> anyhow::Result<FailoverResult> {
    // Kill the leader: the hardest case (an election, then its shards move).
    let leader = servers[0].leader().await;
    let victim = leader
        .and_then(|l| usize::try_from(l).ok())
        .filter(|l| (1..=servers.len()).contains(l))
        .unwrap_or(2);
    let stats = &fleet.ctx.stats;
    let (b0, e0) = (
        stats.bytes.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
    );
    let breaks: Vec<u64> = fleet
        .proxies
        .iter()
        .map(|p| {
            *p.first_response.lock() = None;
            p.breaks.load(Ordering::Relaxed)
        })
        .collect();
    let survivors: Vec<usize> = (0..servers.len()).filter(|i| *i != victim - 1).collect();
    let reestablished0 = sum_metric(servers, &survivors, "shoal_router_reestablished_total").await;
    let t0 = Instant::now();
    servers[victim - 1].kill();
    // Streams break at once for the proxies connected to the victim; forwarded streams
    // move when the shards do. Wait for the break to be seen, then for recovery.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let disconnected = (stats.errors.load(Ordering::Relaxed) - e0) as usize;
    let pb = bar(opts.progress, opts.proxies, "failover");
    *fleet.started.lock() = Some(t0);
    // Converged proxies may still be on a forwarded stream waiting for the shard to move:
    // watch, meanwhile, for the victim marked down and every shard served again.
    let alive: Vec<&Server> = servers.iter().filter(|s| s.is_running()).collect();
    let deadline = Instant::now() + opts.timeout;
    let watch_shards = async {
        let mut detected_at = None;
        loop {
            if detected_at.is_none() && crate::server::marked_down(&alive, victim as u64).await {
                detected_at = Some(Instant::now());
            }
            let (serving, shards) = crate::server::served(&alive).await;
            if detected_at.is_some() && shards > 0 && serving == shards || Instant::now() > deadline
            {
                return (detected_at.unwrap_or_else(Instant::now), Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (outcome, (detected_at, served_at)) = tokio::join!(
        fleet.wait_converged(opts.timeout, pb.as_ref()),
        watch_shards
    );
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let converged_at = outcome.map(|d| t0 + d).unwrap_or_else(|_| Instant::now());
    let _ = fleet.wait_converged(opts.timeout, None).await;
    let bytes = stats.bytes.load(Ordering::Relaxed) - b0;
    let forwarded_recovery = fleet
        .proxies
        .iter()
        .zip(&breaks)
        .filter(|(p, b)| p.breaks.load(Ordering::Relaxed) == **b)
        .filter_map(|(p, _)| *p.first_response.lock())
        .map(|at| at.saturating_duration_since(t0).as_secs_f64())
        .collect();
    Ok(FailoverResult {
        killed: victim,
        was_leader: leader == Some(victim as u64),
        disconnected,
        seconds: converged_at
            .max(served_at)
            .saturating_duration_since(t0)
            .as_secs_f64(),
        detected_seconds: detected_at.saturating_duration_since(t0).as_secs_f64(),
        served_seconds: served_at.saturating_duration_since(t0).as_secs_f64(),
        converged: fleet.converged(),
        bytes_resent: bytes,
        resent_ratio: if full_bytes > 0 {
            bytes as f64 / full_bytes as f64
        } else {
            0.0
        },
        forwarded_recovery: Percentiles::of(forwarded_recovery),
        reestablished: sum_metric(servers, &survivors, "shoal_router_reestablished_total")
            .await
            .zip(reestablished0)
            .map(|(a, b)| a - b),
    })
}

/// The sum of a counter over the servers at `which` (none if one does not answer).
async fn sum_metric(servers: &[Server], which: &[usize], name: &str) -> Option<f64> {
    let mut sum = 0.0;
    for i in which {
        sum += servers.get(*i)?.metric(name).await.ok()?;
    }
    Some(sum)
}

async fn run_baseline(
    opts: &Options,
    fleet: &Fleet,
    shoal_seconds: f64,
) -> anyhow::Result<BaselineResult> {
    let mut recordings: HashMap<String, Vec<bytes::Bytes>> = HashMap::new();
    for p in &fleet.proxies {
        if let Some(r) = p.recording.lock().take() {
            recordings.insert(p.namespace.clone(), r);
        }
    }
    let server = baseline::serve(Arc::new(recordings)).await?;
    let base = Fleet::new(&fleet_spec(opts, vec![server.addr]))?;
    let pb = bar(opts.progress, opts.proxies, "baseline");
    base.start(false, opts.ramp, pb.as_ref()).await;
    let outcome = base.wait_converged(opts.timeout, pb.as_ref()).await;
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    base.stop().await;
    let seconds = outcome.map_or(f64::NAN, |d| d.as_secs_f64());
    Ok(BaselineResult {
        seconds,
        converged: base.converged(),
        efficiency: seconds / shoal_seconds,
    })
}
