//! A replica's membership in the shard group: Raft, heartbeats and the serving lease, the
//! leader's liveness tracking and rebalancing, handovers, and the ownership view the rest
//! of shoal reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::network::{HttpClient, Network, http_client, post as http_post};
use crate::state::{ShardState, shard_of};
use crate::store;
use crate::types::{Command, Node, NodeId, Raft, Response, TypeConfig};

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
    /// `None`: plaintext.
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

/// Where a stream of a shard should be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local,
    Peer(NodeId, Node),
    /// Nobody serves it right now (no owner, or a handover in progress to this replica).
    Unavailable,
}

/// What this replica knows about ownership right now.
#[derive(Debug, Clone)]
pub struct Ownership {
    pub me: NodeId,
    pub state: Arc<ShardState>,
    /// Per shard: this replica serves it now (owns it, holds a lease, is not draining it).
    pub serving: Arc<Vec<bool>>,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub lease: bool,
    pub commit_index: u64,
}

impl Ownership {
    pub fn shard_of(&self, node_id: &str) -> u32 {
        shard_of(node_id, self.state.shard_count())
    }

    pub fn serves(&self, shard: u32) -> bool {
        self.serving.get(shard as usize).copied().unwrap_or(false)
    }

    /// Where a stream of `shard` goes.
    pub fn route(&self, shard: u32) -> Route {
        if self.serves(shard) {
            return Route::Local;
        }
        let Some(e) = self.state.shards.get(shard as usize) else {
            return Route::Unavailable;
        };
        match e.owner {
            Some(o) if o != self.me => match self.state.members.get(&o) {
                Some(m) if m.alive => Route::Peer(o, m.addrs.clone()),
                _ => Route::Unavailable,
            },
            _ => Route::Unavailable,
        }
    }

    pub fn serving_count(&self) -> usize {
        self.serving.iter().filter(|s| **s).count()
    }
}

/// The shard map as `/raft/shards` reports it (routers poll it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardsReport {
    pub node: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub commit_index: u64,
    pub state: ShardState,
}

/// Why a write through Raft failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no leader known")]
    NoLeader,
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Raft(String),
}

pub struct ShardNode {
    pub raft: Raft,
    cfg: ShardConfig,
    client: HttpClient,
    state: watch::Receiver<Arc<ShardState>>,
    view: watch::Sender<Arc<Ownership>>,
    lease_until: Mutex<Option<Instant>>,
    /// Shards being drained before their release, with when to release them.
    draining: Mutex<BTreeMap<u32, Instant>>,
    poke: Notify,
    /// Set when the replica is shutting down: it serves nothing from then on.
    leaving: std::sync::atomic::AtomicBool,
    log: Mutex<Option<std::fs::File>>,
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
    /// Opens the store, starts Raft and the replica's background tasks.
    pub async fn start(cfg: ShardConfig) -> anyhow::Result<Arc<ShardNode>> {
        std::fs::create_dir_all(&cfg.data_dir)?;
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
        let client = http_client(cfg.tls.clone())?;
        let raft = Raft::new(
            cfg.id,
            config,
            Network::new(client.clone()),
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
            client,
            state,
            view: watch::Sender::new(initial),
            lease_until: Mutex::new(None),
            draining: Mutex::new(BTreeMap::new()),
            poke: Notify::new(),
            leaving: std::sync::atomic::AtomicBool::new(false),
            log: Mutex::new(log),
            cfg,
        });
        if !node.cfg.peers.is_empty()
            && !node.raft.is_initialized().await.unwrap_or(true)
            && let Err(e) = node.raft.initialize(node.cfg.peers.clone()).await
        {
            tracing::debug!(error = %e, "raft initialize (another replica may have done it)");
        }
        tokio::spawn(node.clone().publisher());
        tokio::spawn(node.clone().heartbeats());
        tokio::spawn(node.clone().handovers());
        tokio::spawn(node.clone().leadership());
        if let Some(addr) = node.cfg.join.clone() {
            tokio::spawn(node.clone().join(addr));
        }
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn ownership(&self) -> watch::Receiver<Arc<Ownership>> {
        self.view.subscribe()
    }

    pub fn current(&self) -> Arc<Ownership> {
        self.view.borrow().clone()
    }

    /// Proposes a command through the leader (forwarding when this replica is not it).
    pub async fn write(&self, cmd: Command, timeout: Duration) -> Result<Response, WriteError> {
        match tokio::time::timeout(timeout, self.raft.client_write(cmd.clone())).await {
            Err(_) => Err(WriteError::Timeout),
            Ok(Ok(r)) => Ok(r.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                let Some(leader) = f.leader_node else {
                    return Err(WriteError::NoLeader);
                };
                let r: Result<Result<Response, String>, _> = http_post(
                    &self.client,
                    &leader.raft_addr,
                    "/raft/write",
                    &cmd,
                    timeout,
                )
                .await;
                match r {
                    Ok(Ok(resp)) => Ok(resp),
                    Ok(Err(e)) => Err(WriteError::Raft(e)),
                    Err(e) => Err(WriteError::Raft(e.to_string())),
                }
            }
            Ok(Err(e)) => Err(WriteError::Raft(e.to_string())),
        }
    }

