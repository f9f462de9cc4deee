//! The Raft type configuration and the commands the shard map replicates.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// Where a replica can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Raft RPCs.
    pub raft_addr: String,
    /// The xDS (ADS) server, where proxies and forwarding routers connect.
    pub xds_addr: String,
    /// The admin HTTP server.
    pub admin_addr: String,
    /// The TLS xDS server (empty: none), where routers with replica certificates forward.
    #[serde(default)]
    pub xds_tls_addr: String,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} xds={}", self.raft_addr, self.xds_addr)
    }
}

/// What the shard map replicates. Time never enters the log: liveness is decided by the
/// leader from when it applied each replica's heartbeats, and recorded as `Down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A replica is alive and reachable at `addrs`. Committing it also proves to the
    /// replica that it is in contact with a quorum (its serving lease).
    Heartbeat { node: NodeId, addrs: Node },
    /// The leader moves shards to `to`. Without `force` the current owner keeps serving
    /// until it releases them; with `force` (the owner is down) the move is immediate.
    Move {
        shards: Vec<u32>,
        to: NodeId,
        force: bool,
    },
    /// The previous owner stopped serving these shards (after draining their streams).
    Release { node: NodeId, shards: Vec<u32> },
    /// The leader stopped hearing from a replica.
    Down { node: NodeId },
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    /// Shards whose ownership changed.
    pub changed: u32,
    /// Log index the command was committed at: a replica acts on its own write only
    /// once its state machine has applied this far.
    #[serde(default)]
    pub index: u64,
}

openraft::declare_raft_types!(
    /// shoal's Raft types.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
