//! A replica's membership in the shard group: Raft, the serving lease, and the ownership
//! view the rest of shoal reads. Its background work — heartbeats, handovers, joining, and
//! while leader the failure detector and planner — is in [`tasks`] and [`leader`]; how
//! peers reach it is the [`crate::Transport`]'s business.

mod leader;
mod tasks;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::error::{StartError, WriteError};
use crate::http::HttpTransport;
use crate::ownership::{Ownership, ShardsReport};
use crate::state::ShardState;
use crate::store;
use crate::transport::{Network, Transport};
use crate::types::{Command, Node, NodeId, Raft, Response};

/// How long a join, asked or forwarded, may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Where this replica is reached.
    pub addrs: Node,
    /// The initial voters (this replica included); empty when joining.
    pub peers: BTreeMap<NodeId, Node>,
    /// Raft address of a member to join through (as a learner that still owns shards).
    pub join: Option<String>,
    pub shard_count: u32,
    /// How often a replica proves it is alive (through Raft).
    pub heartbeat: Duration,
    /// How long a committed heartbeat lets a replica serve.
    pub lease: Duration,
    /// How long the leader waits for heartbeats before declaring a replica down. Must
    /// exceed `lease`, so a replica stops serving before its shards are given away.
    pub down_after: Duration,
    /// Shards handed over per second when rebalancing (orphaned shards move at once).
    pub migration_rate: f64,
    /// How long a released shard's streams are drained (spread with jitter) before the
    /// new owner takes over.
    pub drain: Duration,
    /// mTLS for Raft links (the peer's Raft server must require a replica certificate);
    /// `None`: plaintext. Used by [`ShardNode::start`]'s HTTP transport.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ShardConfig {
    pub fn defaults(id: NodeId, data_dir: PathBuf, addrs: Node) -> Self {
        ShardConfig {
            id,
            data_dir,
            addrs,
            peers: BTreeMap::new(),
            join: None,
            shard_count: 1024,
            heartbeat: Duration::from_millis(500),
            lease: Duration::from_secs(3),
            down_after: Duration::from_secs(4),
            migration_rate: 100.0,
            drain: Duration::from_millis(500),
            tls: None,
        }
    }
}

pub struct ShardNode {
    raft: Raft,
    cfg: ShardConfig,
    transport: Arc<dyn Transport>,
    state: watch::Receiver<Arc<ShardState>>,
    view: watch::Sender<Arc<Ownership>>,
    lease_until: Mutex<Option<Instant>>,
    /// Shards being drained before their release, with when to release them.
    draining: Mutex<BTreeMap<u32, Instant>>,
    poke: Notify,
    /// Set when the replica leaves or stops: it serves nothing from then on.
    leaving: AtomicBool,
    /// The ownership log; its lock also serializes publishing the view.
    log: Mutex<Option<std::fs::File>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn ranges(shards: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for s in shards {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == *s => *end = *s,
            _ => out.push((*s, *s)),
        }
    }
    out
}

impl ShardNode {
    /// Opens the store, starts Raft over HTTP (mTLS with `cfg.tls`) and the replica's
    /// background tasks. Serve [`crate::http::router`] on `cfg.addrs.raft_addr`.
    pub async fn start(cfg: ShardConfig) -> Result<Arc<ShardNode>, StartError> {
        let transport = Arc::new(HttpTransport::new(cfg.tls.clone())?);
        Self::start_with(cfg, transport).await
    }

