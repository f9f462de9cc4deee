//! The calling side of the HTTP wire.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{APPEND, JOIN, JoinRequest, SHARDS, SNAPSHOT, VOTE, WRITE};
use crate::error::RpcError;
use crate::ownership::ShardsReport;
use crate::transport::{Call, RaftReply, Transport};
use crate::types::{Command, Node, NodeId, Response, TypeConfig};

/// Calls peers over HTTP: plain, or mTLS when the replica has TLS material.
#[derive(Clone)]
pub struct HttpTransport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: &'static str,
}

impl HttpTransport {
    /// `tls`: the client configuration replica links use (certificate and peer
    /// verification); `None` for plaintext links.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, rustls::Error> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.enforce_http(false);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = match tls {
            Some(c) => (*c).clone(),
            // Never used for `http://` URLs; the connector wants a configuration anyway.
            None => rustls::ClientConfig::builder_with_provider(Arc::new(
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
        Ok(HttpTransport {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https),
            scheme,
        })
    }

    /// Sends `body` (JSON, or nothing) to `addr` and decodes the JSON answer.
    async fn call<Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let protocol = |reason: String| RpcError::Protocol {
            addr: addr.to_string(),
            reason: format!("{path}: {reason}"),
        };
        let unreachable = |reason: String| RpcError::Unreachable {
            addr: addr.to_string(),
            reason: format!("{path}: {reason}"),
        };
        let uri = format!("{}://{addr}{path}", self.scheme);
        let req = match body {
            Some(b) => {
                let bytes = serde_json::to_vec(b).map_err(|e| protocol(e.to_string()))?;
                hyper::Request::post(uri)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(bytes)))
            }
            None => hyper::Request::get(uri).body(Full::new(Bytes::new())),
        }
        .map_err(|e| protocol(e.to_string()))?;
        let resp = tokio::time::timeout(timeout, self.client.request(req))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = tokio::time::timeout(timeout, resp.into_body().collect())
            .await
            .map_err(|_| protocol("body timed out".into()))?
            .map_err(|e| protocol(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(protocol(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body).map_err(|e| protocol(e.to_string()))
    }

    /// A shoal call, whose answer on the wire is `Result<T, String>`.
    async fn shoal_call<T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &(impl Serialize + Sync),
        timeout: Duration,
    ) -> Result<T, RpcError> {
        self.call::<Result<T, String>>(addr, path, Some(body), timeout)
            .await?
            .map_err(|reason| RpcError::Refused {
                addr: addr.to_string(),
                reason,
            })
    }
}

impl Transport for HttpTransport {
    fn append_entries<'a>(
        &'a self,
        to: &'a Node,
        rpc: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<AppendEntriesResponse<NodeId>>, RpcError>> {
        Box::pin(async move { self.call(&to.raft_addr, APPEND, Some(&rpc), timeout).await })
    }

    fn vote<'a>(
        &'a self,
        to: &'a Node,
        rpc: VoteRequest<NodeId>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<VoteResponse<NodeId>>, RpcError>> {
        Box::pin(async move { self.call(&to.raft_addr, VOTE, Some(&rpc), timeout).await })
    }

    fn install_snapshot<'a>(
        &'a self,
        to: &'a Node,
        rpc: InstallSnapshotRequest<TypeConfig>,
        timeout: Duration,
    ) -> Call<'a, Result<RaftReply<InstallSnapshotResponse<NodeId>, InstallSnapshotError>, RpcError>>
    {
        Box::pin(async move {
            self.call(&to.raft_addr, SNAPSHOT, Some(&rpc), timeout)
                .await
        })
    }

    fn write<'a>(
        &'a self,
        to: &'a str,
        cmd: Command,
        timeout: Duration,
    ) -> Call<'a, Result<Response, RpcError>> {
        Box::pin(async move { self.shoal_call(to, WRITE, &cmd, timeout).await })
    }

    fn join<'a>(
        &'a self,
        through: &'a str,
        id: NodeId,
        node: Node,
        timeout: Duration,
    ) -> Call<'a, Result<(), RpcError>> {
        let req = JoinRequest { id, node };
        Box::pin(async move { self.shoal_call(through, JOIN, &req, timeout).await })
    }

    fn shards<'a>(
        &'a self,
        from: &'a str,
        timeout: Duration,
    ) -> Call<'a, Result<ShardsReport, RpcError>> {
        Box::pin(async move { self.call(from, SHARDS, None::<&()>, timeout).await })
    }
}
