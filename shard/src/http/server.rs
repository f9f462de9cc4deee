//! The answering side of the HTTP wire: thin handlers over [`ShardNode`]'s answers to peers.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use super::{APPEND, JOIN, JoinRequest, SHARDS, SNAPSHOT, VOTE, WRITE};
use crate::node::ShardNode;
use crate::ownership::ShardsReport;
use crate::types::{Command, NodeId, Response, TypeConfig};

/// The Raft RPC endpoints of `node`, to serve on its Raft address.
pub fn router(node: Arc<ShardNode>) -> Router {
    Router::new()
        .route(APPEND, post(append))
        .route(VOTE, post(vote))
        .route(SNAPSHOT, post(snapshot))
        .route(WRITE, post(write))
        .route(JOIN, post(join))
        .route(SHARDS, get(shards))
        .with_state(node)
}

type S = State<Arc<ShardNode>>;

async fn append(
    State(n): S,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<serde_json::Value> {
    Json(serde_json::to_value(n.raft().append_entries(req).await).unwrap_or_default())
}

async fn vote(State(n): S, Json(req): Json<VoteRequest<NodeId>>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(n.raft().vote(req).await).unwrap_or_default())
}

async fn snapshot(
    State(n): S,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<serde_json::Value> {
    Json(serde_json::to_value(n.raft().install_snapshot(req).await).unwrap_or_default())
}

async fn write(State(n): S, Json(cmd): Json<Command>) -> Json<Result<Response, String>> {
    Json(n.accept_write(cmd).await.map_err(|e| e.to_string()))
}

async fn join(State(n): S, Json(req): Json<JoinRequest>) -> Json<Result<(), String>> {
    Json(
        n.accept_join(req.id, req.node)
            .await
            .map_err(|e| e.to_string()),
    )
}

async fn shards(State(n): S) -> Json<ShardsReport> {
    Json(n.report())
}
