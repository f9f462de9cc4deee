//! A synthetic mesh for benchmarks: services spread over namespaces, each with one
//! EndpointSlice; every tenth service has subsets, pods and a weighted VirtualService.

use std::fmt::Write;

/// The mesh as YAML: `(file name, text)` per service, so a change rewrites one file.
pub fn mesh(services: usize, endpoints_per_service: usize) -> Vec<(String, String)> {
    (0..services)
        .map(|i| {
            (
                format!("svc-{i}.yaml"),
                service(i, endpoints_per_service, 0),
            )
        })
        .collect()
}

fn ip(i: usize, e: usize) -> String {
    let n = i * 1000 + e;
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// One service's YAML; `extra` adds endpoints (to simulate a scale-up).
pub fn service(i: usize, endpoints: usize, extra: usize) -> String {
    let ns = format!("ns-{}", i % 10);
    let name = format!("svc-{i}");
    let mut y = String::new();
    let _ = write!(
        y,
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  clusterIP: 172.{}.{}.{}\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n",
        16 + (i >> 16) % 16,
        (i >> 8) & 255,
        i & 255
    );
    let _ = write!(
        y,
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-0, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n"
    );
    let subsets = i.is_multiple_of(10);
    for e in 0..endpoints + extra {
        let _ = writeln!(y, "- addresses: [{}]\n  zone: zone-{}", ip(i, e), e % 3);
        if subsets {
            let _ = writeln!(y, "  targetRef: {{kind: Pod, name: {name}-{e}}}");
        }
    }
    y.push_str("---\n");
    if subsets {
        for e in 0..endpoints + extra {
            let _ = write!(
                y,
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-{e}, namespace: {ns}, labels: {{app: {name}, version: v{}}}}}\nstatus: {{podIP: {}}}\n---\n",
                1 + e % 2,
                ip(i, e)
            );
        }
        let _ = write!(
            y,
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  host: {name}\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination: {{host: {name}, subset: v1}}\n      weight: 90\n    - destination: {{host: {name}, subset: v2}}\n      weight: 10\n---\n"
        );
    }
    y
}
