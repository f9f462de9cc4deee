//! A fleet of simulated proxies: created, started at a ramp rate, watched until they
//! converge, dropped all at once, reconnected.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use crate::proxy::{Ctx, DecodeCache, Kind, Names, Proxy, Stats, Update};

/// How a fleet connects.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// xDS addresses; proxies spread over them, and move to the next when theirs fails
    /// (as behind a Kubernetes Service).
    pub xds: Vec<SocketAddr>,
    pub proxies: usize,
    pub kind: Kind,
    /// HTTP/2 connections the streams share (one per proxy when 0).
    pub connections: usize,
    /// Namespaces the proxies are spread over.
    pub namespaces: Vec<String>,
    /// `HOST:PORT` a gRPC client in each namespace dials.
    pub grpc_targets: Vec<String>,
}

/// Loopback source addresses spread connections so no single address runs out of ports.
const CONNECTIONS_PER_SOURCE: usize = 10_000;

pub struct Fleet {
    pub ctx: Arc<Ctx>,
    pub proxies: Vec<Arc<Proxy>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    pub updates: tokio::sync::Mutex<mpsc::UnboundedReceiver<Update>>,
    pub started: Mutex<Option<Instant>>,
}

impl Fleet {
    pub fn new(spec: &FleetSpec) -> anyhow::Result<Fleet> {
        let connections = if spec.connections == 0 {
            spec.proxies
        } else {
            spec.connections.min(spec.proxies)
        }
        .max(1);
        anyhow::ensure!(!spec.xds.is_empty(), "no xDS address");
        let connections = connections.max(spec.xds.len());
        let mut channels = Vec::with_capacity(connections);
        for c in 0..connections {
            let addr = spec.xds[c % spec.xds.len()];
            let loopback = addr.ip().is_loopback() && addr.is_ipv4();
            let mut ep = Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(20))
                .tcp_nodelay(true)
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(4 << 20);
            if loopback && connections > CONNECTIONS_PER_SOURCE {
                let n = (c / CONNECTIONS_PER_SOURCE) as u8;
                ep = ep.local_address(Some(IpAddr::from([127, 0, 0, 1 + n])));
            }
            channels.push(ep.connect_lazy());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(Ctx {
            channels,
            decode: DecodeCache::default(),
            names: Names::default(),
            stats: Stats::default(),
            watched: Default::default(),
            updates: tx,
        });
        let ns = if spec.namespaces.is_empty() {
            vec!["default".to_string()]
        } else {
            spec.namespaces.clone()
        };
        let proxies = (0..spec.proxies)
            .map(|i| {
                let n = i % ns.len();
                let target = spec.grpc_targets.get(n).cloned();
                Arc::new(Proxy::new(i, spec.kind.member(i), &ns[n], target))
            })
            .collect();
        Ok(Fleet {
            ctx,
            proxies,
            tasks: Mutex::new(Vec::new()),
            updates: tokio::sync::Mutex::new(rx),
            started: Mutex::new(None),
        })
    }

    /// Starts every proxy's stream, `ramp` per second (0: all at once).
    pub async fn start(&self, resume: bool, ramp: f64, progress: Option<&ProgressBar>) {
        let start = Instant::now();
        *self.started.lock() = Some(start);
        for (i, p) in self.proxies.iter().enumerate() {
            if ramp > 0.0 {
                let due = start + Duration::from_secs_f64(i as f64 / ramp);
                tokio::time::sleep_until(due.into()).await;
            }
            p.reset(&self.ctx);
            let task = tokio::spawn(p.clone().run(self.ctx.clone(), resume));
            self.tasks.lock().push(task);
            if let Some(pb) = progress {
                pb.set_message(format!("{} started, {} converged", i + 1, self.converged()));
            }
        }
    }

    pub fn converged(&self) -> usize {
        self.ctx.stats.converged.load(Ordering::Acquire)
    }

    /// Waits until every proxy converged; `Err` with the count reached on timeout.
    pub async fn wait_converged(
        &self,
        timeout: Duration,
        progress: Option<&ProgressBar>,
    ) -> Result<Duration, usize> {
        let begin = self.started.lock().unwrap_or_else(Instant::now);
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.converged();
            if let Some(pb) = progress {
                pb.set_position(n as u64);
            }
            if n == self.proxies.len() {
                let last = self
                    .proxies
                    .iter()
                    .filter_map(|p| *p.converged_at.lock())
                    .max()
                    .unwrap_or_else(Instant::now);
                return Ok(last.saturating_duration_since(begin));
            }
            if Instant::now() > deadline || self.failed() == self.proxies.len() {
                return Err(n);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Per-proxy convergence times (since the fleet started), sorted.
    pub fn convergence_times(&self) -> Vec<f64> {
        self.convergence_times_of(None)
    }

    /// As [`Fleet::convergence_times`], of the proxies of one kind (all with `None`).
    pub fn convergence_times_of(&self, kind: Option<Kind>) -> Vec<f64> {
        let begin = self.started.lock().unwrap_or_else(Instant::now);
        let mut t: Vec<f64> = self
            .proxies
            .iter()
            .filter(|p| kind.is_none_or(|k| p.kind == k))
            .filter_map(|p| *p.converged_at.lock())
            .map(|at| at.saturating_duration_since(begin).as_secs_f64())
            .collect();
        t.sort_by(f64::total_cmp);
        t
    }

    /// Drops every stream at once.
    pub async fn stop(&self) {
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock());
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Proxies whose stream failed, with the error.
    pub fn errors(&self) -> Vec<(String, String)> {
        self.proxies
            .iter()
            .filter_map(|p| p.error.lock().clone().map(|e| (p.id.clone(), e)))
            .collect()
    }

    fn failed(&self) -> usize {
        self.proxies
            .iter()
            .filter(|p| p.error.lock().is_some())
            .count()
    }
}
