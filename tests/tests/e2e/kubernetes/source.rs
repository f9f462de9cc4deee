//! The source's contract: objects applied with kubectl reach proxies, re-lists and
//! outages cost them nothing, missing CRDs and RBAC denials are reported.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shoal_api::ResourceType;
use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use shoal_kube_emulator::{ISTIO_CRDS, Verb};
use shoal_tests::xds::{DeltaStream, node};
use shoal_tests::{Envoy, backends, eventually, free_port, http_get, start_shoal};

use super::{Cluster, Kubectl, configz, issue_mentioning, kubectl_path, namespace, responses};

fn virtual_service(to: &str, weight: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: app}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: {to}}}\n      weight: {weight}\n---\n"
    )
}

/// Namespace `app` with Services `reviews` (the name clients use), `reviews-v1` and
/// `reviews-v2`, each with one endpoint.
fn reviews(port: u16, v1: SocketAddr, v2: SocketAddr, reviews: SocketAddr) -> String {
    let mut m = namespace("app");
    for (name, at) in [("reviews", reviews), ("reviews-v1", v1), ("reviews-v2", v2)] {
        m += &shoal_tests::service_with_endpoint(
            name,
            "app",
            "http",
            port,
            &at.ip().to_string(),
            at.port(),
        );
    }
    m
}

async fn routed_to(via: SocketAddr) -> Option<String> {
    http_get(via, "/", &[("host", "reviews.app.svc.cluster.local")])
        .await
        .ok()
        .filter(|(s, _)| *s == 200)
        .map(|(_, body)| body)
}

/// Objects applied with kubectl reach Envoy; a VirtualService edit shifts the traffic; an
/// invalid edit is reported by kind, namespace and name while the last good one serves;
/// with the API server down for 30 s, proxies keep their config, shoal stays ready and says
/// the source is stale, and picks up changes by itself when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applied_config_reaches_envoy_and_survives_the_api_server() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let port = free_port("127.0.0.1");
    let addr =
        |ip: &str| -> SocketAddr { format!("{ip}:{}", free_port(ip)).parse().expect("address") };
    let (v1_at, v2_at, base_at) = (addr("127.0.0.2"), addr("127.0.0.3"), addr("127.0.0.4"));
    let _v1 = backends::http(v1_at, "v1").await.expect("v1");
    let _v2 = backends::http(v2_at, "v2").await.expect("v2");
    let _base = backends::http(base_at, "base").await.expect("base");

    cluster.apply(ISTIO_CRDS).await;
    cluster
        .apply(&format!(
            "{}{}{}",
            reviews(port, v1_at, v2_at, base_at),
            virtual_service("reviews-v1", "100"),
            shoal_tests::bound_http_sidecar("app", port, &["./*"])
        ))
        .await;
    let shoal = cluster.shoal().await;
    let node = "sidecar~127.0.0.1~client-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({ "INTERCEPTION_MODE": "NONE", "NAMESPACE": "app" });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true)
        .await
        .expect("envoy")
    else {
        return;
    };
    let via: SocketAddr = format!("127.0.0.1:{port}").parse().expect("listener");
    let routed = |want: &'static str| async move {
        eventually(Duration::from_secs(30), want, || async {
            routed_to(via).await.filter(|b| b == want)
        })
        .await
    };
    routed("v1")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.log()));

    // An edit with kubectl shifts the traffic.
    cluster.apply(&virtual_service("reviews-v2", "100")).await;
    routed("v2")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));

    // An invalid edit: rejected by kind/namespace/name and field; v2 keeps serving.
    cluster.apply(&virtual_service("reviews-v1", "\"x\"")).await;
    let issue = eventually(Duration::from_secs(20), "the issue", || {
        issue_mentioning(
            &shoal,
            "kubernetes:VirtualService.networking.istio.io/app/reviews",
        )
    })
    .await
    .expect("the invalid VirtualService reported");
    assert!(issue.contains("weight"), "{issue}");
    assert_eq!(routed_to(via).await.as_deref(), Some("v2"));

    // The API server goes away for 30 s.
    cluster.apply(&virtual_service("reviews-v2", "100")).await;
    cluster.emu.pause(Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(20),
        "the source to say it is stale",
        || async {
            configz(&shoal).await["sources"]["kubernetes"]["stale"]
                .as_bool()
                .filter(|s| *s)
        },
    )
    .await
    .expect("stale reported");
    let (ready, _) = http_get(shoal.admin, "/ready", &[]).await.expect("ready");
    assert_eq!(ready, 200, "shoal stays ready on its last good config");
    assert_eq!(routed_to(via).await.as_deref(), Some("v2"));
    // Back: a change made right after reaches Envoy without anyone restarting anything.
    eventually(Duration::from_secs(40), "the API server back", || async {
        cluster
            .emu
            .get("namespaces", None, "app")
            .ok()
            .flatten()
            .filter(|_| std::net::TcpStream::connect(cluster.emu.addr()).is_ok())
    })
    .await
    .expect("the emulator restarts");
    cluster.apply(&virtual_service("reviews-v1", "100")).await;
    // kube-runtime's watcher backs off up to 30 s while the API server is away (it was
    // for 30 s), so its next attempt may come that long after the server is back.
    eventually(
        Duration::from_secs(75),
        "v1 after the API server came back",
        || async { routed_to(via).await.filter(|b| b == "v1") },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    eventually(Duration::from_secs(20), "the source to recover", || async {
        configz(&shoal).await["sources"]["kubernetes"]["stale"]
            .as_bool()
            .filter(|s| !*s)
    })
    .await
    .expect("no longer stale");
}

