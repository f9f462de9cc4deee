//! shoal's wire layer: the Envoy xDS protos (re-exported from `envoy-types`), the resource
//! type URLs shoal serves, deterministic content-addressed encoding of resources, and
//! pre-encoded discovery responses shared by every stream that sends them.
//!
//! Invariants:
//! - [`Resource::encode`] is deterministic: equal messages give equal bytes and equal
//!   [`Version`]s in every process (maps are sorted, see [`canonical`]).
//! - Response bodies built by [`wire`] are valid protobuf on their own; a per-stream nonce is
//!   appended as one more field, so one body serves many streams.

pub mod canonical;
pub mod codec;
pub mod debug;
pub mod grpc;
pub mod istio;
pub mod json;
pub mod relay;
mod resource;
mod types;
pub mod wire;

pub use envoy_types::pb;
pub use resource::{Resource, Version};
pub use types::{ResourceType, type_url};

/// Packs a message into a `google.protobuf.Any`, canonically encoded.
pub fn pack<M: prost::Name>(msg: &M) -> pb::google::protobuf::Any {
    let bytes = prost::Message::encode_to_vec(msg);
    let value = canonical::canonicalize(&M::full_name(), &bytes).unwrap_or(bytes);
    pb::google::protobuf::Any {
        type_url: M::type_url(),
        value,
    }
}
