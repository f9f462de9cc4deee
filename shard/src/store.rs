//! Durable Raft storage for one replica: the log, the vote and the current snapshot, all in a
//! single redb file in the replica's data directory.
//!
//! One transactional file keeps the pieces consistent with each other (a purge and the new
//! purge point commit together; a snapshot's meta and data commit together) and every commit is
//! fsynced before it returns, which is what Raft needs before it acknowledges anything.
//!
//! The state machine ([`ShardState`]) is small and lives in memory; it is made durable through
//! snapshots only. On restart it is restored from the last snapshot, and openraft replays the
//! log from there up to the persisted committed log id (which is why [`LogStore`] implements
//! `save_committed`). This keeps `apply` free of disk writes, and the log short: openraft purges
//! it only up to a snapshot that is already on disk.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend,
    RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::ShardState;
use crate::types::{Node, NodeId, Response, TypeConfig};

/// The database file inside the data directory.
const DB_FILE: &str = "raft.redb";

/// Log entries by index, each a JSON-encoded `Entry<TypeConfig>`.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Small JSON records of the log store: vote, committed and last purged log ids.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The current snapshot: its meta (JSON) and its data (the bytes openraft ships to followers).
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const KEY_SNAPSHOT_META: &str = "meta";
const KEY_SNAPSHOT_DATA: &str = "data";

/// Why the store could not be opened or a stored record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating the raft data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the raft database {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("raft database: {0}")]
    Db(#[source] redb::Error),
    #[error("encoding or decoding a stored raft record: {0}")]
    Codec(#[from] serde_json::Error),
}

// redb reports each step (transaction, table, read, commit) with its own error type; these let
// `?` fold them all into `StoreError::Db`.
impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Db(e.into())
    }
}

impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Db(e.into())
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Db(e.into())
    }
}

impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Db(e.into())
    }
}

/// Opens (or creates) the store in `dir`: the log store, the state machine restored from the
/// last persisted snapshot (or an empty map of `shard_count` shards), and a receiver of every
/// state the state machine reaches.
///
/// The receiver is returned here because the state machine itself is moved into openraft;
/// [`StateMachineStore::subscribe`] gives more before that.
///
/// This does blocking file I/O; call it at startup or from a blocking context.
pub fn open(
    dir: &Path,
    shard_count: u32,
) -> Result<
    (
        LogStore,
        StateMachineStore,
        watch::Receiver<Arc<ShardState>>,
    ),
    StoreError,
> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    let db = Database::create(&path).map_err(|source| StoreError::Open { path, source })?;
    // Create every table up front, so read transactions never meet a missing one.
    let txn = db.begin_write()?;
    {
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.open_table(SNAPSHOT)?;
    }
    txn.commit()?;
    let db = Arc::new(db);
    let sm = StateMachineStore::restore(Arc::clone(&db), shard_count)?;
    let rx = sm.subscribe();
    Ok((LogStore { db }, sm, rx))
}

// ---------------------------------------------------------------------------------------------
// Error mapping and blocking helpers.

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

/// Maps a `StoreError` into openraft's error, naming what was being done.
fn sto(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(StoreError) -> StorageError<NodeId> {
    move |e| io_error(subject, verb, &e)
}

/// Runs a write (which fsyncs on commit) on tokio's blocking pool, so a slow disk stalls only
/// the caller and not the runtime's workers. Each caller awaits it, which keeps writes in the
/// order openraft issued them.
async fn blocking<T, F>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    f: F,
) -> Result<T, StorageError<NodeId>>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res.map_err(sto(subject, verb)),
        Err(join) => Err(io_error(subject, verb, &join)),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

// ---------------------------------------------------------------------------------------------
// Synchronous database operations.

fn get_row(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(table)?;
    Ok(t.get(key)?.map(|v| v.value().to_vec()))
}

fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StoreError> {
    get_row(db, META, key)?.map(|b| decode(&b)).transpose()
}

/// Sets (or with `None` removes) one record of the meta table, durably.
fn write_meta(db: &Database, key: &str, value: Option<Vec<u8>>) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(META)?;
        match value {
            Some(v) => t.insert(key, v.as_slice())?,
            None => t.remove(key)?,
        };
    }
    txn.commit()?;
    Ok(())
}

/// Turns any range of indexes into `[lo, hi)`, or `None` when it holds no index; this avoids
/// handing redb an inverted range and copes with bounds at `u64::MAX`.
fn index_span(range: &impl RangeBounds<u64>) -> Option<(u64, Bound<u64>)> {
    let lo = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1).map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Excluded(e) => Bound::Excluded(*e),
        Bound::Unbounded => Bound::Unbounded,
    };
    match hi {
        Bound::Excluded(h) if h <= lo => None,
        _ => Some((lo, hi)),
    }
}

