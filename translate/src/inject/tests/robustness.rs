//! No panic on any input, and patches that turn the pod into the injected pod.

use proptest::prelude::*;
use serde_json::{Value, json};
use shoal_config::Labels;

use super::{injected, pod};
use crate::inject::*;

fn assert_round_trip(original: &Value, injected: &Value) {
    let ops = patch(original, injected);
    let mut patched = original.clone();
    json_patch::patch(&mut patched, &ops).unwrap();
    assert_eq!(&patched, injected);
}

#[test]
fn the_patch_turns_the_pod_into_the_injected_pod() {
    let bare = json!({"spec": {"containers": [{"name": "a", "image": "a"}]}});
    let mut probes = pod(
        json!({"app": "web"}),
        json!({"prometheus.io/scrape": "true"}),
    );
    probes["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5});
    probes["spec"]["initContainers"] = json!([{"name": "init", "image": "i"}]);
    let hold = pod(
        json!({}),
        json!({"proxy.istio.io/config": "{holdApplicationUntilProxyStarts: true}"}),
    );
    let native = Settings {
        native_sidecars: true,
        ..Settings::default()
    };
    for (p, s) in [
        (&bare, &Settings::default()),
        (&probes, &Settings::default()),
        (&probes, &native),
        (&hold, &Settings::default()),
    ] {
        assert_round_trip(p, &injected(p, s));
    }
    // Keys with `/` and `~` are escaped in the patch's paths.
    let tilde = pod(json!({"a~b/c": "x"}), json!({"we~ird/key": "y"}));
    assert_round_trip(&tilde, &injected(&tilde, &Settings::default()));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 :/._*,-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Paths where arbitrary values go into an otherwise valid pod.
const PATHS: [&str; 12] = [
    "/metadata",
    "/metadata/labels",
    "/metadata/annotations",
    "/metadata/ownerReferences",
    "/spec",
    "/spec/containers",
    "/spec/containers/0",
    "/spec/containers/0/ports",
    "/spec/containers/0/readinessProbe",
    "/spec/containers/0/livenessProbe/tcpSocket",
    "/spec/initContainers",
    "/spec/volumes",
];

/// Annotations the injector reads, with arbitrary values.
const ANNOTATIONS: [&str; 8] = [
    "proxy.istio.io/config",
    "sidecar.istio.io/proxyCPU",
    "sidecar.istio.io/proxyMemoryLimit",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "sidecar.istio.io/nativeSidecar",
    "readiness.status.sidecar.istio.io/periodSeconds",
    "prometheus.io/port",
];

fn check_any(p: &Value) {
    let _ = decide(&Labels::new(), p, &Settings::default());
    if let Ok(out) = inject(p, "ns", &ProxyConfigLayers::default(), &Settings::default()) {
        assert_round_trip(p, &out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_json_is_handled_without_panics(v in json_value()) {
        check_any(&v);
    }

    #[test]
    fn any_field_of_a_pod_may_be_wrong(
        at in 0..PATHS.len(),
        v in json_value(),
        key in 0..ANNOTATIONS.len(),
        text in "[ -~\n]{0,40}",
    ) {
        let mut p = pod(json!({"app": "web"}), json!({}));
        p["spec"]["containers"][0]["livenessProbe"] = json!({"tcpSocket": {"port": 8080}});
        p["metadata"]["annotations"][ANNOTATIONS[key]] = json!(text);
        check_any(&p);
        if let Some(slot) = p.pointer_mut(PATHS[at]) {
            *slot = v;
        }
        check_any(&p);
    }
}
