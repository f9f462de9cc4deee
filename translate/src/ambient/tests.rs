use shoal_api::istio::workload::{Address, TunnelProtocol, address};
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

fn tunnel(out: &ViewOutput, uid: &str) -> TunnelProtocol {
    let r = addresses(out)
        .iter()
        .find(|r| &*r.name == uid)
        .unwrap_or_else(|| panic!("no {uid}"));
    let a = <Address as prost::Message>::decode(r.body.clone()).expect("decodes");
    match a.r#type {
        Some(address::Type::Workload(w)) => w.tunnel_protocol(),
        other => panic!("{other:?}"),
    }
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