/// Reads the entries with index in `[lo, hi)`, decoding straight from redb's pages.
fn read_entries(
    db: &Database,
    lo: u64,
    hi: Bound<u64>,
) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(LOGS)?;
    let mut entries = Vec::new();
    for row in t.range::<u64>((Bound::Included(lo), hi))? {
        let (_, v) = row?;
        entries.push(decode(v.value())?);
    }
    Ok(entries)
}

fn last_log_row(db: &Database) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(LOGS)?;
    Ok(t.last()?.map(|(_, v)| v.value().to_vec()))
}

fn write_log_rows(db: &Database, rows: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(LOGS)?;
        for (index, bytes) in rows {
            t.insert(*index, bytes.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Removes the entries from `since` on.
fn truncate_rows(db: &Database, since: u64) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(LOGS)?;
        t.retain_in::<u64, _>(since.., |_, _| false)?;
    }
    txn.commit()?;
    Ok(())
}

/// Removes the entries up to `upto` and records the purge point, in one transaction so that a
/// crash never leaves a log whose start disagrees with `last_purged`.
fn purge_rows(db: &Database, upto: u64, purged: &[u8]) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(LOGS)?;
        t.retain_in::<u64, _>(..=upto, |_, _| false)?;
        let mut m = txn.open_table(META)?;
        m.insert(KEY_PURGED, purged)?;
    }
    txn.commit()?;
    Ok(())
}

type ShardSnapshotMeta = SnapshotMeta<NodeId, Node>;

/// Persists a snapshot. A snapshot builder runs concurrently with the state machine, so an older
/// build may finish after a newer snapshot was stored (or installed); unless `replace` is set,
/// an older one is dropped rather than stored over a newer one. Returns whether it was stored.
fn write_snapshot(
    db: &Database,
    meta: &ShardSnapshotMeta,
    data: &[u8],
    replace: bool,
) -> Result<bool, StoreError> {
    let meta_bytes = encode(meta)?;
    let txn = db.begin_write()?;
    let stored = {
        let mut t = txn.open_table(SNAPSHOT)?;
        let stale = match t.get(KEY_SNAPSHOT_META)? {
            Some(current) if !replace => {
                let current: ShardSnapshotMeta = decode(current.value())?;
                current.last_log_id > meta.last_log_id
            }
            _ => false,
        };
        if !stale {
            t.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())?;
            t.insert(KEY_SNAPSHOT_DATA, data)?;
        }
        !stale
    };
    if stored {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(stored)
}

fn read_snapshot(db: &Database) -> Result<Option<(ShardSnapshotMeta, Vec<u8>)>, StoreError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(SNAPSHOT)?;
    let Some(meta) = t.get(KEY_SNAPSHOT_META)? else {
        return Ok(None);
    };
    let meta: ShardSnapshotMeta = decode(meta.value())?;
    let data = t
        .get(KEY_SNAPSHOT_DATA)?
        .map(|v| v.value().to_vec())
        .unwrap_or_default();
    Ok(Some((meta, data)))
}

// ---------------------------------------------------------------------------------------------
// The log store.

