use shoal_api::istio::workload::{
    Address, GatewayAddress, NetworkAddress, TunnelProtocol, Workload, address, gateway_address,
};
use shoal_api::{Resource, ResourceType};
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use crate::{MeshOptions, Translator, ViewKey, ViewOutput};

fn pod(ns: &str, name: &str, ip: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\nspec: {{nodeName: n1}}\nstatus: {{phase: Running, podIP: {ip}}}\n---\n"
    )
}

fn namespace(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n---\n"
    )
}

fn ztunnel_view(docs: &[String]) -> ViewOutput {
    let mut store = ConfigStore::new();
    store.apply("c.yaml", parse_yaml("c.yaml", &docs.concat()));
    Translator::new(store.snapshot(), MeshOptions::default()).build(&ViewKey::ztunnel())
}

fn addresses(out: &ViewOutput) -> &[Resource] {
    out.resources
        .get(&ResourceType::Address)
        .map_or(&[], Vec::as_slice)
}

fn workload(out: &ViewOutput, uid: &str) -> Workload {
    let r = addresses(out)
        .iter()
        .find(|r| &*r.name == uid)
        .unwrap_or_else(|| panic!("no {uid}"));
    let a = <Address as prost::Message>::decode(r.body.clone()).expect("decodes");
    match a.r#type {
        Some(address::Type::Workload(w)) => w,
        other => panic!("{other:?}"),
    }
}

fn tunnel(out: &ViewOutput, uid: &str) -> TunnelProtocol {
    workload(out, uid).tunnel_protocol()
}

#[test]
fn ambient_enrolment_follows_istio_labels() {
    let out = ztunnel_view(&[
        namespace("amb", "istio.io/dataplane-mode: ambient"),
        namespace("plain", ""),
        pod("amb", "in", "10.0.0.1", "app: a"),
        pod("amb", "out", "10.0.0.2", "istio.io/dataplane-mode: none"),
        pod(
            "amb",
            "sidecar",
            "10.0.0.3",
            "security.istio.io/tlsMode: istio",
        ),
        pod(
            "plain",
            "own",
            "10.0.0.4",
            "istio.io/dataplane-mode: ambient",
        ),
        pod("plain", "not", "10.0.0.5", "app: b"),
    ]);
    let uid = |ns: &str, name: &str| format!("Kubernetes//Pod/{ns}/{name}");
    assert_eq!(tunnel(&out, &uid("amb", "in")), TunnelProtocol::Hbone);
    assert_eq!(tunnel(&out, &uid("amb", "out")), TunnelProtocol::None);
    assert_eq!(tunnel(&out, &uid("amb", "sidecar")), TunnelProtocol::None);
    assert_eq!(tunnel(&out, &uid("plain", "own")), TunnelProtocol::Hbone);
    assert_eq!(tunnel(&out, &uid("plain", "not")), TunnelProtocol::None);
}

