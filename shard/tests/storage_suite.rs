//! The durable Raft store against openraft's conformance suite, and across a restart.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, StorageHelper, StorageIOError, Vote,
};
use shoal_shard::store::{self, LogStore, StateMachineStore};
use shoal_shard::{Command, Node, NodeId, ShardState, TypeConfig};
use tempfile::TempDir;

/// Each build gets a fresh directory, removed when the suite drops the guard.
struct TempStore;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStore {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let (log, sm, _rx) =
            store::open(dir.path(), 16).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn conformance() {
    // The suite runs its own tokio runtimes, so this is a plain test.
    Suite::test_all(TempStore).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn heartbeat(term: u64, index: u64, node: NodeId) -> Entry<TypeConfig> {
    let addrs = Node {
        raft_addr: format!("10.0.0.{node}:7000"),
        ..Node::default()
    };
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Command::Heartbeat { node, addrs }),
    }
}

#[tokio::test]
async fn a_reopened_store_recovers_vote_log_and_state() {
    let dir = TempDir::new().unwrap();
    // A log as a fresh cluster writes it: the initial membership at index 0, then commands.
    let membership = Membership::new(vec![[1u64].into_iter().collect()], None);
    let mut entries = vec![Entry::<TypeConfig> {
        log_id: log_id(1, 0),
        payload: EntryPayload::Membership(membership),
    }];
    entries.extend((1..=5).map(|i| heartbeat(1, i, i % 3)));
    let vote = Vote::new_committed(1, 1);

    let (snapshot_meta, log_state, state_at_snapshot, full_state) = {
        let (mut log, mut sm, mut rx) = store::open(dir.path(), 8).unwrap();
        assert_eq!(**rx.borrow_and_update(), ShardState::new(8));

        log.save_vote(&vote).await.unwrap();
        log.blocking_append(entries.clone()).await.unwrap();

        // Apply through index 3 and snapshot there; 4 and 5 are committed but only in the log.
        let responses = sm.apply(entries[..4].to_vec()).await.unwrap();
        assert_eq!(responses.len(), 4);
        assert!(rx.has_changed().unwrap(), "an applied batch is published");
        let state_at_snapshot = rx.borrow_and_update().clone();
        assert_eq!(state_at_snapshot.members.len(), 3);
        let mut builder = sm.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 3)));

        sm.apply(entries[4..].to_vec()).await.unwrap();
        log.save_committed(Some(log_id(1, 5))).await.unwrap();
        let full_state = rx.borrow_and_update().clone();
        let heartbeats: u64 = full_state.members.values().map(|m| m.heartbeats).sum();
        assert_eq!(heartbeats, 5);

        let log_state = log.get_log_state().await.unwrap();
        (snapshot.meta, log_state, state_at_snapshot, full_state)
    };

    let (mut log, mut sm, rx) = store::open(dir.path(), 8).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.get_log_state().await.unwrap(), log_state);
    assert_eq!(log_state.last_log_id, Some(log_id(1, 5)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 5)));
    assert_eq!(log.try_get_log_entries(..).await.unwrap(), entries);

    // The state machine comes back at the snapshot...
    assert_eq!(*rx.borrow(), state_at_snapshot);
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 0)));
    let current = sm.get_current_snapshot().await.unwrap();
    assert_eq!(current.map(|s| s.meta), Some(snapshot_meta));

    // ...and openraft's startup replays the committed log after it.
    let mut helper = StorageHelper::new(&mut log, &mut sm);
    helper.get_initial_state().await.unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 5)));
    assert_eq!(*rx.borrow(), full_state);
    assert_eq!(*sm.subscribe().borrow(), full_state);
}

#[tokio::test]
async fn ranges_of_every_shape_read_the_right_entries() {
    let dir = TempDir::new().unwrap();
    let (mut log, _sm, _rx) = store::open(dir.path(), 4).unwrap();
    log.blocking_append((1..=9).map(|i| heartbeat(1, i, 1)))
        .await
        .unwrap();
    let mut reader = log.get_log_reader().await;

    async fn indexes(
        reader: &mut LogStore,
        range: impl std::ops::RangeBounds<u64> + Clone + std::fmt::Debug + Send,
    ) -> Vec<u64> {
        reader
            .try_get_log_entries(range)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }
    use std::ops::Bound::{Excluded, Included, Unbounded};
    assert_eq!(indexes(&mut reader, ..).await, (1..=9).collect::<Vec<_>>());
    assert_eq!(indexes(&mut reader, 3..5).await, vec![3, 4]);
    assert_eq!(indexes(&mut reader, 3..=5).await, vec![3, 4, 5]);
    assert_eq!(indexes(&mut reader, ..3).await, vec![1, 2]);
    assert_eq!(indexes(&mut reader, ..=3).await, vec![1, 2, 3]);
    assert_eq!(indexes(&mut reader, 8..).await, vec![8, 9]);
    assert_eq!(
        indexes(&mut reader, (Excluded(7), Unbounded)).await,
        vec![8, 9]
    );
    assert_eq!(
        indexes(&mut reader, (Excluded(4), Included(5))).await,
        vec![5]
    );
    assert_eq!(
        indexes(&mut reader, (Excluded(5), Excluded(5))).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        indexes(&mut reader, (Included(5), Excluded(3))).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        indexes(&mut reader, (Excluded(u64::MAX), Unbounded)).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        indexes(&mut reader, 0..=u64::MAX).await,
        (1..=9).collect::<Vec<_>>()
    );
}
