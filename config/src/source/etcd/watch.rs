//! The source's loop: read the prefix, deliver, watch from the next revision; when the
//! watch breaks, read again and deliver the difference.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use etcd_client::{Client, WatchOptions};
use metrics::{counter, gauge};
use tokio::sync::{mpsc, watch};

use super::client::{ConnectError, Connection, MAX_MESSAGE, bounded, connect, read_prefix};
use super::status::{EtcdStatus, EtcdStatusWatch};
use super::tracker::Tracker;
use super::value::parse_entry;
use crate::parse::ParsedDoc;
use crate::source::backoff::{Backoff, jitter};
use crate::source::{ConfigSource, SourceError, SourceUpdate};

/// Retry timing.
#[derive(Debug, Clone)]
pub struct Options {
    /// The first wait after a failure; it doubles up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
        }
    }
}

pub struct EtcdSource {
    connection: Connection,
    options: Options,
    status: watch::Sender<EtcdStatus>,
}

impl EtcdSource {
    pub fn new(connection: Connection, options: Options) -> EtcdSource {
        let status = EtcdStatus::new(
            connection.endpoints.clone(),
            connection.prefix.as_str().to_string(),
        );
        EtcdSource {
            connection,
            options,
            status: watch::Sender::new(status),
        }
    }

    /// The source's status, live.
    pub fn status(&self) -> EtcdStatusWatch {
        self.status.subscribe()
    }
}

impl ConfigSource for EtcdSource {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<SourceUpdate>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        Box::pin(async move { self.follow(tx).await })
    }
}

/// Why following the prefix stopped.
enum Break {
    /// The pipeline has gone away.
    Closed,
    /// Read the prefix again now (a compaction, a cancelled watch); etcd answers.
    Reread(String),
    /// etcd does not answer (or refused): wait, connect again, read again.
    Failed(ConnectError),
}

impl From<ConnectError> for Break {
    fn from(e: ConnectError) -> Self {
        Break::Failed(e)
    }
}

impl From<etcd_client::Error> for Break {
    fn from(e: etcd_client::Error) -> Self {
        Break::Failed(e.into())
    }
}

/// A watch event's type as etcd's protocol numbers it.
const PUT: i32 = 0;
const DELETE: i32 = 1;

