//! Entry points for the cargo-fuzz targets in `router/fuzz`: everything the router reads
//! from a proxy's bytes before (or instead of) handing the stream to a session. Any panic is
//! a bug. Behind the `testing` feature: not part of the server binary.

use std::convert::Infallible;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message;
use shoal_api::grpc::Frames;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};

use crate::track::Tracker;

/// The first request of a stream, as the router reads it: a gRPC body arriving in `chunks`
/// (HTTP/2 DATA frames), its first length-prefixed message (bounded by
/// `max_message_size`), the node id in it, and the node's shard among `shard_count`.
/// Returns the node id and shard when the router would route the stream.
pub fn first_request(
    delta: bool,
    chunks: Vec<Vec<u8>>,
    max_message_size: usize,
    shard_count: u32,
) -> Option<(String, u32)> {
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c))));
    let body = StreamBody::new(futures::stream::iter(frames));
    let mut frames = Frames::new(body, max_message_size);
    let first = match futures::executor::block_on(frames.next()) {
        Ok(Some(first)) => first,
        Ok(None) | Err(_) => return None,
    };
    assert!(first.len() <= max_message_size, "a message over the limit");
    let id = crate::first_node(delta, &first).ok()?.id;
    let shard = shoal_shard::shard_of(&id, shard_count);
    assert!(shard < shard_count.max(1), "shard {shard} out of range");
    Some((id, shard))
}

/// What the router does with a forwarded stream's messages: proxy requests and peer
/// responses (arbitrary bytes, in order) go through the [`Tracker`], whose resume requests
/// must then decode as requests of the stream's protocol, the node (if one went by) in the
/// first.
pub fn track(delta: bool, messages: &[(bool, Vec<u8>)]) {
    let mut tracker = Tracker::new(delta);
    let mut node_seen = false;
    for (is_request, bytes) in messages {
        if *is_request {
            let bytes = Bytes::copy_from_slice(bytes);
            node_seen |= if delta {
                DeltaDiscoveryRequest::decode(bytes.clone()).is_ok_and(|r| r.node.is_some())
            } else {
                DiscoveryRequest::decode(bytes.clone()).is_ok_and(|r| r.node.is_some())
            };
            tracker.on_request(&bytes);
        } else {
            tracker.on_response(bytes);
        }
    }
    for (i, msg) in tracker.resume().into_iter().enumerate() {
        let node = if delta {
            DeltaDiscoveryRequest::decode(msg).map(|r| r.node.is_some())
        } else {
            DiscoveryRequest::decode(msg).map(|r| r.node.is_some())
        };
        let node = node.unwrap_or_else(|e| panic!("resume request {i} does not decode: {e}"));
        assert_eq!(node, i == 0 && node_seen, "node in resume request {i}");
    }
}
