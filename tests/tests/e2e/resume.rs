//! Delta resume across two shoal processes on the same config: equal config gives equal
//! versions, and a client reconnecting to the other process with its
//! `initial_resource_versions` receives exactly what changed and removals for what was
//! deleted — nothing it already holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use shoal_api::type_url;
use shoal_tests::eventually;
use shoal_tests::start_shoal;
use shoal_tests::xds::{DeltaStream, node};

const NODE: &str = "sidecar~10.0.0.99~client-1.shop~shop.svc.cluster.local";

fn service(name: &str, ips: &[&str]) -> String {
    let eps: String = ips
        .iter()
        .map(|ip| format!("- addresses: [{ip}]\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{eps}---\n"
    )
}

type State = BTreeMap<&'static str, BTreeMap<String, String>>;

/// What the client holds per type.
fn apply(state: &mut State, ty: &'static str, r: &DeltaDiscoveryResponse) {
    let m = state.entry(ty).or_default();
    for res in &r.resources {
        m.insert(res.name.clone(), res.version.clone());
    }
    for n in &r.removed_resources {
        m.remove(n);
    }
}

fn req(
    ty: &str,
    subscribe: Vec<String>,
    initial: HashMap<String, String>,
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(node(NODE)),
        type_url: ty.into(),
        resource_names_subscribe: subscribe,
        initial_resource_versions: initial,
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

const TYPES: [(&str, &str); 4] = [
    ("CDS", type_url::CLUSTER),
    ("EDS", type_url::ENDPOINT),
    ("LDS", type_url::LISTENER),
    ("RDS", type_url::ROUTE),
];

/// Subscribes like Envoy would and returns every type's first response, ACKing each.
async fn session(
    addr: SocketAddr,
    held: &State,
    eds: &[String],
) -> (State, BTreeMap<&'static str, DeltaDiscoveryResponse>) {
    let initial = |ty: &str| {
        held.get(ty)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let mut s = DeltaStream::open(addr, req(type_url::CLUSTER, vec![], initial("CDS"), ""))
        .await
        .unwrap();
    s.send(req(type_url::ENDPOINT, eds.to_vec(), initial("EDS"), ""))
        .await
        .unwrap();
    s.send(req(type_url::LISTENER, vec![], initial("LDS"), ""))
        .await
        .unwrap();
    s.send(req(type_url::ROUTE, vec!["80".into()], initial("RDS"), ""))
        .await
        .unwrap();
    let mut state = held.clone();
    let mut first = BTreeMap::new();
    while first.len() < 4 {
        let r = s
            .recv(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("a response per type");
        let (ty, _) = TYPES.iter().find(|(_, u)| *u == r.type_url).unwrap();
        apply(&mut state, ty, &r);
        s.send(req(&r.type_url, vec![], HashMap::new(), &r.nonce))
            .await
            .unwrap();
        first.entry(*ty).or_insert(r);
    }
    // A plain ACK gets no reply.
    assert!(s.recv(Duration::from_millis(300)).await.unwrap().is_none());
    (state, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_replica_sends_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(
        &file,
        service("cart", &["10.1.0.1"])
            + &service("pay", &["10.1.0.2"])
            + &service("gone", &["10.1.0.3"]),
    )
    .unwrap();
    let a = start_shoal(dir.path(), &["--debounce", "10ms"])
        .await
        .unwrap();
    let b = start_shoal(dir.path(), &["--debounce", "10ms"])
        .await
        .unwrap();

    let eds: Vec<String> = ["cart", "pay", "gone"]
        .iter()
        .map(|s| format!("outbound|80||{s}.shop.svc.cluster.local"))
        .collect();
    let (held, _) = session(a.xds, &State::new(), &eds).await;
    // Equal config, equal versions, in both processes.
    let (on_b, _) = session(b.xds, &State::new(), &eds).await;
    assert_eq!(held, on_b);
    assert!(
        held["CDS"].len() >= 3 && held["EDS"].len() == 3 && !held["RDS"].is_empty(),
        "{held:#?}"
    );

    // Change the config under both: one service gone, one with a new endpoint.
    let (ra, rb) = (a.revision().await.unwrap(), b.revision().await.unwrap());
    std::fs::write(
        &file,
        service("cart", &["10.1.0.1", "10.1.0.7"]) + &service("pay", &["10.1.0.2"]),
    )
    .unwrap();
    eventually(
        Duration::from_secs(15),
        "both replicas to reload",
        || async { (a.revision().await.ok()? > ra && b.revision().await.ok()? > rb).then_some(()) },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The full new state, from a fresh client of A.
    let (fresh, _) = session(a.xds, &State::new(), &eds).await;
    // The client that held the old state resumes on B.
    let (resumed, first) = session(b.xds, &held, &eds).await;
    assert_eq!(
        resumed, fresh,
        "the resumed client holds exactly the new state"
    );
    for (ty, r) in &first {
        let old = &held[ty];
        let new = &fresh[ty];
        let sent: BTreeSet<&str> = r.resources.iter().map(|x| x.name.as_str()).collect();
        let changed: BTreeSet<&str> = new
            .iter()
            .filter(|(n, v)| old.get(*n) != Some(v))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(sent, changed, "{ty}: only what changed is sent");
        let removed: BTreeSet<&str> = r.removed_resources.iter().map(String::as_str).collect();
        let deleted: BTreeSet<&str> = old
            .keys()
            .filter(|n| !new.contains_key(*n))
            .map(String::as_str)
            .collect();
        assert_eq!(removed, deleted, "{ty}: removals for what was deleted");
    }
    assert!(
        first["CDS"]
            .removed_resources
            .contains(&"outbound|80||gone.shop.svc.cluster.local".to_string())
    );
    assert_eq!(
        first["EDS"]
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["outbound|80||cart.shop.svc.cluster.local"]
    );
}
