//! Everything a replica sends to its peers goes through a [`Transport`]: openraft's RPCs
//! (behind its `RaftNetworkFactory`) and shoal's own calls — writes forwarded to the leader,
//! joins, shard map reports. [`crate::http::HttpTransport`] is the production one;
//! `crate::memory` (feature `testing`) connects in-process replicas.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::error::RpcError;
use crate::ownership::ShardsReport;
use crate::types::{Command, Node, NodeId, Response, TypeConfig};

/// A call in flight.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answer to a Raft RPC: the peer's own reply, which may be a Raft error.
pub type RaftReply<T, E = Infallible> = Result<T, RaftError<NodeId, E>>;

/// How a replica reaches its peers. Peers are addressed by their Raft address
/// ([`Node::raft_addr`]), as `--peers` and `--join` name them. Every call is bounded by
/// `timeout`.
pub trait Transport: Send + Sync + 'static {
    fn append_entries<'a>(
        &'a self,
        to: &'a Node,
        rpc: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<AppendEntriesResponse<NodeId>>, RpcError>>;

    fn vote<'a>(
        &'a self,
        to: &'a Node,
        rpc: VoteRequest<NodeId>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<VoteResponse<NodeId>>, RpcError>>;

    fn install_snapshot<'a>(
        &'a self,
        to: &'a Node,
        rpc: InstallSnapshotRequest<TypeConfig>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<InstallSnapshotResponse<NodeId>, InstallSnapshotError>, RpcError>>;

    /// Proposes `cmd` on `to` (the leader), without further forwarding.
    fn write<'a>(
        &'a self,
        to: &'a str,
        cmd: Command,
        timeout: Duration,
    ) -> Call<'a, Result<Response, RpcError>>;

    /// Asks the group, through member `through`, to add replica `id` at `node`.
    fn join<'a>(
        &'a self,
        through: &'a str,
        id: NodeId,
        node: Node,
        timeout: Duration,
    ) -> Call<'a, Result<(), RpcError>>;

    /// What member `from` knows of the shard map.
    fn shards<'a>(
        &'a self,
        from: &'a str,
        timeout: Duration,
    ) -> Call<'a, Result<ShardsReport, RpcError>>;
}

/// openraft's network, over a [`Transport`].
#[derive(Clone)]
pub(crate) struct Network(pub(crate) Arc<dyn Transport>);

pub(crate) struct Peer {
    target: NodeId,
    node: Node,
    transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            target,
            node: node.clone(),
            transport: self.0.clone(),
        }
    }
}

type RaftRpcError<E = Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

impl Peer {
    /// Sorts a call's outcome into openraft's categories: the peer's own error, a peer
    /// that was not reached (openraft backs off), or a failed exchange (retried).
    #[expect(
        clippy::result_large_err,
        reason = "openraft's own error type, which its RaftNetwork returns"
    )]
    fn outcome<T, E: std::error::Error>(
        &self,
        r: Result<RaftReply<T, E>, RpcError>,
    ) -> Result<T, RaftRpcError<E>> {
        match r {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e @ RpcError::Unreachable { .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftRpcError> {
        let r = self
            .transport
            .append_entries(&self.node, rpc, option.hard_ttl())
            .await;
        self.outcome(r)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>> {
        let r = self
            .transport
            .install_snapshot(&self.node, rpc, option.hard_ttl())
            .await;
        self.outcome(r)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RaftRpcError> {
        let r = self
            .transport
            .vote(&self.node, rpc, option.hard_ttl())
            .await;
        self.outcome(r)
    }
}
