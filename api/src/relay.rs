//! Federation relay streams: how the replicas of an importing group share one stream per
//! peer group. The replica owning a peer group's link follows the peer; the others read
//! what it imported from it, with a node that names the peer in its metadata. Such a stream
//! is served by the replica it reached (like a debug client), never routed by its node id:
//! the reader picks the link's owner from the ownership view itself.

use crate::pb::envoy::config::core::v3::Node;
use crate::pb::google::protobuf::value::Kind;
use crate::pb::google::protobuf::{Struct, Value};

/// The node metadata key naming the peer group whose imports a relay stream reads.
pub const RELAY_METADATA: &str = "SHOAL_FEDERATION_RELAY";

/// The peer group a relay stream reads (`None`: not a relay stream). Only a node of type
/// `federation` can be one.
pub fn relay_of(node: &Node) -> Option<&str> {
    if node.id.split('~').next() != Some("federation") {
        return None;
    }
    match &node.metadata.as_ref()?.fields.get(RELAY_METADATA)?.kind {
        Some(Kind::StringValue(peer)) if !peer.is_empty() => Some(peer),
        _ => None,
    }
}

/// Metadata that makes a `federation` node a relay reader of `peer`'s imports.
pub fn relay_metadata(peer: &str) -> Struct {
    Struct {
        fields: [(
            RELAY_METADATA.to_string(),
            Value {
                kind: Some(Kind::StringValue(peer.to_string())),
            },
        )]
        .into(),
    }
}

/// Whether a stream is served by the replica it reached rather than by its shard's owner:
/// debug clients and relay readers.
pub fn served_where_reached(node: &Node) -> bool {
    crate::debug::is_debug_client(node) || relay_of(node).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, metadata: Option<Struct>) -> Node {
        Node {
            id: id.into(),
            metadata,
            ..Default::default()
        }
    }

    #[test]
    fn only_federation_nodes_naming_a_peer_are_relay_readers() {
        let relay = node(
            "federation~0.0.0.0~west.istio-system~x",
            Some(relay_metadata("east")),
        );
        assert_eq!(relay_of(&relay), Some("east"));
        assert!(served_where_reached(&relay));
        // A peer group's own stream: routed to the owner like any proxy's.
        let peer = node("federation~0.0.0.0~west.istio-system~x", None);
        assert_eq!(relay_of(&peer), None);
        assert!(!served_where_reached(&peer));
        // The key on another proxy type, or empty, means nothing.
        let sidecar = node("sidecar~10.0.0.1~a.b~b.svc", Some(relay_metadata("east")));
        assert_eq!(relay_of(&sidecar), None);
        assert_eq!(
            relay_of(&node("federation~0.0.0.0~w.n~x", Some(relay_metadata("")))),
            None
        );
    }
}
