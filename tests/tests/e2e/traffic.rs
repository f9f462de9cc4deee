//! Real Envoy applying VirtualService HTTP route features that shoal translates: fault
//! injection (abort and delay), redirects, rewrites, mirroring, retries, direct responses,
//! header operations and CORS — each observed on the wire, at the client or the backend.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shoal_tests::backends::{self, seen};
use shoal_tests::{Envoy, http_get, start_shoal};
use shoal_tests::{eventually, free_port, free_port_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = "echo.app.svc.cluster.local";
const FLAKY: &str = "flaky.app.svc.cluster.local";

/// An HTTP Service of namespace `app` with one endpoint; every service shares the listener
/// port `port`.
fn service(name: &str, port: u16, ip: &str, target: u16) -> String {
    shoal_tests::service_with_endpoint(name, "app", "http", port, ip, target)
}

fn mesh(port: u16, echo: u16, shadow: u16, flaky: u16) -> String {
    let mut m = service("echo", port, "127.0.0.2", echo);
    m += &service("shadow", port, "127.0.0.3", shadow);
    m += &service("flaky", port, "127.0.0.4", flaky);
    m += r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: app}
spec:
  hosts: [echo]
  http:
  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: echo}}]
  - match: [{headers: {x-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /old/}}]
    redirect: {uri: /new, authority: moved.example}
  - match: [{uri: {prefix: /api/}}]
    rewrite: {uri: /v2/}
    route: [{destination: {host: echo}}]
  - match: [{uri: {exact: /mirror}}]
    mirror: {host: shadow}
    route: [{destination: {host: echo}}]
  - match: [{uri: {exact: /direct}}]
    directResponse: {status: 202, body: {string: done}}
  - match: [{uri: {exact: /headers}}]
    headers:
      request: {set: {x-set: one}, remove: [x-drop]}
      response: {set: {x-shoal: "yes"}}
    corsPolicy:
      allowOrigins: [{exact: "https://ok.example"}]
      allowMethods: [GET, PUT]
      maxAge: 60s
    route: [{destination: {host: echo}}]
  - route: [{destination: {host: echo}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky, namespace: app}
spec:
  hosts: [flaky]
  http:
  - match: [{headers: {x-retry: {exact: "off"}}}]
    retries: {attempts: 0}
    route: [{destination: {host: flaky}}]
  - retries: {attempts: 2, retryOn: "503"}
    route: [{destination: {host: flaky}}]
"#;
    m + &shoal_tests::bound_http_sidecar("app", port, &["./*"])
}

