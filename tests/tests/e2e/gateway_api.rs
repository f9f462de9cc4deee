//! A real Envoy as the gateway proxy of a Kubernetes Gateway API `Gateway` (`router~…` node
//! labelled `gateway.networking.k8s.io/gateway-name`, Istio's deployment label): an
//! `HTTPRoute` sends `/a` to one backend with a request header set and `/b` to another, over
//! plain HTTP; a host the route does not name gets Istio's 404. A `TCPRoute` on a TCP
//! listener reaches a TCP backend of another namespace that a `ReferenceGrant` there opens
//! to it; a route of a namespace the grant does not name gets no listener. A `GRPCRoute`
//! routes gRPC calls by service, method and header to HTTP/2 backends; a method it does
//! not match gets Envoy's 404, answered to gRPC clients as `UNIMPLEMENTED`.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::{Envoy, http_get, start_shoal};
use shoal_tests::{eventually, free_port};
use tokio::io::AsyncReadExt;

const HOST: &str = "web.example.com";

fn mesh(listen: u16, a: u16, b: u16) -> String {
    shoal_tests::service_with_endpoint("a", "web", "http", 8000, "127.0.0.2", a)
        + &shoal_tests::service_with_endpoint("b", "web", "http", 8001, "127.0.0.2", b)
        + &format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: web}}
spec:
  gatewayClassName: istio
  listeners:
  - {{name: http, port: {listen}, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: web}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{HOST}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /a}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-route, value: to-a}}]}}
    backendRefs: [{{name: a, port: 8000}}]
  - matches: [{{path: {{type: PathPrefix, value: /b}}}}]
    backendRefs: [{{name: b, port: 8001}}]
"#
        )
}

async fn gateway_api_traffic(delta: bool) {
    let (a_port, b_port) = (free_port("127.0.0.2"), free_port("127.0.0.2"));
    let (_a, a_log) =
        backends::recording(format!("127.0.0.2:{a_port}").parse().unwrap(), "a", false)
            .await
            .unwrap();
    let (_b, b_log) =
        backends::recording(format!("127.0.0.2:{b_port}").parse().unwrap(), "b", false)
            .await
            .unwrap();
    let listen = free_port("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), mesh(listen, a_port, b_port)).unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "router~127.0.0.1~gw-istio-0.web~web.svc.cluster.local";
    let meta = serde_json::json!({ "LABELS": { "gateway.networking.k8s.io/gateway-name": "gw" } });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, delta).await.unwrap() else {
        return;
    };

    let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    eventually(Duration::from_secs(20), "HTTPRoute /a", || async {
        let (status, body) = http_get(addr, "/a/x", &[("host", HOST)]).await.ok()?;
        (status == 200 && body == "a /a/x").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", envoy.proc.log()));
    assert_eq!(
        envoy.listeners().await.unwrap(),
        vec![format!("0.0.0.0_{listen}")],
        "a listener per Gateway listener, named as Istio does"
    );
    let (status, body) = http_get(addr, "/b/y", &[("host", HOST)]).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "b /b/y"));

    // The RequestHeaderModifier of the `/a` rule applies to `/a` only.
    let seen_a = backends::seen(&a_log);
    assert!(!seen_a.is_empty());
    assert!(
        seen_a
            .iter()
            .all(|s| s.headers.get("x-route").is_some_and(|v| v == "to-a")),
        "x-route set on every request to a"
    );
    let seen_b = backends::seen(&b_log);
    assert_eq!(seen_b.len(), 1);
    assert!(seen_b[0].headers.get("x-route").is_none());

    // Neither path matches: no route; another host: Istio's 404 as well.
    let (status, _) = http_get(addr, "/c", &[("host", HOST)]).await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = http_get(addr, "/a", &[("host", "other.example.com")])
        .await
        .unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_api_http_route_delta() {
    gateway_api_traffic(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_api_http_route_sotw() {
    gateway_api_traffic(false).await;
}

fn tcp_mesh(listen: u16, denied: u16, db: u16) -> String {
    shoal_tests::service_with_endpoint("db", "data", "tcp", 5432, "127.0.0.2", db)
        + &format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: edge}}
spec:
  gatewayClassName: istio
  listeners:
  - {{name: tcp, port: {listen}, protocol: TCP}}
  - {{name: denied, port: {denied}, protocol: TCP, allowedRoutes: {{namespaces: {{from: All}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: db, namespace: edge}}
spec:
  parentRefs: [{{name: gw, sectionName: tcp}}]
  rules:
  - backendRefs: [{{name: db, namespace: data, port: 5432}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: denied, namespace: other}}
spec:
  parentRefs: [{{name: gw, namespace: edge, sectionName: denied}}]
  rules:
  - backendRefs: [{{name: db, namespace: data, port: 5432}}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: edge-db, namespace: data}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: edge}}]
  to: [{{group: "", kind: Service, name: db}}]
"#
        )
}

