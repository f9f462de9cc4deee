//! Protobuf JSON rendering of encoded resources, with Envoy's field names (as in Envoy's own
//! config dump), for `/debug/config_dump` and golden tests.
//!
//! Descriptors come from `descriptors/envoy.bin`, a subset of the Envoy API generated from
//! `envoy-types` by `tests/schema_table.rs`, and from ztunnel's protos (`crate::istio`).

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use thiserror::Error;

static DESCRIPTORS: &[u8] = include_bytes!("../descriptors/envoy.bin");

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    let mut pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
    // ztunnel's types (`crate::istio`), beside Envoy's.
    pool.decode_file_descriptor_set(crate::istio::DESCRIPTORS)
        .map_err(|e| e.to_string())?;
    Ok(pool)
});

#[derive(Debug, Error)]
pub enum JsonError {
    #[error("descriptor pool: {0}")]
    Pool(String),
    #[error("unknown message type {0}")]
    UnknownType(String),
    #[error("decoding {0}: {1}")]
    Decode(String, prost::DecodeError),
    #[error("rendering JSON: {0}")]
    Render(String),
}

/// Renders an encoded message as JSON. `type_name` is a full message name or a type URL.
pub fn to_json(type_name: &str, bytes: &[u8]) -> Result<serde_json::Value, JsonError> {
    let pool = POOL.as_ref().map_err(|e| JsonError::Pool(e.clone()))?;
    let name = type_name.rsplit('/').next().unwrap_or(type_name);
    let desc = pool
        .get_message_by_name(name)
        .ok_or_else(|| JsonError::UnknownType(name.to_string()))?;
    let msg =
        DynamicMessage::decode(desc, bytes).map_err(|e| JsonError::Decode(name.to_string(), e))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| JsonError::Render(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::envoy::config::cluster::v3::Cluster;
    use crate::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;

    #[test]
    fn renders_with_envoy_field_names_and_any_payloads() {
        let mut c = Cluster {
            name: "outbound|80||a".into(),
            ..Default::default()
        };
        c.typed_extension_protocol_options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
            crate::pack(&HttpProtocolOptions::default()),
        );
        let r = crate::Resource::encode("x", &c);
        let j = to_json(crate::type_url::CLUSTER, &r.body).unwrap();
        assert_eq!(j["name"], "outbound|80||a");
        let any = &j["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        assert_eq!(
            any["@type"],
            "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(to_json(crate::type_url::CLUSTER, &[0xff, 0xff]).is_err());
        assert!(to_json("no.such.Type", &[]).is_err());
    }

    #[test]
    fn ztunnel_types_render_and_match_the_public_field_numbers() {
        use crate::istio::workload::{Address, PortList, Workload, address};
        // Hand-assembled from Istio's published numbers: Address.workload (1) holding
        // Workload.uid (20) = "c//Pod/ns/p", addresses (3) = 10.0.0.1, and services (22)
        // = {"ns/a.ns.svc.cluster.local": PortList{ports (1): [Port{80 (1) → 8080 (2)}]}}.
        let uid = b"c//Pod/ns/p";
        let key = b"ns/a.ns.svc.cluster.local";
        let port = [0x08, 80, 0x10, 0x90, 0x3f];
        let list = [&[0x0a, port.len() as u8][..], &port].concat();
        let entry = [
            &[0x0a, key.len() as u8][..],
            key,
            &[0x12, list.len() as u8],
            &list,
        ]
        .concat();
        // Fields in number order, as protobuf encoders write them.
        let workload = [
            &[0x1a, 4, 10, 0, 0, 1][..],
            &[0xa2, 0x01, uid.len() as u8],
            uid,
            &[0xb2, 0x01, entry.len() as u8],
            &entry,
        ]
        .concat();
        let bytes = [&[0x0a, workload.len() as u8][..], &workload].concat();
        let decoded = <Address as prost::Message>::decode(bytes.as_slice()).unwrap();
        let Some(address::Type::Workload(w)) = &decoded.r#type else {
            panic!("{decoded:?}");
        };
        assert_eq!(w.uid, "c//Pod/ns/p");
        assert_eq!(w.addresses, vec![vec![10, 0, 0, 1]]);
        let ports = &w.services["ns/a.ns.svc.cluster.local"].ports;
        assert_eq!((ports[0].service_port, ports[0].target_port), (80, 8080));
        // Our encoding of the same is the same bytes (and so is deterministic).
        let ours = Address {
            r#type: Some(address::Type::Workload(Workload {
                uid: "c//Pod/ns/p".into(),
                addresses: vec![vec![10, 0, 0, 1]],
                services: [(
                    "ns/a.ns.svc.cluster.local".to_string(),
                    PortList {
                        ports: ports.clone(),
                    },
                )]
                .into(),
                ..Default::default()
            })),
        };
        assert_eq!(prost::Message::encode_to_vec(&ours), bytes);
        let json = to_json(crate::type_url::ADDRESS, &bytes).unwrap();
        assert_eq!(json["workload"]["uid"], "c//Pod/ns/p");
        assert_eq!(
            json["workload"]["services"]["ns/a.ns.svc.cluster.local"]["ports"][0]["target_port"],
            8080
        );
    }
}
