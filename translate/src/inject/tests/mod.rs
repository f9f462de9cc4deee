//! `inject` behaviour by behaviour and on wrong input; `decide` rule by rule (`decide.rs`);
//! any JSON at all and the patch round trip (`robustness.rs`). Whole injected pods are in
//! `tests/golden/inject/`.

mod decide;
mod robustness;

use serde_json::{Value, json};
use shoal_config::Labels;
use shoal_config::k8s::namespace_labels;

use super::*;

pub(super) fn pod(labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "web:1",
                                 "ports": [{"containerPort": 8080, "name": "http"}]}]}
    })
}

pub(super) fn ns(pairs: &[(&str, &str)]) -> Labels {
    let mut l = namespace_labels("shop", None);
    l.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l
}

#[test]
fn wrong_input_is_an_error_naming_what_is_wrong() {
    let layers = ProxyConfigLayers::default();
    let s = Settings::default();
    let run = |p: Value| inject(&p, "shop", &layers, &s);
    assert_eq!(run(json!([1, 2])), Err(InjectError::NotAnObject));
    assert_eq!(run(json!({"metadata": {}})), Err(InjectError::NoContainers));
    assert_eq!(
        run(json!({"spec": {"containers": []}})),
        Err(InjectError::NoContainers)
    );
    match run(json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "x"}]}]}})) {
        Err(InjectError::Malformed { path, .. }) => {
            assert_eq!(path, "spec.containers[0].ports[0].containerPort")
        }
        other => panic!("{other:?}"),
    }
    match run(json!({"metadata": {"labels": {"a": 1}}, "spec": {"containers": [{"name": "a"}]}})) {
        Err(InjectError::Malformed { path, .. }) => assert_eq!(path, "metadata.labels.a"),
        other => panic!("{other:?}"),
    }
    let bad = pod(
        json!({}),
        json!({"proxy.istio.io/config": "concurrency: [1]"}),
    );
    let err = run(bad).unwrap_err();
    assert!(err.to_string().contains("proxy.istio.io/config"), "{err}");
    let bad = pod(json!({}), json!({"sidecar.istio.io/proxyCPU": "fast"}));
    let err = run(bad).unwrap_err();
    assert!(
        err.to_string().contains("sidecar.istio.io/proxyCPU"),
        "{err}"
    );
    let injected = run(pod(json!({}), json!({}))).unwrap();
    assert_eq!(run(injected), Err(InjectError::AlreadyInjected));
    let mut taken = pod(json!({}), json!({}));
    taken["spec"]["volumes"] = json!([{"name": "istio-envoy", "emptyDir": {}}]);
    assert_eq!(
        run(taken),
        Err(InjectError::Conflict {
            kind: "volume",
            name: "istio-envoy".into()
        })
    );
}

pub(super) fn injected(p: &Value, s: &Settings) -> Value {
    inject(p, "shop", &ProxyConfigLayers::default(), s).unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[test]
fn containers_are_ordered_as_istio_orders_them() {
    let mut p = pod(json!({}), json!({}));
    p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m"}]);
    let s = Settings::default();
    let out = injected(&p, &s);
    assert_eq!(names(&out["spec"]["containers"]), ["web", "istio-proxy"]);
    assert_eq!(
        names(&out["spec"]["initContainers"]),
        ["migrate", "istio-init"]
    );

    let hold = pod(
        json!({}),
        json!({"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"}),
    );
    let out = injected(&hold, &s);
    assert_eq!(names(&out["spec"]["containers"]), ["istio-proxy", "web"]);
    assert_eq!(
        out["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"],
        json!(["pilot-agent", "wait"])
    );

    let cni = Settings {
        cni: true,
        ..Settings::default()
    };
    let out = injected(&p, &cni);
    assert_eq!(
        names(&out["spec"]["initContainers"]),
        ["istio-validation", "migrate"]
    );

    let native = Settings {
        native_sidecars: true,
        ..Settings::default()
    };
    let out = injected(&p, &native);
    assert_eq!(names(&out["spec"]["containers"]), ["web"]);
    assert_eq!(
        names(&out["spec"]["initContainers"]),
        ["istio-init", "istio-proxy", "migrate"]
    );
    // A native sidecar needs no hold: Kubernetes starts the app once it is started.
    let out = injected(&hold, &native);
    assert!(
        out["spec"]["initContainers"][1]["lifecycle"]
            .get("postStart")
            .is_none()
    );
    // The pod's annotation turns native sidecars off.
    let opt_out = pod(
        json!({}),
        json!({"sidecar.istio.io/nativeSidecar": "false"}),
    );
    assert_eq!(
        names(&injected(&opt_out, &native)["spec"]["containers"]),
        ["web", "istio-proxy"]
    );
}

#[test]
fn interception_modes() {
    let s = Settings::default();
    let none = pod(
        json!({}),
        json!({"sidecar.istio.io/interceptionMode": "NONE"}),
    );
    let out = injected(&none, &s);
    assert!(out["spec"].get("initContainers").is_none());
    let tproxy = pod(
        json!({}),
        json!({"sidecar.istio.io/interceptionMode": "TPROXY"}),
    );
    let out = injected(&tproxy, &s);
    let proxy = &out["spec"]["containers"][1];
    assert_eq!(proxy["securityContext"]["runAsUser"], json!(0));
    assert_eq!(
        proxy["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN"])
    );
    assert!(
        out["spec"]["initContainers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!("TPROXY"))
    );
}

#[test]
fn images() {
    let s = Settings::default();
    let tag = format!("docker.io/istio/proxyv2:{ISTIO_VERSION}");
    assert_eq!(proxy_image(&s, None, None), tag);
    assert_eq!(proxy_image(&s, Some("not-a-reference"), None), tag);
    assert_eq!(
        proxy_image(&s, Some("r.example/p:1"), None),
        "r.example/p:1"
    );
    assert_eq!(
        proxy_image(&s, None, Some("distroless")),
        format!("{tag}-distroless")
    );
    let distroless = Settings {
        tag: "1.28.1-distroless".into(),
        ..Settings::default()
    };
    assert_eq!(proxy_image(&distroless, None, Some("default")), tag);
    assert_eq!(
        proxy_image(&distroless, None, Some("debug")),
        format!("{tag}-debug")
    );
}

#[test]
fn prometheus_settings_move_to_the_agent() {
    let p = pod(
        json!({}),
        json!({"prometheus.io/port": "9090", "prometheus.io/path": "/m"}),
    );
    let out = injected(&p, &Settings::default());
    let a = &out["metadata"]["annotations"];
    assert_eq!(a["prometheus.io/port"], "15020");
    assert_eq!(a["prometheus.io/path"], "/stats/prometheus");
    let env = &out["spec"]["containers"][1]["env"];
    let app = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "ISTIO_PROMETHEUS_ANNOTATIONS");
    assert_eq!(
        app.unwrap()["value"],
        r#"{"scrape":"","path":"/m","port":"9090"}"#
    );
    // Scraping turned off stays off.
    let off = pod(json!({}), json!({"prometheus.io/scrape": "false"}));
    let out = injected(&off, &Settings::default());
    assert_eq!(
        out["metadata"]["annotations"]["prometheus.io/scrape"],
        "false"
    );
    assert!(
        out["metadata"]["annotations"]
            .get("prometheus.io/port")
            .is_none()
    );
}