/// What the backend behind `127.0.0.1:port` greets a new connection with.
async fn greeting(port: u16) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_api_tcp_route_with_reference_grant() {
    let db_port = free_port("127.0.0.2");
    let _db = backends::tcp_echo(format!("127.0.0.2:{db_port}").parse().unwrap(), "db")
        .await
        .unwrap();
    let (listen, denied) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        tcp_mesh(listen, denied, db_port),
    )
    .unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "router~127.0.0.1~gw-istio-0.edge~edge.svc.cluster.local";
    let meta = serde_json::json!({ "LABELS": { "gateway.networking.k8s.io/gateway-name": "gw" } });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    eventually(Duration::from_secs(20), "TCPRoute to db", || async {
        (greeting(listen).await? == "db").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", envoy.proc.log()));
    // The route of a namespace the grant does not name has no valid backend: no chain, so
    // no listener.
    assert_eq!(
        envoy.listeners().await.unwrap(),
        vec![format!("0.0.0.0_{listen}")]
    );
}

const GRPC_HOST: &str = "grpc.example.com";

fn grpc_mesh(listen: u16, echo: u16, canary: u16) -> String {
    // `echo` speaks HTTP/2 by its port name, `canary` by its appProtocol.
    shoal_tests::service_with_endpoint("echo", "web", "grpc", 9000, "127.0.0.2", echo)
        + &format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: canary, namespace: web}}
spec:
  ports:
  - {{name: rpc, port: 9001, targetPort: {canary}, appProtocol: grpc}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: canary-1, namespace: web, labels: {{kubernetes.io/service-name: canary}}}}
addressType: IPv4
ports: [{{name: rpc, port: {canary}, appProtocol: grpc}}]
endpoints:
- addresses: [127.0.0.2]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: web}}
spec:
  gatewayClassName: istio
  listeners:
  - {{name: http, port: {listen}, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: echo, namespace: web}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{GRPC_HOST}]
  rules:
  - matches: [{{method: {{service: echo.Echo, method: Who}}}}]
    backendRefs: [{{name: echo, port: 9000}}]
  - matches:
    - method: {{service: echo.Echo, method: Who}}
      headers: [{{name: x-canary, value: "true"}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: x-route, value: canary}}]}}
    backendRefs: [{{name: canary, port: 9001}}]
  - matches: [{{method: {{type: RegularExpression, service: "other\\..*"}}}}]
    backendRefs: [{{name: canary, port: 9001}}]
"#
        )
}

/// Calls `path` (`/SERVICE/METHOD`, an empty message) through `addr` with `authority`:
/// the answer and its `x-route` response header, or the gRPC status.
async fn grpc_call(
    addr: SocketAddr,
    path: &str,
    metadata: &[(&'static str, &str)],
) -> anyhow::Result<Result<(String, Option<String>), tonic::Status>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .origin(format!("http://{GRPC_HOST}").parse()?)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await?;
    let mut req = tonic::Request::new(bytes::Bytes::new());
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse()?);
    }
    let path = http::uri::PathAndQuery::try_from(path.to_string())?;
    Ok(client
        .unary(req, path, shoal_api::codec::RawCodec)
        .await
        .map(|resp| {
            let route = resp
                .metadata()
                .get("x-route")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (String::from_utf8_lossy(resp.get_ref()).into_owned(), route)
        }))
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_api_grpc_route() {
    let (echo_port, canary_port) = (free_port("127.0.0.2"), free_port("127.0.0.2"));
    let _echo = backends::grpc(format!("127.0.0.2:{echo_port}").parse().unwrap(), "echo")
        .await
        .unwrap();
    let _canary = backends::grpc(
        format!("127.0.0.2:{canary_port}").parse().unwrap(),
        "canary",
    )
    .await
    .unwrap();
    let listen = free_port("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        grpc_mesh(listen, echo_port, canary_port),
    )
    .unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "router~127.0.0.1~gw-istio-0.web~web.svc.cluster.local";
    let meta = serde_json::json!({ "LABELS": { "gateway.networking.k8s.io/gateway-name": "gw" } });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();

    // Service and method match: the call reaches `echo` over HTTP/2 (gRPC over h2c).
    eventually(
        Duration::from_secs(20),
        "GRPCRoute echo.Echo/Who",
        || async {
            let (who, _) = grpc_call(addr, "/echo.Echo/Who", &[]).await.ok()?.ok()?;
            (who == "echo").then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", envoy.proc.log()));

    // The same method with a header match: the more specific rule, with its filter.
    let (who, route) = grpc_call(addr, "/echo.Echo/Who", &[("x-canary", "true")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((who.as_str(), route.as_deref()), ("canary", Some("canary")));

    // A regular expression on the service: routed to `canary`, which implements only
    // `/echo.Echo/Who` and answers UNIMPLEMENTED itself (Envoy says an upstream answered).
    let upstream = |s: &tonic::Status| s.metadata().get("x-envoy-upstream-service-time").is_some();
    let status = grpc_call(addr, "/other.Svc/Who", &[])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(upstream(&status), "{status:?}");

    // A method no rule matches: no route, Envoy's own 404, which it answers a gRPC request
    // as UNIMPLEMENTED; no upstream involved.
    let status = grpc_call(addr, "/echo.Echo/Other", &[])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(!upstream(&status), "{status:?}");
}
