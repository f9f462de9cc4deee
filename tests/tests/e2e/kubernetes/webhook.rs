//! The admission webhooks over real HTTPS, as the API server calls them: AdmissionReviews
//! of the shape kube-apiserver sends, the serving certificate verified against shoal's root
//! for `istiod.istio-system.svc`, and the `caBundle` of the webhook configurations kept
//! current in the cluster.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value, json};
use shoal_tests::https::post_json;
use shoal_tests::{eventually, free_port};

use super::{Cluster, configz};

const SERVER_NAME: &str = "istiod.istio-system.svc";

/// An AdmissionReview as kube-apiserver sends it for a create.
fn review(
    uid: &str,
    group: &str,
    version: &str,
    kind: &str,
    resource: &str,
    object: Value,
) -> Vec<u8> {
    let ns = object["metadata"]["namespace"].clone();
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"].clone(),
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }))
    .unwrap_or_default()
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d6cfb7dfd-", "namespace": "shop",
                     "labels": {"app": "web", "version": "v1", "pod-template-hash": "7d6cfb7dfd"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d6cfb7dfd", "uid": "u", "controller": true}]},
        "spec": {"serviceAccountName": "web",
                 "containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}]},
    })
}

/// [`pod`] sent to `/inject` over HTTPS (verified with `root`): the answer, and its patch.
async fn inject(webhook: SocketAddr, root: &str) -> (Value, json_patch::Patch) {
    let (status, body) = post_json(
        webhook,
        SERVER_NAME,
        root,
        "/inject",
        review("uid-1", "", "v1", "Pod", "pods", pod()),
    )
    .await
    .expect("inject over HTTPS");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("an AdmissionReview");
    let patch = serde_json::from_slice(&base64_decode(
        answer["response"]["patch"].as_str().unwrap_or_default(),
    ))
    .expect("a JSON patch");
    (answer, patch)
}

