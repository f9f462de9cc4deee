//! The `shoal` binary's wiring. `main.rs` parses the command line ([`cli`]) and runs a
//! subcommand; `serve` resolves a [`config::Config`] and [`app::build`]s the control
//! plane from it: sources → [`pipeline`] (config store, translation, views) → [`streams`]
//! (admission by [`identity`], then a view) → the ADS service, with [`cluster`] (shard
//! group, router) and [`admin`] beside them.

pub mod admin;
pub mod app;
pub mod cacerts;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod epoch;
pub mod federation;
pub mod http_client;
pub mod identity;
pub mod jwks;
pub mod kube_status;
pub mod logging;
pub mod mesh;
pub mod metrics;
pub mod pipeline;
pub mod root_cert;
pub mod status;
pub mod streams;
#[cfg(feature = "testing")]
pub mod synthetic;
pub mod tls;
pub mod validate;
pub mod webhook;
