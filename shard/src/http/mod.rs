//! The HTTP wire between replicas: JSON over HTTP/1.1 on each replica's Raft address
//! (mTLS when the replicas share a CA). [`HttpTransport`] calls peers; [`router`] answers
//! them.
//!
//! | path | body | answer |
//! | --- | --- | --- |
//! | `POST /raft/append`, `/raft/vote`, `/raft/snapshot` | openraft's request | `Result<reply, RaftError>` |
//! | `POST /raft/write` | [`crate::Command`] | `Result<Response, String>` |
//! | `POST /raft/join` | `{"id": …, "node": Node}` | `Result<(), String>` |
//! | `GET /raft/shards` | | [`crate::ShardsReport`] |

mod client;
mod server;

use serde::{Deserialize, Serialize};

use crate::types::{Node, NodeId};

pub use client::HttpTransport;
pub use server::router;

const APPEND: &str = "/raft/append";
const VOTE: &str = "/raft/vote";
const SNAPSHOT: &str = "/raft/snapshot";
const WRITE: &str = "/raft/write";
const JOIN: &str = "/raft/join";
const SHARDS: &str = "/raft/shards";

/// A replica asking to be added to the group.
#[derive(Debug, Serialize, Deserialize)]
struct JoinRequest {
    id: NodeId,
    node: Node,
}
