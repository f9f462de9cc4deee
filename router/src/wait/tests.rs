//! On tokio's paused clock: what wakes a waiting stream, and when (virtual time only).

#![allow(clippy::unwrap_used)]

use shoal_shard::ShardState;
use shoal_shard::state::{Member, ShardEntry};
use tokio::time::sleep;

use super::*;

fn node(n: u16) -> shoal_shard::Node {
    shoal_shard::Node {
        raft_addr: format!("127.0.0.1:{}", 7000 + n),
        xds_addr: format!("127.0.0.1:{}", 8000 + n),
        admin_addr: format!("127.0.0.1:{}", 9000 + n),
        xds_tls_addr: String::new(),
    }
}

/// Replica 3's view of one shard owned by `owner` among replicas 1 and 2; `applied`
/// stands for the heartbeats applied so far (every one changes the view).
fn view(owner: Option<u64>, applied: u64) -> Arc<Ownership> {
    let mut state = ShardState::new(1);
    for id in [1u16, 2] {
        let member = Member {
            addrs: node(id),
            alive: true,
            heartbeats: applied,
        };
        state.members.insert(u64::from(id), member);
    }
    state.shards[0] = ShardEntry {
        owner,
        epoch: 1,
        next: None,
    };
    Arc::new(Ownership {
        me: 3,
        state: Arc::new(state),
        serving: Arc::new(vec![false]),
        leader: Some(1),
        term: 1,
        lease: true,
        commit_index: applied,
    })
}

fn peer(id: u16) -> Route {
    Route::Peer(u64::from(id), node(id))
}

/// Fails on `tried` with no view change until the back-off is at its longest.
async fn fail_until_max_backoff(
    pacing: &mut Pacing,
    rx: &mut watch::Receiver<Arc<Ownership>>,
    tried: &Route,
) {
    let far = Instant::now() + Duration::from_secs(600);
    while Pacing::backoff(pacing.failures) < MAX_BACKOFF {
        pacing.after_failure(rx, 0, tried, far).await;
    }
}

#[tokio::test(start_paused = true)]
async fn without_changes_the_pause_is_the_backoff_doubling() {
    let (_tx, mut rx) = watch::channel(view(Some(2), 0));
    let mut pacing = Pacing::default();
    let far = Instant::now() + Duration::from_secs(600);
    let mut expected = FIRST_BACKOFF;
    for _ in 0..8 {
        let start = Instant::now();
        pacing.after_failure(&mut rx, 0, &peer(2), far).await;
        assert_eq!(start.elapsed(), expected);
        expected = (expected * 2).min(MAX_BACKOFF);
    }
    pacing.succeeded();
    let start = Instant::now();
    pacing.after_failure(&mut rx, 0, &peer(2), far).await;
    assert_eq!(start.elapsed(), FIRST_BACKOFF);
}

/// The owner is named but refuses (it does not serve the shard yet): the stream tries again
/// once the view changes (a later entry applied), not after its back-off.
#[tokio::test(start_paused = true)]
async fn a_change_of_the_view_wakes_a_paused_stream_before_its_backoff() {
    let (tx, mut rx) = watch::channel(view(Some(2), 0));
    let mut pacing = Pacing::default();
    fail_until_max_backoff(&mut pacing, &mut rx, &peer(2)).await;
    let start = Instant::now();
    let task = tokio::spawn(async move {
        pacing
            .after_failure(&mut rx, 0, &peer(2), start + Duration::from_secs(600))
            .await;
        Instant::now()
    });
    // Past the longest floor (half the back-off): only a change can end the pause now.
    sleep(MAX_BACKOFF / 2 + Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "the pause ended without a change");
    tx.send_replace(view(Some(2), 1));
    let changed_at = Instant::now();
    let done = task.await.unwrap();
    assert!(done >= changed_at + SPREAD_MIN, "woke before the change");
    assert!(
        done <= changed_at + SPREAD_MAX,
        "woke {:?} after the change",
        done - changed_at
    );
    assert!(done < start + MAX_BACKOFF);
}