const CART: &str = "outbound|80||cart.shop.svc.cluster.local";

/// Wildcard clusters, listeners and routes, and `cart`'s endpoints.
fn subscribe_all(node_id: &str) -> Vec<DeltaDiscoveryRequest> {
    [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, ty)| DeltaDiscoveryRequest {
        node: (i == 0).then(|| node(node_id)),
        type_url: ty.type_url().to_string(),
        // Endpoints by name, as Envoy asks for its clusters' (they are not wildcard).
        resource_names_subscribe: if ty == ResourceType::Endpoint {
            vec![CART.to_string()]
        } else {
            Vec::new()
        },
        ..Default::default()
    })
    .collect()
}

/// Responses (type URL, resource names) until none comes for `quiet`, ACKing each.
async fn drain(s: &mut DeltaStream, quiet: Duration) -> Vec<(String, Vec<String>)> {
    responses(s, quiet)
        .await
        .into_iter()
        .map(|r| {
            (
                r.type_url,
                r.resources.into_iter().map(|x| x.name).collect(),
            )
        })
        .collect()
}

fn endpoints(ips: &[&str]) -> String {
    let list: Vec<String> = ips
        .iter()
        .map(|ip| format!("- addresses: [{ip}]"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: cart-1, namespace: shop, labels: {{kubernetes.io/service-name: cart}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{}\n",
        list.join("\n")
    )
}

/// An EndpointSlice scaled with kubectl reaches proxies as an EDS-only change; an API
/// server restart with compacted history (watches from old versions get 410 Gone) makes
/// shoal list again, and that re-list sends the proxies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_is_an_eds_only_push_and_a_relist_pushes_nothing() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.apply(ISTIO_CRDS).await;
    cluster
        .apply(&format!(
            "{}apiVersion: v1\nkind: Service\nmetadata: {{name: cart, namespace: shop}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n{}",
            namespace("shop"),
            endpoints(&["10.1.0.1"])
        ))
        .await;
    let shoal = cluster.shoal().await;
    let node_id = "sidecar~10.1.0.9~client-0.shop~shop.svc.cluster.local";
    let mut requests = subscribe_all(node_id).into_iter();
    let first = requests.next().expect("a first request");
    let mut s = DeltaStream::open(shoal.xds, first).await.expect("stream");
    for r in requests {
        s.send(r).await.expect("subscribe");
    }
    let initial = drain(&mut s, Duration::from_secs(2)).await;
    assert!(
        initial
            .iter()
            .any(|(t, names)| t == ResourceType::Endpoint.type_url()
                && names.iter().any(|n| n == CART)),
        "{initial:?}"
    );

    cluster.apply(&endpoints(&["10.1.0.1", "10.1.0.2"])).await;
    let pushed = drain(&mut s, Duration::from_secs(3)).await;
    let types: Vec<&str> = pushed.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [ResourceType::Endpoint.type_url()],
        "a scale changes endpoints only: {pushed:?}"
    );

    // Restart with compacted history: every watch resumes from a version the server no
    // longer has (410 Gone), and shoal lists every kind again.
    let lists_before = cluster
        .emu
        .requests(Verb::List, "endpointslices")
        .expect("counter");
    cluster.emu.stop().await;
    // Writes shoal does not watch move the cluster's resourceVersion on while it is away.
    cluster
        .emu
        .apply(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "unrelated", "namespace": "shop"}, "data": {"a": "b"},
        }))
        .expect("a write meanwhile");
    cluster.emu.compact();
    cluster.emu.restart().await.expect("restart");
    eventually(Duration::from_secs(30), "a re-list", || async {
        let lists = cluster.emu.requests(Verb::List, "endpointslices").ok()?;
        (lists > lists_before).then_some(())
    })
    .await
    .expect("shoal lists again after 410 Gone");
    let after = drain(&mut s, Duration::from_secs(3)).await;
    assert!(
        after.is_empty(),
        "a re-list of unchanged objects pushes nothing: {after:?}"
    );
    let (_, metrics) = http_get(shoal.admin, "/metrics", &[])
        .await
        .expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("shoal_kubernetes_relists_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// Kinds whose CRD is missing and kinds RBAC withholds do not hold shoal back: it serves
/// what it may read, says what it may not (verb and resource), and picks up a CRD
/// installed later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crds_and_denied_kinds_are_reported_and_the_rest_serves() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.emu.forbid("pods", Verb::List).expect("forbid");
    cluster.apply(&namespace("shop")).await;
    let shoal = cluster.shoal().await;
    let status = configz(&shoal).await;
    let kinds = &status["sources"]["kubernetes"]["kinds"];
    assert_eq!(kinds["Pod"]["state"], "denied", "{status:#}");
    assert_eq!(kinds["Pod"]["verb"], "list", "{status:#}");
    assert_eq!(
        kinds["VirtualService.networking.istio.io"]["state"], "not_installed",
        "{status:#}"
    );
    assert_eq!(kinds["Namespace"]["state"], "synced", "{status:#}");
    assert!(
        shoal.log().contains("RBAC: shoal may not list pods"),
        "{}",
        shoal.log()
    );

    // The CRDs arrive, then a VirtualService: served without a restart.
    cluster.apply(ISTIO_CRDS).await;
    cluster
        .apply("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: late, namespace: shop}\nspec:\n  hosts: [late.example.com]\n  http:\n  - route: [{destination: {host: late.example.com}}]\n")
        .await;
    eventually(
        Duration::from_secs(30),
        "the late VirtualService",
        || async {
            let z = configz(&shoal).await;
            (z["objects"]["VirtualService"] == 1).then_some(())
        },
    )
    .await
    .expect("picked up once its CRD is installed");
    let status = configz(&shoal).await;
    assert_eq!(
        status["sources"]["kubernetes"]["kinds"]["VirtualService.networking.istio.io"]["state"],
        "synced"
    );
    // Granted later, pods are listed too.
    cluster.emu.allow("pods", Verb::List).expect("allow");
    eventually(
        Duration::from_secs(60),
        "pods listed once allowed",
        || async {
            let z = configz(&shoal).await;
            (z["sources"]["kubernetes"]["kinds"]["Pod"]["state"] == "synced").then_some(())
        },
    )
    .await
    .expect("the watcher retries a denied kind");
}

