//! The admission webhooks over real HTTPS, as the API server calls them: AdmissionReviews
//! of the shape kube-apiserver sends, the serving certificate verified against shoal's root
//! for `istiod.istio-system.svc`, and the `caBundle` of the webhook configurations kept
//! current in the cluster.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
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
    let (status, body) = post_json(
        webhook,
        SERVER_NAME,
        &root,
        "/inject",
        review("uid-1", "", "v1", "Pod", "pods", pod()),
    )
    .await
    .expect("inject over HTTPS");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("an AdmissionReview");
    assert_eq!(answer["response"]["uid"], "uid-1");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let patch = base64_decode(answer["response"]["patch"].as_str().unwrap_or_default());
    let patch: Vec<Value> = serde_json::from_slice(&patch).expect("a JSON patch");
    let adds_proxy = patch.iter().any(|op| {
        op["value"]["name"] == "istio-proxy"
            || op["value"]
                .as_array()
                .is_some_and(|l| l.iter().any(|c| c["name"] == "istio-proxy"))
    });
    assert!(adds_proxy, "{patch:#?}");

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
