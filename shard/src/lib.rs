//! Shard ownership for shoal's replicas, coordinated by Raft (openraft).
//!
//! Proxies are hashed into S virtual shards; the Raft group replicates only members and the
//! shard map ([`state::ShardState`]), never config. The leader assigns shards with minimal
//! movement and rate-limited handovers; each replica serves a shard only while it owns it
//! and holds a lease (its last heartbeat committed recently), so two replicas never serve
//! one shard.

pub mod network;
pub mod node;
pub mod state;
pub mod store;
pub mod types;

pub use node::{Ownership, Route, ShardConfig, ShardNode, ShardsReport};
pub use state::{ShardState, shard_of};
pub use types::{Command, Node, NodeId, Response, TypeConfig};
