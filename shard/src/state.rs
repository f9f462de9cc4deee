//! The replicated shard map and the leader's rebalancing plan (both pure).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::types::{Command, Node, NodeId, Response};

/// A proxy's shard: a stable hash of its node id.
pub fn shard_of(node_id: &str, shard_count: u32) -> u32 {
    (xxh3_64(node_id.as_bytes()) % u64::from(shard_count.max(1))) as u32
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub addrs: Node,
    pub alive: bool,
    pub heartbeats: u64,
}

/// One shard: who owns it, since which epoch, and who takes it over once released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub owner: Option<NodeId>,
    /// Increases with every change of owner.
    pub epoch: u64,
    /// A planned new owner, waiting for the current owner's release.
    pub next: Option<NodeId>,
}

/// The replicated state: members and the shard map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub members: BTreeMap<NodeId, Member>,
    pub shards: Vec<ShardEntry>,
    /// Ownership changes applied so far.
    pub migrations: u64,
}

impl ShardState {
    pub fn new(shard_count: u32) -> Self {
        ShardState {
            shards: vec![ShardEntry::default(); shard_count as usize],
            ..ShardState::default()
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    fn alive(&self, node: NodeId) -> bool {
        self.members.get(&node).is_some_and(|m| m.alive)
    }

    /// Applies one command; deterministic, as every replica applies the same log.
    pub fn apply(&mut self, cmd: &Command) -> Response {
        let mut changed = 0u32;
        match cmd {
            Command::Heartbeat { node, addrs } => {
                let m = self.members.entry(*node).or_default();
                m.addrs = addrs.clone();
                m.alive = true;
                m.heartbeats += 1;
            }
            Command::Move { shards, to, force } => {
                if !self.alive(*to) {
                    return Response::default();
                }
                for s in shards {
                    let owner_alive = self
                        .shards
                        .get(*s as usize)
                        .and_then(|e| e.owner)
                        .is_some_and(|o| self.alive(o));
                    let Some(e) = self.shards.get_mut(*s as usize) else {
                        continue;
                    };
                    if e.owner == Some(*to) {
                        e.next = None;
                    } else if *force || !owner_alive {
                        e.owner = Some(*to);
                        e.next = None;
                        e.epoch += 1;
                        changed += 1;
                    } else {
                        e.next = Some(*to);
                    }
                }
            }
            Command::Release { node, shards } => {
                for s in shards {
                    let Some(e) = self.shards.get_mut(*s as usize) else {
                        continue;
                    };
                    if e.owner == Some(*node)
                        && let Some(next) = e.next.take()
                    {
                        e.owner = Some(next);
                        e.epoch += 1;
                        changed += 1;
                    }
                }
            }
            Command::Down { node } => {
                if let Some(m) = self.members.get_mut(node) {
                    m.alive = false;
                }
                // Planned moves toward it are off.
                for e in &mut self.shards {
                    if e.next == Some(*node) {
                        e.next = None;
                    }
                }
            }
        }
        self.migrations += u64::from(changed);
        Response { changed, index: 0 }
    }

    /// Whether `node` owns `shard` outright (no handover in progress).
    pub fn owns(&self, node: NodeId, shard: u32) -> bool {
        self.shards
            .get(shard as usize)
            .is_some_and(|e| e.owner == Some(node) && e.next.is_none())
            && self.alive(node)
    }

    /// Shards `node` must release (a new owner waits).
    pub fn to_release(&self, node: NodeId) -> Vec<u32> {
        (0..self.shard_count())
            .filter(|s| {
                let e = &self.shards[*s as usize];
                e.owner == Some(node) && e.next.is_some()
            })
            .collect()
    }

    /// Shards per owner (alive or not).
    pub fn counts(&self) -> BTreeMap<NodeId, usize> {
        let mut c = BTreeMap::new();
        for e in &self.shards {
            if let Some(o) = e.owner {
                *c.entry(o).or_insert(0) += 1;
            }
        }
        c
    }

    /// What the leader should do next: give orphaned shards (no owner, or a dead one) to
    /// the least loaded live members at once, then even out ownership with as few moves
    /// as possible, at most `max_moves` handovers in flight.
    pub fn plan(&self, max_moves: usize) -> Vec<Command> {
        let alive: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| m.alive)
            .map(|(id, _)| *id)
            .collect();
        if alive.is_empty() {
            return Vec::new();
        }
        let total = self.shards.len();
        let base = total / alive.len();
        let extra = total % alive.len();
        let target: BTreeMap<NodeId, usize> = alive
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, base + usize::from(i < extra)))
            .collect();
        // Count shards by where they will be once pending handovers complete.
        let mut load: BTreeMap<NodeId, usize> = alive.iter().map(|id| (*id, 0)).collect();
        let mut orphans = Vec::new();
        for (s, e) in self.shards.iter().enumerate() {
            match e.next.or(e.owner) {
                Some(o) if self.alive(o) && e.owner.is_some_and(|ow| self.alive(ow)) => {
                    *load.entry(o).or_insert(0) += 1
                }
                _ => orphans.push(s as u32),
            }
        }
        let mut out = Vec::new();
        // Orphans go to whoever is furthest below target.
        let mut forced: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for s in orphans {
            let (&to, _) = load
                .iter()
                .max_by_key(|(id, n)| (target[*id] as i64 - **n as i64, std::cmp::Reverse(**id)))
                .unwrap_or((&alive[0], &0));
            *load.entry(to).or_insert(0) += 1;
            forced.entry(to).or_default().push(s);
        }
        for (to, shards) in forced {
            out.push(Command::Move {
                shards,
                to,
                force: true,
            });
        }
        // Balance: over-full owners hand their highest shards to under-full members.
        let in_flight = self.shards.iter().filter(|e| e.next.is_some()).count();
        let mut budget = max_moves.saturating_sub(in_flight);
        if budget == 0 {
            return out;
        }
        let mut planned: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for (s, e) in self.shards.iter().enumerate().rev() {
            if budget == 0 {
                break;
            }
            let Some(owner) = e.owner else { continue };
            if e.next.is_some() || !self.alive(owner) || load[&owner] <= target[&owner] {
                continue;
            }
            let Some((&to, _)) = load
                .iter()
                .filter(|(id, n)| **n < target[*id])
                .min_by_key(|(id, n)| (**n, **id))
            else {
                break;
            };
            *load.entry(owner).or_insert(0) -= 1;
            *load.entry(to).or_insert(0) += 1;
            planned.entry(to).or_default().push(s as u32);
            budget -= 1;
        }
        for (to, shards) in planned {
            out.push(Command::Move {
                shards,
                to,
                force: false,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(state: &mut ShardState, node: NodeId) {
        state.apply(&Command::Heartbeat {
            node,
            addrs: Node::default(),
        });
    }

    fn settle(state: &mut ShardState, max: usize) -> usize {
        let mut rounds = 0;
        loop {
            let plan = state.plan(max);
            // Owners release what they are asked to.
            let releases: Vec<Command> = state
                .members
                .keys()
                .map(|n| Command::Release {
                    node: *n,
                    shards: state.to_release(*n),
                })
                .collect();
            if plan.is_empty()
                && releases
                    .iter()
                    .all(|r| matches!(r, Command::Release { shards, .. } if shards.is_empty()))
            {
                return rounds;
            }
            for c in plan.iter().chain(&releases) {
                state.apply(c);
            }
            rounds += 1;
            assert!(rounds < 10_000);
        }
    }

    #[test]
    fn orphans_are_assigned_evenly_at_once() {
        let mut s = ShardState::new(1024);
        for n in 1..=3 {
            hb(&mut s, n);
        }
        settle(&mut s, 10);
        let c = s.counts();
        assert_eq!(c.values().sum::<usize>(), 1024);
        assert!(c.values().all(|n| (341..=342).contains(n)), "{c:?}");
    }

    #[test]
    fn a_join_moves_only_what_it_must_at_the_configured_rate() {
        let mut s = ShardState::new(1024);
        for n in 1..=3 {
            hb(&mut s, n);
        }
        settle(&mut s, 10);
        let before = s.shards.clone();
        let migrations = s.migrations;
        hb(&mut s, 4);
        let plan = s.plan(16);
        let planned: usize = plan
            .iter()
            .map(|c| {
                if let Command::Move { shards, .. } = c {
                    shards.len()
                } else {
                    0
                }
            })
            .sum();
        assert_eq!(planned, 16, "rate limited");
        settle(&mut s, 16);
        let moved = before
            .iter()
            .zip(&s.shards)
            .filter(|(a, b)| a.owner != b.owner)
            .count();
        assert_eq!(moved, 256, "exactly the new member's share moves");
        assert_eq!(s.migrations - migrations, 256);
        assert!(s.counts().values().all(|n| *n == 256));
    }

    #[test]
    fn a_dead_owner_loses_its_shards_and_never_two_owners() {
        let mut s = ShardState::new(64);
        for n in 1..=3 {
            hb(&mut s, n);
        }
        settle(&mut s, 8);
        s.apply(&Command::Down { node: 2 });
        let plan = s.plan(8);
        assert!(
            plan.iter()
                .all(|c| matches!(c, Command::Move { force: true, .. }))
        );
        settle(&mut s, 8);
        assert!(!s.counts().contains_key(&2));
        for shard in 0..64 {
            let owners: Vec<NodeId> = (1..=3).filter(|n| s.owns(*n, shard)).collect();
            assert_eq!(owners.len(), 1, "shard {shard}: {owners:?}");
        }
        // It comes back: it gets its share again, gradually.
        hb(&mut s, 2);
        settle(&mut s, 4);
        assert!(
            s.counts().values().all(|n| (21..=22).contains(n)),
            "{:?}",
            s.counts()
        );
    }

    #[test]
    fn shards_are_stable_hashes() {
        let a = shard_of("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", 1024);
        assert_eq!(
            a,
            shard_of("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", 1024)
        );
        assert!(a < 1024);
    }
}
