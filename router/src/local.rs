//! A locally served stream ends (with `UNAVAILABLE`, after a random delay within the drain
//! period) once this replica stops serving its shard; the proxy reconnects and is routed to
//! the new owner.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body::{Body, Frame, SizeHint};
use shoal_shard::Ownership;
use tokio::time::Sleep;
use tokio_stream::wrappers::WatchStream;
use tonic::Status;
use tonic::codegen::http::HeaderMap;

pub struct Watched {
    inner: tonic::body::Body,
    view: WatchStream<Arc<Ownership>>,
    shard: u32,
    drain: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    ended: bool,
}

impl Watched {
    pub fn new(
        inner: tonic::body::Body,
        view: tokio::sync::watch::Receiver<Arc<Ownership>>,
        shard: u32,
        drain: Duration,
    ) -> Self {
        Watched {
            inner,
            view: WatchStream::new(view),
            shard,
            drain,
            deadline: None,
            ended: false,
        }
    }
}

fn moved(shard: u32) -> HeaderMap {
    let mut h = HeaderMap::new();
    let _ =
        Status::unavailable(format!("shard {shard} moved to another replica")).add_header(&mut h);
    h
}

impl Body for Watched {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // Ownership changes: when the shard is no longer served here, schedule the end.
        while let Poll::Ready(Some(view)) = Pin::new(&mut self.view).poll_next(cx) {
            if !view.serves(self.shard) && self.deadline.is_none() {
                // Without a lease (fencing) the stream ends now; a handover drains.
                let delay = if view.lease {
                    self.drain.mul_f64(rand::random::<f64>())
                } else {
                    Duration::ZERO
                };
                self.deadline = Some(Box::pin(tokio::time::sleep(delay)));
            }
        }
        if let Some(d) = self.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            self.ended = true;
            return Poll::Ready(Some(Ok(Frame::trailers(moved(self.shard)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
