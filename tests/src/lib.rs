//! Test harness: real shoal processes, real Envoy, real gRPC clients, and backends that say
//! who they are. Every process a test starts is killed when its handle drops.

pub mod backends;
pub mod cluster;
pub mod env;
pub mod identity;
pub mod proc;
pub mod xds;

use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free TCP port on an address (bound and released; good enough on loopback).
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
}

/// A port free on every given loopback address (backends bind the same port on several
/// addresses, like pods of one service).
pub fn free_port_on(ips: &[&str]) -> u16 {
    for _ in 0..200 {
        let p = free_port(ips[0]);
        if ips
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, p)).is_ok())
        {
            return p;
        }
    }
    panic!("no port free on all of {ips:?}")
}
