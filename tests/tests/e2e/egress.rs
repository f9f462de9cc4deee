//! Istio's egress-gateway task in its Gateway API form, with real Envoys: a sidecar's
//! traffic to an external host (a `ServiceEntry`) goes to the egress gateway because an
//! `HTTPRoute` whose parent is that ServiceEntry says so, and the egress gateway (a Gateway
//! of class `istio`) sends it on to the external host, named as an Istio `Hostname`
//! backend.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::backends;
use shoal_tests::{Envoy, eventually, free_port, http_get, start_shoal};

const EXTERNAL: &str = "api.external.test";

/// `external`: the external host's port (and the client sidecar's bound listener for it);
/// `backend`: where the external API really listens; `gateway`: the egress gateway's
/// listener.
fn mesh(external: u16, backend: u16, gateway: u16) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: egress}}
spec:
  hosts: [{EXTERNAL}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {external}, name: http, protocol: HTTP, targetPort: {backend}}}]
  endpoints: [{{address: 127.0.0.2}}]
---
apiVersion: v1
kind: Service
metadata: {{name: egress-istio, namespace: egress}}
spec:
  clusterIP: 10.96.50.1
  ports: [{{name: http, port: 80, targetPort: {gateway}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: egress-istio-1, namespace: egress, labels: {{kubernetes.io/service-name: egress-istio}}}}
addressType: IPv4
ports: [{{name: http, port: {gateway}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: egress, namespace: egress}}
spec:
  gatewayClassName: istio
  listeners:
  - {{name: http, hostname: {EXTERNAL}, port: {gateway}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: Same}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: direct-to-egress-gateway, namespace: egress}}
spec:
  parentRefs: [{{kind: ServiceEntry, group: networking.istio.io, name: api}}]
  rules:
  - backendRefs: [{{name: egress-istio, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: forward-from-egress-gateway, namespace: egress}}
spec:
  parentRefs: [{{name: egress}}]
  hostnames: [{EXTERNAL}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-egress, value: gateway}}]}}
    backendRefs: [{{kind: Hostname, group: networking.istio.io, name: {EXTERNAL}, port: {external}}}]
"#
    ) + &shoal_tests::bound_http_sidecar("client", external, &["*/*"])
}

#[tokio::test(flavor = "multi_thread")]
async fn external_traffic_leaves_through_the_egress_gateway() {
    let external = free_port("127.0.0.1");
    let gateway = free_port("127.0.0.1");
    let backend_port = free_port("127.0.0.2");
    let (_api, log) = backends::recording(
        format!("127.0.0.2:{backend_port}").parse().unwrap(),
        "api",
        false,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        mesh(external, backend_port, gateway),
    )
    .unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let gw_node = "router~127.0.0.1~egress-istio-0.egress~egress.svc.cluster.local";
    let gw_meta = serde_json::json!({
        "NAMESPACE": "egress",
        "LABELS": { "gateway.networking.k8s.io/gateway-name": "egress" },
    });
    let Some(gw) = Envoy::start(shoal.xds, gw_node, gw_meta, true)
        .await
        .unwrap()
    else {
        return;
    };
    let node = "sidecar~127.0.0.1~client-0.client~client.svc.cluster.local";
    let meta = serde_json::json!({ "NAMESPACE": "client", "INTERCEPTION_MODE": "NONE" });
    let Some(client) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };

    let via: SocketAddr = format!("127.0.0.1:{external}").parse().unwrap();
    let (status, body) = eventually(Duration::from_secs(20), "the external API", || async {
        http_get(via, "/v1/items", &[("host", EXTERNAL)])
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- client ---\n{}\n--- gateway ---\n{}",
            client.proc.log(),
            gw.proc.log()
        )
    });
    assert_eq!((status, body.as_str()), (200, "api /v1/items"));
    // Every request went through the egress gateway (its route set the header), none
    // straight from the sidecar.
    let seen = backends::seen(&log);
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(
            s.headers.get("x-egress").map(|v| v.to_str().unwrap()),
            Some("gateway"),
            "a request reached the external API without the egress gateway: {:?}",
            s.headers
        );
    }
    // The gateway's listener is the Gateway's, named as Istio names it.
    assert_eq!(
        gw.listeners().await.unwrap(),
        vec![format!("0.0.0.0_{gateway}")]
    );
}
