//! The Kubernetes source: the API server's objects, watched with kube-rs.
//!
//! One watcher per kind shoal reads ([`kinds::WATCHED`]), each object an update of its own
//! (source id `kubernetes:KIND[.GROUP]/NAMESPACE/NAME`) through the same parsing and
//! validation as a file's documents: an invalid object is rejected alone and its last good
//! version stays. What is sent is pruned to the fields translation reads and only sent when
//! that changed ([`tracker`]), so re-lists and resyncs cost the proxies nothing.
//!
//! The source reports `Synced` once every kind has listed, or is known not to be served
//! (CRD not installed: looked up again every [`Options::rediscover`]) or refused by RBAC
//! (reported with the verb and resource; the watcher keeps retrying with backoff and
//! jitter). While the API server is unreachable, nothing is removed: the last good config
//! keeps being served, and the status says the source is stale.
//!
//! With [`Options::remote_secrets`], other clusters' service discovery joins through
//! Istio's remote secrets ([`remote`]); their objects are named and rewritten per cluster
//! ([`cluster`]) and never hold back the initial sync.

pub mod cluster;
pub mod prune;
pub mod tracker;

// The IO half (kube-rs), behind the `kubernetes` feature; prune and tracker are pure and
// always built (the fuzz crate drives them without kube).
#[cfg(feature = "kubernetes")]
pub mod kinds;
#[cfg(feature = "kubernetes")]
pub mod mesh;
#[cfg(feature = "kubernetes")]
pub mod remote;
#[cfg(feature = "kubernetes")]
pub mod status;
#[cfg(feature = "kubernetes")]
mod watch;
#[cfg(feature = "kubernetes")]
pub use watch::*;
