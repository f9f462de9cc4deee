use shoal_api::ResourceType;
use shoal_api::istio::federation::ExportedService;
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use crate::{MeshOptions, Translator, ViewKey};

const MESH: &str = r#"apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: private, namespace: shop, annotations: {networking.istio.io/exportTo: "."}}
spec:
  clusterIP: 10.96.0.11
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-1, namespace: shop, labels: {app: echo, version: v1, istio-locality: eu.eu-a}}
spec: {serviceAccountName: echo}
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata:
  name: echo-remote
  namespace: shop
  labels: {app: echo, topology.istio.io/cluster: east}
spec: {serviceAccountName: echo}
status: {phase: Running, podIP: 10.2.0.1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: shop, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.1.0.1]}, {addresses: [10.2.0.1]}]
"#;

fn exports() -> Vec<(String, ExportedService)> {
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", MESH));
    let options = MeshOptions {
        cluster_id: "west".into(),
        network: "net-west".into(),
        ..MeshOptions::default()
    };
    let out = Translator::new(store.snapshot(), options).build(&ViewKey::federation());
    out.resources
        .get(&ResourceType::Federation)
        .into_iter()
        .flatten()
        .map(|r| {
            let e = <ExportedService as prost::Message>::decode(r.body.clone()).expect("decodes");
            (r.name.to_string(), e)
        })
        .collect()
}

#[test]
fn public_services_are_exported_with_this_clusters_endpoints_only() {
    let got = exports();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["shop/echo.shop.svc.cluster.local"],
        "exportTo . stays home"
    );
    let e = &got[0].1;
    assert_eq!(e.cluster_id, "west");
    assert_eq!(e.ports[0].port, 80);
    assert_eq!(e.ports[0].protocol, "HTTP");
    // The endpoint a peer exported (cluster east) is not exported again.
    assert_eq!(e.endpoints.len(), 1, "{:?}", e.endpoints);
    let ep = &e.endpoints[0];
    assert_eq!(ep.address, "10.1.0.1");
    assert_eq!(ep.ports["http"], 8080);
    assert_eq!(ep.network, "net-west");
    assert_eq!(ep.locality, "eu/eu-a/");
    assert_eq!(ep.service_account, "echo");
    assert_eq!(ep.labels["version"], "v1");
}

#[test]
fn endpoints_on_other_networks_go_through_their_gateways() {
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", MULTI_NETWORK));
    let options = MeshOptions {
        network: "net-west".into(),
        network_gateways: [("net-east".to_string(), ("192.0.2.1".to_string(), 15443))].into(),
        ..MeshOptions::default()
    };
    let cla = echo_assignment(store, options);
    let got: Vec<String> = cla
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .map(|e| format!("{e:?}"))
        .collect();
    let text = got.join("\n");
    // Here: directly. net-east: its gateway, once, weighing both endpoints, with mTLS.
    // net-south has no gateway: left out.
    assert_eq!(got.len(), 2, "{text}");
    assert!(text.contains("10.1.0.1"), "{text}");
    assert!(
        text.contains("192.0.2.1") && text.contains("15443"),
        "{text}"
    );
    assert!(
        !text.contains("10.2.0.") && !text.contains("10.3.0.1"),
        "{text}"
    );
    let gateway = cla
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .find(|e| format!("{e:?}").contains("192.0.2.1"))
        .expect("the gateway endpoint");
    assert_eq!(gateway.load_balancing_weight.map(|w| w.value), Some(2));
    assert!(format!("{:?}", gateway.metadata).contains("istio"));
}

fn sidecar() -> crate::Proxy {
    use shoal_api::pb::envoy::config::core::v3::Node;
    crate::Proxy::from_node(Some(&Node {
        id: "sidecar~10.1.0.9~sleep-1.shop~shop.svc.cluster.local".into(),
        ..Default::default()
    }))
    .expect("a valid node")
}

