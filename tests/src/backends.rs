//! Backends that answer with their own name: plain HTTP (any path) and gRPC
//! (`/echo.Echo/Who`, raw bytes, no generated code). They run in the test process and stop
//! when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_api::codec::RawCodec;
use tokio::task::JoinHandle;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// Stops the backend when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/1.1 and h2c server answering every request with `name`.
pub async fn http(addr: SocketAddr, name: &str) -> anyhow::Result<Backend> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let name = Bytes::from(name.to_string());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let name = name.clone();
                    async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(name))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(Backend { addr, task })
}

/// Documents an HTTP server serves by path (200 with the body; 404 for other paths),
/// changeable while it runs.
pub type Documents = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

/// An HTTP/1.1 server of [`Documents`] (an identity provider's JWKS, say).
pub async fn documents(addr: SocketAddr) -> anyhow::Result<(Backend, Documents)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let docs = Documents::default();
    let served = docs.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let docs = served.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let doc = docs
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get(req.uri().path())
                        .cloned();
                    async move {
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(
                            doc.clone().unwrap_or_default(),
                        )));
                        if doc.is_none() {
                            *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((Backend { addr, task }, docs))
}

/// An HTTP server answering with `name` while `healthy` holds, and with 503 otherwise
/// (a backend that goes bad without closing its connections).
pub async fn switchable(
    addr: SocketAddr,
    name: &str,
) -> anyhow::Result<(Backend, std::sync::Arc<std::sync::atomic::AtomicBool>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let healthy = std::sync::Arc::new(AtomicBool::new(true));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let name = Bytes::from(name.to_string());
    let flag = healthy.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (name, flag) = (name.clone(), flag.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let (name, up) = (name.clone(), flag.load(Ordering::SeqCst));
                    async move {
                        let mut resp = hyper::Response::new(Full::new(name));
                        if !up {
                            *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((Backend { addr, task }, healthy))
}

/// A request a [`recording`] backend received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query as they reached the backend (after any proxy rewrite).
    pub path: String,
    pub headers: http::HeaderMap,
}

/// The requests a [`recording`] backend received, in order.
pub type Log = std::sync::Arc<std::sync::Mutex<Vec<Seen>>>;

/// A snapshot of a log (poisoning cannot lose requests, so it is ignored).
pub fn seen(log: &Log) -> Vec<Seen> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// An HTTP/1.1 and h2c server that records every request and answers `NAME PATH`, so tests
/// can see what a proxy forwarded (rewritten paths, added headers, mirrored copies). When
/// `flaky`, every other request (the first, third, …) is answered 503 instead, for retries.
pub async fn recording(
    addr: SocketAddr,
    name: &str,
    flaky: bool,
) -> anyhow::Result<(Backend, Log)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let name = name.to_string();
    let log: Log = Default::default();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let task_log = log.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (name, log, count) = (name.clone(), task_log.clone(), count.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let path = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default();
                    log.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Seen {
                            path: path.clone(),
                            headers: req.headers().clone(),
                        });
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut resp =
                        hyper::Response::new(Full::new(Bytes::from(format!("{name} {path}"))));
                    if flaky && n % 2 == 0 {
                        *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((Backend { addr, task }, log))
}

#[derive(Clone)]
struct Who(Bytes);

impl tonic::server::UnaryService<Bytes> for Who {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, tonic::Status>;
    fn call(&mut self, _req: tonic::Request<Bytes>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move { Ok(tonic::Response::new(name)) })
    }
}

#[derive(Clone)]
struct EchoService(Bytes);

impl NamedService for EchoService {
    const NAME: &'static str = "echo.Echo";
}

impl<B> Service<http::Request<B>> for EchoService
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
        let name = self.0.clone();
        Box::pin(async move {
            if req.uri().path() != "/echo.Echo/Who" {
                return Ok(tonic::Status::unimplemented("only /echo.Echo/Who").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.unary(Who(name), req).await)
        })
    }
}

/// A gRPC server whose `/echo.Echo/Who` answers with `name`.
pub async fn grpc(addr: SocketAddr, name: &str) -> anyhow::Result<Backend> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let svc = EchoService(Bytes::from(name.to_string()));
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(Backend { addr, task })
}

/// Calls `/echo.Echo/Who` at `addr` with `authority` as `:authority` and extra metadata.
pub async fn grpc_who(
    addr: SocketAddr,
    authority: &str,
    metadata: &[(&'static str, &str)],
) -> anyhow::Result<String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .origin(format!("http://{authority}").parse()?)
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .connect()
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await?;
    let mut req = tonic::Request::new(Bytes::new());
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse()?);
    }
    let resp = client
        .unary(
            req,
            http::uri::PathAndQuery::from_static("/echo.Echo/Who"),
            RawCodec,
        )
        .await?;
    Ok(String::from_utf8_lossy(resp.get_ref()).into_owned())
}

/// Tallies answers by backend name.
pub fn tally(names: impl IntoIterator<Item = String>) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for n in names {
        *m.entry(n).or_insert(0) += 1;
    }
    m
}

/// A TCP server that greets every connection with `name` and a newline, then echoes what
/// it receives: enough to tell which backend an opaque TCP route picked.
pub async fn tcp_echo(addr: SocketAddr, name: &str) -> anyhow::Result<Backend> {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let greeting = format!("{name}\n");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let greeting = greeting.clone();
            tokio::spawn(async move {
                if stream.write_all(greeting.as_bytes()).await.is_ok() {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    Ok(Backend { addr, task })
}

/// What the [`tcp_echo`] backend reached through `addr` greets a new connection with.
pub async fn greeting(addr: SocketAddr) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}
