//! Who serves which shard, as the rest of shoal reads it: a replica's own [`Ownership`]
//! view (published by its [`crate::ShardNode`]), or an observer's, polled from the
//! replicas by [`watch_peers`] (the standalone router).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::{ShardState, shard_of};
use crate::transport::Transport;
use crate::types::{Node, NodeId};

/// The node id of an observer: no replica uses it, so an observer owns nothing.
pub const OBSERVER: NodeId = NodeId::MAX;

/// Where a stream of a shard should be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local,
    Peer(NodeId, Node),
    /// Nobody serves it right now (no owner, or a handover in progress to this replica).
    Unavailable,
}

/// What this replica (or observer) knows about ownership right now.
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
    /// What an observer knows from a replica's report: the map, serving nothing itself.
    pub fn observed(report: ShardsReport) -> Self {
        let n = report.state.shard_count() as usize;
        Ownership {
            me: OBSERVER,
            state: Arc::new(report.state),
            serving: Arc::new(vec![false; n]),
            leader: report.leader,
            term: report.term,
            lease: false,
            commit_index: report.commit_index,
        }
    }

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

    /// Whether this replica is the group's Raft leader.
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.me)
    }

    pub fn serving_count(&self) -> usize {
        self.serving.iter().filter(|s| **s).count()
    }
}

/// The shard map as a replica reports it to observers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardsReport {
    pub node: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub commit_index: u64,
    pub state: ShardState,
}

impl ShardsReport {
    /// Whether this map is newer than `other`'s: applied further (committed entries are the
    /// same on every replica, so a longer applied log is a later map), then knowing a
    /// leader. Not the term first: a replica cut off from the group raises its term with
    /// every election it tries, while its map stays stale.
    pub fn fresher_than(&self, other: &ShardsReport) -> bool {
        (self.commit_index, self.leader.is_some(), self.term)
            > (other.commit_index, other.leader.is_some(), other.term)
    }
}

/// An observer's view: polls the replicas at `raft_addrs` every `every` and publishes the
/// freshest shard map ([`ShardsReport::fresher_than`]). Polling stops when every receiver
/// is gone.
pub fn watch_peers(
    transport: Arc<dyn Transport>,
    raft_addrs: Vec<String>,
    every: Duration,
) -> watch::Receiver<Arc<Ownership>> {
    let empty = Ownership::observed(ShardsReport {
        node: OBSERVER,
        leader: None,
        term: 0,
        commit_index: 0,
        state: ShardState::new(1),
    });
    let (tx, rx) = watch::channel(Arc::new(empty));
    tokio::spawn(async move {
        while !tx.is_closed() {
            let mut best: Option<ShardsReport> = None;
            for addr in &raft_addrs {
                match transport.shards(addr, Duration::from_secs(2)).await {
                    Ok(r) => {
                        if best.as_ref().is_none_or(|b| r.fresher_than(b)) {
                            best = Some(r);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "polling a replica's shard map"),
                }
            }
            if let Some(r) = best {
                let cur = tx.borrow().clone();
                if *cur.state != r.state || cur.leader != r.leader {
                    tx.send_replace(Arc::new(Ownership::observed(r)));
                }
            }
            tokio::time::sleep(every).await;
        }
    });
    rx
}