    /// Leaves gracefully: stop serving everything at once (streams drain to other
    /// replicas), then tell the group, so the shards move now instead of after
    /// `down_after`. The replica gets its share back when it returns.
    pub async fn leave(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Release);
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

    fn lease_valid(&self) -> bool {
        self.lease_until.lock().is_some_and(|t| Instant::now() < t)
    }

    /// Recomputes the ownership view whenever the shard map, Raft, the lease or a drain
    /// changes, and records serving changes in the ownership log.
    async fn publisher(self: Arc<Self>) {
        let mut state = self.state.clone();
        let mut metrics = self.raft.metrics();
        loop {
            let lease = self.lease_valid();
            let st = state.borrow().clone();
            let m = metrics.borrow().clone();
            let draining = self.draining.lock().clone();
            let me = self.cfg.id;
            let leaving = self.leaving.load(std::sync::atomic::Ordering::Acquire);
            let serving: Vec<bool> = (0..st.shard_count())
                .map(|s| !leaving && lease && st.owns(me, s) && !draining.contains_key(&s))
                .collect();
            let before = self.view.borrow().clone();
            self.record(&before.serving, &serving, &st);
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

    /// Appends serving changes to `DATA_DIR/ownership.log` (one JSON line each), the
    /// evidence that no shard was ever served by two replicas at once.
    fn record(&self, before: &[bool], after: &[bool], st: &ShardState) {
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
        if let Some(f) = self.log.lock().as_mut() {
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

    /// Proves liveness through Raft; each committed heartbeat extends the serving lease
    /// (counted from before it was sent).
    async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A leaving replica stays down: no heartbeat would bring it back before it goes.
            if self.leaving.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let sent = Instant::now();
            let cmd = Command::Heartbeat {
                node: self.cfg.id,
                addrs: self.cfg.addrs.clone(),
            };
            let committed = match self.write(cmd, self.cfg.lease / 2).await {
                Ok(r) => r.index,
                Err(e) => {
                    tracing::debug!(error = %e, "heartbeat not committed");
                    continue;
                }
            };
            // The lease only counts once this replica's own shard map is as new as the
            // heartbeat: a replica rejoining after a partition must not serve from the
            // stale map it had before (the group may have moved its shards meanwhile).
            let caught_up = self
                .raft
                .wait(Some(self.cfg.lease / 2))
                .applied_index_at_least(Some(committed), "heartbeat applied")
                .await;
            match caught_up {
                Ok(_) => {
                    let mut l = self.lease_until.lock();
                    let until = sent + self.cfg.lease;
                    if l.is_none_or(|t| t < until) {
                        *l = Some(until);
                    }
                    drop(l);
                    self.poke.notify_one();
                }
                Err(e) => tracing::debug!(error = %e, "heartbeat not applied in time"),
            }
        }
    }

    /// Releases shards the leader moved away: stop serving them at once (their streams
    /// drain), then tell Raft once the drain period is over.
    async fn handovers(self: Arc<Self>) {
        let mut state = self.state.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = state.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
            }
            let st = state.borrow().clone();
            let asked: BTreeSet<u32> = st.to_release(self.cfg.id).into_iter().collect();
            let due: Vec<u32> = {
                let mut d = self.draining.lock();
                d.retain(|s, _| asked.contains(s));
                let mut new = false;
                for s in &asked {
                    d.entry(*s).or_insert_with(|| {
                        new = true;
                        Instant::now() + self.cfg.drain
                    });
                }
                if new {
                    self.poke.notify_one();
                }
                d.iter()
                    .filter(|(_, t)| **t <= Instant::now())
                    .map(|(s, _)| *s)
                    .collect()
            };
            if !due.is_empty() {
                let cmd = Command::Release {
                    node: self.cfg.id,
                    shards: due,
                };
                if let Err(e) = self.write(cmd, Duration::from_secs(2)).await {
                    tracing::debug!(error = %e, "release not committed yet");
                }
            }
        }
    }

