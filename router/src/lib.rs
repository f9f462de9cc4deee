//! The router: every replica accepts any proxy stream. It reads the node id from the first
//! request, finds the shard's owner in the ownership view, and either serves the stream
//! locally or forwards the whole stream to the owner over one multiplexed HTTP/2 connection
//! per peer. Forwarded streams survive ownership moves (re-established on the new owner
//! with what the proxy acknowledged); local streams of a shard that moves away are drained.
//!
//! Invariants:
//! - The router never decodes resources: only the first request's node, and response
//!   envelopes (names, versions, nonces) of forwarded streams.
//! - A stream marked as forwarded is served or refused, never forwarded again (no loops).
//! - A replica serves a stream only while the ownership view says it serves its shard.
//!   Debug clients (istioctl) and federation relay readers (`shoal_api::relay`) own no
//!   shard: they are served by the replica they reached, which answers about its own
//!   streams or imports.

mod forward;
#[cfg(feature = "testing")]
pub mod fuzzing;
mod local;
mod peers;
mod track;
mod wait;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use shoal_api::grpc::{Frames, MessageBody};
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use shoal_shard::{Ownership, Route};
use tokio::sync::{mpsc, watch};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, StdError, http};
use tonic::server::NamedService;

pub use forward::FORWARDED;
pub use peers::{Peers, channel as peer_channel};

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Names the identity a stream authenticated with by its client certificate (the router
/// has verified it; the owner trusts the claim only from a replica over mTLS).
pub type CallerFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// The header carrying [`CallerFn`]'s answer to the owner.
pub const CALLER: &str = "x-shoal-caller";

#[derive(Clone)]
pub struct RouterConfig {
    pub max_message_size: usize,
    /// Streams of a shard that moved away end within this (random) delay.
    pub drain: Duration,
    /// How long a new stream waits for its shard to get a serving owner.
    pub wait_for_owner: Duration,
    /// This replica's xDS URL (`http://…` or `https://…`; absent in a standalone router).
    pub self_addr: Option<String>,
    /// mTLS to peers (their TLS xDS ports); `None`: plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub caller: Option<CallerFn>,
}

impl std::fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterConfig")
            .field("self_addr", &self.self_addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Routes ADS streams; `L` serves the ones this replica owns (absent in a standalone
/// router, which forwards everything).
pub struct Router<L> {
    local: Option<L>,
    view: watch::Receiver<Arc<Ownership>>,
    peers: Arc<Peers>,
    config: Arc<RouterConfig>,
}

impl<L: Clone> Clone for Router<L> {
    fn clone(&self) -> Self {
        Router {
            local: self.local.clone(),
            view: self.view.clone(),
            peers: self.peers.clone(),
            config: self.config.clone(),
        }
    }
}

impl<L> Router<L> {
    pub fn new(
        local: Option<L>,
        view: watch::Receiver<Arc<Ownership>>,
        config: RouterConfig,
    ) -> Self {
        Router {
            local,
            view,
            peers: Arc::new(Peers::new(config.tls.clone())),
            config: Arc::new(config),
        }
    }
}

impl<L> NamedService for Router<L> {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

fn error(status: Status) -> http::Response<Body> {
    status.into_http()
}

fn first_node(delta: bool, first: &Bytes) -> Result<Node, Status> {
    let node = if delta {
        DeltaDiscoveryRequest::decode(first.clone()).map(|r| r.node)
    } else {
        DiscoveryRequest::decode(first.clone()).map(|r| r.node)
    };
    let node = node.map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))?;
    node.ok_or_else(|| Status::invalid_argument("the first request of a stream must carry a node"))
}

impl<L, B> Service<http::Request<B>> for Router<L>
where
    L: Service<http::Request<MessageBody>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    L::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

impl<L> Router<L>
where
    L: Service<http::Request<MessageBody>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    L::Future: Send,
{
    async fn handle<B>(mut self, req: http::Request<B>) -> http::Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let path = req.uri().path().to_string();
        let delta = match path.as_str() {
            DELTA_PATH => true,
            SOTW_PATH => false,
            _ => return error(Status::unimplemented("no such method")),
        };
        let forwarded = req.headers().contains_key(FORWARDED);
        let (parts, body) = req.into_parts();
        let mut frames = Frames::new(body, self.config.max_message_size);
        let first = match frames.next().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return error(Status::cancelled(
                    "the stream ended before its first request",
                ));
            }
            Err(s) => return error(s),
        };
        let id = match first_node(delta, &first) {
            // A debug client (istioctl) asks about the streams of the replica it reached, a
            // federation relay reader about its imports: served here, never by the owner of
            // its node id's shard.
            Ok(node) if shoal_api::relay::served_where_reached(&node) => {
                if self.local.is_none() {
                    return error(Status::unimplemented(
                        "a routing tier holds no streams: ask a replica for debug information \
                         or federation imports",
                    ));
                }
                return self.serve_local(parts, first, frames, 0, false).await;
            }
            Ok(node) => node.id,
            // Let the local service answer with its own error (it knows the details).
            Err(s) if self.local.is_none() => return error(s),
            Err(_) => return self.serve_local(parts, first, frames, 0, false).await,
        };
        let shard = self.view.borrow().shard_of(&id);
        let wait = if forwarded {
            Duration::ZERO
        } else {
            self.config.wait_for_owner
        };
        let deadline = tokio::time::Instant::now() + wait;
        match wait::route(&mut self.view, shard, deadline).await {
            Route::Local if self.local.is_some() => {
                self.serve_local(parts, first, frames, shard, true).await
            }
            _ if forwarded => error(Status::unavailable(format!(
                "this replica does not serve shard {shard}"
            ))),
            Route::Unavailable => error(Status::unavailable(format!(
                "no replica serves shard {shard} right now"
            ))),
            Route::Local | Route::Peer(..) => {
                metrics::counter!("shoal_router_forwarded_streams_total").increment(1);
                let (tx, rx) = mpsc::channel(8);
                let Ok(path) = http::uri::PathAndQuery::try_from(path.as_str()) else {
                    return error(Status::internal("bad path"));
                };
                let fwd = forward::Forward {
                    path,
                    delta,
                    shard,
                    first,
                    frames,
                    view: self.view.clone(),
                    peers: self.peers.clone(),
                    self_addr: self.config.self_addr.clone(),
                    authorization: parts.headers.get(http::header::AUTHORIZATION).cloned(),
                    caller: self
                        .config
                        .caller
                        .as_ref()
                        .and_then(|f| f(&parts))
                        .and_then(|c| http::HeaderValue::from_str(&c).ok()),
                };
                tokio::spawn(async move {
                    metrics::gauge!("shoal_router_forwarded_streams").increment(1.0);
                    fwd.run(tx).await;
                    metrics::gauge!("shoal_router_forwarded_streams").decrement(1.0);
                });
                let mut resp = http::Response::new(Body::new(MessageBody::new(rx)));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                resp
            }
        }
    }

    async fn serve_local<B>(
        self,
        parts: http::request::Parts,
        first: Bytes,
        frames: Frames<B>,
        shard: u32,
        watch: bool,
    ) -> http::Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let Some(mut local) = self.local else {
            return error(Status::unavailable("no local service"));
        };
        let body = shoal_api::grpc::prepend(vec![first], frames);
        let Ok(resp) = local.call(http::Request::from_parts(parts, body)).await;
        if !watch {
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let watched = local::Watched::new(body, self.view.clone(), shard, self.config.drain);
        http::Response::from_parts(parts, Body::new(watched))
    }
}
