//! shoal-loadtest: thousands of simulated sidecars, gRPC clients and ztunnels, each with its
//! own xDS stream, driven through scenarios that measure a control plane from the outside.
//!
//! A black box: it depends only on the protos (`shoal-api`), never on shoal's internals, and
//! measures the server through the wire, /proc and /metrics.

pub mod baseline;
pub mod cli;
pub mod fleet;
pub mod mesh;
pub mod proxy;
pub mod report;
pub mod scenario;
pub mod server;
