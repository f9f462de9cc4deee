//! The fuzz targets' entry points (`router/fuzz`) on inputs whose outcome is known, so a
//! target that silently stops reaching the decoding is noticed.
#![allow(clippy::unwrap_used)]

use prost::Message;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use shoal_router::fuzzing::{first_request, track};

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    out.extend_from_slice(msg);
    out
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        ..Default::default()
    })
}

#[test]
fn first_request_reads_the_node_id_across_data_frames() {
    let req = DeltaDiscoveryRequest {
        node: node("sidecar~10.0.0.1~a.b~b.svc.cluster.local"),
        ..Default::default()
    }
    .encode_to_vec();
    let body = framed(&req);
    let (head, tail) = body.split_at(3);
    let (id, shard) = first_request(true, vec![head.to_vec(), tail.to_vec()], 4096, 16).unwrap();
    assert_eq!(id, "sidecar~10.0.0.1~a.b~b.svc.cluster.local");
    assert!(shard < 16);
    // Over the size limit, truncated, compressed, or without a node: not routed.
    assert!(first_request(true, vec![body.clone()], req.len() - 1, 16).is_none());
    assert!(first_request(true, vec![body[..body.len() - 1].to_vec()], 4096, 16).is_none());
    let mut compressed = body.clone();
    compressed[0] = 1;
    assert!(first_request(true, vec![compressed], 4096, 16).is_none());
    let anonymous = framed(&DiscoveryRequest::default().encode_to_vec());
    assert!(first_request(false, vec![anonymous], 4096, 16).is_none());
}

#[test]
fn track_resumes_with_the_node_first() {
    let req = |ty: &str, id: Option<Node>| {
        DiscoveryRequest {
            node: id,
            type_url: ty.into(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    track(
        false,
        &[
            (true, req(shoal_api::type_url::CLUSTER, node("n"))),
            (true, req(shoal_api::type_url::LISTENER, None)),
            (false, b"\xff garbage".to_vec()),
        ],
    );
}
