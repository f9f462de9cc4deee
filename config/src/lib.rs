//! shoal's config model.
//!
//! Kubernetes (`Service`, `EndpointSlice`, `Pod`, `Node`, and `Secret` for gateway
//! credentials), Istio networking objects
//! (`ServiceEntry`, `WorkloadEntry`, `VirtualService`, `DestinationRule`, `Sidecar`) and Istio
//! security objects (`PeerAuthentication`, `AuthorizationPolicy`, `RequestAuthentication`) and the Kubernetes Gateway
//! API (`Gateway`, `HTTPRoute`, `GRPCRoute`, `TLSRoute`, `TCPRoute`, `ReferenceGrant`;
//! [`gateway_api`]) are parsed
//! from YAML or JSON ([`parse`]), validated one by one ([`validate`]) and kept in the
//! [`store::ConfigStore`], fed by sources ([`source`]).
//!
//! Invariants:
//! - Parsing and validation are pure and never panic, whatever the input.
//! - An invalid object is rejected alone, with an [`Issue`] naming file, document, object and
//!   field; the last good version of that object stays in the store.
//! - A [`store::ConfigSnapshot`] never changes; a new revision is a new snapshot.

pub mod analyze;
pub mod crds;
pub mod discovery;
pub mod duration;
pub mod gateway_api;
pub mod host;
mod issue;
pub mod istio;
pub mod k8s;
mod labels;
pub mod mesh_config;
mod meta;
mod object;
pub mod parse;
pub mod resources;
pub mod source;
pub mod store;
pub mod validate;

pub use issue::{Issue, IstioCode, Origin, Severity};
pub use labels::Iter as LabelsIter;
pub use meta::{Kind, Labels, ObjectKey, ObjectMeta, selects};
pub use object::{
    AuthorizationPolicy, DestinationRule, HttpRoute, KubeGateway, Object, PeerAuthentication,
    RequestAuthentication, ServiceEntry, SharedObject, Sidecar, VirtualService, WorkloadEntry,
};
pub use store::{ChangeSet, ConfigSnapshot, ConfigStore, Entry, Precedence};
