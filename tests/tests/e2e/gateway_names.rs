//! Istio's names in a real Envoy gateway: a Gateway server on port 80 whose gateway Service
//! maps 80 to another target port listens on the target port, and its route configuration
//! is named after it (`http.TARGET`), as Istio names it; traffic flows through it.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::{Envoy, backends, eventually, free_port, http_get, start_shoal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_gateway_port_names_its_route_configuration_after_the_target() {
    let target = free_port("127.0.0.1");
    let backend_port = free_port("127.0.0.2");
    let _web = backends::http(
        format!("127.0.0.2:{backend_port}")
            .parse()
            .expect("address"),
        "web",
    )
    .await
    .expect("backend");
    let mesh =
        shoal_tests::service_with_endpoint("web", "app", "http", 8000, "127.0.0.2", backend_port)
            + &format!(
                r#"apiVersion: v1
kind: Service
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  ports: [{{name: http2, port: 80, targetPort: {target}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*/web.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: app}}
spec:
  hosts: [web.example.com]
  gateways: [istio-system/ingress]
  http: [{{route: [{{destination: {{host: web, port: {{number: 8000}}}}}}]}}]
"#
            );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("mesh.yaml"), mesh).expect("write");
    let shoal = start_shoal(dir.path(), &[]).await.expect("shoal");
    let node =
        "router~127.0.0.1~istio-ingressgateway-5d8f.istio-system~istio-system.svc.cluster.local";
    let meta =
        serde_json::json!({ "NAMESPACE": "istio-system", "LABELS": {"istio": "ingressgateway"} });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true)
        .await
        .expect("envoy")
    else {
        return;
    };
    let via: SocketAddr = format!("127.0.0.1:{target}").parse().expect("address");
    eventually(
        Duration::from_secs(20),
        "traffic on the target port",
        || async {
            let (status, body) = http_get(via, "/", &[("host", "web.example.com")])
                .await
                .ok()?;
            (status == 200 && body == "web").then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.log()));
    let dump = envoy.config_dump().await.expect("config dump").to_string();
    let listener = format!("\"name\":\"0.0.0.0_{target}\"");
    let route = format!("\"route_config_name\":\"http.{target}\"");
    assert!(dump.contains(&listener), "the listener on the target port");
    assert!(
        dump.contains(&route),
        "the route configuration named after it"
    );
    assert!(!dump.contains("\"http.80\""), "no http.80");
}
