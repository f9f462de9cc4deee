use shoal_api::istio::federation::{ExportedEndpoint, ExportedService, ServicePort};
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use super::{Peer, objects};

fn export() -> ExportedService {
    ExportedService {
        hostname: "echo.shop.svc.cluster.local".into(),
        namespace: "shop".into(),
        name: "echo".into(),
        ports: vec![ServicePort {
            name: "http".into(),
            port: 80,
            protocol: "HTTP".into(),
        }],
        endpoints: vec![ExportedEndpoint {
            address: "10.2.0.1".into(),
            ports: [("http".to_string(), 8080)].into(),
            network: "net-east".into(),
            locality: "us/us-b/".into(),
            service_account: "echo".into(),
            healthy: true,
            labels: [
                ("app".to_string(), "echo".to_string()),
                ("version".to_string(), "v2".to_string()),
            ]
            .into(),
            istio_tls: true,
            workload: "echo-7f9".into(),
        }],
        cluster_id: "east".into(),
        addresses: vec!["not-an-address".into(), "10.97.0.10".into()],
    }
}

#[test]
fn peers_are_name_equals_address() {
    assert_eq!(
        Peer::parse("east=10.0.0.1:15012"),
        Ok(Peer {
            name: "east".into(),
            addr: "10.0.0.1:15012".into()
        })
    );
    for bad in [
        "east",
        "East=1.2.3.4:1",
        "east=1.2.3.4",
        "east=:80",
        "east=h:99999",
    ] {
        assert!(Peer::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_export_becomes_a_valid_slice_and_pods_with_the_remote_workloads_place() {
    let text = objects("east", &export());
    let docs = parse_yaml("federation/east/shop/echo", &text);
    let mut store = ConfigStore::new();
    store.apply("federation/east/shop/echo", docs);
    let errors: Vec<_> = store
        .issues()
        .into_iter()
        .filter(|i| i.severity == shoal_config::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{text}");
    let snap = store.snapshot();
    assert_eq!(snap.of_kind(shoal_config::Kind::EndpointSlice).count(), 1);
    let pods: Vec<_> = snap.of_kind(shoal_config::Kind::Pod).collect();
    assert_eq!(pods.len(), 1);
    let labels = &pods[0].1.object.meta().labels;
    assert_eq!(labels.get("topology.istio.io/cluster"), Some("east"));
    assert_eq!(labels.get("topology.istio.io/network"), Some("net-east"));
    assert_eq!(labels.get("istio-locality"), Some("us.us-b"));
    assert_eq!(labels.get("security.istio.io/tlsMode"), Some("istio"));
    assert_eq!(labels.get("version"), Some("v2"));
}

#[test]
fn the_peers_service_counts_only_where_this_cluster_has_none() {
    use shoal_config::{Kind, Object, ObjectKey, Precedence};
    let key = ObjectKey::new(Kind::Service, "shop", "echo");
    let source = "federation/east/shop/echo.shop.svc.cluster.local";
    let imported = || parse_yaml(source, &objects("east", &export()));
    // Only the peer has it: its Service, with its cluster IP, is the mesh's.
    let mut store = ConfigStore::new();
    store.apply_at(source, imported(), Precedence::Fallback);
    let snap = store.snapshot();
    let Some(Object::Service(svc)) = snap.get(&key).map(|e| e.object.as_ref()) else {
        panic!("no Service")
    };
    assert_eq!(svc.spec.cluster_ip.as_deref(), Some("10.97.0.10"));
    assert!(store.issues().is_empty(), "{:?}", store.issues());
    // This cluster's own Service wins, quietly, whichever came first; the peer's endpoints
    // still join it.
    let local = "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80}]\n";
    for local_first in [true, false] {
        let mut store = ConfigStore::new();
        if local_first {
            store.apply("local.yaml", parse_yaml("local.yaml", local));
        }
        store.apply_at(source, imported(), Precedence::Fallback);
        if !local_first {
            store.apply("local.yaml", parse_yaml("local.yaml", local));
        }
        let snap = store.snapshot();
        let Some(Object::Service(svc)) = snap.get(&key).map(|e| e.object.as_ref()) else {
            panic!("no Service")
        };
        assert_eq!(svc.spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert!(store.issues().is_empty(), "{:?}", store.issues());
        assert_eq!(snap.of_kind(Kind::EndpointSlice).count(), 1);
    }
}
