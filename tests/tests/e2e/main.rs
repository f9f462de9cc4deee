//! The cross-process tests of shoal: one test binary, one module per subject. Each test
//! starts the real processes it needs (shoal, Envoy, Python with grpcio) through the
//! harness in `tests/src`, and every process dies with its handle.
//!
//! One binary links the workspace once instead of once per subject. Its tests run as the
//! separate binaries' did: on libtest's threads (one per CPU unless `--test-threads` or
//! `RUST_TEST_THREADS` says otherwise), so no more of them at once than before. Run one
//! subject with `cargo test -p shoal-tests --test e2e -- MODULE::`.

// Tests state their expectations with `unwrap`/`expect`: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod architecture;
mod authz_paths;
mod capture;
mod delegate;
mod deprecated;
mod east_west;
mod egress;
mod envoy;
mod etcd;
mod examples;
mod federation;
mod gateway;
mod gateway_api;
mod gateway_names;
mod golden_envoy;
mod grpc_mtls;
mod grpc_proxyless;
mod hostile;
mod jwt;
mod kubernetes;
mod load_balancing;
mod mesh_config;
mod replicas;
mod resume;
mod security;
mod sidecar;
mod tcp_tls;
mod traffic;
mod waypoint;
mod ztunnel;