/// A change soon after the failure still leaves the floor between two attempts.
#[tokio::test(start_paused = true)]
async fn a_change_does_not_cut_the_floor() {
    let (tx, mut rx) = watch::channel(view(Some(2), 0));
    let mut pacing = Pacing::default();
    fail_until_max_backoff(&mut pacing, &mut rx, &peer(2)).await;
    let start = Instant::now();
    let task = tokio::spawn(async move {
        pacing
            .after_failure(&mut rx, 0, &peer(2), start + Duration::from_secs(600))
            .await;
        Instant::now()
    });
    sleep(Duration::from_millis(10)).await;
    tx.send_replace(view(Some(2), 1));
    let done = task.await.unwrap();
    assert!(done >= start + MAX_BACKOFF / 4, "{:?}", done - start);
    assert!(
        done <= start + MAX_BACKOFF / 2 + SPREAD_MAX,
        "{:?}",
        done - start
    );
}

/// The failover tail: a stream failed on its dead owner until its back-off was at its
/// longest; the shard moves to replica 2, which does not serve it yet. The stream goes to
/// replica 2 right after the move, and after that refusal tries again within the first
/// back-off, not the dead owner's.
#[tokio::test(start_paused = true)]
async fn a_new_owner_starts_the_backoff_over() {
    let (tx, mut rx) = watch::channel(view(Some(1), 0));
    let mut pacing = Pacing::default();
    fail_until_max_backoff(&mut pacing, &mut rx, &peer(1)).await;
    let far = Instant::now() + Duration::from_secs(600);
    let task = tokio::spawn(async move {
        pacing.after_failure(&mut rx, 0, &peer(1), far).await;
        (pacing, rx, Instant::now())
    });
    sleep(Duration::from_millis(300)).await;
    tx.send_replace(view(Some(2), 1));
    let moved_at = Instant::now();
    let (mut pacing, mut rx, woke) = task.await.unwrap();
    assert!(woke >= moved_at && woke <= moved_at + SPREAD_MAX);
    assert_eq!(rx.borrow().route(0), peer(2));
    let refused_at = Instant::now();
    pacing.after_failure(&mut rx, 0, &peer(2), far).await;
    assert_eq!(refused_at.elapsed(), FIRST_BACKOFF);
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn no_pause_outlasts_the_deadline() {
    let (_tx, mut rx) = watch::channel(view(Some(2), 0));
    let mut pacing = Pacing::default();
    fail_until_max_backoff(&mut pacing, &mut rx, &peer(2)).await;
    let start = Instant::now();
    pacing
        .after_failure(&mut rx, 0, &peer(2), start + Duration::from_millis(300))
        .await;
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_closed_view_is_waited_out_not_spun_on() {
    let (tx, mut rx) = watch::channel(view(None, 0));
    drop(tx);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(3);
    assert_eq!(route(&mut rx, 0, deadline).await, Route::Unavailable);
    assert_eq!(Instant::now(), deadline);
    let mut pacing = Pacing::default();
    let start = Instant::now();
    pacing
        .after_failure(&mut rx, 0, &peer(2), start + Duration::from_secs(600))
        .await;
    assert_eq!(start.elapsed(), FIRST_BACKOFF);
}

#[tokio::test(start_paused = true)]
async fn a_new_stream_starts_shortly_after_its_shard_gets_an_owner() {
    let (tx, mut rx) = watch::channel(view(None, 0));
    let start = Instant::now();
    let task = tokio::spawn(async move {
        let r = route(&mut rx, 0, start + Duration::from_secs(10)).await;
        (r, Instant::now())
    });
    sleep(Duration::from_millis(700)).await;
    // A change that gives it no route yet (a heartbeat applied) keeps it waiting.
    tx.send_replace(view(None, 1));
    sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished());
    tx.send_replace(view(Some(2), 2));
    let owned_at = Instant::now();
    let (r, at) = task.await.unwrap();
    assert_eq!(r, peer(2));
    assert!(at >= owned_at + SPREAD_MIN && at <= owned_at + SPREAD_MAX);
}

#[tokio::test(start_paused = true)]
async fn a_new_stream_gives_up_at_its_deadline() {
    let (_tx, mut rx) = watch::channel(view(None, 0));
    let start = Instant::now();
    let r = route(&mut rx, 0, start + Duration::from_secs(2)).await;
    assert_eq!(r, Route::Unavailable);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // A shard that has a route needs no wait at all.
    let (_tx, mut rx) = watch::channel(view(Some(1), 0));
    let start = Instant::now();
    assert_eq!(route(&mut rx, 0, start).await, peer(1));
    assert_eq!(start.elapsed(), Duration::ZERO);
}
