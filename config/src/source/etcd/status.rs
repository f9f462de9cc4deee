//! What the etcd source reports about itself: whether etcd answers, the revision the
//! delivered config is at, how often the prefix was read again, the last error.
//! Readiness, `/debug/configz` and the `shoal_etcd_*` metrics read it.

use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdStatus {
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// Whether etcd answered the last read and the watch is open.
    pub connected: bool,
    /// The first complete read has been delivered.
    pub synced: bool,
    /// The etcd revision the delivered config is at (0 before the first read).
    pub revision: i64,
    /// Keys below the prefix (objects, and keys that are only reported).
    pub keys: usize,
    /// Reads of the whole prefix after the first (compactions, lost connections).
    pub resyncs: u64,
    /// The last error talking to etcd, cleared once it answers again.
    pub last_error: Option<String>,
    /// Since when etcd has not answered (the config served is the last good one).
    pub unreachable_since: Option<SystemTime>,
}

impl EtcdStatus {
    pub fn new(endpoints: Vec<String>, prefix: String) -> EtcdStatus {
        EtcdStatus {
            endpoints,
            prefix,
            connected: false,
            synced: false,
            revision: 0,
            keys: 0,
            resyncs: 0,
            last_error: None,
            unreachable_since: None,
        }
    }

    /// The config from this source may be out of date: etcd does not answer.
    pub fn stale(&self) -> bool {
        self.synced && !self.connected
    }
}

/// Shared, observable status.
pub type EtcdStatusWatch = watch::Receiver<EtcdStatus>;
