//! Test harness: real shoal processes, real Envoy, real gRPC clients, and backends that say
//! who they are. Every process a test starts is killed when its handle drops.

pub mod backends;
pub mod cluster;
pub mod env;
pub mod identity;
pub mod ingress;
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
/// server side of the tests of inbound policies. YAML documents, each ended by `---`.
pub fn ingress_workload(protocol: &str, port: u16, target: u16, ingress: u16, app: u16) -> String {
    let name = protocol.to_ascii_lowercase();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: app}}\nspec:\n  selector: {{app: api}}\n  ports: [{{name: {name}, port: {port}, targetPort: {target}}}]\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: api, namespace: app}}\nspec:\n  workloadSelector: {{labels: {{app: api}}}}\n  ingress:\n  - port: {{number: {ingress}, protocol: {protocol}, name: {name}}}\n    bind: 127.0.0.1\n    captureMode: NONE\n    defaultEndpoint: 127.0.0.1:{app}\n  egress:\n  - hosts: [\"./*\"]\n---\n"
    )
}

/// Polls `host` through the listener at `via` until it answers 200; the panic message
/// carries `log` (the proxy's) when it never does.
pub async fn until_routed(via: std::net::SocketAddr, host: &str, log: impl Fn() -> String) {
    eventually(
        Duration::from_secs(20),
        "the route through Envoy",
        || async {
            proc::http_get(via, "/", &[("host", host)])
                .await
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log()));
}

/// A free TCP port on an address, for a process the test is about to start.
///
/// Ports come from below the kernel's ephemeral range, so the outgoing connections of tests
/// running alongside (thousands of simulated proxies) can never take one between this check
/// and the process binding it; a per-process counter keeps concurrent tests apart.
pub fn free_port(ip: &str) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    let high = ephemeral_start().clamp(LOW + 1_000, 32_768);
    let span = high - LOW;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Test binaries run one after another, but start each at its own place anyway.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip} in {LOW}..{high}")
}

/// The first port the kernel hands out for outgoing connections.
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
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
