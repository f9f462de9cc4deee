//! Replicas in one process over the in-memory network: elections, fencing by lease,
//! two-phase handovers and catching up after a partition, with short timings.
//!
//! Every test samples all replicas' ownership views each time one changes (the runtime has
//! one thread, so a sample is one instant) and fails on any shard served by two replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use shoal_shard::memory::MemoryNetwork;
use shoal_shard::{Node, NodeId, Ownership, Route, ShardConfig, ShardNode, watch_peers};
use tempfile::TempDir;
use tokio::time::Instant;

const SHARDS: u32 = 24;
const LEASE: Duration = Duration::from_millis(300);
const DOWN_AFTER: Duration = Duration::from_millis(500);
/// Bound on any one wait: far beyond what each step needs, so only a stuck test hits it.
const PATIENCE: Duration = Duration::from_secs(20);

fn addrs(id: NodeId) -> Node {
    Node {
        raft_addr: format!("replica-{id}"),
        xds_addr: format!("replica-{id}:xds"),
        ..Node::default()
    }
}

struct Group {
    net: MemoryNetwork,
    nodes: Vec<Arc<ShardNode>>,
    _dirs: Vec<TempDir>,
}

/// One instant of the group: every replica's view, in the order of `Group::nodes`.
type Sample = Vec<Arc<Ownership>>;

impl Group {
    /// Starts replicas `ids` as the initial voters.
    async fn start(ids: &[NodeId]) -> Group {
        let mut g = Group {
            net: MemoryNetwork::new(),
            nodes: Vec::new(),
            _dirs: Vec::new(),
        };
        for id in ids {
            g.add(*id, ids, None).await;
        }
        g
    }

    async fn add(&mut self, id: NodeId, voters: &[NodeId], join: Option<NodeId>) {
        let dir = TempDir::new().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let cfg = ShardConfig {
            peers: voters.iter().map(|v| (*v, addrs(*v))).collect(),
            join: join.map(|j| addrs(j).raft_addr),
            shard_count: SHARDS,
            heartbeat: Duration::from_millis(50),
            lease: LEASE,
            down_after: DOWN_AFTER,
            migration_rate: 50.0,
            drain: Duration::from_millis(100),
            ..ShardConfig::defaults(id, dir.path().to_path_buf(), addrs(id))
        };
        let node = ShardNode::start_with(cfg, self.net.transport(&addrs(id).raft_addr))
            .await
            .unwrap_or_else(|e| panic!("starting replica {id}: {e}"));
        self.net.attach(&node);
        self.nodes.push(node);
        self._dirs.push(dir);
    }

    fn index(&self, id: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id() == id)
            .unwrap_or_else(|| panic!("no replica {id}"))
    }

    fn sample(&self) -> Sample {
        self.nodes.iter().map(|n| n.current()).collect()
    }

    /// Samples every change of any replica's view until `done` holds for a sample (which is
    /// returned), checking each sample with `check` and for shards served twice.
    async fn until(
        &self,
        what: &str,
        mut check: impl FnMut(&Sample),
        mut done: impl FnMut(&Sample) -> bool,
    ) -> Sample {
        let deadline = Instant::now() + PATIENCE;
        let mut views: Vec<_> = self.nodes.iter().map(|n| n.ownership()).collect();
        loop {
            for v in &mut views {
                v.borrow_and_update();
            }
            let sample = self.sample();
            assert_exclusive(&sample);
            check(&sample);
            if done(&sample) {
                return sample;
            }
            let changed = select_all(views.iter_mut().map(|v| Box::pin(v.changed())));
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out waiting for {what}; last sample: {}",
                    show(&sample)
                );
            }
        }
    }

    /// Until every shard is served by exactly one replica and each serves its fair share.
    async fn settled(&self, what: &str) -> Sample {
        let n = self.nodes.len();
        self.until(what, |_| {}, |s| balanced(s, n)).await
    }
}

/// Which replicas serve `shard` in a sample.
fn servers(sample: &Sample, shard: u32) -> Vec<NodeId> {
    sample
        .iter()
        .filter(|v| v.serves(shard))
        .map(|v| v.me)
        .collect()
}

