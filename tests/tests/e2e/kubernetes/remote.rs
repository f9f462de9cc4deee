//! Istio's multi-primary remote secrets: shoal reads cluster A (its own API server); a
//! Secret in A labelled `istio/multiCluster=true` carries a kubeconfig for cluster B, whose
//! service discovery then joins the mesh. B's endpoints of a Service both clusters define
//! serve beside A's (in B's locality), a Service only B defines appears, no duplicate is
//! reported, names B shares with A do not clash; the Secret deleted, all of B is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use prost::Message;
use shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use shoal_api::type_url::{CLUSTER, ENDPOINT};
use shoal_kube_emulator::{Emulator, Options};
use shoal_tests::Shoal;
use shoal_tests::xds::{DeltaStream, endpoint_ip, node};

use super::{Cluster, configz, namespace, responses};

const REVIEWS: &str = "outbound|9080||reviews.app.svc.cluster.local";
const RATINGS: &str = "outbound|9080||ratings.app.svc.cluster.local";
const SIDECAR: &str = "sidecar~10.1.0.9~client-0.app~app.svc.cluster.local";

/// The remote secret `istioctl create-remote-secret --name=cluster2` makes for `kubeconfig`.
fn remote_secret(kubeconfig: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(kubeconfig);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: istio-remote-secret-cluster2\n  namespace: istio-system\n  labels: {{istio/multiCluster: \"true\"}}\n  annotations: {{networking.istio.io/cluster: cluster2}}\ntype: Opaque\ndata:\n  cluster2: {data}\n"
    )
}

/// What a kubelet and the EndpointSlice controller of B would hold: a Service, a Pod
/// named like A's (`db-0`, a StatefulSet's) on B's `node-1`, in the region and zone of its
/// `istio-locality` label `locality` (else of its node), and a slice named like A's,
/// selecting it.
fn remote_service(emu: &Emulator, name: &str, ip: &str, locality: Option<&str>) {
    let apply = |v: serde_json::Value| {
        emu.apply(v).expect("object in B");
    };
    apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "app"},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 9080}]},
    }));
    let pod = format!("{name}-0");
    let mut labels = serde_json::json!({"app": name});
    if let Some(l) = locality {
        labels["istio-locality"] = l.into();
    }
    apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": "app", "labels": labels},
        "spec": {"serviceAccountName": name, "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }));
    apply(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-1"), "namespace": "app",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 9080}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}, "nodeName": "node-1",
                       "targetRef": {"kind": "Pod", "namespace": "app", "name": pod}}],
    }));
}

/// Endpoints (address → `region/zone`) per cluster, as a sidecar holds them once its
/// stream is quiet.
async fn endpoints(s: &mut DeltaStream, held: &mut BTreeMap<String, BTreeMap<String, String>>) {
    for r in responses(s, Duration::from_millis(700)).await {
        for name in &r.removed_resources {
            held.remove(name);
        }
        for res in &r.resources {
            let Some(any) = &res.resource else { continue };
            let Ok(cla) = ClusterLoadAssignment::decode(any.value.as_slice()) else {
                continue;
            };
            let mut ips = BTreeMap::new();
            for l in &cla.endpoints {
                let locality = l
                    .locality
                    .as_ref()
                    .map(|l| format!("{}/{}", l.region, l.zone))
                    .unwrap_or_default();
                for ip in l.lb_endpoints.iter().filter_map(endpoint_ip) {
                    ips.insert(ip.to_string(), locality.clone());
                }
            }
            held.insert(cla.cluster_name.clone(), ips);
        }
    }
}

/// Waits until the sidecar holds, for `cluster`, endpoints satisfying `want`.
async fn until_endpoints(
    s: &mut DeltaStream,
    held: &mut BTreeMap<String, BTreeMap<String, String>>,
    cluster: &str,
    what: &str,
    want: impl Fn(&BTreeMap<String, String>) -> bool,
    shoal: &Shoal,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        endpoints(s, held).await;
        let now = held.get(cluster).cloned().unwrap_or_default();
        if want(&now) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {cluster} holds {now:?}\n{}",
            shoal.log()
        );
    }
}

/// Clusters a wildcard CDS stream holds, updated with what came.
async fn clusters(s: &mut DeltaStream, held: &mut BTreeSet<String>) {
    for r in responses(s, Duration::from_millis(700)).await {
        for name in r.removed_resources {
            held.remove(&name);
        }
        held.extend(r.resources.into_iter().map(|x| x.name));
    }
}

