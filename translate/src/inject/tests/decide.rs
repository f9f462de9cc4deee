//! `decide`, rule by rule (Istio's "Controlling the injection policy" and the webhook
//! selectors of its chart).

use serde_json::{Value, json};
use shoal_config::Labels;

use super::{ns, pod};
use crate::inject::*;

#[test]
fn decide_follows_istio_rule_by_rule() {
    use SkipReason::*;
    let enabled = [("istio-injection", "enabled")];
    let canary_ns = [("istio.io/rev", "canary")];
    let default = Settings::default();
    let canary = Settings {
        revision: Some("canary".into()),
        ..Settings::default()
    };
    let disabled = Settings {
        policy: InjectionPolicy::Disabled,
        ..Settings::default()
    };
    let by_default = Settings {
        namespaces_by_default: true,
        ..Settings::default()
    };
    let inject_true = json!({"sidecar.istio.io/inject": "true"});
    let inject_false = json!({"sidecar.istio.io/inject": "false"});
    let host = {
        let mut p = pod(json!({}), json!({}));
        p["spec"]["hostNetwork"] = json!(true);
        p
    };
    let with_proxy = {
        let mut p = pod(json!({}), json!({}));
        p["spec"]["containers"][0]["name"] = json!("istio-proxy");
        p
    };
    let in_kube_system = {
        let mut p = pod(json!({}), json!({}));
        p["metadata"]["namespace"] = json!("kube-system");
        p
    };
    let status = json!({"sidecar.istio.io/status": "{}"});
    let cases: Vec<(&str, Labels, Value, &Settings, Decision)> = vec![
        (
            "namespace enabled",
            ns(&enabled),
            pod(json!({}), json!({})),
            &default,
            Decision::Inject,
        ),
        (
            "host network",
            ns(&enabled),
            host,
            &default,
            Decision::Skip(HostNetwork),
        ),
        (
            "status annotation",
            ns(&enabled),
            pod(json!({}), status),
            &default,
            Decision::Skip(AlreadyInjected),
        ),
        (
            "proxy container",
            ns(&enabled),
            with_proxy,
            &default,
            Decision::Skip(AlreadyInjected),
        ),
        (
            "kube-system",
            Labels::new(),
            in_kube_system,
            &by_default,
            Decision::Skip(SystemNamespace),
        ),
        (
            "pod label false",
            ns(&enabled),
            pod(inject_false.clone(), json!({})),
            &default,
            Decision::Skip(PodOptOut),
        ),
        (
            "pod annotation false",
            ns(&enabled),
            pod(json!({}), inject_false.clone()),
            &default,
            Decision::Skip(PodOptOut),
        ),
        (
            "pod label no",
            ns(&enabled),
            pod(json!({"sidecar.istio.io/inject": "no"}), json!({})),
            &default,
            Decision::Skip(PodOptOut),
        ),
        (
            "label wins over annotation",
            ns(&enabled),
            pod(inject_true.clone(), inject_false.clone()),
            &default,
            Decision::Inject,
        ),
        (
            "namespace disabled",
            ns(&[("istio-injection", "disabled")]),
            pod(inject_true.clone(), json!({})),
            &default,
            Decision::Skip(NamespaceOptOut),
        ),
        (
            "no labels",
            ns(&[]),
            pod(json!({}), json!({})),
            &default,
            Decision::Skip(NotSelected),
        ),
        (
            "pod label true",
            ns(&[]),
            pod(inject_true.clone(), json!({})),
            &default,
            Decision::Inject,
        ),
        (
            "pod label yes is not the selector",
            ns(&[]),
            pod(json!({"sidecar.istio.io/inject": "yes"}), json!({})),
            &default,
            Decision::Skip(NotSelected),
        ),
        (
            "pod annotation true alone",
            ns(&[]),
            pod(json!({}), inject_true.clone()),
            &default,
            Decision::Skip(NotSelected),
        ),
        (
            "namespaces by default",
            ns(&[]),
            pod(json!({}), json!({})),
            &by_default,
            Decision::Inject,
        ),
        (
            "policy disabled",
            ns(&enabled),
            pod(json!({}), json!({})),
            &disabled,
            Decision::Skip(PolicyDisabled),
        ),
        (
            "policy disabled, pod opts in",
            ns(&enabled),
            pod(json!({}), inject_true.clone()),
            &disabled,
            Decision::Inject,
        ),
        (
            "namespace rev default",
            ns(&[("istio.io/rev", "default")]),
            pod(json!({}), json!({})),
            &default,
            Decision::Inject,
        ),
        (
            "namespace rev canary, default plane",
            ns(&canary_ns),
            pod(json!({}), json!({})),
            &default,
            Decision::Skip(OtherRevision("canary".into())),
        ),
        (
            "namespace rev canary, canary plane",
            ns(&canary_ns),
            pod(json!({}), json!({})),
            &canary,
            Decision::Inject,
        ),
        (
            "injection label wins over rev",
            ns(&[("istio-injection", "enabled"), ("istio.io/rev", "canary")]),
            pod(json!({}), json!({})),
            &canary,
            Decision::Skip(OtherRevision("default".into())),
        ),
        (
            "pod rev canary",
            ns(&[]),
            pod(json!({"istio.io/rev": "canary"}), json!({})),
            &canary,
            Decision::Inject,
        ),
        (
            "pod rev other",
            ns(&[]),
            pod(json!({"istio.io/rev": "stable"}), json!({})),
            &canary,
            Decision::Skip(OtherRevision("stable".into())),
        ),
        (
            "pod rev canary, opted out",
            ns(&[]),
            pod(
                json!({"istio.io/rev": "canary", "sidecar.istio.io/inject": "false"}),
                json!({}),
            ),
            &canary,
            Decision::Skip(PodOptOut),
        ),
        (
            "pod label true, canary plane",
            ns(&[]),
            pod(inject_true, json!({})),
            &canary,
            Decision::Skip(OtherRevision("default".into())),
        ),
    ];
    for (name, ns_labels, pod, settings, want) in cases {
        assert_eq!(decide(&ns_labels, &pod, settings), want, "{name}");
    }
}

#[test]
fn skip_reasons_have_metric_names_and_messages() {
    let r = SkipReason::OtherRevision("canary".into());
    assert_eq!(r.as_str(), "other_revision");
    assert!(r.to_string().contains("canary"));
}
