//! Hand-assembled discovery responses.
//!
//! A response body is built once from shared [`Resource`]s and sent to every stream that
//! needs it; each stream appends its own nonce (protobuf allows fields in any order, and a
//! parser merges them). The bodies decode as ordinary `DiscoveryResponse` /
//! `DeltaDiscoveryResponse` messages.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::Resource;

fn put_bytes_field(tag: u32, value: &[u8], buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

fn bytes_field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn any_len(type_url: &str, body: &[u8]) -> usize {
    bytes_field_len(1, type_url.len()) + bytes_field_len(2, body.len())
}

fn put_any(tag: u32, type_url: &str, body: &[u8], buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(any_len(type_url, body) as u64, buf);
    put_bytes_field(1, type_url.as_bytes(), buf);
    put_bytes_field(2, body, buf);
}

/// Body of a SotW `DiscoveryResponse` (without nonce).
pub fn sotw_response<'a>(
    type_url: &str,
    version_info: &str,
    resources: impl IntoIterator<Item = &'a Resource> + Clone,
) -> Bytes {
    let mut size = bytes_field_len(1, version_info.len()) + bytes_field_len(4, type_url.len());
    for r in resources.clone() {
        size += bytes_field_len(2, any_len(type_url, &r.body));
    }
    let mut buf = BytesMut::with_capacity(size + 32);
    put_bytes_field(1, version_info.as_bytes(), &mut buf);
    for r in resources {
        put_any(2, type_url, &r.body, &mut buf);
    }
    put_bytes_field(4, type_url.as_bytes(), &mut buf);
    buf.freeze()
}

fn delta_resource_len(type_url: &str, r: &Resource) -> usize {
    let version = r.version.to_string();
    bytes_field_len(3, r.name.len())
        + bytes_field_len(1, version.len())
        + bytes_field_len(2, any_len(type_url, &r.body))
}

/// Body of a `DeltaDiscoveryResponse` (without nonce).
pub fn delta_response<'a, 'b>(
    type_url: &str,
    system_version_info: &str,
    resources: impl IntoIterator<Item = &'a Resource> + Clone,
    removed: impl IntoIterator<Item = &'b str> + Clone,
) -> Bytes {
    let mut size =
        bytes_field_len(1, system_version_info.len()) + bytes_field_len(4, type_url.len());
    for r in resources.clone() {
        size += bytes_field_len(2, delta_resource_len(type_url, r));
    }
    for name in removed.clone() {
        size += bytes_field_len(6, name.len());
    }
    let mut buf = BytesMut::with_capacity(size + 32);
    if !system_version_info.is_empty() {
        put_bytes_field(1, system_version_info.as_bytes(), &mut buf);
    }
    for r in resources {
        let version = r.version.to_string();
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(delta_resource_len(type_url, r) as u64, &mut buf);
        put_bytes_field(1, version.as_bytes(), &mut buf);
        put_any(2, type_url, &r.body, &mut buf);
        put_bytes_field(3, r.name.as_bytes(), &mut buf);
    }
    put_bytes_field(4, type_url.as_bytes(), &mut buf);
    for name in removed {
        put_bytes_field(6, name.as_bytes(), &mut buf);
    }
    buf.freeze()
}

