//! What is in the mesh, decided in the cluster: MeshConfig `discoverySelectors` read live
//! from the `istio` ConfigMap, Namespaces relabelled in and out of them, and `--revision`.

use std::time::Duration;

use shoal_api::ResourceType;
use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use shoal_kube_emulator::ISTIO_CRDS;
use shoal_tests::eventually;
use shoal_tests::xds::{DeltaStream, node};

use super::{Cluster, configz, issue_mentioning, responses};

fn labelled_namespace(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n---\n"
    )
}

fn service(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n"
    )
}

/// The `istio` ConfigMap (`istio-REV` for a revision) with `mesh` as its MeshConfig.
fn mesh_config_map(name: &str, mesh: &str) -> String {
    let indented: String = mesh.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: istio-system}}\ndata:\n  mesh: |\n{indented}---\n"
    )
}

fn cluster_name(service: &str, namespace: &str) -> String {
    format!("outbound|80||{service}.{namespace}.svc.cluster.local")
}

/// Clusters added and removed on a wildcard CDS stream until none comes for `quiet`.
async fn cluster_changes(s: &mut DeltaStream, quiet: Duration) -> (Vec<String>, Vec<String>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for r in responses(s, quiet).await {
        added.extend(r.resources.into_iter().map(|x| x.name));
        removed.extend(r.removed_resources);
    }
    (added, removed)
}

/// Waits until the stream has added `add` and removed `remove`.
async fn until_changed(s: &mut DeltaStream, add: &[String], remove: &[String], what: &str) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(add.iter().all(|a| added.contains(a)) && remove.iter().all(|r| removed.contains(r))) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: wanted +{add:?} -{remove:?}, got +{added:?} -{removed:?}"
        );
        let (a, r) = cluster_changes(s, Duration::from_millis(500)).await;
        added.extend(a);
        removed.extend(r);
    }
}

/// The cluster's MeshConfig selects namespaces by label: a Namespace relabelled out takes
/// its Services out of every proxy, relabelled in brings them back; the ConfigMap edited
/// live widens the mesh; a broken edit is reported and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_selectors_scope_the_mesh_live() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster
        .apply(&format!(
            "{}{}{}{}{}{}{}{}",
            labelled_namespace("istio-system", ""),
            mesh_config_map(
                "istio",
                "discoverySelectors:\n- matchLabels: {mesh: 'on'}\n"
            ),
            labelled_namespace("shop", "mesh: 'on'"),
            labelled_namespace("lab", "mesh: 'on'"),
            labelled_namespace("outside", ""),
            service("cart", "shop"),
            service("probe", "lab"),
            service("extra", "outside"),
        ))
        .await;
    let shoal = cluster.shoal().await;
    let first = DeltaDiscoveryRequest {
        node: Some(node(
            "sidecar~10.1.0.9~client-0.shop~shop.svc.cluster.local",
        )),
        type_url: ResourceType::Cluster.type_url().to_string(),
        ..Default::default()
    };
    let mut s = DeltaStream::open(shoal.xds, first).await.expect("stream");
    let (initial, _) = cluster_changes(&mut s, Duration::from_secs(2)).await;
    let (cart, probe, extra) = (
        cluster_name("cart", "shop"),
        cluster_name("probe", "lab"),
        cluster_name("extra", "outside"),
    );
    assert!(
        initial.contains(&cart) && initial.contains(&probe),
        "{initial:?}"
    );
    assert!(
        !initial.contains(&extra),
        "outside is not selected: {initial:?}"
    );
    let z = configz(&shoal).await;
    assert_eq!(
        z["discovery_namespaces"],
        serde_json::json!(["istio-system", "lab", "shop"]),
        "{z:#}"
    );

    // Relabelled out: its Service leaves the proxies; relabelled in: back.
    cluster
        .kubectl
        .run(&["label", "namespace", "lab", "mesh=off", "--overwrite"])
        .await;
    until_changed(
        &mut s,
        &[],
        std::slice::from_ref(&probe),
        "lab relabelled out",
    )
    .await;
    cluster
        .kubectl
        .run(&["label", "namespace", "lab", "mesh=on", "--overwrite"])
        .await;
    until_changed(
        &mut s,
        std::slice::from_ref(&probe),
        &[],
        "lab relabelled in",
    )
    .await;

    // A broken MeshConfig edit is refused, reported, and changes nothing.
    cluster
        .apply(&mesh_config_map(
            "istio",
            "discoverySelectors:\n- matchExpressions: [{key: mesh, operator: Near}]\n",
        ))
        .await;
    let issue = eventually(Duration::from_secs(20), "the refusal", || {
        issue_mentioning(&shoal, "ConfigMap istio-system/istio")
    })
    .await
    .expect("the broken MeshConfig reported");
    assert!(issue.contains("discoverySelectors[0]"), "{issue}");
    let (quiet, gone) = cluster_changes(&mut s, Duration::from_secs(2)).await;
    assert!(quiet.is_empty() && gone.is_empty(), "{quiet:?} {gone:?}");

    // The selectors removed live: every namespace is in the mesh.
    cluster
        .apply(&mesh_config_map("istio", "accessLogFile: ''\n"))
        .await;
    until_changed(&mut s, &[extra], &[], "selectors removed").await;
    let z = configz(&shoal).await;
    assert!(z["discovery_namespaces"].is_null(), "{z:#}");
    assert!(
        z["issues"]
            .as_array()
            .is_some_and(|a| a.iter().all(|i| !i["message"]
                .as_str()
                .unwrap_or_default()
                .contains("MeshConfig"))),
        "the refusal is over: {z:#}"
    );
}

