//! An in-memory network between in-process replicas, for tests (feature `testing`): calls
//! go straight to the peer's [`ShardNode`], with no serialization and no sockets. Links can
//! be cut and restored (partitions) and replicas crashed, so leases, fencing and handovers
//! can be tested in one process, in seconds.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;

use crate::error::RpcError;
use crate::node::ShardNode;
use crate::ownership::ShardsReport;
use crate::transport::{Call, RaftReply, Transport};
use crate::types::{Command, Node, NodeId, Response, TypeConfig};

/// The network: replicas attached by their Raft address, and which links are down.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<Links>>,
}

#[derive(Default)]
struct Links {
    nodes: HashMap<String, Weak<ShardNode>>,
    /// Cut links, each as its two ends in order.
    cut: HashSet<(String, String)>,
    /// Replicas cut from everyone.
    isolated: HashSet<String>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Links {
    /// Whether `a` reaches `b` (`a` may not be attached yet: a replica calls out while
    /// it starts).
    fn up(&self, a: &str, b: &str) -> bool {
        self.nodes.contains_key(b)
            && !self.isolated.contains(a)
            && !self.isolated.contains(b)
            && !self.cut.contains(&pair(a, b))
    }
}

impl MemoryNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// The transport of the replica that will be attached at `raft_addr`: give it to
    /// [`ShardNode::start_with`].
    pub fn transport(&self, raft_addr: &str) -> Arc<dyn Transport> {
        Arc::new(MemoryTransport {
            from: raft_addr.to_string(),
            net: self.clone(),
        })
    }

    /// Makes `node` reachable at its Raft address (until it is crashed).
    pub fn attach(&self, node: &Arc<ShardNode>) {
        self.inner
            .lock()
            .nodes
            .insert(node.addrs().raft_addr.clone(), Arc::downgrade(node));
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: &str, b: &str) {
        self.inner.lock().cut.insert(pair(a, b));
    }

    pub fn restore(&self, a: &str, b: &str) {
        self.inner.lock().cut.remove(&pair(a, b));
    }

    /// Cuts `addr` off from every other replica.
    pub fn isolate(&self, addr: &str) {
        self.inner.lock().isolated.insert(addr.to_string());
    }

    /// Restores every link of `addr`.
    pub fn heal(&self, addr: &str) {
        let mut l = self.inner.lock();
        l.isolated.remove(addr);
        l.cut.retain(|(a, b)| a != addr && b != addr);
    }

    /// Crashes the replica at `addr`: it is detached and isolated for good (calls to and
    /// from it fail), and shut down.
    pub async fn crash(&self, addr: &str) {
        let node = {
            let mut l = self.inner.lock();
            l.isolated.insert(addr.to_string());
            l.nodes.remove(addr).and_then(|n| n.upgrade())
        };
        if let Some(node) = node {
            node.shutdown().await;
        }
    }
}

/// One replica's end of the network.
struct MemoryTransport {
    from: String,
    net: MemoryNetwork,
}

impl MemoryTransport {
    fn reach(&self, to: &str) -> Result<Arc<ShardNode>, RpcError> {
        let unreachable = |reason: &str| RpcError::Unreachable {
            addr: to.to_string(),
            reason: reason.to_string(),
        };
        let links = self.net.inner.lock();
        if !links.up(&self.from, to) {
            return Err(unreachable("link down"));
        }
        links
            .nodes
            .get(to)
            .and_then(Weak::upgrade)
            .ok_or_else(|| unreachable("gone"))
    }

    /// Runs `answer` on the peer at `to`; the answer is lost if the link went down
    /// meanwhile.
    async fn call<T, F, Fut>(&self, to: &str, timeout: Duration, answer: F) -> Result<T, RpcError>
    where
        F: FnOnce(Arc<ShardNode>) -> Fut,
        Fut: Future<Output = T>,
    {
        let peer = self.reach(to)?;
        let out = tokio::time::timeout(timeout, answer(peer))
            .await
            .map_err(|_| RpcError::Unreachable {
                addr: to.to_string(),
                reason: "timed out".into(),
            })?;
        self.reach(to)?;
        Ok(out)
    }

    /// A shoal call: the peer's refusal arrives as text, as over HTTP.
    async fn shoal_call<T, E: std::fmt::Display, F, Fut>(
        &self,
        to: &str,
        timeout: Duration,
        answer: F,
    ) -> Result<T, RpcError>
    where
        F: FnOnce(Arc<ShardNode>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call(to, timeout, answer)
            .await?
            .map_err(|e| RpcError::Refused {
                addr: to.to_string(),
                reason: e.to_string(),
            })
    }
}

impl Transport for MemoryTransport {
    fn append_entries<'a>(
        &'a self,
        to: &'a Node,
        rpc: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<AppendEntriesResponse<NodeId>>, RpcError>> {
        Box::pin(self.call(&to.raft_addr, timeout, |n| async move {
            n.raft().append_entries(rpc).await
        }))
    }

    fn vote<'a>(
        &'a self,
        to: &'a Node,
        rpc: VoteRequest<NodeId>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<VoteResponse<NodeId>>, RpcError>> {
        Box::pin(self.call(&to.raft_addr, timeout, |n| async move {
            n.raft().vote(rpc).await
        }))
    }

    fn install_snapshot<'a>(
        &'a self,
        to: &'a Node,
        rpc: InstallSnapshotRequest<TypeConfig>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<InstallSnapshotResponse<NodeId>, InstallSnapshotError>, RpcError>>
    {
        Box::pin(self.call(&to.raft_addr, timeout, |n| async move {
            n.raft().install_snapshot(rpc).await
        }))
    }

    fn write<'a>(
        &'a self,
        to: &'a str,
        cmd: Command,
        timeout: Duration,
    ) -> Call<'a, Result<Response, RpcError>> {
        Box::pin(self.shoal_call(to, timeout, |n| async move { n.accept_write(cmd).await }))
    }

    fn join<'a>(
        &'a self,
        through: &'a str,
        id: NodeId,
        node: Node,
        timeout: Duration,
    ) -> Call<'a, Result<(), RpcError>> {
        Box::pin(self.shoal_call(through, timeout, move |n| async move {
            n.accept_join(id, node).await
        }))
    }

    fn shards<'a>(
        &'a self,
        from: &'a str,
        timeout: Duration,
    ) -> Call<'a, Result<ShardsReport, RpcError>> {
        Box::pin(self.call(from, timeout, |n| async move { n.report() }))
    }
}
