//! While leader: the failure detector (a silent replica is declared down after
//! `down_after`) and the planner's moves, rate-limited.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ShardNode;
use crate::types::{Command, NodeId};

impl ShardNode {
    /// While leader: declare silent replicas down and plan shard moves.
    pub(super) async fn leadership(self: Arc<Self>) {
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
}