fn webhook_configuration(bundle: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: istio-sidecar-injector}}\nwebhooks:\n- name: namespace.sidecar-injector.istio.io\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  clientConfig:\n    service: {{name: istiod, namespace: istio-system, path: /inject, port: 443}}\n    caBundle: {bundle}\n  rules:\n  - operations: [CREATE]\n    apiGroups: ['']\n    apiVersions: [v1]\n    resources: [pods]\n  namespaceSelector:\n    matchLabels: {{istio-injection: enabled}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_answer_admission_reviews_over_verified_https() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.apply(shoal_kube_emulator::ISTIO_CRDS).await;
    cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n")
        .await;
    // The configuration as an install writes it: the bundle is shoal's to fill in.
    cluster.apply(&webhook_configuration("''")).await;
    let ca_dir = cluster.dir.path().join("ca");
    let ca = ca_dir.display().to_string();
    let webhook: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("address");
    let addr = webhook.to_string();
    let shoal = cluster
        .shoal_with(&["--ca-dir", &ca, "--webhook-addr", &addr])
        .await;
    let root = std::fs::read_to_string(ca_dir.join("shoal-root/root-cert.pem")).expect("the root");

    // Injection: the pod comes back as a patch adding the sidecar.
    let (answer, patch) = inject(webhook, &root).await;
    assert_eq!(answer["response"]["uid"], "uid-1");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let mut injected = pod();
    json_patch::patch(&mut injected, &patch).expect("the patch applies");
    let names: Vec<&str> = injected["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["web", "istio-proxy"]);

    // Validation: an invalid VirtualService is refused with shoal's issue text.
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "shop"},
        "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}, "weight": "x"}]}]}});
    let (status, body) = post_json(
        webhook,
        SERVER_NAME,
        &root,
        "/validate",
        review(
            "uid-2",
            "networking.istio.io",
            "v1",
            "VirtualService",
            "virtualservices",
            vs,
        ),
    )
    .await
    .expect("validate over HTTPS");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("an AdmissionReview");
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("weight"), "{message}");

    // Not a review, and too big: clear errors, and the server goes on.
    let (status, body) = post_json(
        webhook,
        SERVER_NAME,
        &root,
        "/inject",
        b"{\"kind\": \"Pod\"}".to_vec(),
    )
    .await
    .expect("a response");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not an AdmissionReview"), "{body}");
    let (status, _) = post_json(webhook, SERVER_NAME, &root, "/inject", vec![b' '; 5 << 20])
        .await
        .expect("a response");
    assert_eq!(status, 413);

    // The injector's caBundle: filled in, and restored after an edit.
    let want = base64_encode(root.as_bytes());
    let bundle = || async {
        let v = cluster
            .emu
            .get(
                "mutatingwebhookconfigurations",
                None,
                "istio-sidecar-injector",
            )
            .ok()
            .flatten()?;
        v.pointer("/webhooks/0/clientConfig/caBundle")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    eventually(Duration::from_secs(30), "the caBundle", || async {
        bundle().await.filter(|b| *b == want)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    cluster.apply(&webhook_configuration("Zm9v")).await;
    eventually(Duration::from_secs(30), "the caBundle restored", || async {
        bundle().await.filter(|b| *b == want)
    })
    .await
    .expect("restored");
    let z = configz(&shoal).await;
    assert!(z["issues"].as_array().is_some(), "{z:#}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// What pilot-agent would start Envoy with, read from an injected pod: the discovery
/// address of its `PROXY_CONFIG`, the `ISTIO_META_*` environment as node metadata, the
/// projected token's audience and the root from the ConfigMap its volume names.
struct AgentView {
    discovery_host: String,
    metadata: Map<String, Value>,
    token_audience: String,
    root_config_map: String,
}

fn agent_view(pod: &Value) -> AgentView {
    let containers = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .chain(pod["spec"]["initContainers"].as_array())
        .flatten();
    let proxy = containers
        .into_iter()
        .find(|c| c["name"] == "istio-proxy")
        .expect("an istio-proxy container");
    let env: Vec<&Value> = proxy["env"].as_array().into_iter().flatten().collect();
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    };
    let proxy_config: Value =
        serde_json::from_str(&value("PROXY_CONFIG").unwrap_or_default()).unwrap_or_default();
    let discovery = proxy_config["discoveryAddress"]
        .as_str()
        .unwrap_or("istiod.istio-system.svc:15012");
    let mut metadata: Map<String, Value> = env
        .iter()
        .filter_map(|e| {
            let name = e["name"].as_str()?.strip_prefix("ISTIO_META_")?;
            Some((name.to_string(), e["value"].as_str()?.into()))
        })
        .collect();
    metadata.insert("NAMESPACE".into(), pod["metadata"]["namespace"].clone());
    metadata.insert("LABELS".into(), pod["metadata"]["labels"].clone());
    let volumes: Vec<&Value> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let token_audience = volumes
        .iter()
        .find(|v| v["name"] == "istio-token")
        .and_then(|v| v.pointer("/projected/sources/0/serviceAccountToken/audience"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let root_config_map = volumes
        .iter()
        .find(|v| v["name"] == "istiod-ca-cert")
        .and_then(|v| v.pointer("/configMap/name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    AgentView {
        discovery_host: discovery.split(':').next().unwrap_or_default().to_string(),
        metadata,
        token_audience,
        root_config_map,
    }
}

/// An injected pod's proxy, started as its agent would start it, gets its config and its
/// certificate from shoal: the token of its projected volume reviewed by the API server,
/// the control plane verified with the root of the ConfigMap its volume mounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_pods_proxy_gets_config_and_its_certificate() {
    let Some(bin) = shoal_tests::env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n")
        .await;
    let ca = cluster.dir.path().join("ca");
    let webhook: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("address");
    let shoal = cluster
        .shoal_with(&[
            "--ca-dir",
            &ca.display().to_string(),
            "--webhook-addr",
            &webhook.to_string(),
        ])
        .await;
    let root = std::fs::read_to_string(ca.join("shoal-root/root-cert.pem")).expect("the root");
    let (_, patch) = inject(webhook, &root).await;
    let mut injected = pod();
    json_patch::patch(&mut injected, &patch).expect("the patch applies");
    injected["metadata"]["name"] = "web-7d6cfb7dfd-x1".into();

    let agent = agent_view(&injected);
    assert_eq!(agent.discovery_host, SERVER_NAME);
    assert_eq!(agent.token_audience, "istio-ca");
    assert_eq!(agent.metadata["CLUSTER_ID"], "Kubernetes");
    // The token the kubelet would project, which the API server vouches for.
    let token = super::token("web-pod");
    cluster.emu.add_token_review(
        &token,
        shoal_kube_emulator::ReviewUser {
            username: "system:serviceaccount:shop:web".into(),
            audiences: vec![agent.token_audience.clone()],
            ..Default::default()
        },
    );
    // The root the pod mounts: from the ConfigMap shoal keeps in its namespace.
    let mounted = eventually(Duration::from_secs(30), "the mounted root", || async {
        cluster
            .emu
            .get("configmaps", Some("shop"), &agent.root_config_map)
            .ok()
            .flatten()
            .and_then(|cm| {
                cm.pointer("/data/root-cert.pem")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
    })
    .await
    .expect("istio-ca-root-cert in shop");
    let node = "sidecar~127.0.0.1~web-7d6cfb7dfd-x1.shop~shop.svc.cluster.local";
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("address");
    let bootstrap = shoal_tests::identity::tls_bootstrap_named(
        node,
        Value::Object(agent.metadata),
        shoal.xds_tls(),
        admin,
        &mounted,
        &token,
        &agent.discovery_host,
    );
    let envoy = shoal_tests::Envoy::start_bootstrap(bin, admin, bootstrap)
        .await
        .expect("envoy");
    let uris = eventually(
        Duration::from_secs(30),
        "config and certificate",
        || async {
            let uris = shoal_tests::identity::envoy_cert_uris(envoy.admin).await;
            let clusters = envoy.config_dump().await.ok()?.to_string();
            (!uris.is_empty() && clusters.contains("outbound|80||web.shop.svc.cluster.local"))
                .then_some(uris)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.log()));
    assert_eq!(uris, ["spiffe://cluster.local/ns/shop/sa/web"]);
}

/// Through the API server, as users meet the webhooks: `kubectl apply` of a pod in a
/// namespace labelled for injection stores it with the sidecar; an invalid VirtualService
/// is refused by `kubectl apply` with shoal's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_meets_injection_and_validation_through_the_api_server() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.apply(shoal_kube_emulator::ISTIO_CRDS).await;
    cluster
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n")
        .await;
    let webhook: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("address");
    // The Service `istiod` of the install, where no kube-proxy routes: the emulator is told.
    cluster
        .emu
        .set_service_endpoint("istio-system", "istiod", 443, webhook);
    cluster
        .apply(&format!(
            "{}---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: istio-validator-istio-system}}\nwebhooks:\n- name: validation.istio.io\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  failurePolicy: Fail\n  clientConfig:\n    service: {{name: istiod, namespace: istio-system, path: /validate, port: 443}}\n  rules:\n  - operations: [CREATE, UPDATE]\n    apiGroups: [networking.istio.io, security.istio.io]\n    apiVersions: ['*']\n    resources: ['*']\n",
            webhook_configuration("''").replace("  namespaceSelector:", "  failurePolicy: Fail\n  namespaceSelector:")
        ))
        .await;
    let ca = cluster.dir.path().join("ca");
    let shoal = cluster
        .shoal_with(&[
            "--ca-dir",
            &ca.display().to_string(),
            "--webhook-addr",
            &webhook.to_string(),
        ])
        .await;
    // Once shoal has filled in both caBundles, the API server trusts the webhooks.
    eventually(Duration::from_secs(30), "the caBundles", || async {
        let filled = |kind: &str, name: &str| {
            cluster
                .emu
                .get(kind, None, name)
                .ok()
                .flatten()
                .and_then(|v| {
                    v.pointer("/webhooks/0/clientConfig/caBundle")
                        .and_then(Value::as_str)
                        .map(|b| !b.is_empty())
                })
                .unwrap_or(false)
        };
        (filled("mutatingwebhookconfigurations", "istio-sidecar-injector")
            && filled(
                "validatingwebhookconfigurations",
                "istio-validator-istio-system",
            ))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));

    let pod = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}\nspec:\n  serviceAccountName: web\n  containers: [{{name: web, image: 'nginx:1.27', ports: [{{containerPort: 8080}}]}}]\n"
        )
    };
    cluster.apply(&pod("shop")).await;
    cluster.apply(&pod("plain")).await;
    let containers = |ns: &'static str| {
        let emu = &cluster.emu;
        move || -> Vec<String> {
            emu.get("pods", Some(ns), "web")
                .ok()
                .flatten()
                .and_then(|p| {
                    p.pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .cloned()
                })
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        }
    };
    assert_eq!(containers("shop")(), ["web", "istio-proxy"]);
    assert_eq!(containers("plain")(), ["web"], "not labelled for injection");
    assert!(
        cluster
            .emu
            .admission_calls("namespace.sidecar-injector.istio.io")
            >= 1
    );

    // An invalid VirtualService: kubectl apply fails with shoal's message.
    let file = cluster.dir.path().join("bad-vs.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: shop}\nspec:\n  hosts: [r]\n  http: [{route: [{destination: {host: r}, weight: x}]}]\n",
    )
    .expect("write");
    let out = tokio::process::Command::new(&cluster.kubectl.bin)
        .arg("--kubeconfig")
        .arg(&cluster.kubectl.kubeconfig)
        .args(["apply", "-f", &file.display().to_string()])
        .output()
        .await
        .expect("kubectl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(
        stderr.contains(
            "admission webhook \"validation.istio.io\" denied the request: configuration is invalid"
        ) && stderr.contains("weight"),
        "{stderr}"
    );
    assert!(
        cluster
            .emu
            .get("virtualservices", Some("shop"), "bad")
            .ok()
            .flatten()
            .is_none(),
        "nothing stored"
    );
}
