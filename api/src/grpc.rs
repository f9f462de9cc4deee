//! gRPC message framing over HTTP/2 bodies, for servers that handle messages as bytes:
//! [`MessageBody`] sends messages made of shared chunks without copying them, and
//! [`Frames`] reads length-prefixed messages from a request body with a buffer released
//! whenever it runs empty.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codegen::http::{HeaderMap, HeaderValue};

/// One message to send, as chunks that are concatenated on the wire.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub chunks: Vec<Bytes>,
}

impl Message {
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A response body fed by a channel of messages; the stream ends with the channel (status
/// OK) or with the first error (that status).
pub struct MessageBody {
    rx: mpsc::Receiver<Result<Message, Status>>,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl MessageBody {
    pub fn new(rx: mpsc::Receiver<Result<Message, Status>>) -> Self {
        MessageBody {
            rx,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

fn trailers(status: Option<Status>) -> HeaderMap {
    let mut h = HeaderMap::new();
    match status {
        None => {
            h.insert("grpc-status", HeaderValue::from_static("0"));
        }
        Some(s) => {
            if s.add_header(&mut h).is_err() {
                h.insert("grpc-status", HeaderValue::from_static("13"));
            }
        }
    }
    h
}

impl Body for MessageBody {
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
                let mut header = BytesMut::with_capacity(5);
                header.put_u8(0);
                header.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
                self.pending
                    .extend(msg.chunks.into_iter().filter(|c| !c.is_empty()));
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

/// Reads length-prefixed gRPC messages from a request body.
pub struct Frames<B> {
    body: Pin<Box<B>>,
    buf: BytesMut,
    max: usize,
    done: bool,
}

impl<B> Frames<B>
where
    B: Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    pub fn new(body: B, max_message_size: usize) -> Self {
        Frames {
            body: Box::pin(body),
            buf: BytesMut::new(),
            max: max_message_size,
            done: false,
        }
    }

    fn try_take(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::unimplemented(
                "compressed messages are not supported",
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max {
            return Err(Status::out_of_range(format!(
                "message of {len} bytes is larger than the limit of {} bytes",
                self.max
            )));
        }
        if self.buf.len() < 5 + len {
            self.buf.reserve(5 + len - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(5 + len);
        if self.buf.is_empty() {
            // Give the capacity back instead of keeping the largest message's worth.
            self.buf = BytesMut::new();
        }
        frame.advance(5);
        Ok(Some(frame.freeze()))
    }

    /// The next message; `None` when the peer half-closed the stream.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(m) = self.try_take()? {
                return Ok(Some(m));
            }
            if self.done {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Status::invalid_argument("truncated message"))
                };
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    let e: tonic::codegen::StdError = e.into();
                    return Err(Status::unavailable(format!("reading the stream: {e}")));
                }
                None => self.done = true,
            }
        }
    }

    /// The next message decoded as `T`.
    pub async fn decode<T: prost::Message + Default>(&mut self) -> Result<Option<T>, Status> {
        match self.next().await? {
            Some(m) => T::decode(m)
                .map(Some)
                .map_err(|e| Status::invalid_argument(format!("malformed message: {e}"))),
            None => Ok(None),
        }
    }
}

/// A body of messages: the ones given first, then the rest of `frames` (re-framed).
pub fn prepend<B>(first: Vec<Bytes>, mut frames: Frames<B>) -> MessageBody
where
    B: Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for m in first {
            if tx.send(Ok(Message { chunks: vec![m] })).await.is_err() {
                return;
            }
        }
        loop {
            match frames.next().await {
                Ok(Some(m)) => {
                    if tx.send(Ok(Message { chunks: vec![m] })).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(s) => {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            }
        }
    });
    MessageBody::new(rx)
}