fn assert_exclusive(sample: &Sample) {
    for shard in 0..SHARDS {
        let s = servers(sample, shard);
        assert!(
            s.len() <= 1,
            "shard {shard} served by {s:?} at once: {}",
            show(sample)
        );
    }
}

fn balanced(sample: &Sample, replicas: usize) -> bool {
    let fair = SHARDS as usize / replicas;
    (0..SHARDS).all(|s| servers(sample, s).len() == 1)
        && sample.iter().all(|v| v.serving_count() >= fair)
}

fn serving(view: &Ownership) -> BTreeSet<u32> {
    (0..SHARDS).filter(|s| view.serves(*s)).collect()
}

fn show(sample: &Sample) -> String {
    sample
        .iter()
        .map(|v| {
            format!(
                "[{} leader={:?} lease={} serving={}]",
                v.me,
                v.leader,
                v.lease,
                v.serving_count()
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn agreed(sample: &Sample) -> bool {
    sample[0].leader.is_some() && sample.iter().all(|v| v.leader == sample[0].leader)
}

/// The agreed leader of a settled group.
fn leader(sample: &Sample) -> NodeId {
    let l = sample[0]
        .leader
        .unwrap_or_else(|| panic!("no leader: {}", show(sample)));
    assert!(
        sample.iter().all(|v| v.leader == Some(l)),
        "leaders differ: {}",
        show(sample)
    );
    l
}

#[tokio::test]
async fn three_replicas_elect_and_every_shard_gets_one_serving_owner() {
    let g = Group::start(&[1, 2, 3]).await;
    // Followers apply the map after the leader: wait until every replica has applied the
    // same one (a balanced sample can be taken while one of them is an entry behind).
    let same_map = |s: &Sample| {
        s.iter().all(|v| {
            (0..SHARDS).all(|shard| {
                s.iter()
                    .all(|o| o.state.owns(v.me, shard) == s[0].state.owns(v.me, shard))
            })
        })
    };
    let s = g
        .until(
            "three replicas to share the shards, each having applied the same map",
            |_| {},
            |s| balanced(s, 3) && same_map(s),
        )
        .await;
    let l = leader(&s);
    assert!([1, 2, 3].contains(&l));
    // Every replica serves exactly the shards every map gives it.
    for v in &s {
        for shard in 0..SHARDS {
            for other in &s {
                assert_eq!(
                    v.serves(shard),
                    other.state.owns(v.me, shard),
                    "replica {} serving shard {shard} disagrees with replica {}'s map",
                    v.me,
                    other.me
                );
            }
        }
    }
}

#[tokio::test]
async fn a_cut_off_owner_stops_serving_before_its_shards_are_reassigned() {
    let g = Group::start(&[1, 2, 3]).await;
    let s = g.settled("three replicas to share the shards").await;
    let l = leader(&s);
    let victim = [1, 2, 3]
        .into_iter()
        .find(|id| *id != l)
        .unwrap_or_else(|| panic!("a follower"));
    let vi = g.index(victim);
    let held = serving(&s[vi]);
    assert!(!held.is_empty());

    g.net.isolate(&addrs(victim).raft_addr);
    let mut fenced = false;
    let s = g
        .until(
            "the victim's shards to be served elsewhere",
            |s| {
                if !fenced && s[vi].serving_count() == 0 {
                    fenced = true;
                    // Fenced by its lease alone: its own map still gives it the shards.
                    assert!(held.iter().all(|sh| s[vi].state.owns(victim, *sh)));
                    assert!(!s[vi].lease);
                }
                let taken = held
                    .iter()
                    .any(|sh| servers(s, *sh).iter().any(|o| *o != victim));
                assert!(
                    fenced || !taken,
                    "a shard was taken before its owner was fenced: {}",
                    show(s)
                );
            },
            |s| {
                held.iter()
                    .all(|sh| servers(s, *sh).iter().any(|o| *o != victim))
            },
        )
        .await;
    assert!(fenced);
    assert!(!s[vi].lease, "the cut-off replica still holds a lease");
    let li = g.index(l);
    let member = s[li].state.members.get(&victim);
    assert!(
        member.is_some_and(|m| !m.alive),
        "the leader reassigned the shards without declaring the victim down"
    );
}

#[tokio::test]
async fn a_joining_replica_takes_its_share_in_two_phases() {
    let mut g = Group::start(&[1, 2]).await;
    g.settled("two replicas to share the shards").await;
    g.add(3, &[], Some(1)).await;

    // Per shard: the sample index of each phase, as the samples show them.
    #[derive(Default, Debug)]
    struct Move {
        planned: Option<usize>,
        old_stopped: Option<usize>,
        new_started: Option<usize>,
    }
    let mut moves: BTreeMap<u32, Move> = BTreeMap::new();
    let mut seen_serving: BTreeMap<u32, NodeId> = BTreeMap::new();
    let mut i = 0usize;
    g.until(
        "the new replica to take its share",
        |s| {
            i += 1;
            for shard in 0..SHARDS {
                let now = servers(s, shard);
                let planned = s
                    .iter()
                    .any(|v| v.state.shards[shard as usize].next == Some(3));
                let m = moves.entry(shard).or_default();
                if planned && m.planned.is_none() {
                    m.planned = Some(i);
                }
                match (seen_serving.get(&shard), now.first()) {
                    (Some(old), None) if *old != 3 => {
                        m.old_stopped.get_or_insert(i);
                    }
                    (_, Some(3)) => {
                        m.new_started.get_or_insert(i);
                    }
                    _ => {}
                }
                if let Some(o) = now.first() {
                    seen_serving.insert(shard, *o);
                }
            }
        },
        |s| balanced(s, 3),
    )
    .await;
    let taken: Vec<_> = moves
        .iter()
        .filter(|(_, m)| m.new_started.is_some())
        .collect();
    assert!(taken.len() >= SHARDS as usize / 3, "moves: {moves:?}");
    for (shard, m) in taken {
        let (Some(planned), Some(stopped), Some(started)) =
            (m.planned, m.old_stopped, m.new_started)
        else {
            panic!("shard {shard} moved to the new replica without two phases: {m:?}");
        };
        assert!(
            planned <= stopped && stopped < started,
            "shard {shard}: planned, stopped, started out of order: {m:?}"
        );
    }
}

#[tokio::test]
async fn a_healed_replica_serves_again_only_once_caught_up() {
    let g = Group::start(&[1, 2, 3]).await;
    let mut s = g.settled("three replicas to share the shards").await;
    // Whether a replica serves from its stale map depends on what it applies first after
    // the partition: a few rounds, with each follower in turn.
    for round in 0..3 {
        let l = leader(&s);
        let victim = [1, 2, 3]
            .into_iter()
            .filter(|id| *id != l)
            .nth(round % 2)
            .unwrap_or_else(|| panic!("a follower"));
        let vi = g.index(victim);
        let held = serving(&s[vi]);

        g.net.isolate(&addrs(victim).raft_addr);
        let cut = g
            .until(
                "the victim's shards to be served elsewhere",
                |_| {},
                |s| {
                    held.iter()
                        .all(|sh| servers(s, *sh).iter().any(|o| *o != victim))
                },
            )
            .await;
        // The epochs the others serve the victim's shards at: the victim may serve one
        // again only from a map newer than that.
        let moved: BTreeMap<u32, u64> = held
            .iter()
            .map(|sh| {
                let by = servers(&cut, *sh)[0];
                (*sh, cut[g.index(by)].state.shards[*sh as usize].epoch)
            })
            .collect();

        g.net.heal(&addrs(victim).raft_addr);
        let mut served_again = false;
        s = g
            .until(
                "the healed replica to take its share again",
                |s| {
                    let v = &s[vi];
                    for sh in serving(v) {
                        served_again = true;
                        if let Some(epoch) = moved.get(&sh) {
                            assert!(
                                v.state.shards[sh as usize].epoch > *epoch,
                                "round {round}: replica {victim} serves shard {sh} from a stale map"
                            );
                        }
                        assert!(
                            v.state.members.get(&victim).is_some_and(|m| m.alive),
                            "round {round}: replica {victim} serves while its map says it is down"
                        );
                    }
                },
                |s| balanced(s, 3) && agreed(s),
            )
            .await;
        assert!(served_again);
    }
}

#[tokio::test]
async fn a_crashed_leaders_shards_move_to_the_survivors() {
    let g = Group::start(&[1, 2, 3]).await;
    let s = g.settled("three replicas to share the shards").await;
    let victim = leader(&s);
    let vi = g.index(victim);
    g.net.crash(&addrs(victim).raft_addr).await;
    assert_eq!(g.nodes[vi].current().serving_count(), 0);

    let s = g
        .until(
            "the survivors to share every shard",
            |_| {},
            |s| {
                (0..SHARDS).all(|sh| servers(s, sh).len() == 1)
                    && (s.iter().enumerate())
                        .all(|(i, v)| i == vi || v.serving_count() == SHARDS as usize / 2)
            },
        )
        .await;
    for (i, v) in s.iter().enumerate().filter(|(i, _)| *i != vi) {
        assert_eq!(
            v.serving_count(),
            SHARDS as usize / 2,
            "replica {}",
            g.nodes[i].id()
        );
        assert!(v.leader.is_some_and(|l| l != victim));
        assert!(v.state.members.get(&victim).is_some_and(|m| !m.alive));
    }
}

/// Whether an observer's view sends every shard to the replica serving it in `sample`.
fn routes_to_servers(observer: &Ownership, sample: &Sample) -> bool {
    (0..SHARDS).all(|sh| match observer.route(sh) {
        Route::Peer(id, node) => servers(sample, sh) == [id] && node == addrs(id),
        _ => false,
    })
}

#[tokio::test]
async fn an_observer_follows_the_freshest_map() {
    let g = Group::start(&[1, 2, 3]).await;
    let s = g.settled("three replicas to share the shards").await;
    let peers: Vec<String> = [1, 2, 3].map(|id| addrs(id).raft_addr).to_vec();
    let mut view = watch_peers(
        g.net.transport("observer"),
        peers,
        Duration::from_millis(20),
    );
    let deadline = Instant::now() + PATIENCE;
    while !routes_to_servers(&view.borrow_and_update(), &g.sample()) {
        if tokio::time::timeout_at(deadline, view.changed())
            .await
            .is_err()
        {
            panic!("the observer never routed every shard to its replica");
        }
    }

    // A replica cut off from the others, but not from the observer, keeps reporting
    // its stale map (with a term raised by its elections): the observer must follow the
    // others'.
    let l = leader(&s);
    let victim = [1, 2, 3]
        .into_iter()
        .find(|id| *id != l)
        .unwrap_or_else(|| panic!("a follower"));
    for other in [1, 2, 3].into_iter().filter(|id| *id != victim) {
        g.net.cut(&addrs(victim).raft_addr, &addrs(other).raft_addr);
    }
    let held = serving(&s[g.index(victim)]);
    g.until(
        "the victim's shards to be served elsewhere",
        |_| {},
        |s| {
            held.iter()
                .all(|sh| servers(s, *sh).iter().any(|o| *o != victim))
        },
    )
    .await;
    // The observer follows the others' map, never the victim's, whatever its term.
    let cut_off = |o: &Ownership| {
        o.state.members.get(&victim).is_some_and(|m| !m.alive)
            && (0..SHARDS).all(|sh| !matches!(o.route(sh), Route::Peer(id, _) if id == victim))
    };
    while !cut_off(&view.borrow_and_update()) {
        if tokio::time::timeout_at(deadline, view.changed())
            .await
            .is_err()
        {
            panic!("the observer never saw the victim's shards move");
        }
    }
    // Long enough for the victim to try elections (timeout 0.5–1 s) and raise its term.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let _ = tokio::time::timeout_at(watch_until, view.changed()).await;
        let o = view.borrow_and_update().clone();
        assert!(
            cut_off(&o),
            "the observer took the cut-off replica's stale map (term {}, applied {})",
            o.term,
            o.commit_index
        );
    }
}
