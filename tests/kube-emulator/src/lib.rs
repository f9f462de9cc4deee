//! An in-process emulator of the Kubernetes API server for tests: HTTPS with a fresh CA and a
//! bearer token, built-in kinds plus whatever CustomResourceDefinitions add, one global
//! resourceVersion, watches with history, bookmarks and 410 Expired after compaction, list
//! paging, label/field selectors, the status subresource, patches (JSON, merge, strategic,
//! server-side apply), discovery, Tables for kubectl, RBAC-style denials, request counters, and
//! admission webhooks called as kube-apiserver calls them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shoal_kube_emulator::Error> {
//! use shoal_kube_emulator::{Emulator, Options, Verb};
//! let emu = Emulator::start(Options::default()).await?;
//! emu.kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! emu.apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
//!     "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}}))?;
//! emu.forbid("pods", Verb::List)?;
//! assert_eq!(emu.requests(Verb::List, "configmaps")?, 0);
//! # Ok(()) }
//! ```

mod admission;
mod api;
mod builtins;
mod crud;
mod discovery;
mod error;
mod handlers;
mod patch;
mod present;
mod resources;
mod selectors;
mod server;
mod store;
mod tls;
mod util;
mod watch;
mod writes;

pub use api::{Emulator, Options, ReviewUser, Verb};
pub use error::{ApiError, Error};

/// CustomResourceDefinitions of Istio's kinds (`networking.istio.io`, `security.istio.io`,
/// `telemetry.istio.io`): `emulator.apply_yaml(ISTIO_CRDS)`, or `kubectl apply -f` the file
/// `tests/kube-emulator/crds/istio.yaml`.
pub const ISTIO_CRDS: &str = include_str!("../crds/istio.yaml");

/// CustomResourceDefinitions of the Gateway API's kinds (`gateway.networking.k8s.io`).
pub const GATEWAY_API_CRDS: &str = include_str!("../crds/gateway-api.yaml");
