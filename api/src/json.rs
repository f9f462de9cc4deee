//! Protobuf JSON rendering of encoded resources, with Envoy's field names (as in Envoy's own
//! config dump), for `/debug/config_dump` and golden tests.
//!
//! Descriptors come from `descriptors/envoy.bin`, a subset of the Envoy API generated from
//! `envoy-types` by `tests/schema_table.rs`.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use thiserror::Error;

static DESCRIPTORS: &[u8] = include_bytes!("../descriptors/envoy.bin");

static POOL: LazyLock<Result<DescriptorPool, String>> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()));

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
}
