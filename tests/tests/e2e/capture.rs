//! A sidecar that captures its pod's traffic as Istio's init container sets it up (every
//! outbound TCP connection redirected to `virtualOutbound`, the proxy running as uid 1337),
//! in a network namespace of its own, with real applications connecting to real addresses:
//! the listeners a captured sidecar gets for services without a virtual IP (an external
//! TLS API registered by host name, a Service written without a `clusterIP`), Istio's
//! `VIP_PORT` listeners, and a VirtualService `tls` route for a host without an address.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::netns::PodNet;
use shoal_tests::{Envoy, Proc, backends, env, eventually, free_port, start_shoal};

const DB_VIP: &str = "10.96.7.10";
const WEB_VIP: &str = "10.96.7.20";

/// The mesh: `db` (TCP, with a virtual IP), `cache` (TCP, no `clusterIP`), `web` (port
/// protocol not declared, with a virtual IP), external TLS hosts registered by name only
/// (one routed by a VirtualService `tls` route to another), all in `REGISTRY_ONLY`.
fn mesh(backend_ip: &str, ports: &Ports) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: db, namespace: app}}
spec:
  clusterIP: {DB_VIP}
  ports: [{{name: tcp, port: 5432, targetPort: {db}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: db-1, namespace: app, labels: {{kubernetes.io/service-name: db}}}}
addressType: IPv4
ports: [{{name: tcp, port: {db}}}]
endpoints: [{{addresses: [{backend_ip}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: cache, namespace: app}}
spec:
  ports: [{{name: tcp, port: 6380, targetPort: {cache}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: cache-1, namespace: app, labels: {{kubernetes.io/service-name: cache}}}}
addressType: IPv4
ports: [{{name: tcp, port: {cache}}}]
endpoints: [{{addresses: [{backend_ip}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: app}}
spec:
  clusterIP: {WEB_VIP}
  ports: [{{name: web, port: 8000, targetPort: {web}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: app, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: web, port: {web}}}]
endpoints: [{{addresses: [{backend_ip}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: app}}
spec:
  hosts: [api.external.test]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  endpoints: [{{address: {backend_ip}, ports: {{tls: {api}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: routed, namespace: app}}
spec:
  hosts: [routed.external.test]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  endpoints: [{{address: {backend_ip}, ports: {{https: {api}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: egress, namespace: app}}
spec:
  hosts: [egress.external.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  endpoints: [{{address: {backend_ip}, ports: {{tls: {egress}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: routed, namespace: app}}
spec:
  hosts: [routed.external.test]
  tls:
  - match: [{{port: 443, sniHosts: [routed.external.test]}}]
    route: [{{destination: {{host: egress.external.test, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: app}}
spec:
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"#,
        db = ports.db,
        cache = ports.cache,
        web = ports.web,
        api = ports.api,
        egress = ports.egress,
    )
}

struct Ports {
    db: u16,
    cache: u16,
    web: u16,
    api: u16,
    egress: u16,
}

/// What the pod's application gets from one connection (see `tests/py/pod_app.py`).
async fn app(net: &PodNet, args: Vec<String>) -> String {
    let mut cmd = net.command("python3");
    cmd.arg(env::py_script("pod_app.py")).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn tcp(net: &PodNet, dest: &str) -> String {
    app(net, vec!["tcp".into(), dest.into()]).await
}

async fn tls(net: &PodNet, dest: &str, sni: &str, ca: &std::path::Path) -> String {
    let ca = ca.display().to_string();
    app(net, vec!["tls".into(), dest.into(), sni.into(), ca]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_sidecar_reaches_services_without_a_virtual_ip() {
    let Some(bin) = env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    if !PodNet::available() {
        eprintln!("SKIP: needs root, iproute2, iptables and setpriv (a pod's traffic capture)");
        return;
    }
    let net = PodNet::create().unwrap();
    net.capture_outbound().unwrap();
    let backend_ip = net.host_ip.clone();
    let on_host = |port: u16| -> SocketAddr { format!("{backend_ip}:{port}").parse().unwrap() };
    let ports = Ports {
        db: free_port(&backend_ip),
        cache: free_port(&backend_ip),
        web: free_port(&backend_ip),
        api: free_port(&backend_ip),
        egress: free_port(&backend_ip),
    };
    let _db = backends::tcp_echo(on_host(ports.db), "db").await.unwrap();
    let _cache = backends::tcp_echo(on_host(ports.cache), "cache")
        .await
        .unwrap();
    let _web = backends::http(on_host(ports.web), "web").await.unwrap();
    // The external TLS APIs: one certificate for every external name, from a test CA.
    let (ca, cert, key) = shoal_tests::identity::ca_and_leaf(
        "external CA",
        &[
            "api.external.test",
            "routed.external.test",
            "egress.external.test",
        ],
    )
    .unwrap();
    let certs = tempfile::tempdir().unwrap();
    let path = |n: &str| certs.path().join(n);
    std::fs::write(path("ca.pem"), ca).unwrap();
    std::fs::write(path("cert.pem"), cert).unwrap();
    std::fs::write(path("key.pem"), key).unwrap();
    // Readable from the pod's application (root too, but keep it plain).
    let greeter = |name: &str, port: u16| {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(env::py_script("tls_greeter.py"))
            .args([name, &backend_ip, &port.to_string()])
            .arg(path("cert.pem"))
            .arg(path("key.pem"));
        Proc::spawn(name, &mut cmd).unwrap()
    };
    let _api = greeter("api", ports.api);
    let _egress = greeter("egress", ports.egress);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh(&backend_ip, &ports)).unwrap();
    let xds_port = free_port("0.0.0.0");
    let xds_arg = format!("0.0.0.0:{xds_port}");
    let shoal = start_shoal(dir.path(), &["--xds-addr", &xds_arg])
        .await
        .unwrap();

    let admin: SocketAddr = format!("{}:15000", net.pod_ip).parse().unwrap();
    let xds: SocketAddr = format!("{}:{xds_port}", net.host_ip).parse().unwrap();
    let node = serde_json::json!({
        "id": format!("sidecar~{}~client-0.app~app.svc.cluster.local", net.pod_ip),
        "cluster": "client.app",
        "metadata": { "NAMESPACE": "app", "LABELS": { "app": "client" } },
    });
    let envoy = Envoy::start_in_pod(
        &net,
        bin,
        admin,
        Envoy::ads_bootstrap(xds, node, true, admin),
    )
    .await
    .unwrap();
    let fail = |what: &str| {
        format!(
            "{what}\n--- envoy ---\n{}\n--- shoal ---\n{}",
            envoy.proc.log(),
            shoal.log()
        )
    };

    // Istio's names: a listener per virtual IP for TCP and sniffed services, the wildcard
    // listener for what has none.
    let listeners = eventually(
        Duration::from_secs(30),
        "the outbound listeners",
        || async {
            let l = envoy.listeners().await.ok()?;
            l.iter().any(|n| n == "virtualOutbound").then_some(l)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{}", fail(&e.to_string())));
    for name in [
        format!("{DB_VIP}_5432"),
        format!("{WEB_VIP}_8000"),
        "0.0.0.0_6380".into(),
        "0.0.0.0_443".into(),
    ] {
        assert!(
            listeners.contains(&name),
            "{name} missing from {listeners:?}"
        );
    }
    assert!(
        !listeners.contains(&"0.0.0.0_5432".to_string()),
        "{listeners:?}"
    );

    // TCP to a virtual IP, through its own listener.
    let db = format!("{DB_VIP}:5432");
    eventually(Duration::from_secs(20), "db through its VIP", || async {
        (tcp(&net, &db).await == "db").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{}", fail(&e.to_string())));

    // A Service without a clusterIP: whatever address the application dialled on its port.
    assert_eq!(tcp(&net, "192.0.2.77:6380").await, "cache");

    // HTTP to a sniffed service's VIP: detected and routed by `web.app.svc.cluster.local:8000`.
    let web = app(
        &net,
        vec![
            "http".into(),
            format!("{WEB_VIP}:8000"),
            "web.app.svc.cluster.local".into(),
        ],
    )
    .await;
    assert_eq!(web, "200\nweb", "{}", fail("HTTP to the sniffed service"));

    // An external API registered by host name only, under REGISTRY_ONLY: matched by SNI.
    // The application dialled an address of its own resolving; the sidecar goes where the
    // ServiceEntry says.
    let ca = path("ca.pem");
    assert_eq!(
        tls(&net, "198.51.100.7:443", "api.external.test", &ca).await,
        "api",
        "{}",
        fail("TLS to a registered external host")
    );
    // An unregistered host on the same port is still blocked.
    let stranger = tls(&net, "198.51.100.7:443", "unknown.external.test", &ca).await;
    assert!(stranger.starts_with("error"), "{stranger}");
    // The VirtualService `tls` route for a host without an address takes effect: to
    // `egress.external.test`, not to `routed.external.test`'s own endpoint.
    assert_eq!(
        tls(&net, "198.51.100.8:443", "routed.external.test", &ca).await,
        "egress",
        "{}",
        fail("the tls route")
    );
}