/// Against a real cluster (kind, say) when `SHOAL_TEST_KUBECONFIG` names its kubeconfig:
/// a Service created with kubectl in a scratch namespace becomes a cluster a proxy
/// receives; the namespace is deleted afterwards. Skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cluster_when_one_is_given() {
    let Ok(kubeconfig) = std::env::var("SHOAL_TEST_KUBECONFIG") else {
        eprintln!("SKIP: set SHOAL_TEST_KUBECONFIG to a cluster's kubeconfig (kind) to run this");
        return;
    };
    let Some(bin) = kubectl_path() else {
        eprintln!("SKIP: no kubectl (set SHOAL_KUBECTL or run scripts/kubectl.sh)");
        return;
    };
    let ns = format!("shoal-e2e-{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let kubectl = Kubectl {
        bin,
        kubeconfig: PathBuf::from(&kubeconfig),
        dir: dir.path().to_path_buf(),
    };
    kubectl
        .apply(&format!(
            "{}apiVersion: v1\nkind: Service\nmetadata: {{name: probe, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n",
            namespace(&ns)
        ))
        .await;
    std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
    let shoal = start_shoal(
        &dir.path().join("config"),
        &["--kubernetes", "--kubeconfig", &kubeconfig],
    )
    .await;
    let found = match &shoal {
        Ok(shoal) => {
            let node_id = format!("sidecar~10.1.0.9~client-0.{ns}~{ns}.svc.cluster.local");
            let first = DeltaDiscoveryRequest {
                node: Some(node(&node_id)),
                type_url: ResourceType::Cluster.type_url().to_string(),
                ..Default::default()
            };
            let want = format!("outbound|80||probe.{ns}.svc.cluster.local");
            match DeltaStream::open(shoal.xds, first).await {
                Ok(mut s) => drain(&mut s, Duration::from_secs(3))
                    .await
                    .iter()
                    .any(|(_, names)| names.contains(&want)),
                Err(_) => false,
            }
        }
        Err(_) => false,
    };
    kubectl
        .run(&["delete", "namespace", &ns, "--wait=false"])
        .await;
    let shoal = shoal.expect("shoal serving from the cluster");
    assert!(found, "the Service reached a proxy\n{}", shoal.log());
}
