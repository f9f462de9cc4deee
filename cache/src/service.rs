//! The ADS gRPC service: SotW `StreamAggregatedResources` and incremental
//! `DeltaAggregatedResources` on one port, each stream driving a [`crate::session`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use parking_lot::Mutex;
use shoal_api::codec::Encoded;
use shoal_api::grpc::{Frames, Message, MessageBody};
use shoal_api::pb::envoy::config::core::v3::Node;
use tokio::sync::{Semaphore, mpsc, watch};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, StdError, http};
use tonic::server::NamedService;

use crate::debug::{self, ControlPlane};
use crate::metrics_names as m;
use crate::record;
use crate::session::{DeltaSession, Limits, Reply, Session, SessionError, SotwSession};
use crate::status::{ClientMeta, StatusRegistry};
use crate::subscription::Interner;
use crate::view::View;

/// The view of a proxy, as decided by the server's wiring.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub view: Arc<View>,
    /// The secrets (SDS) of the identity the stream authenticated as: `Secret` requests are
    /// answered from this view only, so a proxy never sees another identity's key. `None`:
    /// the stream gets no secrets.
    pub secrets: Option<Arc<View>>,
}

/// What admission made of a stream.
#[derive(Debug, Clone)]
pub enum Admitted {
    /// A proxy: served its view (and its identity's secrets, if any).
    Proxy(Resolved),
    /// A debug client (`istioctl`): it holds no view and is answered only Istio's debug
    /// types ([`crate::debug`]), about this replica's streams.
    Debug,
}

/// What the transport knows about a stream's caller: request headers (an
/// `authorization` bearer token) and extensions (the TLS peer's certificates, inserted by
/// the server's acceptor). Opaque to the cache; the [`ViewSource`] authenticates.
#[derive(Debug, Clone, Default)]
pub struct StreamContext {
    pub headers: http::HeaderMap,
    pub extensions: http::Extensions,
}

/// Maps proxies to views. Implemented by the server, which owns translation.
pub trait ViewSource: Send + Sync + 'static {
    /// What a stream gets: for a proxy, the view its node describes, built if needed; for a
    /// debug client, only leave to ask. May take a while (a new view is translated); it
    /// runs on a blocking thread. `caller` is who opened the stream; a source may refuse a
    /// node that does not match it, or a debug client it does not trust.
    fn resolve(&self, node: Option<&Node>, caller: &StreamContext) -> Result<Admitted, Status>;

    /// Changes whenever proxies may have to move to another view (config that decides
    /// views changed).
    fn epoch(&self) -> watch::Receiver<u64>;
}

/// Tuning of the ADS service.
#[derive(Debug, Clone)]
pub struct AdsConfig {
    pub limits: Limits,
    /// New streams admitted per second (a reconnect storm queues instead of collapsing).
    pub stream_rate: f64,
    /// Streams admitted at once before the rate applies.
    pub stream_burst: f64,
    /// Streams computing a push at the same time.
    pub push_concurrency: usize,
    /// Responses queued per stream before its pushes wait for the client.
    pub stream_buffer: usize,
    /// Requests that are not understood before a stream is closed.
    pub max_invalid_requests: u32,
    pub max_message_size: usize,
    /// Who answers debug requests (named in their responses).
    pub control_plane: ControlPlane,
}

impl Default for AdsConfig {
    fn default() -> Self {
        AdsConfig {
            limits: Limits::default(),
            stream_rate: 2000.0,
            stream_burst: 500.0,
            push_concurrency: 100,
            stream_buffer: 4,
            max_invalid_requests: 100,
            max_message_size: 4 << 20,
            control_plane: ControlPlane::default(),
        }
    }
}

/// Admits new streams at a steady rate: each takes a ticket and waits for its turn.
#[derive(Debug)]
struct Admission {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Admission {
    fn new(rate: f64, burst: f64) -> Self {
        let rate = rate.max(0.001);
        Admission {
            rate,
            burst: burst.max(1.0),
            state: Mutex::new((burst.max(1.0), Instant::now())),
        }
    }

    async fn admit(&self) {
        let wait = {
            let mut s = self.state.lock();
            let now = Instant::now();
            s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.burst);
            s.1 = now;
            s.0 -= 1.0;
            if s.0 >= 0.0 {
                None
            } else {
                Some(Duration::from_secs_f64(-s.0 / self.rate))
            }
        };
        if let Some(w) = wait {
            histogram!(m::STREAM_WAIT).record(w.as_secs_f64());
            tokio::time::sleep(w).await;
        }
    }
}

