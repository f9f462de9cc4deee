//! Gateway API status written back: what `kubectl get gateway` and `kubectl get httproute`
//! show after shoal has seen them, as Istio's controller reports it, and no write when
//! nothing changed.

use std::time::Duration;

use shoal_kube_emulator::{GATEWAY_API_CRDS, Verb};
use shoal_tests::{eventually, http_get};

use super::{Cluster, namespace};

const STATUS_PATCHES: &str = "gateways.gateway.networking.k8s.io/status";

fn objects() -> String {
    let route = |name: &str, ns: &str, backend: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: web-gw, namespace: web}}]\n  hostnames: [www.example.com]\n  rules:\n  - backendRefs: [{{name: {backend}, port: 80}}]\n---\n"
        )
    };
    format!(
        "{}{}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: web-gw, namespace: web}}\nspec:\n  gatewayClassName: istio\n  listeners:\n  - {{name: http, port: 80, protocol: HTTP, hostname: '*.example.com'}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web-gw-istio, namespace: web, labels: {{gateway.networking.k8s.io/gateway-name: web-gw}}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: site, namespace: web}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n{}{}{}",
        namespace("web"),
        namespace("other"),
        route("site", "web", "site"),
        route("broken", "web", "missing"),
        route("elsewhere", "other", "site"),
    )
}

/// `kubectl get KIND NAME -n NS -o jsonpath=PATH` (kubectl evaluates the path itself).
async fn get(cluster: &Cluster, kind: &str, ns: &str, name: &str, path: &str) -> String {
    cluster
        .kubectl
        .run(&[
            "get",
            kind,
            name,
            "-n",
            ns,
            "-o",
            &format!("jsonpath={path}"),
        ])
        .await
}

