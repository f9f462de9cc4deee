//! Proxy requests and peer responses through a forwarded stream's tracker (the envelope
//! fields it reads: node, type, names, versions, nonces), then the requests that resume the
//! stream elsewhere, which must decode. Messages are arbitrary bytes or well-formed
//! envelopes with arbitrary fields (so nonces can match and ACKs count).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use shoal_api::pb::google::rpc::Status;

#[derive(Arbitrary, Debug)]
enum Msg {
    RawRequest(Vec<u8>),
    RawResponse(Vec<u8>),
    Request {
        node: Option<String>,
        ty: u8,
        names: Vec<u8>,
        unsubscribe: Vec<u8>,
        initial: Vec<(u8, String)>,
        version_info: String,
        nonce: u8,
        error: bool,
    },
    Response {
        ty: u8,
        names: Vec<(u8, String)>,
        removed: Vec<u8>,
        version_info: String,
        nonce: u8,
    },
}

fn ty(i: u8) -> String {
    let all = shoal_api::ResourceType::ALL;
    all.get(usize::from(i))
        .map_or_else(|| format!("t{i}"), |t| t.type_url().to_string())
}

fn name(i: u8) -> String {
    match i % 8 {
        0 => "*".into(),
        n => format!("n{n}"),
    }
}

fn names(v: &[u8]) -> Vec<String> {
    v.iter().copied().map(name).collect()
}

fn encode(delta: bool, m: Msg) -> (bool, Vec<u8>) {
    match m {
        Msg::RawRequest(b) => (true, b),
        Msg::RawResponse(b) => (false, b),
        Msg::Request {
            node,
            ty: t,
            names: n,
            unsubscribe,
            initial,
            version_info,
            nonce,
            error,
        } => {
            let node = node.map(|id| Node {
                id,
                ..Default::default()
            });
            let error_detail = error.then(|| Status {
                code: 3,
                message: "no".into(),
                details: vec![],
            });
            let bytes = if delta {
                DeltaDiscoveryRequest {
                    node,
                    type_url: ty(t),
                    resource_names_subscribe: names(&n),
                    resource_names_unsubscribe: names(&unsubscribe),
                    initial_resource_versions: initial
                        .into_iter()
                        .map(|(k, v)| (name(k), v))
                        .collect(),
                    response_nonce: nonce.to_string(),
                    error_detail,
                    ..Default::default()
                }
                .encode_to_vec()
            } else {
                DiscoveryRequest {
                    node,
                    type_url: ty(t),
                    resource_names: names(&n),
                    version_info,
                    response_nonce: nonce.to_string(),
                    error_detail,
                    ..Default::default()
                }
                .encode_to_vec()
            };
            (true, bytes)
        }
        Msg::Response {
            ty: t,
            names: n,
            removed,
            version_info,
            nonce,
        } => {
            let bytes = if delta {
                DeltaDiscoveryResponse {
                    type_url: ty(t),
                    resources: n
                        .into_iter()
                        .map(|(k, version)| Resource {
                            name: name(k),
                            version,
                            ..Default::default()
                        })
                        .collect(),
                    removed_resources: names(&removed),
                    nonce: nonce.to_string(),
                    ..Default::default()
                }
                .encode_to_vec()
            } else {
                DiscoveryResponse {
                    type_url: ty(t),
                    version_info,
                    nonce: nonce.to_string(),
                    ..Default::default()
                }
                .encode_to_vec()
            };
            (false, bytes)
        }
    }
}

fuzz_target!(|input: (bool, Vec<Msg>)| {
    let (delta, msgs) = input;
    let messages: Vec<(bool, Vec<u8>)> = msgs.into_iter().map(|m| encode(delta, m)).collect();
    shoal_router::fuzzing::track(delta, &messages);
});