struct Shared<S> {
    source: Arc<S>,
    config: AdsConfig,
    admission: Admission,
    pushes: Semaphore,
    interner: Arc<Interner>,
    status: Arc<StatusRegistry>,
}

/// The ADS server: build one, then serve [`AdsServer::service`] with tonic.
pub struct AdsServer<S> {
    shared: Arc<Shared<S>>,
}

impl<S: ViewSource> AdsServer<S> {
    pub fn new(source: Arc<S>, config: AdsConfig) -> Self {
        let shared = Shared {
            source,
            admission: Admission::new(config.stream_rate, config.stream_burst),
            pushes: Semaphore::new(config.push_concurrency.max(1)),
            interner: Arc::new(Interner::default()),
            status: Arc::new(StatusRegistry::default()),
            config,
        };
        AdsServer {
            shared: Arc::new(shared),
        }
    }

    pub fn status(&self) -> Arc<StatusRegistry> {
        self.shared.status.clone()
    }

    pub fn interner(&self) -> Arc<Interner> {
        self.shared.interner.clone()
    }

    pub fn service(&self) -> AdsService<S> {
        AdsService {
            shared: self.shared.clone(),
        }
    }
}

// Boxed: a channel allocates its slots up front, so small slots keep idle streams small.
type Tx = mpsc::Sender<Result<Message, Status>>;

/// A response as chunks: the shared body, then this stream's nonce field.
fn message(e: Encoded) -> Message {
    let mut nonce = bytes::BytesMut::new();
    if let Some(n) = &e.nonce {
        shoal_api::wire::put_nonce(n, &mut nonce);
    }
    Message {
        chunks: vec![e.body, nonce.freeze()],
    }
}

/// Unregisters a stream's status and connection gauges when the stream ends.
struct StreamGuard {
    status: Arc<StatusRegistry>,
    id: u64,
    protocol: &'static str,
    version: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.status.unregister(self.id);
        record::connected(self.protocol, &self.version, -1.0);
    }
}

async fn resolve<S: ViewSource>(
    shared: &Arc<Shared<S>>,
    node: Option<Node>,
    caller: Arc<StreamContext>,
) -> Result<Admitted, Status> {
    let source = shared.source.clone();
    tokio::task::spawn_blocking(move || source.resolve(node.as_ref(), &caller))
        .await
        .map_err(|e| Status::internal(format!("resolving the proxy's view failed: {e}")))?
}

fn record_reply(reply: Option<Reply>, protocol: &'static str) {
    match reply {
        Some(Reply::Ack { ty, since }) => record::acked(ty, protocol, since),
        Some(Reply::Nack { ty, error }) => {
            record::rejected(ty);
            tracing::warn!(r#type = %ty, %error, "proxy rejected a response");
        }
        None => {}
    }
}

/// Computes and sends what the session needs now. `false` when the client is gone.
async fn push<T: Session>(shared: &Shared<impl ViewSource>, session: &mut T, tx: &Tx) -> bool {
    let started = Instant::now();
    let out = {
        // Bound how many streams compute pushes at once; sending happens after release so
        // a slow client holds up nobody else.
        let _permit = shared.pushes.acquire().await;
        session.poll()
    };
    let oldest = out.iter().map(|o| o.since).min();
    for o in out {
        let bytes = o.message.len() as u64;
        let message = message(o.message.clone());
        if tx.send(Ok(message)).await.is_err() {
            return false;
        }
        record::pushed(&o, bytes, T::PROTOCOL, started);
    }
    if let Some(since) = oldest {
        record::converged(since);
    }
    true
}

/// Tells the client why its stream ends when a request could not be read (the message is
/// malformed or too large); a client that went away gets nothing.
async fn refuse_malformed(tx: &Tx, status: Status) {
    if matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
    ) {
        counter!(m::REJECTED_REQUESTS, "reason" => "malformed").increment(1);
        let _ = tx.send(Err(status)).await;
    }
}

