//! A waypoint carrying real traffic: a real Envoy as the waypoint of namespace `shop`
//! (node type `waypoint`, config from shoal over delta ADS on the TLS port, certificates
//! over SDS) in a network namespace of its own, fed HBONE by a real Envoy playing
//! ztunnel's outbound side (mTLS HTTP/2 `CONNECT VIP:PORT` to 15008, as ztunnel sends it
//! to a waypoint), routing by the service's VirtualService, enforcing AuthorizationPolicies
//! attached by `targetRefs`, and reaching an ambient workload over HBONE again (a third
//! Envoy ends that tunnel as ztunnel's inbound side would) and a workload outside ambient
//! directly.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::identity::{Issuer, tls_bootstrap, workload_cert};
use shoal_tests::netns::PodNet;
use shoal_tests::{Envoy, backends, env, eventually, free_port, http_get, start_shoal};

const VIP: &str = "10.96.9.10";

fn mesh(v1_ip: &str, v2_ip: &str, app: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: shop, labels: {{istio.io/waypoint-for: all}}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: shop}}
spec:
  clusterIP: {VIP}
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: {app}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: echo-v1, namespace: shop, labels: {{app: echo, version: v1}}}}
spec: {{serviceAccountName: echo, nodeName: node-a}}
status: {{phase: Running, podIP: {v1_ip}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: echo-v2
  namespace: shop
  labels: {{app: echo, version: v2, istio.io/dataplane-mode: none}}
spec: {{serviceAccountName: echo, nodeName: node-a}}
status: {{phase: Running, podIP: {v2_ip}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-1, namespace: shop, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: http, port: {app}}}]
endpoints:
- addresses: [{v1_ip}]
  targetRef: {{kind: Pod, name: echo-v1, namespace: shop}}
- addresses: [{v2_ip}]
  targetRef: {{kind: Pod, name: echo-v2, namespace: shop}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: shop}}
spec:
  host: echo.shop.svc.cluster.local
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: shop}}
spec:
  hosts: [echo.shop.svc.cluster.local]
  http:
  - match: [{{headers: {{x-version: {{exact: v2}}}}}}]
    route: [{{destination: {{host: echo.shop.svc.cluster.local, subset: v2}}}}]
  - route: [{{destination: {{host: echo.shop.svc.cluster.local, subset: v1}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: echo}}]
  action: DENY
  rules: [{{to: [{{operation: {{paths: [/admin]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: only-sleep, namespace: shop}}
spec:
  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]
  action: ALLOW
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/shop/sa/sleep]}}}}]}}]
"#
    )
}

fn write(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

fn tls_files(dir: &std::path::Path, name: &str, cert: &(String, String)) -> serde_json::Value {
    serde_json::json!({
        "certificate_chain": { "filename": write(dir, &format!("{name}.pem"), &cert.0) },
        "private_key": { "filename": write(dir, &format!("{name}.key"), &cert.1) }
    })
}

fn h2() -> serde_json::Value {
    serde_json::json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} }
        }
    })
}

fn static_cluster(name: &str, addr: &str, port: u16) -> serde_json::Value {
    serde_json::json!({
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": {
            "address": { "socket_address": { "address": addr, "port_value": port } } } }] }] }
    })
}

/// ztunnel's outbound side, one listener per client: each connection becomes an HBONE
/// tunnel to the waypoint (`CONNECT DESTINATION` over mTLS HTTP/2) with that client's
/// certificate.
fn hbone_client(
    waypoint: &str,
    root: &str,
    clients: &[(u16, &str, serde_json::Value)],
    admin: SocketAddr,
) -> serde_json::Value {
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for (i, (port, destination, cert)) in clients.iter().enumerate() {
        let cluster = format!("waypoint-{i}");
        listeners.push(serde_json::json!({
            "name": format!("client-{i}"),
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
            "filter_chains": [{ "filters": [{ "name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": cluster, "cluster": cluster,
                "tunneling_config": { "hostname": destination }
            } }] }]
        }));
        let mut c = static_cluster(&cluster, waypoint, 15008);
        c["typed_extension_protocol_options"] = h2();
        c["transport_socket"] = serde_json::json!({ "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [cert],
                "validation_context": { "trusted_ca": { "filename": root } }
            }
        } });
        clusters.push(c);
    }
    serde_json::json!({
        "static_resources": { "listeners": listeners, "clusters": clusters },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin.port() } } }
    })
}

