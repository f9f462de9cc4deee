//! The `shoal` binary's wiring: command line, the serve loop (sources → config store →
//! translation → snapshot cache → ADS), the admin endpoints, `validate` and `status`.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod credential_readers;
pub mod jwks;
pub mod mesh;
pub mod metrics;
pub mod pipeline;
pub mod security;
pub mod serve;
pub mod status;
pub mod synthetic;
pub mod tls;
pub mod validate;
