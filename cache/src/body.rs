//! A gRPC response body that sends shared response bytes without copying them.
//!
//! A push to thousands of streams sends the same encoded body to each. tonic's encoder would
//! copy every message into a per-stream buffer; here each message goes out as three chunks —
//! the 5-byte gRPC frame header, the shared body (`Bytes`, reference-counted) and the
//! stream's own nonce field — so a stream's in-flight memory is a few bytes plus a reference.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use shoal_api::codec::Encoded;
use shoal_api::wire::put_nonce;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codegen::http::{HeaderMap, HeaderValue};

pub struct FrameBody {
    rx: mpsc::Receiver<Result<Box<Encoded>, Status>>,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl FrameBody {
    pub fn new(rx: mpsc::Receiver<Result<Box<Encoded>, Status>>) -> Self {
        FrameBody {
            rx,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

fn trailers(status: Option<Status>) -> HeaderMap {
    match status {
        None => {
            let mut h = HeaderMap::new();
            h.insert("grpc-status", HeaderValue::from_static("0"));
            h
        }
        Some(s) => {
            let mut h = HeaderMap::new();
            if s.add_header(&mut h).is_err() {
                h.insert("grpc-status", HeaderValue::from_static("13"));
            }
            h
        }
    }
}

impl Body for FrameBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(chunk) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(msg))) => {
                let mut nonce = BytesMut::new();
                if let Some(n) = &msg.nonce {
                    put_nonce(n, &mut nonce);
                }
                let len = msg.body.len() + nonce.len();
                let mut header = BytesMut::with_capacity(5);
                header.put_u8(0);
                header.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
                self.pending.push_back(msg.body);
                if !nonce.is_empty() {
                    self.pending.push_back(nonce.freeze());
                }
                Poll::Ready(Some(Ok(Frame::data(header.freeze()))))
            }
            Poll::Ready(Some(Err(status))) => {
                self.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers(Some(status))))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers(None)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