/// ztunnel's inbound side for one ambient pod: HBONE ends on `POD_IP:15008` (mTLS, the
/// pod's certificate, peers must present one of the mesh) and the tunnel's payload goes
/// to the application.
fn hbone_server(
    pod_ip: &str,
    root: &str,
    cert: serde_json::Value,
    app: SocketAddr,
    admin: SocketAddr,
) -> serde_json::Value {
    serde_json::json!({
        "static_resources": {
            "listeners": [{
                "name": "inbound-hbone",
                "address": { "socket_address": { "address": pod_ip, "port_value": 15008 } },
                "filter_chains": [{
                    "transport_socket": { "name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "common_tls_context": {
                            "alpn_protocols": ["h2"],
                            "tls_certificates": [cert],
                            "validation_context": { "trusted_ca": { "filename": root } }
                        }
                    } },
                    "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound_hbone",
                        "codec_type": "HTTP2",
                        "http2_protocol_options": { "allow_connect": true },
                        "upgrade_configs": [{ "upgrade_type": "CONNECT" }],
                        "route_config": { "virtual_hosts": [{ "name": "any", "domains": ["*"], "routes": [{
                            "match": { "connect_matcher": {} },
                            "route": { "cluster": "app", "upgrade_configs": [{ "upgrade_type": "CONNECT", "connect_config": {} }] }
                        }] }] },
                        "http_filters": [{ "name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }]
                    } }]
                }]
            }],
            "clusters": [static_cluster("app", &app.ip().to_string(), app.port())]
        },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin.port() } } }
    })
}

