//! Which replica of this group follows a peer group: the owner of the link's shard, as the
//! group's ownership view says (the same leases that place proxy streams). The others read
//! the owner's imports over a relay stream; while nobody serves the shard (a handover) a
//! replica waits and keeps what it has.

use std::sync::Arc;

use shoal_shard::{Ownership, Route};
use tokio::sync::watch;

/// Where a replica reads a peer group's exports from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Upstream {
    /// The peer group itself: this replica owns the link (or runs without a group).
    Peer,
    /// The link's owner in this group, at its TLS xDS address.
    Relay(String),
    /// Nobody owns the link right now.
    Wait,
}

impl Upstream {
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            Upstream::Peer => "peer",
            Upstream::Relay(_) => "relay",
            Upstream::Wait => "waiting",
        }
    }
}

/// The key whose shard places the link to `peer`.
pub(super) fn link_key(peer: &str) -> String {
    format!("federation-link/{peer}")
}

/// Where the link to `peer` is read from, given this replica's view of ownership.
pub(super) fn upstream(ownership: Option<&Ownership>, peer: &str) -> Upstream {
    let Some(o) = ownership else {
        return Upstream::Peer;
    };
    match o.route(o.shard_of(&link_key(peer))) {
        Route::Local => Upstream::Peer,
        Route::Peer(_, node) if !node.xds_tls_addr.is_empty() => Upstream::Relay(node.xds_tls_addr),
        Route::Peer(..) | Route::Unavailable => Upstream::Wait,
    }
}

/// This replica's view of its group's ownership (none: a replica on its own).
pub(super) struct Placement {
    pub(super) view: Option<watch::Receiver<Arc<Ownership>>>,
}

impl Placement {
    pub(super) fn current(&self, peer: &str) -> Upstream {
        upstream(
            self.view.as_ref().map(|v| v.borrow().clone()).as_deref(),
            peer,
        )
    }

    /// Returns once the link to `peer` is read from somewhere other than `from` (never
    /// without a group, or once the group has stopped).
    pub(super) async fn moved(&mut self, peer: &str, from: &Upstream) {
        let Some(view) = &mut self.view else {
            return std::future::pending().await;
        };
        loop {
            if view.changed().await.is_err() {
                return std::future::pending().await;
            }
            let now = upstream(Some(&view.borrow_and_update()), peer);
            if now != *from {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_shard::{ShardState, ShardsReport};

    fn node(n: u64) -> shoal_shard::Node {
        shoal_shard::Node {
            raft_addr: format!("10.0.0.{n}:7001"),
            xds_addr: format!("10.0.0.{n}:7010"),
            admin_addr: format!("10.0.0.{n}:7014"),
            xds_tls_addr: format!("10.0.0.{n}:7012"),
        }
    }

    /// Replica `me`'s view of a group of 1..=3 where replica `owner` owns every shard.
    fn view(me: u64, owner: Option<u64>, serving: bool) -> Ownership {
        let mut state = ShardState::new(4);
        for n in 1..=3 {
            state.members.insert(
                n,
                shoal_shard::state::Member {
                    addrs: node(n),
                    alive: true,
                    heartbeats: 0,
                },
            );
        }
        for s in 0..4 {
            state.shards[s].owner = owner;
        }
        let mut o = Ownership::observed(ShardsReport {
            node: me,
            leader: Some(1),
            term: 1,
            commit_index: 1,
            state,
        });
        o.me = me;
        o.serving = Arc::new(vec![serving; 4]);
        o
    }

    #[test]
    fn the_links_owner_follows_the_peer_and_the_others_read_from_it() {
        assert_eq!(upstream(None, "east"), Upstream::Peer, "no group");
        assert_eq!(
            upstream(Some(&view(2, Some(2), true)), "east"),
            Upstream::Peer
        );
        assert_eq!(
            upstream(Some(&view(1, Some(2), false)), "east"),
            Upstream::Relay("10.0.0.2:7012".into())
        );
        // Owned but not served yet (a handover to this replica), or owned by nobody.
        assert_eq!(
            upstream(Some(&view(2, Some(2), false)), "east"),
            Upstream::Wait
        );
        assert_eq!(
            upstream(Some(&view(1, None, false)), "east"),
            Upstream::Wait
        );
    }

    #[tokio::test]
    async fn a_move_of_the_link_is_noticed_and_other_changes_are_not() {
        let (tx, rx) = watch::channel(Arc::new(view(1, Some(2), false)));
        let mut p = Placement { view: Some(rx) };
        let from = p.current("east");
        assert_eq!(from, Upstream::Relay("10.0.0.2:7012".into()));
        let mut moved = Box::pin(async {
            p.moved("east", &from).await;
        });
        // A change that leaves the link where it was (a heartbeat) wakes nothing.
        tx.send_replace(Arc::new(view(1, Some(2), false)));
        assert!(futures::poll!(moved.as_mut()).is_pending());
        tx.send_replace(Arc::new(view(1, Some(1), true)));
        moved.await;
    }
}