/// The Raft log, vote, committed and purged log ids. Cloning is cheap and shares the database,
/// which is how openraft's replication tasks get their own readers.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        // Served inline rather than on the blocking pool: redb answers reads from its page
        // cache without fsync, and replication reads often, in small batches.
        match index_span(&range) {
            Some((lo, hi)) => {
                read_entries(&self.db, lo, hi).map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))
            }
            None => Ok(Vec::new()),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> =
            read_meta(&self.db, KEY_PURGED).map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))?;
        let last = last_log_row(&self.db)
            .and_then(|row| row.map(|b| decode::<Entry<TypeConfig>>(&b)).transpose())
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.map(|e| e.log_id).or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(vote).map_err(sto(ErrorSubject::Vote, ErrorVerb::Write))?;
        let db = Arc::clone(&self.db);
        blocking(ErrorSubject::Vote, ErrorVerb::Write, move || {
            write_meta(&db, KEY_VOTE, Some(bytes))
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        read_meta(&self.db, KEY_VOTE).map_err(sto(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Persisted because the state machine is not: after a restart openraft re-applies the log
    /// up to here, so a replica does not go back to an older state than it already served.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = committed
            .map(|c| encode(&c))
            .transpose()
            .map_err(sto(ErrorSubject::Store, ErrorVerb::Write))?;
        let db = Arc::clone(&self.db);
        blocking(ErrorSubject::Store, ErrorVerb::Write, move || {
            write_meta(&db, KEY_COMMITTED, bytes)
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        read_meta(&self.db, KEY_COMMITTED).map_err(sto(ErrorSubject::Store, ErrorVerb::Read))
    }

    /// Commits the entries (fsynced) before reporting them flushed, and before returning, so
    /// they are both durable and readable by then.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes =
                encode(&entry).map_err(sto(ErrorSubject::Log(entry.log_id), ErrorVerb::Write))?;
            rows.push((entry.log_id.index, bytes));
        }
        let db = Arc::clone(&self.db);
        let res = blocking(ErrorSubject::Logs, ErrorVerb::Write, move || {
            write_log_rows(&db, &rows)
        })
        .await;
        match &res {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        res
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = Arc::clone(&self.db);
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            truncate_rows(&db, log_id.index)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let purged = encode(&log_id).map_err(sto(ErrorSubject::Logs, ErrorVerb::Delete))?;
        let db = Arc::clone(&self.db);
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            purge_rows(&db, log_id.index, &purged)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// The state machine.

/// What a snapshot's data holds: everything needed to resume applying right after it.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Node>,
    state: Arc<ShardState>,
}

/// The applied shard map, plus what openraft needs to know about how far it got.
pub struct StateMachineStore {
    db: Arc<Database>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Node>,
    /// Shared with the watch channel and snapshot builders; `apply` copies it on write.
    state: Arc<ShardState>,
    tx: watch::Sender<Arc<ShardState>>,
}

impl StateMachineStore {
    /// Restores the state of the last persisted snapshot, or starts from an empty map.
    fn restore(db: Arc<Database>, shard_count: u32) -> Result<Self, StoreError> {
        let (last_applied, last_membership, state) = match read_snapshot(&db)? {
            Some((meta, data)) => {
                let body: SnapshotBody = decode(&data)?;
                (meta.last_log_id, meta.last_membership, body.state)
            }
            None => (
                None,
                StoredMembership::default(),
                Arc::new(ShardState::new(shard_count)),
            ),
        };
        let (tx, _) = watch::channel(Arc::clone(&state));
        Ok(StateMachineStore {
            db,
            last_applied,
            last_membership,
            state,
            tx,
        })
    }

    /// A receiver of the applied state; it sees a new value after every applied batch and every
    /// installed snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ShardState>> {
        self.tx.subscribe()
    }

    /// Publishes even with no receiver left, so a later `subscribe` starts from the latest.
    fn publish(&self) {
        self.tx.send_replace(Arc::clone(&self.state));
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = ShardSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let mut response = match entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(cmd) => Arc::make_mut(&mut self.state).apply(&cmd),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Response::default()
                }
            };
            response.index = entry.log_id.index;
            responses.push(response);
        }
        if !responses.is_empty() {
            self.publish();
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        ShardSnapshotBuilder {
            db: Arc::clone(&self.db),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            state: Arc::clone(&self.state),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Stores the snapshot before adopting it, so that once openraft drops the log it covers,
    /// the snapshot is already what a restart recovers from.
    async fn install_snapshot(
        &mut self,
        meta: &ShardSnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let data = snapshot.into_inner();
        let body: SnapshotBody = decode(&data).map_err(sto(subject.clone(), ErrorVerb::Read))?;
        let db = Arc::clone(&self.db);
        let stored_meta = meta.clone();
        blocking(subject, ErrorVerb::Write, move || {
            write_snapshot(&db, &stored_meta, &data, true)
        })
        .await?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.state = body.state;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let stored =
            read_snapshot(&self.db).map_err(sto(ErrorSubject::Snapshot(None), ErrorVerb::Read))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a snapshot of the state as it was when openraft asked for the builder; holding an
/// `Arc` of that state makes taking it free and keeps later applies from changing it.
pub struct ShardSnapshotBuilder {
    db: Arc<Database>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Node>,
    state: Arc<ShardState>,
}

impl RaftSnapshotBuilder<TypeConfig> for ShardSnapshotBuilder {
    /// Persists the snapshot before returning it: openraft purges the log it covers right after.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let body = SnapshotBody {
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            state: Arc::clone(&self.state),
        };
        // Two snapshots with the same last log id hold the same state, so the id needs nothing
        // more to tell different snapshots apart.
        let snapshot_id = match self.last_applied {
            Some(id) => id.to_string(),
            None => "empty".to_string(),
        };
        let meta = ShardSnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let data = encode(&body).map_err(sto(subject.clone(), ErrorVerb::Write))?;
        let db = Arc::clone(&self.db);
        let stored_meta = meta.clone();
        // The data goes to the blocking pool and comes back, rather than being copied.
        let (stored, data) = blocking(subject, ErrorVerb::Write, move || {
            write_snapshot(&db, &stored_meta, &data, false).map(|stored| (stored, data))
        })
        .await?;
        if !stored {
            tracing::debug!(snapshot = %meta.snapshot_id, "a newer snapshot is already stored; keeping it");
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