/// Waits until the CDS stream holds what `want` accepts.
async fn until_clusters(
    s: &mut DeltaStream,
    held: &mut BTreeSet<String>,
    what: &str,
    want: impl Fn(&BTreeSet<String>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        clusters(s, held).await;
        if want(held) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {held:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_secret_brings_another_clusters_service_discovery_and_takes_it_away() {
    let Some(a) = Cluster::start().await else {
        return;
    };
    let b = Emulator::start(Options::default())
        .await
        .expect("kube emulator B");
    // A: reviews with its own endpoint, and the StatefulSet pod `reviews-0` B has too.
    a.apply(&format!(
        "{}{}{}apiVersion: v1\nkind: Pod\nmetadata: {{name: reviews-0, namespace: app, labels: {{app: reviews}}}}\nspec: {{serviceAccountName: reviews}}\n---\n",
        namespace("istio-system"),
        namespace("app"),
        shoal_tests::service_with_endpoint("reviews", "app", "http", 9080, "10.1.0.1", 9080),
    ))
    .await;
    // B: reviews too (its pod and slice named as A's), and ratings, which only B has.
    b.apply(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
    )
    .expect("namespace in B");
    remote_service(&b, "reviews", "10.2.0.1", Some("region-b.zone-b"));
    remote_service(&b, "ratings", "10.2.0.2", Some("region-b.zone-b"));

    let shoal = a.shoal_with(&["--cluster-id", "cluster1"]).await;
    let mut eds = DeltaStream::open(
        shoal.xds,
        DeltaDiscoveryRequest {
            node: Some(node(SIDECAR)),
            type_url: ENDPOINT.into(),
            resource_names_subscribe: vec![REVIEWS.into(), RATINGS.into()],
            ..Default::default()
        },
    )
    .await
    .expect("EDS stream");
    let mut cds = DeltaStream::open(
        shoal.xds,
        DeltaDiscoveryRequest {
            node: Some(node(SIDECAR)),
            type_url: CLUSTER.into(),
            ..Default::default()
        },
    )
    .await
    .expect("CDS stream");
    let (mut held, mut cds_held) = (BTreeMap::new(), BTreeSet::new());
    until_endpoints(
        &mut eds,
        &mut held,
        REVIEWS,
        "A's endpoint",
        |e| e.contains_key("10.1.0.1"),
        &shoal,
    )
    .await;
    clusters(&mut cds, &mut cds_held).await;
    assert!(cds_held.contains(REVIEWS), "{cds_held:?}");
    assert!(
        !cds_held.contains(RATINGS),
        "B is not read yet: {cds_held:?}"
    );

    // The remote secret, applied to A as istioctl's output is.
    a.apply(&remote_secret(&b.kubeconfig_yaml())).await;
    until_endpoints(
        &mut eds,
        &mut held,
        REVIEWS,
        "both clusters' endpoints",
        |e| e.len() == 2 && e.contains_key("10.1.0.1") && e.contains_key("10.2.0.1"),
        &shoal,
    )
    .await;
    assert_eq!(
        held[REVIEWS]["10.2.0.1"], "region-b/zone-b",
        "B's endpoint in B's locality (not a node of A's)"
    );
    until_endpoints(
        &mut eds,
        &mut held,
        RATINGS,
        "the B-only service's endpoint",
        |e| e.contains_key("10.2.0.2"),
        &shoal,
    )
    .await;
    until_clusters(
        &mut cds,
        &mut cds_held,
        "the Service only B defines in the mesh",
        |c| c.contains(RATINGS),
    )
    .await;

    let z = configz(&shoal).await;
    let issues: Vec<&str> = z["issues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["message"].as_str())
        .collect();
    assert!(
        !issues.iter().any(|m| m.contains("duplicate")),
        "reviews in both clusters, and pods and slices named alike, clash nowhere: {issues:?}"
    );
    let remote = &z["sources"]["kubernetes"]["remote_clusters"]["cluster2"];
    assert_eq!(remote["secret"], "istio-remote-secret-cluster2", "{z:#}");
    assert_eq!(remote["kinds"]["Pod"]["state"], "synced", "{remote:#}");
    assert_eq!(remote["kinds"]["Pod"]["objects"], 2, "{remote:#}");
    assert_eq!(
        z["objects"]["Pod"], 3,
        "A's reviews-0 and B's two, renamed: {z:#}"
    );
    // B's watch metrics carry its cluster; A's have no cluster label.
    let (_, metrics) = shoal_tests::http_get(shoal.admin, "/metrics", &[])
        .await
        .expect("metrics");
    let events = |l: &&str| l.starts_with("shoal_kubernetes_events_total{");
    assert!(
        metrics
            .lines()
            .filter(events)
            .any(|l| l.contains("cluster=\"cluster2\"") && l.contains("kind=\"Pod\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .filter(events)
            .any(|l| !l.contains("cluster=") && l.contains("kind=\"Pod\"")),
        "{metrics}"
    );

    // The Secret deleted: everything of B is gone, A's own stays.
    a.kubectl
        .run(&[
            "delete",
            "secret",
            "-n",
            "istio-system",
            "istio-remote-secret-cluster2",
        ])
        .await;
    until_endpoints(
        &mut eds,
        &mut held,
        REVIEWS,
        "B's endpoints gone",
        |e| e.len() == 1 && e.contains_key("10.1.0.1"),
        &shoal,
    )
    .await;
    until_clusters(
        &mut cds,
        &mut cds_held,
        "the Service only B defined gone, A's kept",
        |c| !c.contains(RATINGS) && c.contains(REVIEWS),
    )
    .await;
    let z = configz(&shoal).await;
    assert_eq!(
        z["sources"]["kubernetes"]["remote_clusters"],
        serde_json::json!({}),
        "{z:#}"
    );
    assert_eq!(z["objects"]["Pod"], 1, "{z:#}");
}

/// A remote secret whose cluster does not answer holds nothing back: shoal serves A at
/// once and reports the remote. The Secret edited to a cluster that answers, its endpoints
/// come (the watchers restarted); that cluster gone quiet, they stay, reported stale. A key
/// naming shoal's own cluster is refused and said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_is_down_blocks_nothing_and_a_changed_secret_switches_clusters() {
    let Some(a) = Cluster::start().await else {
        return;
    };
    let b = Emulator::start(Options::default())
        .await
        .expect("kube emulator B");
    b.apply(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
    )
    .expect("namespace in B");
    remote_service(&b, "reviews", "10.2.0.1", Some("region-b.zone-b"));
    // Nothing listens there: the remote cluster never answers.
    let dead = b.kubeconfig_yaml().replace(
        &b.url(),
        &format!("https://127.0.0.1:{}", shoal_tests::free_port("127.0.0.1")),
    );
    a.apply(&format!(
        "{}{}{}{}",
        namespace("istio-system"),
        namespace("app"),
        shoal_tests::service_with_endpoint("reviews", "app", "http", 9080, "10.1.0.1", 9080),
        remote_secret(&dead),
    ))
    .await;
    // Starts (ready) although cluster2 cannot be listed.
    let shoal = a.shoal_with(&["--cluster-id", "cluster1"]).await;
    let z = configz(&shoal).await;
    let remote = &z["sources"]["kubernetes"]["remote_clusters"]["cluster2"];
    assert_eq!(z["sources"]["kubernetes"]["synced"], true, "{z:#}");
    assert_ne!(remote["kinds"]["Pod"]["state"], "synced", "{z:#}");
    let mut eds = DeltaStream::open(
        shoal.xds,
        DeltaDiscoveryRequest {
            node: Some(node(SIDECAR)),
            type_url: ENDPOINT.into(),
            resource_names_subscribe: vec![REVIEWS.into()],
            ..Default::default()
        },
    )
    .await
    .expect("EDS stream");
    let mut held = BTreeMap::new();
    until_endpoints(
        &mut eds,
        &mut held,
        REVIEWS,
        "A's endpoint while cluster2 is down",
        |e| e.len() == 1 && e.contains_key("10.1.0.1"),
        &shoal,
    )
    .await;

    // The Secret now points at B, and names this cluster too (refused).
    let own = base64::engine::general_purpose::STANDARD.encode(b.kubeconfig_yaml());
    a.apply(&format!(
        "{}  cluster1: {own}\n",
        remote_secret(&b.kubeconfig_yaml())
    ))
    .await;
    until_endpoints(
        &mut eds,
        &mut held,
        REVIEWS,
        "B's endpoint after the secret changed",
        |e| e.len() == 2 && e.contains_key("10.2.0.1"),
        &shoal,
    )
    .await;
    let z = configz(&shoal).await;
    let k = &z["sources"]["kubernetes"];
    assert_eq!(k["remote_clusters"]["cluster2"]["restarts"], 1, "{k:#}");
    assert_eq!(
        k["remote_clusters"]["cluster2"]["server"],
        format!("{}/", b.url()),
        "{k:#}"
    );
    let refused = k["remote_secrets_refused"]["istio-remote-secret-cluster2"].to_string();
    assert!(
        refused.contains("cluster1") && refused.contains("own cluster id"),
        "{k:#}"
    );
    assert!(k["remote_clusters"].get("cluster1").is_none(), "{k:#}");

    // B stops answering: its endpoints stay, and the status says it is stale.
    b.pause(Duration::from_secs(20)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let z = configz(&shoal).await;
        if z["sources"]["kubernetes"]["remote_clusters"]["cluster2"]["connected"] == false {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reported stale: {z:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    endpoints(&mut eds, &mut held).await;
    assert_eq!(
        held[REVIEWS].keys().collect::<Vec<_>>(),
        ["10.1.0.1", "10.2.0.1"],
        "B's last good endpoints are kept"
    );
}

/// A remote cluster's Nodes place its pods (a local node of the same name lends them
/// nothing), and its network, its root namespace's label, is followed: relabelled, its
/// endpoints move to the new network's gateway, in the same locality.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_cluster_s_nodes_place_its_pods_and_its_network_is_followed() {
    let Some(a) = Cluster::start().await else {
        return;
    };
    let b = Emulator::start(Options::default())
        .await
        .expect("kube emulator B");
    let root = |network: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "istio-system", "labels": {"topology.istio.io/network": network}}})
    };
    b.apply(root("net-b")).expect("root namespace in B");
    b.apply(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
    )
    .expect("namespace in B");
    b.apply(serde_json::json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {
            "topology.kubernetes.io/region": "region-b", "topology.kubernetes.io/zone": "zone-c"}}}))
    .expect("node in B");
    remote_service(&b, "ratings", "10.2.0.2", None);
    // A has a node-1 too, elsewhere.
    a.apply(&format!(
        "{}{}apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels: {{topology.kubernetes.io/region: region-a, topology.kubernetes.io/zone: zone-a}}\n---\n{}",
        namespace("istio-system"),
        namespace("app"),
        remote_secret(&b.kubeconfig_yaml()),
    ))
    .await;
    let shoal = a
        .shoal_with(&[
            "--cluster-id",
            "cluster1",
            "--network",
            "net-a",
            "--network-gateway",
            "net-b=192.0.2.1:15443",
            "--network-gateway",
            "net-c=192.0.2.2:15443",
        ])
        .await;
    let mut eds = DeltaStream::open(
        shoal.xds,
        DeltaDiscoveryRequest {
            node: Some(node(SIDECAR)),
            type_url: ENDPOINT.into(),
            resource_names_subscribe: vec![RATINGS.into()],
            ..Default::default()
        },
    )
    .await
    .expect("EDS stream");
    let mut held = BTreeMap::new();
    let at = |gateway: &str| BTreeMap::from([(gateway.to_string(), "region-b/zone-c".to_string())]);
    until_endpoints(
        &mut eds,
        &mut held,
        RATINGS,
        "B's endpoint through net-b's gateway, in the locality of B's node-1",
        |e| *e == at("192.0.2.1"),
        &shoal,
    )
    .await;

    // B's root namespace relabelled: its pods are on net-c now.
    b.apply(root("net-c")).expect("root namespace relabelled");
    until_endpoints(
        &mut eds,
        &mut held,
        RATINGS,
        "B's endpoint through net-c's gateway",
        |e| *e == at("192.0.2.2"),
        &shoal,
    )
    .await;
    let z = configz(&shoal).await;
    let remote = &z["sources"]["kubernetes"]["remote_clusters"]["cluster2"];
    assert_eq!(remote["network"], "net-c", "{remote:#}");
    assert_eq!(remote["kinds"]["Node"]["objects"], 1, "{remote:#}");
}