impl EtcdSource {
    async fn follow(self, tx: mpsc::Sender<SourceUpdate>) -> Result<(), SourceError> {
        let mut tracker = Tracker::new(self.connection.prefix.clone());
        let mut backoff = Backoff::new(self.options.backoff_base, self.options.backoff_cap);
        let mut client: Option<Client> = None;
        let mut reads = 0u64;
        loop {
            let stop = self
                .session(&mut client, &mut tracker, &mut reads, &mut backoff, &tx)
                .await;
            let wait = match stop {
                Break::Closed => return Err(SourceError::Closed),
                Break::Reread(why) => {
                    tracing::info!(prefix = %self.connection.prefix, reason = %why, "etcd: reading the prefix again");
                    // Soon, but not in a tight loop should etcd cancel every watch.
                    backoff.next(jitter()).min(Duration::from_secs(1))
                }
                Break::Failed(e) => {
                    // A new client next time: a balanced channel whose endpoints all
                    // failed may keep waiting instead of trying them again.
                    client = None;
                    counter!("shoal_etcd_errors_total").increment(1);
                    gauge!("shoal_etcd_connected").set(0.0);
                    let message = e.to_string();
                    self.status.send_modify(|s| {
                        if s.connected || s.unreachable_since.is_none() {
                            s.unreachable_since = Some(SystemTime::now());
                            if s.synced {
                                tracing::warn!(error = %message, "etcd: connection lost; serving the last good config");
                            } else {
                                tracing::warn!(error = %message, "etcd: cannot read the prefix yet; retrying");
                            }
                        }
                        s.connected = false;
                        s.last_error = Some(message.clone());
                    });
                    let wait = backoff.next(jitter());
                    tracing::debug!(error = %message, ?wait, "etcd: retrying");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tx.closed() => return Err(SourceError::Closed),
            }
        }
    }

    /// One connection's life: (connect,) read, deliver, watch until something breaks.
    async fn session(
        &self,
        client: &mut Option<Client>,
        tracker: &mut Tracker,
        reads: &mut u64,
        backoff: &mut Backoff,
        tx: &mpsc::Sender<SourceUpdate>,
    ) -> Break {
        let c = match client {
            Some(c) => c.clone(),
            None => match connect(&self.connection).await {
                Ok(c) => client.insert(c).clone(),
                Err(e) => return e.into(),
            },
        };
        let (mut revision, entries) = match read_prefix(&c, tracker.prefix()).await {
            Ok(read) => read,
            Err(e) => return e.into(),
        };
        let updates = tracker.resync(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        drop(entries);
        *reads += 1;
        if *reads > 1 {
            counter!("shoal_etcd_resyncs_total").increment(1);
        }
        tracing::info!(
            prefix = %tracker.prefix(),
            revision,
            keys = tracker.len(),
            changes = updates.len(),
            "etcd: read the prefix"
        );
        if send(tx, updates).await.is_err() {
            return Break::Closed;
        }
        let first = !self.status.borrow().synced;
        self.set_read(revision, tracker.len(), *reads);
        if first
            && tx
                .send(SourceUpdate::Synced {
                    source_kind: "etcd",
                })
                .await
                .is_err()
        {
            return Break::Closed;
        }

        // Watch from the revision after the read: nothing between is missed.
        let options = WatchOptions::new()
            .with_range(tracker.prefix().range_end())
            .with_start_revision(revision + 1)
            .with_progress_notify()
            .with_fragment();
        let mut watcher = c.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let mut stream = match bounded(watcher.watch(tracker.prefix().range(), Some(options))).await
        {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        loop {
            let response = tokio::select! {
                r = stream.message() => r,
                _ = tx.closed() => return Break::Closed,
            };
            let response = match response {
                Ok(Some(r)) => r,
                Ok(None) => return Break::Failed(ConnectError::WatchEnded),
                Err(e) => return e.into(),
            };
            if response.canceled() {
                let compacted = response.compact_revision();
                return if compacted > 0 {
                    Break::Reread(format!(
                        "revision {} was compacted (etcd keeps history from {compacted})",
                        revision + 1
                    ))
                } else {
                    Break::Reread(format!("watch cancelled: {}", response.cancel_reason()))
                };
            }
            backoff.reset();
            let mut updates = Vec::new();
            let mut unknown = None;
            let events = response.events();
            for event in events {
                let Some(kv) = event.kv() else { continue };
                // The raw type: the accessor panics on a number it does not know.
                match event.0.r#type {
                    PUT => {
                        counter!("shoal_etcd_events_total", "event" => "put").increment(1);
                        updates.extend(tracker.put(kv.key(), kv.value()));
                    }
                    DELETE => {
                        counter!("shoal_etcd_events_total", "event" => "delete").increment(1);
                        updates.extend(tracker.delete(kv.key()));
                    }
                    other => {
                        // What the tracker took so far is sent; the re-read does the rest.
                        unknown = Some(other);
                        break;
                    }
                }
                revision = revision.max(kv.mod_revision());
            }
            if events.is_empty()
                && !response.created()
                && let Some(header) = response.header()
            {
                // A progress notification: every event up to it has been sent. (The
                // response that confirms the watch is not one: events from the start
                // revision to its header's may still be on their way.)
                revision = revision.max(header.revision());
            }
            if send(tx, updates).await.is_err() {
                return Break::Closed;
            }
            if let Some(kind) = unknown {
                return Break::Reread(format!("unknown watch event type {kind}"));
            }
            self.set_read(revision, tracker.len(), *reads);
        }
    }

    /// etcd answered: the delivered config is at `revision`.
    fn set_read(&self, revision: i64, keys: usize, reads: u64) {
        gauge!("shoal_etcd_connected").set(1.0);
        gauge!("shoal_etcd_revision").set(revision as f64);
        gauge!("shoal_etcd_keys").set(keys as f64);
        self.status.send_if_modified(|s| {
            let before = s.clone();
            if !s.connected && s.synced {
                tracing::info!(revision, "etcd answers again");
            }
            s.connected = true;
            s.synced = true;
            s.revision = revision;
            s.keys = keys;
            s.resyncs = reads.saturating_sub(1);
            s.last_error = None;
            s.unreachable_since = None;
            *s != before
        });
    }
}

async fn send(tx: &mpsc::Sender<SourceUpdate>, updates: Vec<SourceUpdate>) -> Result<(), ()> {
    for u in updates {
        tx.send(u).await.map_err(|_| ())?;
    }
    Ok(())
}

/// Reads the prefix once (for `shoal validate`): each key with its parsed document, and
/// the revision read at.
pub async fn load(
    connection: &Connection,
) -> Result<(i64, Vec<(String, ParsedDoc)>), ConnectError> {
    let client = connect(connection).await?;
    let (revision, entries) = read_prefix(&client, &connection.prefix).await?;
    let docs = entries
        .iter()
        .map(|(k, v)| {
            (
                super::key::source_id(k),
                parse_entry(&connection.prefix, k, v),
            )
        })
        .collect();
    Ok((revision, docs))
}
