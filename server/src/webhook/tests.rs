use serde_json::{Value, json};
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use super::review::Request;
use super::*;

fn request(operation: &str, namespace: &str, object: Value) -> Request {
    Request {
        api_version: "admission.k8s.io/v1".into(),
        uid: "u".into(),
        operation: operation.into(),
        namespace: namespace.into(),
        name: String::new(),
        object,
        dry_run: false,
    }
}

fn cluster() -> ConfigSnapshot {
    let mut store = ConfigStore::new();
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n";
    store.apply("ns.yaml", parse_yaml("ns.yaml", yaml));
    store.snapshot()
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d6cfb7dfd-", "labels": {"app": "web", "version": "v1"}},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}]},
    })
}

fn applied(object: &Value, verdict: &Verdict) -> Value {
    let patch: json_patch::Patch =
        serde_json::from_value(verdict.patch.clone().unwrap_or(json!([]))).expect("a patch");
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).expect("the patch applies");
    out
}

fn containers(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_pod_of_an_injected_namespace_gets_the_sidecar_by_patch() {
    let (verdict, result) = injection(
        &request("CREATE", "shop", pod()),
        &cluster(),
        &Settings::default(),
    );
    assert_eq!(result, "injected");
    assert!(verdict.allowed);
    let injected = applied(&pod(), &verdict);
    assert_eq!(containers(&injected), ["web", "istio-proxy"]);
    assert!(
        injected
            .pointer("/metadata/annotations/sidecar.istio.io~1status")
            .is_some()
    );
}

#[test]
fn opt_outs_and_other_namespaces_are_admitted_unchanged() {
    let cfg = cluster();
    let settings = Settings::default();
    let mut opted_out = pod();
    opted_out["metadata"]["labels"]["sidecar.istio.io/inject"] = "false".into();
    for (ns, object) in [("plain", pod()), ("shop", opted_out), ("absent", pod())] {
        let (verdict, result) = injection(&request("CREATE", ns, object), &cfg, &settings);
        assert!(verdict.allowed && verdict.patch.is_none(), "{ns}: {result}");
        assert_ne!(result, "injected");
    }
    let (verdict, result) = injection(&request("UPDATE", "shop", pod()), &cfg, &settings);
    assert!(verdict.patch.is_none());
    assert_eq!(result, "not_create");
}

#[test]
fn a_pod_that_cannot_be_injected_is_admitted_with_a_warning() {
    let mut broken = pod();
    broken["metadata"]["annotations"] = json!({"proxy.istio.io/config": "concurrency: [oops"});
    let (verdict, result) = injection(
        &request("CREATE", "shop", broken),
        &cluster(),
        &Settings::default(),
    );
    assert_eq!(result, "error");
    assert!(verdict.allowed && verdict.patch.is_none());
    assert!(
        verdict.warnings[0].contains("proxy.istio.io/config"),
        "{:?}",
        verdict.warnings
    );
}

#[test]
fn invalid_istio_objects_are_refused_with_the_field() {
    let vs = |weight: Value| {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "r"},
               "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}, "weight": weight}]}]}})
    };
    let denied = validation(&request("CREATE", "shop", vs(json!("x"))));
    assert!(!denied.allowed);
    let message = denied.message.unwrap_or_default();
    assert!(
        message.starts_with("configuration is invalid: ") && message.contains("weight"),
        "{message}"
    );
    assert!(validation(&request("CREATE", "shop", vs(json!(100)))).allowed);
    assert!(validation(&request("DELETE", "shop", Value::Null)).allowed);
    // Kinds shoal does not read are not its to refuse.
    let other =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    assert!(validation(&request("CREATE", "shop", other)).allowed);
}

proptest::proptest! {
    #[test]
    fn no_object_panics_either_webhook(
        text in "[ -~]{0,200}",
        key in "(spec|metadata|status|kind|apiVersion)",
    ) {
        let cfg = cluster();
        let mut object = pod();
        object[key.as_str()] = Value::String(text.clone());
        let _ = injection(&request("CREATE", "shop", object.clone()), &cfg, &Settings::default());
        let _ = validation(&request("CREATE", "shop", object));
    }
}

#[test]
fn injection_follows_the_running_mesh_config() {
    let base = Settings {
        default_proxy_config: Some(json!({"concurrency": 2})),
        ..Settings::default()
    };
    let mut options = MeshOptions {
        trust_domain: "corp.example".into(),
        proxy_defaults: Some(json!({"concurrency": 4})),
        ..MeshOptions::default()
    };
    let now = settings_now(&base, &options);
    assert_eq!(now.trust_domain, "corp.example");
    assert_eq!(now.default_proxy_config, Some(json!({"concurrency": 4})));
    // defaultConfig removed from the MeshConfig: gone from injection too.
    options.proxy_defaults = None;
    assert_eq!(settings_now(&base, &options).default_proxy_config, None);
}