fn condition(kind_path: &str, ty: &str, field: &str) -> String {
    format!("{{{kind_path}.conditions[?(@.type==\"{ty}\")].{field}}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_and_routes_get_istios_status_once() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.apply(GATEWAY_API_CRDS).await;
    cluster.apply(&objects()).await;
    let shoal = cluster.shoal().await;

    let programmed = condition(".status", "Programmed", "status");
    eventually(Duration::from_secs(30), "PROGRAMMED True", || async {
        let s = get(&cluster, "gateway", "web", "web-gw", &programmed).await;
        (s == "True").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    let gw = |path: String| {
        let cluster = &cluster;
        async move { get(cluster, "gateway", "web", "web-gw", &path).await }
    };
    assert_eq!(gw(condition(".status", "Accepted", "status")).await, "True");
    assert_eq!(
        gw("{.status.addresses[0].value}".into()).await,
        "web-gw-istio.web.svc.cluster.local"
    );
    assert_eq!(
        gw("{.status.listeners[0].attachedRoutes}".into()).await,
        "2",
        "site and broken are accepted; elsewhere's namespace is not allowed"
    );
    assert_eq!(
        gw("{.status.conditions[0].observedGeneration}".into()).await,
        "1"
    );

    let route = |ns: &'static str, name: &'static str, ty: &'static str, field: &'static str| {
        let cluster = &cluster;
        async move {
            eventually(Duration::from_secs(20), "the route's status", || async {
                let v = get(
                    cluster,
                    "httproute",
                    ns,
                    name,
                    &condition(".status.parents[0]", ty, field),
                )
                .await;
                (!v.is_empty()).then_some(v)
            })
            .await
            .unwrap_or_else(|e| panic!("{ns}/{name}: {e}"))
        }
    };
    assert_eq!(route("web", "site", "Accepted", "status").await, "True");
    assert_eq!(route("web", "site", "ResolvedRefs", "status").await, "True");
    assert_eq!(route("web", "broken", "Accepted", "status").await, "True");
    assert_eq!(
        route("web", "broken", "ResolvedRefs", "reason").await,
        "BackendNotFound"
    );
    assert_eq!(
        route("other", "elsewhere", "Accepted", "reason").await,
        "NotAllowedByListeners"
    );
    assert_eq!(
        get(
            &cluster,
            "httproute",
            "web",
            "site",
            "{.status.parents[0].controllerName}"
        )
        .await,
        "istio.io/gateway-controller"
    );

    // Unrelated changes write nothing: the status is already what it should be.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let patches = cluster
        .emu
        .requests(Verb::Patch, STATUS_PATCHES)
        .expect("counter");
    cluster
        .apply("apiVersion: v1\nkind: Service\nmetadata: {name: unrelated, namespace: web}\nspec:\n  ports: [{name: http, port: 81}]\n")
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cluster
            .emu
            .requests(Verb::Patch, STATUS_PATCHES)
            .expect("counter"),
        patches,
        "no status churn"
    );

    // A change that matters: the backend appears; broken's refs resolve.
    cluster
        .apply("apiVersion: v1\nkind: Service\nmetadata: {name: missing, namespace: web}\nspec:\n  ports: [{name: http, port: 80}]\n")
        .await;
    eventually(Duration::from_secs(20), "broken resolves", || async {
        let v = get(
            &cluster,
            "httproute",
            "web",
            "broken",
            &condition(".status.parents[0]", "ResolvedRefs", "status"),
        )
        .await;
        (v == "True").then_some(())
    })
    .await
    .expect("ResolvedRefs follows the backend");
}

/// `--kube-write-analysis`: a VirtualService routing to a subset no DestinationRule
/// defines carries Istio's IST0101 in `status.validationMessages`; once the subset exists
/// the message is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_messages_reach_istio_objects_and_leave_when_fixed() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.apply(shoal_kube_emulator::ISTIO_CRDS).await;
    cluster
        .apply(&format!(
            "{}apiVersion: v1\nkind: Service\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n  hosts: [reviews]\n  http: [{{route: [{{destination: {{host: reviews, subset: v2}}}}]}}]\n",
            namespace("shop")
        ))
        .await;
    let shoal = cluster.shoal_with(&["--kube-write-analysis"]).await;
    let code = eventually(Duration::from_secs(30), "IST0101 written", || async {
        let v = get(
            &cluster,
            "virtualservice",
            "shop",
            "reviews",
            "{.status.validationMessages[0].type.code}",
        )
        .await;
        (!v.is_empty()).then_some(v)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    assert_eq!(code, "IST0101");
    cluster
        .apply("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop}\nspec:\n  host: reviews\n  subsets: [{name: v2, labels: {version: v2}}]\n")
        .await;
    eventually(Duration::from_secs(30), "the message removed", || async {
        let v = get(
            &cluster,
            "virtualservice",
            "shop",
            "reviews",
            "{.status.validationMessages}",
        )
        .await;
        v.is_empty().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
}

/// Three replicas read one cluster: only the Raft leader writes status; when it dies, the
/// new leader writes the next change (a spec edit: the new generation is observed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_raft_leader_writes_and_a_new_leader_takes_over() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.apply(GATEWAY_API_CRDS).await;
    cluster.apply(&objects()).await;
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let config_dir = cluster.dir.path().join("config");
    let mut group = shoal_tests::cluster::Cluster::start(
        3,
        &config_dir,
        shoal_tests::cluster::Net::Loopback,
        &["--kubernetes", "--kubeconfig", &kubeconfig],
    )
    .await
    .expect("three replicas");
    let leader = eventually(Duration::from_secs(30), "a leader", || group.leader())
        .await
        .expect("a leader");
    let programmed = condition(".status", "Programmed", "status");
    eventually(Duration::from_secs(30), "PROGRAMMED True", || async {
        let s = get(&cluster, "gateway", "web", "web-gw", &programmed).await;
        (s == "True").then_some(())
    })
    .await
    .expect("the status written");
    // Replicas that looked at a status in the cluster at all (not only those that wrote:
    // a writer finding the status already there writes nothing).
    let writers = |group: &shoal_tests::cluster::Cluster| {
        let admins: Vec<(u64, std::net::SocketAddr)> = group
            .running()
            .into_iter()
            .filter_map(|id| group.replicas.iter().find(|r| r.id == id))
            .map(|r| (r.id, r.admin))
            .collect();
        async move {
            let mut ids = Vec::new();
            for (id, admin) in admins {
                let (_, metrics) = http_get(admin, "/metrics", &[]).await.expect("metrics");
                let checked = metrics.lines().any(|l| {
                    l.starts_with("shoal_kubernetes_status_checks_total") && !l.ends_with(" 0")
                });
                if checked {
                    ids.push(id);
                }
            }
            ids
        }
    };
    assert_eq!(
        writers(&group).await,
        [leader],
        "only the leader checks and writes"
    );

    group.kill(leader);
    let next = eventually(Duration::from_secs(60), "a new leader", || async {
        group.leader().await.filter(|l| *l != leader)
    })
    .await
    .expect("a new leader");
    // A spec edit: generation 2, which only a writer can observe.
    cluster
        .apply("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: web-gw, namespace: web}\nspec:\n  gatewayClassName: istio\n  listeners:\n  - {name: http, port: 80, protocol: HTTP, hostname: '*.example.org'}\n")
        .await;
    let observed = condition(".status", "Accepted", "observedGeneration");
    eventually(Duration::from_secs(60), "generation 2 observed", || async {
        let g = get(&cluster, "gateway", "web", "web-gw", &observed).await;
        (g == "2").then_some(())
    })
    .await
    .expect("the new leader writes");
    assert_eq!(
        writers(&group).await,
        [next],
        "only the new leader checks and writes"
    );
}
