use crate::parse::{Outcome, parse_yaml};

fn errors(yaml: &str) -> Vec<String> {
    parse_yaml("t.yaml", yaml)
        .into_iter()
        .flat_map(|d| match d.outcome {
            Outcome::Rejected { issues, .. } => issues
                .into_iter()
                .map(|i| format!("{}: {}", i.field, i.message))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: ns}}\nspec:\n{spec}"
    )
}

#[test]
fn virtual_service_rules() {
    assert!(
        errors(&vs(
            "  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n"
        ))
        .is_empty()
    );
    let e = errors(&vs("  hosts: []\n"));
    assert_eq!(e, vec!["spec.hosts: at least one host is required"]);
    let e = errors(&vs(
        "  hosts: ['*']\n  http:\n  - route:\n    - destination: {host: a}\n",
    ));
    assert!(e[0].contains("not allowed"), "{e:?}");
    let e = errors(&vs(
        "  hosts: [a]\n  http:\n  - match:\n    - uri: {regex: '(unclosed'}\n    route:\n    - destination: {host: a}\n",
    ));
    assert!(
        e[0].starts_with("spec.http[0].match[0].uri.regex: invalid regex"),
        "{e:?}"
    );
    let e = errors(&vs(
        "  hosts: [a]\n  http:\n  - match:\n    - headers: {X-User: {exact: j}}\n    route:\n    - destination: {host: a}\n",
    ));
    assert_eq!(
        e,
        vec!["spec.http[0].match[0].headers.X-User: header names must be lowercase"]
    );
    let e = errors(&vs(
        "  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a, subset: v1}\n      weight: 0\n    - destination: {host: a, subset: v2}\n      weight: 0\n",
    ));
    assert!(e[0].contains("sum to 0"), "{e:?}");
    let e = errors(&vs(
        "  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a, port: {number: 70000}}\n      weight: -1\n",
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    let e = errors(&vs(
        "  hosts: [a]\n  http:\n  - timeout: 5parsecs\n    retries: {attempts: 3, perTryTimeout: 0s, retryOn: 'gateway-error,bogus'}\n    route:\n    - destination: {host: a}\n",
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    let e = errors(&vs(
        "  hosts: [a]\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n",
    ));
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn service_entry_rules() {
    let se = |spec: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se}}\nspec:\n{spec}"
        )
    };
    assert!(errors(&se("  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: DNS\n")).is_empty());
    let e = errors(&se(
        "  hosts: [db.internal]\n  ports: [{number: 5432, name: pg, protocol: TCP}]\n  resolution: STATIC\n  endpoints:\n  - address: db.example.com\n    ports: {nope: 1}\n",
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    let e = errors(&se(
        "  hosts: ['*']\n  ports: [{number: 1, name: a, protocol: UDP}, {number: 1, name: a}]\n",
    ));
    assert_eq!(e.len(), 4, "{e:?}");
    let e = errors(&se("  hosts: [a.b]\n  resolution: SOMETIMES\n"));
    assert!(e[0].starts_with("spec.resolution"), "{e:?}");
}

#[test]
fn sidecar_rules() {
    let sc = |spec: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s}}\nspec:\n{spec}"
        )
    };
    assert!(errors(&sc("  egress:\n  - port: {number: 9080, protocol: HTTP}\n    bind: 127.0.0.1\n    captureMode: NONE\n    hosts: ['./*']\n  - hosts: ['istio-system/*']\n")).is_empty());
    let e = errors(&sc(
        "  egress:\n  - hosts: ['*/*']\n  - port: {number: 80}\n    bind: not-an-ip\n    hosts: [noslash]\n",
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(!errors(&sc("  egress: []\n")).is_empty());
}

#[test]
fn destination_rule_and_kubernetes_rules() {
    let e = errors(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  subsets: [{name: V1}]\n  trafficPolicy: {loadBalancer: {simple: FASTEST}}\n",
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.trafficPolicy.loadBalancer.simple")),
        "{e:?}"
    );
    let e = errors(
        "apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\nspec:\n  clusterIP: 10.0.0.1\n  ports: [{port: 80}, {port: 80, name: b}]\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
    let e = errors(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: x}}\naddressType: IPv4\nendpoints: [{addresses: ['::1']}]\nports: [{port: 0}]\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn a_workload_entry_network_is_reported_as_not_supported() {
    let f = support::findings(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm, namespace: ns}\nspec:\n  address: 10.0.0.1\n  network: vm-net\n",
    );
    assert!(
        support::has(&f, "warning spec.network: not supported yet"),
        "{f:#?}"
    );
}

mod gateway;
mod security;
pub(crate) mod support;
mod traffic_policy;
mod virtual_service;

#[test]
fn a_service_without_an_address_warns_for_ports_only_the_wildcard_listener_reaches() {
    let svc = |spec: &str| {
        support::findings(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: ns}}\nspec:\n{spec}"
        ))
    };
    let f = svc(
        "  ports:\n  - {name: tcp-db, port: 5432}\n  - {name: http-web, port: 80}\n  - {name: tls, port: 443}\n  - {name: grpc, port: 9000, appProtocol: grpc}\n  - {name: sniffed, port: 7000}\n",
    );
    let warned: Vec<&String> = f.iter().filter(|m| m.contains("no clusterIP")).collect();
    assert_eq!(warned.len(), 2, "{f:#?}");
    assert!(
        support::has(
            &f,
            "warning spec.ports[0]: no clusterIP: port 5432 is reached only through the listener 0.0.0.0_5432"
        ),
        "{f:#?}"
    );
    assert!(
        support::has(&f, "warning spec.ports[4]: no clusterIP: port 7000"),
        "{f:#?}"
    );
    // An address, a headless Service or an ExternalName: nothing to say.
    for spec in [
        "  clusterIP: 10.0.0.1\n  ports: [{name: tcp, port: 5432}]\n",
        "  clusterIP: None\n  ports: [{name: tcp, port: 5432}]\n",
        "  clusterIPs: [10.0.0.1]\n  ports: [{name: tcp, port: 5432}]\n",
        "  type: ExternalName\n  externalName: db.example.com\n  ports: [{name: tcp, port: 5432}]\n",
    ] {
        let f = svc(spec);
        assert!(
            !f.iter().any(|m| m.contains("no clusterIP")),
            "{spec}: {f:#?}"
        );
    }
}
