//! The per-stream protocol state machines, without IO: requests in, responses out.
//!
//! [`DeltaSession`] speaks incremental xDS, [`SotwSession`] state-of-the-world. Both hold,
//! per type, only a subscription (interned), what the client holds (a snapshot reference),
//! the last response awaiting acknowledgement and a few flags: a few hundred bytes per type,
//! independent of how many resources the view has.
//!
//! This module holds what both protocols share: the [`Session`] trait the stream driver
//! speaks to, what a request yields ([`Reply`]) and a poll emits ([`Outgoing`]), and the
//! limits. The state machines are in `delta.rs` and `sotw.rs`.

mod delta;
mod sotw;

pub use delta::DeltaSession;
pub use sotw::SotwSession;

use std::sync::Arc;
use std::time::Instant;

use shoal_api::ResourceType;
use shoal_api::codec::Encoded;
use shoal_api::pb::envoy::config::core::v3::Node;
use thiserror::Error;

use crate::debug::{ControlPlane, DebugRequest, DebugResources};
use crate::status::StreamStatus;
use crate::subscription::Interner;
use crate::view::View;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("unknown resource type {0:?}")]
    UnknownType(String),
    #[error("subscription to {ty} would hold {count} names, more than the limit of {limit}")]
    TooManyNames {
        ty: ResourceType,
        count: usize,
        limit: usize,
    },
}

/// Limits a session enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most names one stream may subscribe to per type.
    pub max_names: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_names: 100_000 }
    }
}

/// What happened to a response the client answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Accepted; `since` is when the change it carried was first seen.
    Ack {
        ty: ResourceType,
        since: Instant,
    },
    Nack {
        ty: ResourceType,
        error: String,
    },
}

/// A response to send, with what it carried (for metrics).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub ty: ResourceType,
    pub message: Encoded,
    pub resources: usize,
    pub removed: usize,
    pub since: Instant,
    /// Why the snapshot that produced it was made (`config`, `endpoints`, `new-view`).
    pub trigger: &'static str,
}

/// A protocol variant's session, as the stream driver sees it.
pub trait Session: Send + Sized + 'static {
    type Req: prost::Message + Default + Send + 'static;
    /// `delta` or `sotw`, for metrics and status.
    const PROTOCOL: &'static str;
    /// The node a request carries (the first request of a stream must).
    fn node(req: &Self::Req) -> Option<&Node>;
    /// The type URL a request is about.
    fn type_url(req: &Self::Req) -> &str;
    /// A request as a debug client's question (no session involved).
    fn debug_request(req: &Self::Req) -> DebugRequest<'_>;
    /// Encodes the answer to a debug request.
    fn debug_response(
        type_url: &str,
        resources: DebugResources,
        nonce: String,
        control_plane: &ControlPlane,
    ) -> Vec<u8>;
    fn new(
        view: &Arc<View>,
        interner: Arc<Interner>,
        limits: Limits,
        status: Arc<StreamStatus>,
    ) -> Self;
    /// Takes one request: subscription changes, and the ACK or NACK of an earlier response.
    fn on_request(&mut self, req: Self::Req) -> Result<Option<Reply>, SessionError>;
    /// Responses the client needs now, in push order (clusters before their endpoints,
    /// listeners before their routes).
    fn poll(&mut self) -> Vec<Outgoing>;
    fn view(&self) -> &Arc<View>;
    /// Moves the stream to another view (its config scope changed).
    fn switch_view(&mut self, view: &Arc<View>);
}

/// Types where a request naming nothing means "everything" (xDS legacy wildcard). Endpoints
/// and routes are always named by the clusters and listeners that use them.
fn legacy_wildcard(ty: ResourceType) -> bool {
    !matches!(ty, ResourceType::Endpoint | ResourceType::Route)
}

#[cfg(test)]
mod tests;
