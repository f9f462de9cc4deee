//! Proxies without traffic capture (`INTERCEPTION_MODE: NONE`), whatever services share
//! whatever ports: a listener bound to `127.0.0.1` for every port in scope that is not UDP,
//! nothing captured, and no reference left dangling (every route config a listener names
//! is served, every one served is named, every TCP cluster exists).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use prost::Message;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::config::core::v3::{Node, address::Address, socket_address};
use shoal_api::pb::envoy::config::listener::v3::{Listener, filter::ConfigType};
use shoal_api::pb::envoy::config::route::v3::RouteConfiguration;
use shoal_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use shoal_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind};
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;
use shoal_translate::{MeshOptions, Proxy, Translator, ViewKey, ViewOutput};

const PORTS: [u16; 3] = [15080, 15081, 15432];
/// Port names and what they declare: HTTP, gRPC, TCP, Mongo, nothing (sniffed), UDP.
const NAMES: [&str; 6] = ["http", "grpc", "tcp", "mongo", "legacy", "udp"];
/// The port a Sidecar's egress listener binds when the case has one.
const SIDECAR_PORT: u16 = 15081;

/// A service: its namespace (`app` or `other`) and its ports (port, name index).
type Svc = (bool, Vec<(u16, usize)>);

fn mesh(services: &[Svc], sidecar: bool) -> String {
    let mut out = String::new();
    for (i, (other, ports)) in services.iter().enumerate() {
        let ns = if *other { "other" } else { "app" };
        let mut seen = BTreeSet::new();
        let ports: Vec<String> = ports
            .iter()
            .filter(|(p, _)| seen.insert(*p))
            .map(|(p, n)| {
                let name = NAMES[*n];
                let proto = if name == "udp" { ", protocol: UDP" } else { "" };
                format!("{{name: {name}-{p}, port: {p}, targetPort: {p}{proto}}}")
            })
            .collect();
        out += &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: {ns}}}\nspec:\n  ports: [{}]\n---\n",
            ports.join(", ")
        );
    }
    if sidecar {
        out += &format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: app}}\nspec:\n  egress:\n  - port: {{number: {SIDECAR_PORT}, protocol: TCP, name: tcp}}\n    hosts: [\"./*\"]\n  - hosts: [\"*/*\"]\n---\n"
        );
    }
    out
}

fn view(config: &str) -> ViewOutput {
    let mut store = ConfigStore::new();
    store.apply("mesh.yaml", parse_yaml("mesh.yaml", config));
    let mut tr = Translator::new(store.snapshot(), MeshOptions::default());
    let meta = |v: &str| Value {
        kind: Some(Kind::StringValue(v.into())),
    };
    let node = Node {
        id: "sidecar~10.0.0.9~client-0.app~app.svc.cluster.local".into(),
        metadata: Some(Struct {
            fields: [("INTERCEPTION_MODE".to_string(), meta("NONE"))].into(),
        }),
        ..Default::default()
    };
    let key = ViewKey::for_proxy(tr.model(), &Proxy::from_node(Some(&node)).unwrap());
    let out = tr.build(&key);
    assert_eq!(out, tr.build(&key), "the same view twice");
    out
}

fn names(out: &ViewOutput, ty: ResourceType) -> BTreeSet<String> {
    out.resources
        .get(&ty)
        .into_iter()
        .flatten()
        .map(|r| r.name.to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_port_is_bound_and_every_reference_resolves(
        services in prop::collection::vec(
            (any::<bool>(), prop::collection::vec((prop::sample::select(PORTS.to_vec()), 0..NAMES.len()), 1..3)),
            0..5,
        ),
        sidecar in any::<bool>(),
    ) {
        let out = view(&mesh(&services, sidecar));
        let clusters = names(&out, ResourceType::Cluster);
        let routes = names(&out, ResourceType::Route);
        let mut want: BTreeSet<String> = services
            .iter()
            .flat_map(|(_, ports)| {
                let mut seen = BTreeSet::new();
                ports
                    .iter()
                    .filter(move |(p, _)| seen.insert(*p))
                    .filter(|(_, n)| NAMES[*n] != "udp")
                    .map(|(p, _)| format!("127.0.0.1_{p}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        if sidecar {
            want.insert(format!("127.0.0.1_{SIDECAR_PORT}"));
        }
        let mut named_routes = BTreeSet::new();
        let mut got = BTreeSet::new();
        for r in out.resources.get(&ResourceType::Listener).into_iter().flatten() {
            let l = Listener::decode(r.body.clone()).unwrap();
            prop_assert_ne!(l.bind_to_port.map(|b| b.value), Some(false), "{}", l.name);
            let Some(Address::SocketAddress(a)) = l.address.and_then(|a| a.address) else {
                panic!("{}: no socket address", l.name);
            };
            let Some(socket_address::PortSpecifier::PortValue(port)) = a.port_specifier else {
                panic!("{}: no port", l.name);
            };
            prop_assert_eq!(format!("{}_{port}", a.address), l.name.clone());
            prop_assert_eq!(a.address.as_str(), "127.0.0.1");
            for f in l.filter_chains.iter().flat_map(|c| &c.filters) {
                let Some(ConfigType::TypedConfig(any)) = &f.config_type else { continue };
                if any.type_url.ends_with("HttpConnectionManager") {
                    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
                    if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
                        named_routes.insert(rds.route_config_name);
                    }
                } else if any.type_url.ends_with("TcpProxy") {
                    let tp = TcpProxy::decode(any.value.as_slice()).unwrap();
                    let Some(tcp_proxy::ClusterSpecifier::Cluster(c)) = tp.cluster_specifier else {
                        panic!("{}: tcp_proxy without a cluster", l.name);
                    };
                    prop_assert!(clusters.contains(&c), "{}: no cluster {c}", l.name);
                }
            }
            got.insert(l.name);
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(&named_routes, &routes);
        // A port of HTTP services only: each of them has its virtual host in `PORT`.
        for port in PORTS {
            let on_port: Vec<(usize, &str)> = services
                .iter()
                .enumerate()
                .filter_map(|(i, (_, ports))| {
                    ports.iter().find(|(p, _)| *p == port).map(|(_, n)| (i, NAMES[*n]))
                })
                .collect();
            let all_http = on_port.iter().all(|(_, n)| matches!(*n, "http" | "grpc"));
            if on_port.is_empty() || !all_http || (sidecar && port == SIDECAR_PORT) {
                continue;
            }
            let rc = out.resources[&ResourceType::Route]
                .iter()
                .find(|r| *r.name == *port.to_string())
                .map(|r| RouteConfiguration::decode(r.body.clone()).unwrap())
                .expect("route config PORT");
            for (i, _) in on_port {
                let ns = if services[i].0 { "other" } else { "app" };
                let domain = format!("s{i}.{ns}.svc.cluster.local:{port}");
                prop_assert!(
                    rc.virtual_hosts.iter().any(|v| v.domains.contains(&domain)),
                    "{domain} in route config {port}"
                );
            }
        }
    }
}