/// The nonce field (tag 5 in both response messages) to append to a body.
pub fn put_nonce(nonce: &str, buf: &mut impl BufMut) {
    encode_key(5, WireType::LengthDelimited, buf);
    encode_varint(nonce.len() as u64, buf);
    buf.put_slice(nonce.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::envoy::config::cluster::v3::Cluster;
    use crate::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
    use prost::Message;

    fn cluster(name: &str) -> Resource {
        Resource::encode(
            name,
            &Cluster {
                name: name.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn sotw_body_decodes_with_nonce() {
        let rs = [cluster("a"), cluster("b")];
        let body = sotw_response(crate::type_url::CLUSTER, "v1", rs.iter());
        let mut buf = BytesMut::from(&body[..]);
        put_nonce("n7", &mut buf);
        let resp = DiscoveryResponse::decode(buf.freeze()).unwrap();
        assert_eq!(resp.version_info, "v1");
        assert_eq!(resp.nonce, "n7");
        assert_eq!(resp.type_url, crate::type_url::CLUSTER);
        assert_eq!(resp.resources.len(), 2);
        let c = Cluster::decode(resp.resources[1].value.as_slice()).unwrap();
        assert_eq!(c.name, "b");
    }

    #[test]
    fn delta_body_decodes_with_nonce() {
        let rs = [cluster("a")];
        let body = delta_response(crate::type_url::CLUSTER, "", rs.iter(), ["gone"]);
        let mut buf = BytesMut::from(&body[..]);
        put_nonce("x", &mut buf);
        let resp = DeltaDiscoveryResponse::decode(buf.freeze()).unwrap();
        assert_eq!(resp.nonce, "x");
        assert_eq!(resp.removed_resources, vec!["gone".to_string()]);
        assert_eq!(resp.resources[0].name, "a");
        assert_eq!(resp.resources[0].version, rs[0].version.to_string());
        let any = resp.resources[0].resource.as_ref().unwrap();
        assert_eq!(any.value, rs[0].body.to_vec());
        // Equal to what prost would have encoded, field for field.
        assert_eq!(resp.encoded_len(), body.len() + 3);
    }
}

/// The envelope of a delta response, read without decoding its resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaEnvelope {
    pub type_url: String,
    pub nonce: String,
    /// (name, version) of every resource carried.
    pub resources: Vec<(String, String)>,
    pub removed: Vec<String>,
}

/// The envelope of a SotW response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SotwEnvelope {
    pub type_url: String,
    pub version_info: String,
    pub nonce: String,
}

fn utf8(b: Option<&[u8]>) -> String {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Reads a `DeltaDiscoveryResponse`'s type, nonce, resource names and versions, and
/// removals — never the resources themselves.
pub fn delta_envelope(bytes: &[u8]) -> Result<DeltaEnvelope, crate::canonical::WireError> {
    let mut env = DeltaEnvelope::default();
    for f in crate::canonical::split_fields(bytes)? {
        match f.number {
            2 => {
                let mut name = String::new();
                let mut version = String::new();
                for r in crate::canonical::split_fields(f.payload.unwrap_or_default())? {
                    match r.number {
                        3 => name = utf8(r.payload),
                        1 => version = utf8(r.payload),
                        _ => {}
                    }
                }
                env.resources.push((name, version));
            }
            4 => env.type_url = utf8(f.payload),
            5 => env.nonce = utf8(f.payload),
            6 => env.removed.push(utf8(f.payload)),
            _ => {}
        }
    }
    Ok(env)
}

/// Reads a `DiscoveryResponse`'s type, version and nonce.
pub fn sotw_envelope(bytes: &[u8]) -> Result<SotwEnvelope, crate::canonical::WireError> {
    let mut env = SotwEnvelope::default();
    for f in crate::canonical::split_fields(bytes)? {
        match f.number {
            1 => env.version_info = utf8(f.payload),
            4 => env.type_url = utf8(f.payload),
            5 => env.nonce = utf8(f.payload),
            _ => {}
        }
    }
    Ok(env)
}

#[cfg(test)]
mod envelope_tests {
    use super::*;
    use crate::pb::envoy::config::cluster::v3::Cluster;

    #[test]
    fn envelopes_read_names_versions_and_nonces() {
        let rs = [Resource::encode(
            "a",
            &Cluster {
                name: "a".into(),
                ..Default::default()
            },
        )];
        let mut buf =
            BytesMut::from(&delta_response(crate::type_url::CLUSTER, "", rs.iter(), ["gone"])[..]);
        put_nonce("n1", &mut buf);
        let env = delta_envelope(&buf).unwrap();
        assert_eq!(env.type_url, crate::type_url::CLUSTER);
        assert_eq!(env.nonce, "n1");
        assert_eq!(
            env.resources,
            vec![("a".to_string(), rs[0].version.to_string())]
        );
        assert_eq!(env.removed, vec!["gone".to_string()]);
        let mut buf = BytesMut::from(&sotw_response(crate::type_url::CLUSTER, "v9", rs.iter())[..]);
        put_nonce("n2", &mut buf);
        let env = sotw_envelope(&buf).unwrap();
        assert_eq!(
            (env.version_info.as_str(), env.nonce.as_str()),
            ("v9", "n2")
        );
        assert!(delta_envelope(&[0xff]).is_err());
    }
}