#[test]
fn ztunnel_sees_a_federated_workload_in_its_own_cluster_and_network() {
    use shoal_api::istio::workload::{Address, address};
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", MESH));
    let options = MeshOptions {
        cluster_id: "west".into(),
        network: "net-west".into(),
        ..MeshOptions::default()
    };
    let out = Translator::new(store.snapshot(), options).build(&ViewKey::ztunnel());
    let addresses = &out.resources[&ResourceType::Address];
    let names: Vec<&str> = addresses.iter().map(|r| &*r.name).collect();
    let remote = addresses
        .iter()
        .find(|r| &*r.name == "east//Pod/shop/echo-remote")
        .unwrap_or_else(|| panic!("{names:?}"));
    let a = <Address as prost::Message>::decode(remote.body.clone()).expect("decodes");
    let Some(address::Type::Workload(w)) = a.r#type else {
        panic!("{a:?}");
    };
    assert_eq!(w.cluster_id, "east");
    assert!(names.contains(&"west//Pod/shop/echo-1"), "{names:?}");
}

/// Three networks: a pod here (net-west), two on net-east, one on net-south.
const MULTI_NETWORK: &str = r#"apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: here, namespace: shop, labels: {app: echo}}
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: east-1, namespace: shop, labels: {app: echo, topology.istio.io/network: net-east}}
status: {phase: Running, podIP: 10.2.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: east-2, namespace: shop, labels: {app: echo, topology.istio.io/network: net-east}}
status: {phase: Running, podIP: 10.2.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: south-1, namespace: shop, labels: {app: echo, topology.istio.io/network: net-south}}
status: {phase: Running, podIP: 10.3.0.1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: shop, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.1.0.1]
- addresses: [10.2.0.1]
- addresses: [10.2.0.2]
- addresses: [10.3.0.1]
"#;

fn echo_assignment(
    store: ConfigStore,
    options: MeshOptions,
) -> shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
    assignment(
        &store,
        options,
        &sidecar(),
        "outbound|80||echo.shop.svc.cluster.local",
    )
}

/// The assignment of `cluster` that `proxy` gets.
fn assignment(
    store: &ConfigStore,
    options: MeshOptions,
    proxy: &crate::Proxy,
    cluster: &str,
) -> shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
    let mut t = Translator::new(store.snapshot(), options);
    let key = ViewKey::for_proxy(t.model(), proxy);
    let out = t.build(&key);
    out.resources[&ResourceType::Endpoint]
        .iter()
        .find(|r| &*r.name == cluster)
        .map(|r| prost::Message::decode(r.body.clone()).expect("decodes"))
        .unwrap_or_else(|| panic!("no assignment {cluster}"))
}

#[test]
fn a_network_gateway_is_found_from_its_service() {
    let gateway = r#"apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels: {topology.istio.io/network: net-east}
spec:
  type: LoadBalancer
  ports: [{name: status-port, port: 15021}, {name: tls, port: 15443}]
status:
  loadBalancer: {ingress: [{ip: 192.0.2.7}]}
"#;
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", MULTI_NETWORK));
    store.apply("gw.yaml", parse_yaml("gw.yaml", gateway));
    let options = MeshOptions {
        network: "net-west".into(),
        ..MeshOptions::default()
    };
    let text = format!("{:?}", echo_assignment(store, options));
    assert!(
        text.contains("192.0.2.7") && text.contains("15443"),
        "{text}"
    );
    assert!(!text.contains("10.2.0."), "{text}");
}

