//! The wire-limit baseline: a trivial in-process server that, on each stream, pushes the
//! responses shoal sent to a proxy of the same group, recorded beforehand, and does nothing
//! else. Converging a fleet against it measures what the wire, the client and this machine
//! allow; shoal's efficiency is baseline time / shoal time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use prost::Message;
use shoal_api::codec::RawCodec;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Status, Streaming};

/// Recorded responses per group (the proxy's namespace).
pub type Recordings = Arc<HashMap<String, Vec<Bytes>>>;

/// The namespace part of an Istio node id (`TYPE~IP~POD.NS~NS.svc...`).
pub fn group_of(node_id: &str) -> String {
    node_id
        .split('~')
        .nth(3)
        .and_then(|d| d.split('.').next())
        .unwrap_or_default()
        .to_string()
}

#[derive(Clone)]
struct Replay {
    recordings: Recordings,
    delta: bool,
}

impl tonic::server::StreamingService<Bytes> for Replay {
    type Response = Bytes;
    type ResponseStream = ReceiverStream<Result<Bytes, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                let Ok(Some(first)) = inbound.message().await else {
                    return;
                };
                let node = if this.delta {
                    DeltaDiscoveryRequest::decode(first)
                        .ok()
                        .and_then(|r| r.node)
                } else {
                    DiscoveryRequest::decode(first).ok().and_then(|r| r.node)
                };
                let group = node.map(|n| group_of(&n.id)).unwrap_or_default();
                for r in this.recordings.get(&group).into_iter().flatten() {
                    if tx.send(Ok(r.clone())).await.is_err() {
                        return;
                    }
                }
                while let Ok(Some(_)) = inbound.message().await {}
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        })
    }
}

#[derive(Clone)]
struct Baseline(Recordings);

impl NamedService for Baseline {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<B> Service<http::Request<B>> for Baseline
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let delta = req.uri().path().ends_with("/DeltaAggregatedResources");
        let replay = Replay {
            recordings: self.0.clone(),
            delta,
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(64 << 20), Some(usize::MAX));
            Ok(grpc.streaming(replay, req).await)
        })
    }
}

/// Serves recordings on a free loopback port until the handle is dropped.
pub struct BaselineServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(recordings: Recordings) -> anyhow::Result<BaselineServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(Baseline(recordings))
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(BaselineServer { addr, task })
}
