//! Shard ownership for shoal's replicas, coordinated by Raft (openraft).
//!
//! Proxies are hashed into S virtual shards; the Raft group replicates only members and the
//! shard map ([`state::ShardState`]), never config. The leader assigns shards with minimal
//! movement and rate-limited handovers; each replica serves a shard only while it owns it
//! and holds a lease (its last heartbeat committed recently), so two replicas never serve
//! one shard.
//!
//! A replica is a [`ShardNode`]; what it knows is its [`Ownership`] view. Replicas reach
//! each other through a [`Transport`]: [`http::HttpTransport`] (served by
//! [`http::router`]), or, for tests, `memory::MemoryNetwork` (feature `testing`).
//! Observers without a replica (the standalone router) poll one with [`watch_peers`].

mod error;
pub mod http;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
mod node;
mod ownership;
pub mod state;
pub mod store;
mod transport;
pub mod types;

pub use error::{RpcError, StartError, WriteError};
pub use http::HttpTransport;
pub use node::{ShardConfig, ShardNode};
pub use ownership::{OBSERVER, Ownership, Route, ShardsReport, watch_peers};
pub use state::{ShardState, shard_of};
pub use transport::{Call, RaftReply, Transport};
pub use types::{Command, Node, NodeId, Response, TypeConfig};