    /// Like [`ShardNode::start`], reaching peers through `transport`.
    pub async fn start_with(
        cfg: ShardConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<ShardNode>, StartError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StartError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
        let (log_store, state_machine, state) =
            store::open(&cfg.data_dir.join("raft"), cfg.shard_count)?;
        let config = openraft::Config {
            cluster_name: "shoal".into(),
            heartbeat_interval: 150,
            election_timeout_min: 500,
            election_timeout_max: 1000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2000),
            max_in_snapshot_log_to_keep: 500,
            ..Default::default()
        };
        let config = Arc::new(config.validate()?);
        let raft = Raft::new(
            cfg.id,
            config,
            Network(transport.clone()),
            log_store,
            state_machine,
        )
        .await?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cfg.data_dir.join("ownership.log"))
            .ok();
        let initial = Arc::new(Ownership {
            me: cfg.id,
            state: state.borrow().clone(),
            serving: Arc::new(vec![false; cfg.shard_count as usize]),
            leader: None,
            term: 0,
            lease: false,
            commit_index: 0,
        });
        let node = Arc::new(ShardNode {
            raft,
            transport,
            state,
            view: watch::Sender::new(initial),
            lease_until: Mutex::new(None),
            draining: Mutex::new(BTreeMap::new()),
            poke: Notify::new(),
            leaving: AtomicBool::new(false),
            log: Mutex::new(log),
            tasks: Mutex::new(Vec::new()),
            cfg,
        });
        if !node.cfg.peers.is_empty()
            && !node.raft.is_initialized().await.unwrap_or(true)
            && let Err(e) = node.raft.initialize(node.cfg.peers.clone()).await
        {
            tracing::debug!(error = %e, "raft initialize (another replica may have done it)");
        }
        let mut tasks = vec![
            tokio::spawn(node.clone().publisher()).abort_handle(),
            tokio::spawn(node.clone().heartbeats()).abort_handle(),
            tokio::spawn(node.clone().handovers()).abort_handle(),
            tokio::spawn(node.clone().leadership()).abort_handle(),
        ];
        if let Some(addr) = node.cfg.join.clone() {
            tasks.push(tokio::spawn(node.clone().join(addr)).abort_handle());
        }
        *node.tasks.lock() = tasks;
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// Where this replica is reached.
    pub fn addrs(&self) -> &Node {
        &self.cfg.addrs
    }

    pub fn ownership(&self) -> watch::Receiver<Arc<Ownership>> {
        self.view.subscribe()
    }

    pub fn current(&self) -> Arc<Ownership> {
        self.view.borrow().clone()
    }

    /// The shard map as this replica reports it to observers.
    pub fn report(&self) -> ShardsReport {
        let v = self.current();
        ShardsReport {
            node: self.cfg.id,
            leader: v.leader,
            term: v.term,
            commit_index: v.commit_index,
            state: (*v.state).clone(),
        }
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Proposes a command through the leader (forwarding when this replica is not it).
    pub async fn write(&self, cmd: Command, timeout: Duration) -> Result<Response, WriteError> {
        match tokio::time::timeout(timeout, self.raft.client_write(cmd.clone())).await {
            Err(_) => Err(WriteError::Timeout),
            Ok(Ok(r)) => Ok(r.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                let leader = f.leader_node.ok_or(WriteError::NoLeader)?;
                Ok(self
                    .transport
                    .write(&leader.raft_addr, cmd, timeout)
                    .await?)
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// A peer's write: proposed here, never forwarded again.
    pub(crate) async fn accept_write(&self, cmd: Command) -> Result<Response, WriteError> {
        Ok(self.raft.client_write(cmd).await?.data)
    }

    /// A replica asks to join: added as a learner by the leader (asked in turn when this
    /// replica is not it).
    pub(crate) async fn accept_join(&self, id: NodeId, node: Node) -> Result<(), WriteError> {
        match self.raft.add_learner(id, node.clone(), true).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let leader = f.leader_node.ok_or(WriteError::NoLeader)?;
                Ok(self
                    .transport
                    .join(&leader.raft_addr, id, node, JOIN_TIMEOUT)
                    .await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Leaves gracefully: stop serving everything at once (streams drain to other
    /// replicas), then tell the group, so the shards move now instead of after
    /// `down_after`. The replica gets its share back when it returns.
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
        self.poke.notify_one();
        tokio::time::sleep(self.cfg.drain).await;
        match self
            .write(Command::Down { node: self.cfg.id }, Duration::from_secs(2))
            .await
        {
            Ok(_) => tracing::info!("left the shard group"),
            Err(e) => {
                tracing::warn!(error = %e, "could not announce leaving; the leader will notice")
            }
        }
    }

    /// Stops at once, as a crash would: from now on this replica serves nothing, tells
    /// nobody, and its background tasks and Raft are stopped.
    pub async fn shutdown(&self) {
        self.leaving.store(true, Ordering::Release);
        self.publish();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::debug!(error = %e, "raft shutdown");
        }
    }

    fn lease_valid(&self) -> bool {
        self.lease_until.lock().is_some_and(|t| Instant::now() < t)
    }

    /// Recomputes the ownership view whenever the shard map, Raft, the lease or a drain
    /// changes.
    async fn publisher(self: Arc<Self>) {
        let mut state = self.state.clone();
        let mut metrics = self.raft.metrics();
        loop {
            self.publish();
            let lease_end = *self.lease_until.lock();
            let wake = lease_end.filter(|t| *t > Instant::now());
            tokio::select! {
                r = state.changed() => if r.is_err() { return },
                r = metrics.changed() => if r.is_err() { return },
                _ = self.poke.notified() => {}
                _ = async { match wake { Some(t) => tokio::time::sleep_until(t.into()).await, None => std::future::pending().await } } => {}
            }
        }
    }

    /// Publishes the ownership view as it is now, recording serving changes in the
    /// ownership log.
    fn publish(&self) {
        let mut log = self.log.lock();
        let lease = self.lease_valid();
        let st = self.state.borrow().clone();
        let m = self.raft.metrics().borrow().clone();
        let draining = self.draining.lock().clone();
        let me = self.cfg.id;
        let leaving = self.leaving.load(Ordering::Acquire);
        let serving: Vec<bool> = (0..st.shard_count())
            .map(|s| !leaving && lease && st.owns(me, s) && !draining.contains_key(&s))
            .collect();
        let before = self.view.borrow().clone();
        self.record(log.as_mut(), &before.serving, &serving, &st);
        let view = Ownership {
            me,
            serving: Arc::new(serving),
            leader: m.current_leader,
            term: m.current_term,
            lease,
            commit_index: m.last_applied.map(|l| l.index).unwrap_or_default(),
            state: st,
        };
        let changed = view.serving != before.serving
            || view.leader != before.leader
            || !Arc::ptr_eq(&view.state, &before.state)
            || view.lease != before.lease;
        metrics::gauge!("shoal_shards_serving").set(view.serving_count() as f64);
        metrics::gauge!("shoal_shards_owned")
            .set(view.state.counts().get(&me).copied().unwrap_or(0) as f64);
        metrics::gauge!("shoal_shard_migrations").set(view.state.migrations as f64);
        metrics::gauge!("shoal_raft_term").set(view.term as f64);
        metrics::gauge!("shoal_raft_leader").set(view.leader.map_or(-1.0, |l| l as f64));
        metrics::gauge!("shoal_raft_commit_index").set(view.commit_index as f64);
        if changed {
            self.view.send_replace(Arc::new(view));
        }
    }

    /// Appends serving changes to `DATA_DIR/ownership.log` (one JSON line each), the
    /// evidence that no shard was ever served by two replicas at once.
    fn record(
        &self,
        log: Option<&mut std::fs::File>,
        before: &[bool],
        after: &[bool],
        st: &ShardState,
    ) {
        let started: Vec<u32> = (0..after.len() as u32)
            .filter(|s| after[*s as usize] && !before.get(*s as usize).copied().unwrap_or(false))
            .collect();
        let stopped: Vec<u32> = (0..before.len() as u32)
            .filter(|s| before[*s as usize] && !after.get(*s as usize).copied().unwrap_or(false))
            .collect();
        if started.is_empty() && stopped.is_empty() {
            return;
        }
        let line = serde_json::json!({
            "t_ms": now_ms(),
            "node": self.cfg.id,
            "serve": ranges(&started),
            "stop": ranges(&stopped),
            "epochs": started.iter().take(1).map(|s| st.shards[*s as usize].epoch).collect::<Vec<_>>(),
        });
        if let Some(f) = log {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
            let _ = f.sync_data();
        }
        tracing::info!(
            serve = started.len(),
            stop = stopped.len(),
            "serving shards changed"
        );
    }
}