/// The addresses of an assignment's endpoints, sorted.
fn addresses(
    cla: &shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment,
) -> Vec<String> {
    use shoal_api::pb::envoy::config::core::v3::address::Address;
    use shoal_api::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    let mut out: Vec<String> = cla
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(ep)) => match ep.address.as_ref()?.address.as_ref()? {
                Address::SocketAddress(sa) => {
                    Some(format!("{}:{:?}", sa.address, sa.port_specifier))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[test]
fn mesh_networks_place_unlabelled_endpoints_and_name_their_gateways() {
    // Without network labels: the cluster label (or this cluster) and the address decide.
    let pods = MULTI_NETWORK
        .replace(
            "topology.istio.io/network: net-east",
            "topology.istio.io/cluster: east",
        )
        .replace(
            "topology.istio.io/network: net-south",
            "topology.istio.io/cluster: far",
        )
        + r#"---
apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels: {topology.istio.io/cluster: south}
spec:
  type: LoadBalancer
  ports: [{name: tls, port: 15443}]
status:
  loadBalancer: {ingress: [{ip: 192.0.2.7}]}
"#;
    let networks = r#"networks:
  net-west:
    endpoints: [{fromRegistry: west}]
    gateways: [{registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local, port: 15443}]
  net-east:
    endpoints: [{fromRegistry: east}]
    gateways: [{address: 192.0.2.1, port: 15443}]
  net-south:
    endpoints: [{fromRegistry: south}, {fromCidr: 10.3.0.0/16}]
    gateways: [{registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local, port: 16443}]
"#;
    let (mesh_networks, warnings) = shoal_config::mesh_networks::parse(networks).expect("parses");
    assert!(warnings.is_empty(), "{warnings:?}");
    let options = MeshOptions {
        cluster_id: "west".into(),
        mesh_networks,
        ..MeshOptions::default()
    };
    assert_eq!(
        options.own_network(),
        "net-west",
        "fromRegistry names this cluster"
    );
    let store = || {
        let mut store = ConfigStore::new();
        store.apply("m.yaml", parse_yaml("m.yaml", &pods));
        store
    };
    // This cluster's endpoint directly; east's through its fixed gateway; the one of an
    // unlisted cluster by its address, through the gateway Service of the cluster that
    // network lists.
    let cla = echo_assignment(store(), options.clone());
    assert_eq!(
        addresses(&cla),
        [
            "10.1.0.1:Some(PortValue(8080))",
            "192.0.2.1:Some(PortValue(15443))",
            "192.0.2.7:Some(PortValue(16443))"
        ]
    );
    // The gateway Service of another cluster than the network lists does not count.
    let mut elsewhere = options.clone();
    if let Some(n) = elsewhere.mesh_networks.networks.get_mut("net-south") {
        n.registries = vec!["north".into()];
    }
    let got = addresses(&echo_assignment(store(), elsewhere));
    assert!(!got.iter().any(|a| a.starts_with("192.0.2.7")), "{got:?}");
    // A network label wins over MeshNetworks.
    let labelled = pods.replace(
        "topology.istio.io/cluster: far",
        "topology.istio.io/cluster: far, topology.istio.io/network: net-east",
    );
    let mut s = ConfigStore::new();
    s.apply("m.yaml", parse_yaml("m.yaml", &labelled));
    let got = addresses(&echo_assignment(s, options));
    assert_eq!(
        got,
        [
            "10.1.0.1:Some(PortValue(8080))",
            "192.0.2.1:Some(PortValue(15443))"
        ]
    );
}

/// The assignment of `cluster` for a sidecar in `eu/eu-a`.
fn assignment_in_eu(
    store: &ConfigStore,
    cluster: &str,
) -> shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
    use shoal_api::pb::envoy::config::core::v3::{Locality, Node};
    let proxy = crate::Proxy::from_node(Some(&Node {
        id: "sidecar~10.1.0.9~sleep-1.shop~shop.svc.cluster.local".into(),
        locality: Some(Locality {
            region: "eu".into(),
            zone: "eu-a".into(),
            ..Default::default()
        }),
        ..Default::default()
    }))
    .expect("a valid node");
    let options = MeshOptions {
        cluster_id: "west".into(),
        ..MeshOptions::default()
    };
    assignment(store, options, &proxy, cluster)
}

#[test]
fn subsets_split_by_cluster_and_failover_crosses_clusters_by_locality() {
    // east's endpoint as the importer makes it: its cluster and locality as labels.
    let remote = MESH.replace(
        "labels: {app: echo, topology.istio.io/cluster: east}",
        "labels: {app: echo, topology.istio.io/cluster: east, istio-locality: us.us-b}",
    );
    let rule = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: shop}
spec:
  host: echo.shop.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 10s, baseEjectionTime: 30s}
    loadBalancer:
      localityLbSetting:
        failover: [{from: eu, to: us}]
  subsets:
  - name: here
    labels: {topology.istio.io/cluster: west}
  - name: east
    labels: {topology.istio.io/cluster: east}
  - name: in-us
    labels: {topology.kubernetes.io/region: us}