async fn drive<T, S, B>(
    shared: Arc<Shared<S>>,
    mut requests: Frames<B>,
    tx: Tx,
    caller: Arc<StreamContext>,
) where
    T: Session,
    S: ViewSource,
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let first = match requests.decode::<T::Req>().await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => return refuse_malformed(&tx, e).await,
    };
    shared.admission.admit().await;
    counter!(m::STREAMS_OPENED, "protocol" => T::PROTOCOL).increment(1);
    let node = T::node(&first).cloned();
    let node_id = node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
    let resolved = match Box::pin(resolve(&shared, node.clone(), caller.clone())).await {
        Ok(Admitted::Proxy(r)) => r,
        Ok(Admitted::Debug) => {
            counter!(m::STREAMS_OPENED, "protocol" => "debug").increment(1);
            tracing::info!(node = %node_id, protocol = T::PROTOCOL, "debug stream");
            return serve_debug::<T, S, B>(&shared, first, requests, tx).await;
        }
        Err(status) => {
            counter!(m::REJECTED_REQUESTS, "reason" => "node").increment(1);
            tracing::info!(node = %node_id, error = %status.message(), "refused stream");
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let meta = ClientMeta::of(node.as_ref());
    let version = record::version_label(meta.istio_version.as_deref());
    let status = shared.status.register(&node_id, meta, T::PROTOCOL);
    record::connected(T::PROTOCOL, &version, 1.0);
    let _guard = StreamGuard {
        status: shared.status.clone(),
        id: status.stream,
        protocol: T::PROTOCOL,
        version,
    };
    // The secrets session first: the main one then sets the stream's reported view.
    let mut secrets = resolved.secrets.as_ref().map(|v| {
        T::new(
            v,
            shared.interner.clone(),
            shared.config.limits,
            status.clone(),
        )
    });
    let mut session = T::new(
        &resolved.view,
        shared.interner.clone(),
        shared.config.limits,
        status,
    );
    let mut view_rx = session.view().subscribe();
    let mut secrets_rx = secrets.as_ref().map(|s| s.view().subscribe());
    let mut epoch_rx = shared.source.epoch();
    epoch_rx.mark_unchanged();
    let mut invalid = 0u32;
    let mut next = Some(first);
    loop {
        if let Some(req) = next.take() {
            // Secret requests go to the identity's own secrets, never to the shared view.
            let target = match secrets.as_mut() {
                Some(s) if T::type_url(&req) == shoal_api::type_url::SECRET => s,
                _ => &mut session,
            };
            match target.on_request(req) {
                Ok(reply) => record_reply(reply, T::PROTOCOL),
                Err(SessionError::UnknownType(t)) => {
                    counter!(m::REJECTED_REQUESTS, "reason" => "unknown_type").increment(1);
                    tracing::debug!(node = %node_id, type_url = %t, "ignored request for an unknown type");
                    invalid += 1;
                    if invalid > shared.config.max_invalid_requests {
                        let _ = tx
                            .send(Err(Status::invalid_argument(
                                "too many requests for unknown resource types",
                            )))
                            .await;
                        return;
                    }
                }
                Err(e @ SessionError::TooManyNames { .. }) => {
                    counter!(m::REJECTED_REQUESTS, "reason" => "too_many_names").increment(1);
                    let _ = tx
                        .send(Err(Status::resource_exhausted(e.to_string())))
                        .await;
                    return;
                }
            }
        }
        view_rx.mark_unchanged();
        if let Some(rx) = secrets_rx.as_mut() {
            rx.mark_unchanged();
        }
        if let Some(s) = secrets.as_mut()
            && !Box::pin(push(&shared, s, &tx)).await
        {
            return;
        }
        if !Box::pin(push(&shared, &mut session, &tx)).await {
            return;
        }
        let secrets_changed = async {
            match secrets_rx.as_mut() {
                Some(rx) => rx.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = requests.decode::<T::Req>() => match msg {
                Ok(Some(req)) => next = Some(req),
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(node = %node_id, error = %e, "stream ended");
                    return refuse_malformed(&tx, e).await;
                }
            },
            changed = view_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = secrets_changed => {
                if changed.is_err() {
                    return;
                }
            }
            changed = epoch_rx.changed() => {
                if changed.is_err() {
                    continue;
                }
                match Box::pin(resolve(&shared, node.clone(), caller.clone())).await {
                    Ok(Admitted::Debug) => {
                        // A node does not change; admission would not say this of a proxy.
                        let _ = tx.send(Err(Status::internal("the stream changed kind"))).await;
                        return;
                    }
                    Ok(Admitted::Proxy(r)) => {
                        if r.view.id != session.view().id {
                            session.switch_view(&r.view);
                            view_rx = session.view().subscribe();
                        }
                        if let (Some(s), Some(v)) = (secrets.as_mut(), r.secrets.as_ref())
                            && s.view().id != v.id
                        {
                            s.switch_view(v);
                            secrets_rx = Some(s.view().subscribe());
                        }
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
            _ = tx.closed() => return,
        }
    }
}

/// Serves a debug client: every question (a request that is not the ACK of an earlier
/// answer) is answered from the status registry. Answers are computed one at a time per
/// stream, under the same permits as pushes, on the blocking pool (syncz walks every
/// stream). An unknown type or a malformed question ends the stream with its reason.
async fn serve_debug<T, S, B>(
    shared: &Arc<Shared<S>>,
    first: T::Req,
    mut requests: Frames<B>,
    tx: Tx,
) where
    T: Session,
    S: ViewSource,
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let mut answered = 0u64;
    // The last nonce sent per type: a request carrying it is an ACK, not a question.
    let mut sent: Vec<(String, String)> = Vec::new();
    let mut next = Some(first);
    loop {
        let req = match next.take() {
            Some(r) => r,
            None => tokio::select! {
                msg = requests.decode::<T::Req>() => match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => return refuse_malformed(&tx, e).await,
                },
                _ = tx.closed() => return,
            },
        };
        let q = T::debug_request(&req);
        if !q.nonce.is_empty()
            && sent
                .iter()
                .any(|(t, n)| t.as_str() == q.type_url && n.as_str() == q.nonce)
        {
            continue;
        }
        let kind = match q.type_url {
            debug::SYNCZ => "syncz",
            debug::CONFIG_DUMP => "config_dump",
            _ => "unknown",
        };
        counter!(m::DEBUG_REQUESTS, "type" => kind).increment(1);
        let (type_url, names) = (q.type_url.to_string(), q.names.to_vec());
        let registry = shared.status.clone();
        let answer = {
            let _permit = shared.pushes.acquire().await;
            let type_url = type_url.clone();
            tokio::task::spawn_blocking(move || {
                let resources = debug::answer(
                    &registry,
                    debug::DebugRequest {
                        type_url: &type_url,
                        names: &names,
                        nonce: "",
                    },
                )?;
                Ok::<_, Status>(resources)
            })
            .await
            .unwrap_or_else(|e| Err(Status::internal(format!("debug request failed: {e}"))))
        };
        let resources = match answer {
            Ok(r) => r,
            Err(status) => {
                counter!(m::REJECTED_REQUESTS, "reason" => "debug").increment(1);
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        answered += 1;
        let nonce = format!("debug-{answered}");
        let body = T::debug_response(
            &type_url,
            resources,
            nonce.clone(),
            &shared.config.control_plane,
        );
        let message = Message {
            chunks: vec![bytes::Bytes::from(body)],
        };
        if tx.send(Ok(message)).await.is_err() {
            return;
        }
        sent.retain(|(t, _)| *t != type_url);
        sent.push((type_url, nonce));
    }
}

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The tonic service (route it with `tonic::transport::Server::add_service`).
pub struct AdsService<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for AdsService<S> {
    fn clone(&self) -> Self {
        AdsService {
            shared: self.shared.clone(),
        }
    }
}

impl<S> NamedService for AdsService<S> {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<S, B> Service<http::Request<B>> for AdsService<S>
where
    S: ViewSource,
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        match req.uri().path() {
            SOTW_PATH => Box::pin(async move { Ok(open::<SotwSession, S, B>(shared, req)) }),
            DELTA_PATH => Box::pin(async move { Ok(open::<DeltaSession, S, B>(shared, req)) }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// Starts a stream: requests are read with [`Frames`], responses go out through
/// [`MessageBody`] as shared bytes (gRPC frame header, shared body, this stream's nonce).
fn open<T, S, B>(shared: Arc<Shared<S>>, req: http::Request<B>) -> http::Response<Body>
where
    T: Session,
    S: ViewSource,
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    if req
        .headers()
        .get("grpc-encoding")
        .is_some_and(|e| e != "identity")
    {
        return Status::unimplemented("compressed requests are not supported").into_http();
    }
    let (parts, body) = req.into_parts();
    let caller = Arc::new(StreamContext {
        headers: parts.headers,
        extensions: parts.extensions,
    });
    let requests = Frames::new(body, shared.config.max_message_size);
    let (tx, rx) = mpsc::channel(shared.config.stream_buffer.max(1));
    tokio::spawn(drive::<T, S, B>(shared, requests, tx, caller));
    let mut resp = http::Response::new(Body::new(MessageBody::new(rx)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    resp
}
