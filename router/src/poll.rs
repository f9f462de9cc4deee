//! The ownership view of a standalone router: polled from the replicas' `/raft/shards`.

use std::sync::Arc;
use std::time::Duration;

use shoal_shard::network::HttpClient;
use shoal_shard::{Ownership, ShardState, ShardsReport};
use tokio::sync::watch;

/// A node id no replica uses: the standalone router owns nothing.
pub const ROUTER_ID: u64 = u64::MAX;

async fn fetch(client: &HttpClient, addr: &str) -> Option<ShardsReport> {
    shoal_shard::network::get(client, addr, "/raft/shards", Duration::from_secs(2))
        .await
        .ok()
}

/// Polls the replicas' Raft addresses (with `client`: mTLS when the replicas require it);
/// publishes the freshest shard map (highest term, then commit index).
pub fn watch_replicas(
    raft_addrs: Vec<String>,
    every: Duration,
    client: HttpClient,
) -> watch::Receiver<Arc<Ownership>> {
    let empty = Arc::new(Ownership {
        me: ROUTER_ID,
        state: Arc::new(ShardState::new(1)),
        serving: Arc::new(Vec::new()),
        leader: None,
        term: 0,
        lease: false,
        commit_index: 0,
    });
    let (tx, rx) = watch::channel(empty);
    tokio::spawn(async move {
        loop {
            let mut best: Option<ShardsReport> = None;
            for addr in &raft_addrs {
                if let Some(r) = fetch(&client, addr).await
                    && best
                        .as_ref()
                        .is_none_or(|b| (r.term, r.commit_index) > (b.term, b.commit_index))
                {
                    best = Some(r);
                }
            }
            if let Some(r) = best {
                let cur = tx.borrow().clone();
                if *cur.state != r.state || cur.leader != r.leader {
                    let n = r.state.shard_count() as usize;
                    tx.send_replace(Arc::new(Ownership {
                        me: ROUTER_ID,
                        state: Arc::new(r.state),
                        serving: Arc::new(vec![false; n]),
                        leader: r.leader,
                        term: r.term,
                        lease: false,
                        commit_index: r.commit_index,
                    }));
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    rx
}
