//! Reading a stream's requests: gRPC length-prefixed messages from the HTTP/2 body, decoded
//! with prost. The read buffer is released whenever it runs empty, so an idle stream that
//! once received a large subscription does not keep that much memory.

use std::marker::PhantomData;
use std::pin::Pin;

use bytes::{Buf, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use tonic::Status;

pub struct Requests<T, B> {
    body: Pin<Box<B>>,
    buf: BytesMut,
    max: usize,
    done: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T, B> Requests<T, B>
where
    T: prost::Message + Default,
    B: Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    pub fn new(body: B, max_message_size: usize) -> Self {
        Requests {
            body: Box::pin(body),
            buf: BytesMut::new(),
            max: max_message_size,
            done: false,
            _t: PhantomData,
        }
    }

    fn try_decode(&mut self) -> Result<Option<T>, Status> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::unimplemented(
                "compressed requests are not supported",
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max {
            return Err(Status::out_of_range(format!(
                "request of {len} bytes is larger than the limit of {} bytes",
                self.max
            )));
        }
        if self.buf.len() < 5 + len {
            self.buf.reserve(5 + len - self.buf.len());
            return Ok(None);
        }
        let frame = self.buf.split_to(5 + len);
        if self.buf.is_empty() {
            // Give the capacity back instead of keeping the largest request's worth.
            self.buf = BytesMut::new();
        }
        T::decode(&frame[5..])
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))
    }

    /// The next request; `None` when the client half-closed the stream.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        loop {
            if let Some(m) = self.try_decode()? {
                return Ok(Some(m));
            }
            if self.done {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Status::invalid_argument("truncated request"))
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
}
