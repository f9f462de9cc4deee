//! A replica's own background work: heartbeats that hold its serving lease, handing over
//! the shards the leader moves away, and asking to join the group.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{JOIN_TIMEOUT, ShardNode};
use crate::error::RpcError;
use crate::types::Command;

impl ShardNode {
    /// Proves liveness through Raft; each committed heartbeat extends the serving lease
    /// (counted from before it was sent).
    pub(super) async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A leaving replica stays down: no heartbeat would bring it back before it goes.
            if self.leaving.load(Ordering::Acquire) {
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
    pub(super) async fn handovers(self: Arc<Self>) {
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

    /// Asks the group to add this replica (as a learner), until it is in.
    pub(super) async fn join(self: Arc<Self>, through: String) {
        loop {
            let asked = self
                .transport
                .join(&through, self.cfg.id, self.cfg.addrs.clone(), JOIN_TIMEOUT)
                .await;
            match asked {
                Ok(()) => {
                    tracing::info!(through, "joined the shard group");
                    return;
                }
                Err(e @ RpcError::Refused { .. }) => {
                    tracing::warn!(through, error = %e, "join refused")
                }
                Err(e) => tracing::warn!(through, error = %e, "join failed"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
