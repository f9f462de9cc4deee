//! Forwarding one proxy stream to the replica that owns its shard, and re-establishing it on
//! the next owner when ownership moves — without the proxy noticing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_api::codec::RawCodec;
use shoal_api::grpc::{Frames, Message};
use shoal_shard::{Ownership, Route};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codegen::http;

use crate::peers::Peers;
use crate::track::Tracker;
use crate::wait::{self, Pacing};

/// Header marking a stream forwarded by a router: the receiver serves it or refuses it,
/// never forwards it again.
pub const FORWARDED: &str = "x-shoal-forwarded";

/// How long a forwarded stream keeps trying to reach an owner before giving up.
const GIVE_UP: Duration = Duration::from_secs(30);

fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
            | tonic::Code::Internal
    )
}

/// Where to reach `route`: a peer's xDS URL, or this replica's own for [`Route::Local`]
/// (none in a standalone router, which serves nothing itself).
fn addr(route: &Route, peers: &Peers, self_addr: Option<&str>) -> Option<String> {
    match route {
        Route::Peer(_, node) => Some(peers.url(node)),
        Route::Local => self_addr.map(str::to_string),
        Route::Unavailable => None,
    }
}

pub struct Forward<B> {
    pub path: http::uri::PathAndQuery,
    pub delta: bool,
    pub shard: u32,
    pub first: Bytes,
    pub frames: Frames<B>,
    pub view: watch::Receiver<Arc<Ownership>>,
    pub peers: Arc<Peers>,
    /// This replica's own xDS address (to reach itself when it becomes the owner).
    pub self_addr: Option<String>,
    /// The proxy's credentials (`authorization`), passed on for the owner to verify itself.
    pub authorization: Option<http::HeaderValue>,
    /// The identity the proxy's client certificate proved to this router ([`crate::CALLER`]).
    pub caller: Option<http::HeaderValue>,
}

impl<B> Forward<B>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    /// Runs until the proxy goes away or no owner can be reached.
    pub async fn run(self, tx: mpsc::Sender<Result<Message, Status>>) {
        let Forward {
            path,
            delta,
            shard,
            first,
            mut frames,
            mut view,
            peers,
            self_addr,
            authorization,
            caller,
        } = self;
        let mut tracker = Tracker::new(delta);
        tracker.on_request(&first);
        // The proxy's requests arrive here, whichever upstream is current.
        let (proxy_tx, mut proxy_rx) = mpsc::channel::<Result<Bytes, Status>>(16);
        tokio::spawn(async move {
            loop {
                let m = frames.next().await;
                let end = !matches!(m, Ok(Some(_)));
                let item = match m {
                    Ok(Some(b)) => Ok(b),
                    Ok(None) => return,
                    Err(s) => Err(s),
                };
                if proxy_tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        let mut attempt = 0u32;
        let mut pacing = Pacing::default();
        let mut last_success = Instant::now();
        loop {
            let route = wait::route(&mut view, shard, last_success + GIVE_UP).await;
            let Some(addr) = addr(&route, &peers, self_addr.as_deref()) else {
                let _ = tx
                    .send(Err(Status::unavailable(format!(
                        "no replica serves shard {shard}"
                    ))))
                    .await;
                return;
            };
            let initial = if attempt == 0 {
                vec![first.clone()]
            } else {
                tracker.resume()
            };
            if attempt > 0 {
                metrics::counter!("shoal_router_reestablished_total").increment(1);
                tracing::debug!(shard, %addr, "re-establishing a forwarded stream");
            }
            attempt += 1;
            let (up_tx, up_rx) = mpsc::channel::<Bytes>(16);
            for m in initial {
                let _ = up_tx.send(m).await;
            }
            let mut request = tonic::Request::new(ReceiverStream::new(up_rx));
            request
                .metadata_mut()
                .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
            if let Some(auth) = authorization
                .as_ref()
                .and_then(|v| tonic::metadata::MetadataValue::try_from(v.as_bytes()).ok())
            {
                request.metadata_mut().insert("authorization", auth);
            }
            if let Some(c) = caller
                .as_ref()
                .and_then(|v| tonic::metadata::MetadataValue::try_from(v.as_bytes()).ok())
            {
                request.metadata_mut().insert(crate::CALLER, c);
            }
            let mut grpc = tonic::client::Grpc::new(peers.channel(&addr))
                .max_decoding_message_size(usize::MAX);
            let upstream = async {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                grpc.streaming(request, path.clone(), RawCodec).await
            };
            let mut downstream = match upstream.await {
                Ok(r) => r.into_inner(),
                Err(s) if retryable(&s) => {
                    pacing
                        .after_failure(&mut view, shard, &route, last_success + GIVE_UP)
                        .await;
                    continue;
                }
                Err(s) => {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            };
            loop {
                tokio::select! {
                    m = proxy_rx.recv() => match m {
                        Some(Ok(bytes)) => {
                            tracker.on_request(&bytes);
                            if up_tx.send(bytes).await.is_err() {
                                break;
                            }
                        }
                        // The proxy is done: so is the upstream.
                        None => return,
                        Some(Err(s)) => {
                            let _ = tx.send(Err(s)).await;
                            return;
                        }
                    },
                    r = downstream.message() => match r {
                        Ok(Some(bytes)) => {
                            last_success = Instant::now();
                            pacing.succeeded();
                            tracker.on_response(&bytes);
                            if tx.send(Ok(Message { chunks: vec![bytes] })).await.is_err() {
                                return;
                            }
                        }
                        // The owner ended the stream (a move): find the next one.
                        Ok(None) => break,
                        Err(s) if retryable(&s) => break,
                        Err(s) => {
                            let _ = tx.send(Err(s)).await;
                            return;
                        }
                    },
                    _ = tx.closed() => return,
                }
            }
            pacing
                .after_failure(&mut view, shard, &route, last_success + GIVE_UP)
                .await;
        }
    }
}
