//! Test harness: real shoal processes, real Envoy, real gRPC clients, and backends that say
//! who they are. Every process a test starts is killed when its handle drops.
//!
//! Processes are started through the one harness the load tester uses too
//! (`shoal_loadtest::server`): [`Proc`] for any process, [`Shoal`] for `shoal serve`.

pub mod backends;
pub mod cluster;
pub mod env;
pub mod envoy;
pub mod etcd;
pub mod https;
pub mod identity;
pub mod ingress;
pub mod netns;
pub mod python;
pub mod xds;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

pub use envoy::Envoy;
pub use python::run_python;
pub use shoal_loadtest::server::{Proc, Serve, free_port, free_port_on, http_get};

/// Held by tests that bind Istio's fixed ports on the host (the golden views' real
/// Envoys bind what the views say, a waypoint test's HBONE server binds 15008): they take
/// turns instead of failing on each other's sockets.
pub static FIXED_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running `shoal serve`, killed when dropped.
pub type Shoal = shoal_loadtest::server::Server;

/// Starts the workspace's `shoal serve` on `config_dir` with `extra` arguments, on free
/// loopback ports and a temporary data dir (the CA in its `ca/`), and waits until it is
/// ready. `extra` may name the TLS and plaintext xDS addresses (`--xds-tls-addr`,
/// `--xds-addr`, e.g. to reach them from a network namespace). Logs at `info` unless `SHOAL_TEST_LOG` says otherwise; a failing
/// test prints the log's tail.
pub async fn start_shoal(config_dir: &Path, extra: &[&str]) -> anyhow::Result<Shoal> {
    let (mut tls, mut plain): (Option<SocketAddr>, Option<SocketAddr>) = (None, None);
    let mut args = Vec::new();
    let mut it = extra.iter();
    while let Some(a) = it.next() {
        match (*a, it.clone().next()) {
            ("--xds-tls-addr", Some(addr)) => {
                tls = Some(addr.parse()?);
                it.next();
            }
            ("--xds-addr", Some(addr)) => {
                plain = Some(addr.parse()?);
                it.next();
            }
            _ => args.push(*a),
        }
    }
    Shoal::start_scratch(
        &env::shoal_bin(),
        config_dir,
        |serve| {
            let mut serve = serve
                .args(args)
                .log_filter_from_env("SHOAL_TEST_LOG", "info");
            if let Some(tls) = tls {
                serve.xds_tls = tls;
            }
            if let Some(plain) = plain {
                serve.xds = plain;
            }
            serve
        },
        Duration::from_secs(30),
    )
    .await
}

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

/// A Service `name` of namespace `ns` with one port (`port_name`: `port` → `target`) and one
/// endpoint at `ip`, as YAML documents followed by `---`.
pub fn service_with_endpoint(
    name: &str,
    ns: &str,
    port_name: &str,
    port: u16,
    ip: &str,
    target: u16,
) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports:\n  - {{name: {port_name}, port: {port}, targetPort: {target}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: {port_name}, port: {target}}}]\nendpoints:\n- addresses: [{ip}]\n---\n"
    )
}

/// A `Sidecar` giving the proxies of namespace `ns` one HTTP listener bound to
/// `127.0.0.1:port` (no traffic capture) for `hosts`: the client side of most tests. A
/// YAML document of its own (it starts with `---`), to append to a mesh.
pub fn bound_http_sidecar(ns: &str, port: u16, hosts: &[&str]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: {ns}}}\nspec:\n  egress:\n  - port: {{number: {port}, protocol: HTTP, name: http}}\n    bind: 127.0.0.1\n    captureMode: NONE\n    hosts: [{}]\n",
        hosts.join(", ")
    )
}

/// The workload `api` of namespace `app` (labels `app: api`) behind a Sidecar ingress
/// listener bound to `127.0.0.1:ingress` (no capture) that forwards to the application
/// at `127.0.0.1:app`, with its Service (`port` → `target`, named after `protocol`): the
/// server side of the tests of inbound policies. Its egress imports nothing (`~/*`): a
/// proxy without capture would bind a listener for every port of what it imports, its own
/// Service's too. YAML documents, each ended by `---`.
pub fn ingress_workload(protocol: &str, port: u16, target: u16, ingress: u16, app: u16) -> String {
    let name = protocol.to_ascii_lowercase();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: app}}\nspec:\n  selector: {{app: api}}\n  ports: [{{name: {name}, port: {port}, targetPort: {target}}}]\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: api, namespace: app}}\nspec:\n  workloadSelector: {{labels: {{app: api}}}}\n  ingress:\n  - port: {{number: {ingress}, protocol: {protocol}, name: {name}}}\n    bind: 127.0.0.1\n    captureMode: NONE\n    defaultEndpoint: 127.0.0.1:{app}\n  egress:\n  - hosts: [\"~/*\"]\n---\n"
    )
}

/// Polls `host` through the listener at `via` until it answers 200; the panic message
/// carries `log` (the proxy's) when it never does.
pub async fn until_routed(via: std::net::SocketAddr, host: &str, log: impl Fn() -> String) {
    eventually(
        Duration::from_secs(20),
        "the route through Envoy",
        || async {
            http_get(via, "/", &[("host", host)])
                .await
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log()));
}

/// `shoal validate` of the binary under test with `args`: (exit code, stdout and stderr).
pub async fn validate(args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(crate::env::shoal_bin())
            .arg("validate")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("validate within 60 s")
    .expect("validate runs");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
