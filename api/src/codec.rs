//! Pre-encoded messages and a pass-through codec.
//!
//! The server writes responses from shared bytes ([`Encoded`]): no per-stream protobuf
//! encoding happens on the push path. [`RawCodec`] moves whole messages as bytes (for
//! forwarding streams and for raw test clients).

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A pre-encoded message plus an optional nonce field appended at send time.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub body: Bytes,
    pub nonce: Option<String>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.body.len() + self.nonce.as_ref().map_or(0, |n| n.len() + 2)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Passes whole messages through as bytes, both ways (for forwarding streams unchanged).
#[derive(Debug, Default, Clone, Copy)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}