/// A raw HTTP/1.1 exchange (the shared client hides redirects' headers): status, headers
/// (names lowercased) and body.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn http_features(delta: bool) {
    let port = free_port("127.0.0.1");
    let (echo_port, shadow_port, flaky_port) = (
        free_port("127.0.0.2"),
        free_port("127.0.0.3"),
        free_port_on(&["127.0.0.4"]),
    );
    let (_echo, echo_log) = backends::recording(
        format!("127.0.0.2:{echo_port}").parse().unwrap(),
        "echo",
        false,
    )
    .await
    .unwrap();
    let (_shadow, shadow_log) = backends::recording(
        format!("127.0.0.3:{shadow_port}").parse().unwrap(),
        "shadow",
        false,
    )
    .await
    .unwrap();
    let (_flaky, flaky_log) = backends::recording(
        format!("127.0.0.4:{flaky_port}").parse().unwrap(),
        "flaky",
        true,
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        mesh(port, echo_port, shadow_port, flaky_port),
    )
    .unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app", "LABELS": { "app": "client" } });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, delta).await.unwrap() else {
        return;
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let host = ("host", ECHO);
    // The listener exists before its routes; wait until a plain request gets through.
    eventually(Duration::from_secs(20), "routes in envoy", || async {
        let _ = envoy.listeners().await.ok()?;
        let (status, body) = http_get(addr, "/", &[host]).await.ok()?;
        (status == 200 && body == "echo /").then_some(())
    })
    .await
    .unwrap();

    // Fault abort: 100 % of matching requests get 418 without reaching the backend.
    let before = seen(&echo_log).len();
    for _ in 0..5 {
        let (status, _) = http_get(addr, "/", &[host, ("x-fault", "abort")])
            .await
            .unwrap();
        assert_eq!(status, 418);
    }
    assert_eq!(
        seen(&echo_log).len(),
        before,
        "aborted requests reached the backend"
    );

    // Fault delay: 1 s added (generous bounds), while unfaulted requests stay fast.
    let start = Instant::now();
    let (status, body) = http_get(addr, "/", &[host, ("x-fault", "delay")])
        .await
        .unwrap();
    let delayed = start.elapsed();
    assert_eq!((status, body.as_str()), (200, "echo /"));
    assert!(delayed >= Duration::from_millis(900), "delay {delayed:?}");
    let start = Instant::now();
    http_get(addr, "/", &[host]).await.unwrap();
    assert!(
        start.elapsed() < delayed - Duration::from_millis(500),
        "plain request took {:?}",
        start.elapsed()
    );

    // Redirect: 301 (the default code) with the new authority and path.
    let (status, headers, _) = raw(addr, "GET", "/old/page", &[host]).await;
    assert_eq!(status, 301);
    assert_eq!(
        header(&headers, "location"),
        Some("http://moved.example/new")
    );

    // Rewrite: the matched prefix is replaced before the backend sees the path.
    let (status, body) = http_get(addr, "/api/items?q=1", &[host]).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "echo /v2/items?q=1"));
    assert_eq!(seen(&echo_log).last().unwrap().path, "/v2/items?q=1");

    // Mirror: the shadow service gets a copy; the client only sees the primary's answer.
    assert!(seen(&shadow_log).is_empty());
    let (status, body) = http_get(addr, "/mirror", &[host]).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "echo /mirror"));
    eventually(Duration::from_secs(5), "mirrored request", || async {
        seen(&shadow_log)
            .iter()
            .any(|s| s.path == "/mirror")
            .then_some(())
    })
    .await
    .unwrap();

    // Direct response: answered by Envoy.
    let (status, body) = http_get(addr, "/direct", &[host]).await.unwrap();
    assert_eq!((status, body.as_str()), (202, "done"));

    // Header operations: request headers set and removed upstream, response header set.
    let (status, headers, _) = raw(
        addr,
        "GET",
        "/headers",
        &[host, ("x-set", "zero"), ("x-drop", "gone")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-shoal"), Some("yes"));
    let last = seen(&echo_log).last().cloned().unwrap();
    assert_eq!(last.path, "/headers");
    assert_eq!(last.headers.get("x-set").unwrap(), "one");
    assert!(last.headers.get("x-drop").is_none());

    // CORS: Envoy answers an allowed preflight itself and refuses other origins.
    let preflight = |origin: &'static str| {
        [
            host,
            ("origin", origin),
            ("access-control-request-method", "PUT"),
        ]
    };
    let (status, headers, _) = raw(
        addr,
        "OPTIONS",
        "/headers",
        &preflight("https://ok.example"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://ok.example")
    );
    assert_eq!(
        header(&headers, "access-control-allow-methods"),
        Some("GET,PUT")
    );
    assert_eq!(header(&headers, "access-control-max-age"), Some("60"));
    let (_, headers, _) = raw(
        addr,
        "OPTIONS",
        "/headers",
        &preflight("https://evil.example"),
    )
    .await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);

    // Retries: the flaky backend fails every other request; with retries every request
    // succeeds, with `attempts: 0` half of them fail.
    let flaky = ("host", FLAKY);
    for _ in 0..6 {
        let (status, body) = http_get(addr, "/", &[flaky]).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "flaky /"));
    }
    assert!(
        seen(&flaky_log).len() >= 12,
        "retried attempts reached the backend"
    );
    let mut failed = 0;
    for _ in 0..6 {
        let (status, _) = http_get(addr, "/", &[flaky, ("x-retry", "off")])
            .await
            .unwrap();
        failed += usize::from(status == 503);
    }
    assert_eq!(failed, 3, "without retries every other request fails");

    // Shoal saw every response accepted.
    let syncz = shoal.json("/debug/syncz").await.unwrap();
    let stream = syncz
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node_id"] == node)
        .expect("proxy in syncz");
    for t in stream["types"].as_array().unwrap() {
        assert_eq!(t["nacks"], 0, "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_applies_http_route_features() {
    http_features(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw_applies_http_route_features() {
    http_features(false).await;
}
