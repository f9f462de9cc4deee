//! Raft RPCs between replicas: JSON over HTTP/1.1 on each replica's Raft address.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Node, NodeId, TypeConfig};

/// HTTP client for Raft RPCs: plain HTTP, or mTLS when the replica has TLS material.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: &'static str,
}

/// `tls`: the client configuration replica links use (certificate and peer verification);
/// `None` for plaintext links.
pub fn http_client(
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<HttpClient, rustls::Error> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector.enforce_http(false);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let config = match tls {
        Some(c) => (*c).clone(),
        // Never used for `http://` URLs; the connector wants a configuration anyway.
        None => rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(HttpClient {
        inner: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https),
        scheme,
    })
}

/// Failure of one HTTP call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Network(String),
}

/// POSTs `body` as JSON to `http://addr/path` and decodes the JSON answer.
pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
    client: &HttpClient,
    addr: &str,
    path: &str,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, CallError> {
    let bytes = serde_json::to_vec(body).map_err(|e| CallError::Network(e.to_string()))?;
    let req = hyper::Request::post(format!("{}://{addr}{path}", client.scheme))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| CallError::Network(e.to_string()))?;
    let resp = tokio::time::timeout(timeout, client.inner.request(req))
        .await
        .map_err(|_| CallError::Unreachable(format!("{addr}{path}: timed out")))?
        .map_err(|e| CallError::Unreachable(format!("{addr}{path}: {e}")))?;
    let status = resp.status();
    let body = tokio::time::timeout(timeout, resp.into_body().collect())
        .await
        .map_err(|_| CallError::Network(format!("{addr}{path}: body timed out")))?
        .map_err(|e| CallError::Network(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(CallError::Network(format!(
            "{addr}{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    serde_json::from_slice(&body).map_err(|e| CallError::Network(format!("{addr}{path}: {e}")))
}

/// GETs `path` from `addr` and decodes the JSON answer.
pub async fn get<Resp: DeserializeOwned>(
    client: &HttpClient,
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Result<Resp, CallError> {
    let req = hyper::Request::get(format!("{}://{addr}{path}", client.scheme))
        .body(Full::new(Bytes::new()))
        .map_err(|e| CallError::Network(e.to_string()))?;
    let resp = tokio::time::timeout(timeout, client.inner.request(req))
        .await
        .map_err(|_| CallError::Unreachable(format!("{addr}{path}: timed out")))?
        .map_err(|e| CallError::Unreachable(format!("{addr}{path}: {e}")))?;
    let body = tokio::time::timeout(timeout, resp.into_body().collect())
        .await
        .map_err(|_| CallError::Network(format!("{addr}{path}: body timed out")))?
        .map_err(|e| CallError::Network(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| CallError::Network(format!("{addr}{path}: {e}")))
}

/// Makes a client per peer.
#[derive(Clone)]
pub struct Network {
    client: HttpClient,
}

impl Network {
    pub fn new(client: HttpClient) -> Self {
        Network { client }
    }
}

pub struct Peer {
    target: NodeId,
    addr: String,
    client: HttpClient,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            target,
            addr: node.raft_addr.clone(),
            client: self.client.clone(),
        }
    }
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<Result<Resp, RaftError<NodeId, E>>, CallError> =
            post(&self.client, &self.addr, path, req, ttl).await;
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(CallError::Unreachable(e)) => Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other(e),
            ))),
            Err(CallError::Network(e)) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(e),
            ))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/raft/append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("/raft/snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/raft/vote", &rpc, option.hard_ttl()).await
    }
}
