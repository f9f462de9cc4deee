//! The shard group's errors: starting a replica, writing through Raft, calling a peer.

use std::path::PathBuf;

use openraft::error::{ClientWriteError, Fatal, RaftError};

use crate::store::StoreError;
use crate::types::{Node, NodeId};

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating the data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the Raft store: {0}")]
    Store(#[from] StoreError),
    #[error("invalid Raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("TLS configuration of replica links: {0}")]
    Tls(#[from] rustls::Error),
    #[error("starting Raft: {0}")]
    Raft(#[from] Fatal<NodeId>),
}

/// Why a call to a peer replica failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The peer could not be reached in time (refused, timed out, cut off); it may or may
    /// not have acted on the call.
    #[error("{addr}: unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The peer was reached but the exchange failed (an HTTP error, an undecodable answer).
    #[error("{addr}: {reason}")]
    Protocol { addr: String, reason: String },
    /// The peer answered, refusing (for instance: it is not the leader any more).
    #[error("{addr} refused: {reason}")]
    Refused { addr: String, reason: String },
}

/// Why a write through Raft (or a membership change) failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no leader known")]
    NoLeader,
    #[error("timed out")]
    Timeout,
    /// Raft refused it on this replica.
    #[error(transparent)]
    Raft(#[from] RaftError<NodeId, ClientWriteError<NodeId, Node>>),
    /// Forwarding it to the leader failed.
    #[error("forwarding to the leader: {0}")]
    Forward(#[from] RpcError),
}