/// `--revision canary`: config labelled for another revision is left to it, unlabelled
/// config is read, relabelling moves an object between revisions; the MeshConfig is the
/// `istio-canary` ConfigMap's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_reads_its_own_config_and_configmap() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.apply(ISTIO_CRDS).await;
    let vs = |name: &str, rev: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop, labels: {{{rev}}}}}\nspec:\n  hosts: [{name}.example.com]\n  http: [{{route: [{{destination: {{host: {name}.example.com}}}}]}}]\n---\n"
        )
    };
    cluster
        .apply(&format!(
            "{}{}{}{}{}{}",
            labelled_namespace("istio-system", ""),
            labelled_namespace("shop", ""),
            mesh_config_map("istio", "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"),
            mesh_config_map("istio-canary", "connectTimeout: 3s\n"),
            vs("mine", "istio.io/rev: canary"),
            vs("theirs", "istio.io/rev: stable") + &vs("shared", ""),
        ))
        .await;
    let shoal = cluster.shoal_with(&["--revision", "canary"]).await;
    let z = configz(&shoal).await;
    assert_eq!(z["objects"]["VirtualService"], 2, "{z:#}");
    assert_eq!(z["mesh"]["connect_timeout_ms"], 3000, "{z:#}");
    assert_eq!(
        z["mesh"]["outbound_traffic_policy"], "ALLOW_ANY",
        "the default revision's ConfigMap is not read: {z:#}"
    );
    cluster
        .kubectl
        .run(&[
            "label",
            "virtualservice",
            "theirs",
            "-n",
            "shop",
            "istio.io/rev=canary",
            "--overwrite",
        ])
        .await;
    eventually(
        Duration::from_secs(20),
        "theirs moved to canary",
        || async { (configz(&shoal).await["objects"]["VirtualService"] == 3).then_some(()) },
    )
    .await
    .expect("relabelled into this revision");
}

/// The `istio` ConfigMap's `meshNetworks` key, as istiod reads it: an endpoint in a range
/// of another network is reached through that network's gateway; the key removed, directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_networks_come_from_the_istio_config_map() {
    use shoal_tests::xds::wait_for_endpoints;
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let with_networks = |networks: Option<&str>| {
        let mut y = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    trustDomain: cluster.local\n",
        );
        if let Some(n) = networks {
            y.push_str("  meshNetworks: |\n");
            y.extend(n.lines().map(|l| format!("    {l}\n")));
        }
        y + "---\n"
    };
    let east = "networks:\n  net-east:\n    endpoints: [{fromCidr: 10.2.0.0/16}]\n    gateways: [{address: 192.0.2.1, port: 15443}]\n";
    cluster
        .apply(&format!(
            "{}{}{}{}apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: cart-1, namespace: shop, labels: {{kubernetes.io/service-name: cart}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- addresses: [10.2.0.1]\n",
            labelled_namespace("istio-system", ""),
            labelled_namespace("shop", ""),
            with_networks(Some(east)),
            service("cart", "shop"),
        ))
        .await;
    let shoal = cluster.shoal().await;
    let mut s = DeltaStream::open(
        shoal.xds,
        DeltaDiscoveryRequest {
            node: Some(node(
                "sidecar~10.1.0.9~client-0.shop~shop.svc.cluster.local",
            )),
            type_url: ResourceType::Endpoint.type_url().to_string(),
            resource_names_subscribe: vec![cluster_name("cart", "shop")],
            ..Default::default()
        },
    )
    .await
    .expect("stream");
    if let Err(seen) = wait_for_endpoints(&mut s, &["192.0.2.1"], Duration::from_secs(20)).await {
        panic!("through net-east's gateway: {seen:?}\n{}", shoal.log());
    }
    cluster.apply(&with_networks(None)).await;
    if let Err(seen) = wait_for_endpoints(&mut s, &["10.2.0.1"], Duration::from_secs(20)).await {
        panic!("directly once the key is gone: {seen:?}\n{}", shoal.log());
    }
}