async fn start_static(bootstrap: serde_json::Value, admin: SocketAddr) -> Envoy {
    let envoy = Envoy::start_bootstrap(env::envoy().unwrap(), admin, bootstrap)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "static envoy ready", || async {
        http_get(admin, "/ready", &[])
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await
    .unwrap();
    envoy
}

fn admin_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waypoint_routes_and_authorizes_hbone_traffic() {
    let Some(bin) = env::envoy() else {
        eprintln!("skipping: no Envoy (SHOAL_ENVOY)");
        return;
    };
    if !PodNet::available() {
        eprintln!("skipping: network namespaces need root, iproute2, iptables and setpriv");
        return;
    }
    let _fixed = shoal_tests::FIXED_PORTS.lock().await;
    let net = PodNet::create().unwrap();
    let v1_ip = net.host_alias(11).unwrap();
    let v2_ip = net.host_alias(12).unwrap();
    let issuer = Issuer::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = shoal_tests::free_port_on(&[&v1_ip, &v2_ip]);
    std::fs::write(dir.path().join("mesh.yaml"), mesh(&v1_ip, &v2_ip, app)).unwrap();
    let xds_port = free_port(&net.host_ip);
    let xds_arg = format!("{}:{xds_port}", net.host_ip);
    let shoal = start_shoal(
        dir.path(),
        &["--xds-tls-addr", &xds_arg, "--jwt-issuer", &issuer.arg()],
    )
    .await
    .unwrap();
    let root_path = shoal.data_dir().join("ca/shoal-root/root-cert.pem");
    let root_pem = std::fs::read_to_string(&root_path).unwrap();
    let root = root_path.display().to_string();
    let files = tempfile::tempdir().unwrap();

    // The workloads: v1 ambient (behind its HBONE terminator), v2 outside ambient.
    let app1 = backends::http("127.0.0.1:0".parse().unwrap(), "echo-v1")
        .await
        .unwrap();
    let _app2 = backends::http(format!("{v2_ip}:{app}").parse().unwrap(), "echo-v2")
        .await
        .unwrap();
    let echo_cert = workload_cert(&shoal, &issuer, "shop", "echo")
        .await
        .unwrap();
    let server_admin = admin_addr();
    let _server = start_static(
        hbone_server(
            &v1_ip,
            &root,
            tls_files(files.path(), "echo", &echo_cert),
            app1.addr,
            server_admin,
        ),
        server_admin,
    )
    .await;

    // The waypoint, in its own network namespace.
    let node = format!(
        "waypoint~{ip}~waypoint-5d8f.shop~shop.svc.cluster.local",
        ip = net.pod_ip
    );
    let meta = serde_json::json!({
        "NAMESPACE": "shop",
        "LABELS": { "gateway.networking.k8s.io/gateway-name": "waypoint" },
    });
    let wp_admin: SocketAddr = format!("{}:15000", net.pod_ip).parse().unwrap();
    let xds: SocketAddr = xds_arg.parse().unwrap();
    let token = issuer.token("shop", "waypoint").unwrap();
    // Its bootstrap carries the internal listener extension, as Istio's does.
    let bootstrap = tls_bootstrap(&node, meta, xds, wp_admin, &root_pem, &token);
    let _waypoint = Envoy::start_bootstrap_in(Some(&net.name), bin, wp_admin, bootstrap)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "waypoint listeners", || async {
        let (_, body) = http_get(wp_admin, "/listeners", &[]).await.ok()?;
        ["connect_terminate", "main_internal", "connect_originate"]
            .iter()
            .all(|l| body.contains(l))
            .then_some(())
    })
    .await
    .unwrap();

    // ztunnel's outbound side, as `sleep` and as `intruder`.
    let sleep = workload_cert(&shoal, &issuer, "shop", "sleep")
        .await
        .unwrap();
    let intruder = workload_cert(&shoal, &issuer, "shop", "intruder")
        .await
        .unwrap();
    let (sleep_port, intruder_port, direct_port) = (
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
    );
    let service = format!("{VIP}:80");
    let pod_v1 = format!("{v1_ip}:{app}");
    let client_admin = admin_addr();
    let _client = start_static(
        hbone_client(
            &net.pod_ip,
            &root,
            &[
                (
                    sleep_port,
                    &service,
                    tls_files(files.path(), "sleep", &sleep),
                ),
                (
                    intruder_port,
                    &service,
                    tls_files(files.path(), "intruder", &intruder),
                ),
                (
                    direct_port,
                    &pod_v1,
                    tls_files(files.path(), "direct", &sleep),
                ),
            ],
            client_admin,
        ),
        client_admin,
    )
    .await;
    let sleep_addr: SocketAddr = format!("127.0.0.1:{sleep_port}").parse().unwrap();
    let intruder_addr: SocketAddr = format!("127.0.0.1:{intruder_port}").parse().unwrap();
    let direct_addr: SocketAddr = format!("127.0.0.1:{direct_port}").parse().unwrap();

    // Routed by the VirtualService: v1 over HBONE by default, v2 directly by header.
    let got = eventually(
        Duration::from_secs(30),
        "v1 through the waypoint",
        || async {
            http_get(sleep_addr, "/", &[])
                .await
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    let logs = || async {
        let (_, clusters) = http_get(wp_admin, "/clusters", &[])
            .await
            .unwrap_or_default();
        format!("shoal:\n{}\nwaypoint clusters:\n{clusters}", shoal.log())
    };
    let (_, body) = match got {
        Ok(r) => r,
        Err(e) => panic!("{e}\n{}", logs().await),
    };
    assert_eq!(body, "echo-v1");
    let (status, body) = http_get(sleep_addr, "/", &[("x-version", "v2")])
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "echo-v2"),
        "{}",
        logs().await
    );

    // The Service's DENY policy, and the Gateway's ALLOW policy by the tunnel's identity.
    let (status, _) = http_get(sleep_addr, "/admin", &[]).await.unwrap();
    assert_eq!(status, 403, "DENY /admin (policy attached to the Service)");
    let (status, _) = http_get(intruder_addr, "/", &[]).await.unwrap();
    assert_eq!(
        status, 403,
        "ALLOW only sleep (policy attached to the waypoint)"
    );

    // Addressed to the pod itself (the waypoint is `waypoint-for: all`): the waypoint's
    // policies, then on to that pod.
    let (status, body) = http_get(direct_addr, "/", &[("x-version", "v2")])
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "echo-v1"),
        "{}",
        logs().await
    );
    let (status, _) = http_get(direct_addr, "/admin", &[]).await.unwrap();
    assert_eq!(status, 200, "the Service's policy is not the pod's");

    // v1 was reached through a second tunnel, which its terminator saw as CONNECTs.
    let stat = |admin: SocketAddr, name: &'static str| async move {
        let (_, body) = http_get(admin, &format!("/stats?filter=^{name}$"), &[])
            .await
            .unwrap();
        body.rsplit_once(": ")
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(stat(wp_admin, "cluster.connect_originate.upstream_cx_total").await > 0);
    assert!(stat(server_admin, "http.inbound_hbone.downstream_rq_total").await > 0);
}
