//! shoal's snapshot cache and ADS service.
//!
//! A *view* is what a group of proxies sees; it publishes immutable, versioned
//! [`Snapshot`]s. Each stream runs a protocol session ([`session`]) that holds only its
//! subscription and a reference to the snapshot its client holds; the response that moves
//! a client from one version of a view to the next is encoded once and shared by every
//! stream in the same state.
//!
//! Invariants:
//! - Snapshots are immutable; a view's versions only increase.
//! - A client ends up holding exactly what its subscription covers in the view's latest
//!   snapshot, whatever happened in between (reconnects, rejected responses).
//! - A slow or hostile stream only affects itself: responses are built outside locks and
//!   sent through the stream's own bounded channel.

pub mod debug;
pub mod diff;
mod metrics_names;
mod record;
pub mod service;
pub mod session;
pub mod snapshot;
pub mod status;
pub mod subscription;
pub mod view;

pub use service::{Admitted, AdsConfig, AdsServer, Resolved, StreamContext, ViewSource};
pub use snapshot::{Patch, Resources, Snapshot, Trigger};
pub use view::{Registry, View};