    /// While leader: declare silent replicas down and plan shard moves.
    async fn leadership(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut seen: HashMap<NodeId, (u64, Instant)> = HashMap::new();
        let mut led_term = None;
        let mut led_since = Instant::now();
        let mut caught_up = false;
        let mut leader_known = false;
        let mut tokens = 0f64;
        let mut last = Instant::now();
        loop {
            tick.tick().await;
            let m = self.raft.metrics().borrow().clone();
            let now = Instant::now();
            tokens = (tokens + now.duration_since(last).as_secs_f64() * self.cfg.migration_rate)
                .min(self.cfg.migration_rate.max(1.0));
            last = now;
            // Every replica notes when its state machine showed each member's latest
            // heartbeat (at or after its commit), leader or not: a new leader can then
            // count a dead member's silence from its last heartbeat, not from the election.
            // Heartbeats replayed from the log at start-up are history, not liveness: after
            // a whole group restarts, nothing is noted until a leader is known again.
            let st = self.state.borrow().clone();
            leader_known |= m.current_leader.is_some();
            for (id, mb) in st.members.iter().filter(|_| leader_known) {
                let entry = seen.entry(*id).or_insert((mb.heartbeats, now));
                if entry.0 != mb.heartbeats {
                    *entry = (mb.heartbeats, now);
                }
            }
            if m.current_leader != Some(self.cfg.id) {
                led_term = None;
                continue;
            }
            if led_term != Some(m.current_term) {
                led_term = Some(m.current_term);
                led_since = now;
                caught_up = false;
            }
            // Until this leader's state machine has applied its whole log, a heartbeat
            // committed earlier may not be noted yet: nothing is declared down before.
            // (Safe afterwards: a member's lease runs from before its heartbeat was sent,
            // which is before it was noted here, and `down_after` exceeds `lease`.)
            if !caught_up {
                let applied = m.last_applied.map(|l| l.index);
                caught_up = applied.is_some() && applied >= m.last_log_index;
                if !caught_up {
                    continue;
                }
            }
            for (id, mb) in &st.members {
                let Some(entry) = seen.get(id) else { continue };
                if mb.alive && now.duration_since(entry.1) > self.cfg.down_after {
                    tracing::warn!(node = id, "no heartbeat: marking the replica down");
                    let _ = self
                        .write(Command::Down { node: *id }, Duration::from_secs(2))
                        .await;
                }
            }
            // A fresh group: wait (a little) for every voter's first heartbeat, so shards are
            // dealt out once instead of all to the first replica and then rebalanced.
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            if voters.iter().any(|v| !st.members.contains_key(v))
                && now.duration_since(led_since) < self.cfg.down_after
            {
                continue;
            }
            let in_flight = st.shards.iter().filter(|e| e.next.is_some()).count();
            let allowed = tokens.floor() as usize;
            for cmd in st.plan(in_flight + allowed) {
                if let Command::Move {
                    shards,
                    force: false,
                    ..
                } = &cmd
                {
                    tokens -= shards.len() as f64;
                }
                if let Err(e) = self.write(cmd, Duration::from_secs(2)).await {
                    tracing::debug!(error = %e, "move not committed");
                    break;
                }
            }
        }
    }

    /// Asks the group to add this replica (as a learner), until it is in.
    async fn join(self: Arc<Self>, through: String) {
        #[derive(Serialize)]
        struct Join<'a> {
            id: NodeId,
            node: &'a Node,
        }
        loop {
            let r: Result<Result<(), String>, _> = http_post(
                &self.client,
                &through,
                "/raft/join",
                &Join {
                    id: self.cfg.id,
                    node: &self.cfg.addrs,
                },
                Duration::from_secs(10),
            )
            .await;
            match r {
                Ok(Ok(())) => {
                    tracing::info!(through, "joined the shard group");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(through, error = %e, "join refused"),
                Err(e) => tracing::warn!(through, error = %e, "join failed"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The Raft RPC endpoints, to serve on this replica's Raft address.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/raft/append", post(append))
            .route("/raft/vote", post(vote))
            .route("/raft/snapshot", post(snapshot))
            .route("/raft/write", post(write))
            .route("/raft/join", post(join))
            .route("/raft/shards", get(shards))
            .with_state(self.clone())
    }

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
}

type S = State<Arc<ShardNode>>;

async fn append(
    State(n): S,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<serde_json::Value> {
    Json(serde_json::to_value(n.raft.append_entries(req).await).unwrap_or_default())
}

async fn vote(State(n): S, Json(req): Json<VoteRequest<NodeId>>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(n.raft.vote(req).await).unwrap_or_default())
}

async fn snapshot(
    State(n): S,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<serde_json::Value> {
    Json(serde_json::to_value(n.raft.install_snapshot(req).await).unwrap_or_default())
}

async fn write(State(n): S, Json(cmd): Json<Command>) -> Json<Result<Response, String>> {
    Json(
        n.raft
            .client_write(cmd)
            .await
            .map(|r| r.data)
            .map_err(|e| e.to_string()),
    )
}

#[derive(Deserialize)]
struct JoinRequest {
    id: NodeId,
    node: Node,
}

async fn join(State(n): S, Json(req): Json<JoinRequest>) -> Json<Result<(), String>> {
    match n.raft.add_learner(req.id, req.node.clone(), true).await {
        Ok(_) => Json(Ok(())),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
            Some(leader) => {
                let body = serde_json::json!({ "id": req.id, "node": req.node });
                let r: Result<Result<(), String>, _> = http_post(
                    &n.client,
                    &leader.raft_addr,
                    "/raft/join",
                    &body,
                    Duration::from_secs(10),
                )
                .await;
                Json(r.map_err(|e| e.to_string()).and_then(|r| r))
            }
            None => Json(Err("no leader".into())),
        },
        Err(e) => Json(Err(e.to_string())),
    }
}

async fn shards(State(n): S) -> Json<ShardsReport> {
    Json(n.report())
}