#[test]
fn a_pod_change_changes_its_address_only_and_aliases_follow() {
    let base = vec![
        namespace("amb", "istio.io/dataplane-mode: ambient"),
        pod("amb", "a", "10.0.0.1", "app: a"),
        pod("amb", "b", "10.0.0.2", "app: b"),
    ];
    let before = ztunnel_view(&base);
    let mut changed = base.clone();
    changed[2] = pod("amb", "b", "10.0.0.2", "app: b, version: v2");
    let after = ztunnel_view(&changed);
    let versions = |out: &ViewOutput| {
        addresses(out)
            .iter()
            .map(|r| (r.name.to_string(), r.version))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (b, a) = (versions(&before), versions(&after));
    assert_eq!(b.keys().collect::<Vec<_>>(), a.keys().collect::<Vec<_>>());
    let differ: Vec<&String> = b.keys().filter(|k| b[*k] != a[*k]).collect();
    assert_eq!(differ, vec!["Kubernetes//Pod/amb/b"]);
    // The address alias serves the same body on demand.
    let alias = after.on_demand[&ResourceType::Address]
        .iter()
        .find(|r| &*r.name == "/10.0.0.2")
        .expect("alias");
    assert_eq!(alias.version, a["Kubernetes//Pod/amb/b"]);
}

#[test]
fn a_host_network_pod_is_not_captured_nor_found_by_address() {
    let host = "apiVersion: v1\nkind: Pod\nmetadata: {name: agent, namespace: amb}\nspec: {nodeName: n1, hostNetwork: true}\nstatus: {phase: Running, podIP: 192.168.0.4}\n---\n".to_string();
    let out = ztunnel_view(&[namespace("amb", "istio.io/dataplane-mode: ambient"), host]);
    assert_eq!(
        tunnel(&out, "Kubernetes//Pod/amb/agent"),
        TunnelProtocol::None
    );
    let aliases = out.on_demand.get(&ResourceType::Address);
    assert!(
        aliases.is_none_or(|a| a.iter().all(|r| &*r.name != "/192.168.0.4")),
        "{aliases:?}"
    );
}

#[test]
fn workloads_on_other_networks_name_their_networks_hbone_gateway() {
    // net-east's gateway takes HBONE (port 15008 on its Service); net-south's takes
    // sidecars' mTLS only, so ztunnels get no way there; this cluster's own workloads
    // (net-west, from --network) need none.
    let gateway = |network: &str, ip: &str, ports: &str| {
        let cluster_ip = ip.replace("192.0.2.", "10.96.0.");
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: ew-{network}, namespace: istio-system, labels: {{topology.istio.io/network: {network}}}}}\nspec:\n  type: LoadBalancer\n  clusterIP: {cluster_ip}\n  ports: [{ports}]\nstatus: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n---\n"
        )
    };
    let entry = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm, namespace: amb}\nspec: {address: 10.9.0.1, labels: {topology.istio.io/network: net-east}}\n---\n";
    let docs = [
        namespace("amb", "istio.io/dataplane-mode: ambient"),
        pod("amb", "here", "10.0.0.1", "app: a"),
        pod(
            "amb",
            "east",
            "10.1.0.1",
            "topology.istio.io/network: net-east",
        ),
        pod(
            "amb",
            "south",
            "10.2.0.1",
            "topology.istio.io/network: net-south",
        ),
        gateway(
            "net-east",
            "192.0.2.1",
            "{name: tls, port: 15443}, {name: hbone, port: 15008}",
        ),
        gateway("net-south", "192.0.2.2", "{name: tls, port: 15443}"),
        entry.to_string(),
    ];
    let mut store = ConfigStore::new();
    store.apply("c.yaml", parse_yaml("c.yaml", &docs.concat()));
    assert!(store.issues().is_empty(), "{:?}", store.issues());
    let options = MeshOptions {
        network: "net-west".into(),
        ..MeshOptions::default()
    };
    let out = Translator::new(store.snapshot(), options).build(&ViewKey::ztunnel());
    let via_east = Some(GatewayAddress {
        destination: Some(gateway_address::Destination::Address(NetworkAddress {
            network: "net-east".into(),
            address: vec![192, 0, 2, 1],
        })),
        hbone_mtls_port: 15008,
    });
    let east = workload(&out, "Kubernetes//Pod/amb/east");
    assert_eq!(
        (east.network.as_str(), &east.network_gateway),
        ("net-east", &via_east)
    );
    let vm = workload(&out, "Kubernetes/networking.istio.io/WorkloadEntry/amb/vm");
    assert_eq!(
        (vm.network.as_str(), &vm.network_gateway),
        ("net-east", &via_east)
    );
    let south = workload(&out, "Kubernetes//Pod/amb/south");
    assert_eq!(
        (south.network.as_str(), south.network_gateway),
        ("net-south", None)
    );
    let here = workload(&out, "Kubernetes//Pod/amb/here");
    assert_eq!(
        (here.network.as_str(), here.network_gateway),
        ("net-west", None)
    );
}