"#;
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", &remote));
    store.apply("dr.yaml", parse_yaml("dr.yaml", rule));
    let ips = |cla: &shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment| {
        addresses(cla)
            .into_iter()
            .map(|a| a.split(':').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    // This cluster's own endpoints carry no cluster label: they are west's all the same.
    let here = assignment_in_eu(&store, "outbound|80|here|echo.shop.svc.cluster.local");
    assert_eq!(ips(&here), ["10.1.0.1"]);
    let east = assignment_in_eu(&store, "outbound|80|east|echo.shop.svc.cluster.local");
    assert_eq!(ips(&east), ["10.2.0.1"]);
    let us = assignment_in_eu(&store, "outbound|80|in-us|echo.shop.svc.cluster.local");
    assert_eq!(ips(&us), ["10.2.0.1"], "the region from the locality");
    // The whole service: the client's locality first, east's (us) as its failover.
    let all = assignment_in_eu(&store, "outbound|80||echo.shop.svc.cluster.local");
    let by_priority: Vec<(u32, String, Vec<String>)> = all
        .endpoints
        .iter()
        .map(|l| {
            let region = l
                .locality
                .as_ref()
                .map(|x| x.region.clone())
                .unwrap_or_default();
            let mut one = all.clone();
            one.endpoints = vec![l.clone()];
            (l.priority, region, ips(&one))
        })
        .collect();
    assert_eq!(
        by_priority,
        [
            (0, "eu".to_string(), vec!["10.1.0.1".to_string()]),
            (1, "us".to_string(), vec!["10.2.0.1".to_string()]),
        ],
        "{all:?}"
    );
}

#[test]
fn with_service_export_only_services_an_mcs_service_export_names_are_exported() {
    let options = MeshOptions {
        cluster_id: "west".into(),
        federation_export: crate::FederationExport::ServiceExport,
        ..MeshOptions::default()
    };
    let names = |extra: &str| -> Vec<String> {
        let mut store = ConfigStore::new();
        store.apply("m.yaml", parse_yaml("m.yaml", MESH));
        store.apply("x.yaml", parse_yaml("x.yaml", extra));
        let out = Translator::new(store.snapshot(), options.clone()).build(&ViewKey::federation());
        out.resources
            .get(&ResourceType::Federation)
            .into_iter()
            .flatten()
            .map(|r| r.name.to_string())
            .collect()
    };
    assert!(names("").is_empty(), "nothing without a ServiceExport");
    let export = |ns: &str, name: &str| {
        format!(
            "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: {name}, namespace: {ns}}}\n---\n"
        )
    };
    assert_eq!(
        names(&export("shop", "echo")),
        ["shop/echo.shop.svc.cluster.local"]
    );
    // One in another namespace, or for a Service kept home by exportTo, exports nothing.
    assert!(names(&(export("other", "echo") + &export("shop", "private"))).is_empty());
}

#[test]
fn a_service_made_from_a_peers_export_or_read_from_a_remote_cluster_is_not_exported() {
    let imported = "apiVersion: v1\nkind: Service\nmetadata: {name: far, namespace: shop, labels: {shoal.io/federated-from: east}}\nspec:\n  clusterIP: 10.97.0.9\n  ports: [{name: http, port: 80}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: remote, namespace: shop, labels: {topology.istio.io/cluster: north}}\nspec:\n  clusterIP: 10.98.0.9\n  ports: [{name: http, port: 80}]\n";
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", MESH));
    store.apply("f.yaml", parse_yaml("f.yaml", imported));
    let options = MeshOptions {
        cluster_id: "west".into(),
        ..MeshOptions::default()
    };
    let out = Translator::new(store.snapshot(), options).build(&ViewKey::federation());
    let names: Vec<String> = out
        .resources
        .get(&ResourceType::Federation)
        .into_iter()
        .flatten()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["shop/echo.shop.svc.cluster.local"]);
}
