//! Golden tests of sidecar injection: a pod in, the injected pod out (as YAML), one
//! directory per case under `golden/inject/`, to read beside Istio's injection template.
//!
//! Each `golden/inject/CASE/` holds `pod.yaml` (the pod as an admission request carries
//! it), optionally `namespace.yaml` (the namespace's labels; `istio-injection: enabled`
//! without it), `settings.yaml` (injector settings, see [`settings`]), `meshconfig.yaml`
//! (an Istio MeshConfig) and `config.yaml` (ProxyConfig resources), and `injected.yaml`,
//! the expected pod. The patch from `pod.yaml` to `injected.yaml` is checked to apply.
//! Regenerate with `SHOAL_UPDATE_GOLDEN=1 cargo test -p shoal-translate --test inject`,
//! then review the diff against Istio's template.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::Value;
use shoal_config::parse::parse_yaml;
use shoal_config::{ConfigStore, Labels};
use shoal_translate::inject::{self, ProxyConfigLayers, Settings};

fn read_yaml(dir: &Path, file: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    Some(serde_saphyr::from_str(&text).unwrap())
}

/// The case's settings: the defaults, with what `meshconfig.yaml` and then `settings.yaml`
/// (`cni`, `native_sidecars`, `revision`, `network`, `cluster_id`, `ca_address`,
/// `discovery_address`, `image_pull_policy`) set.
fn settings(dir: &Path) -> Settings {
    let mut s = Settings::default();
    if let Ok(text) = std::fs::read_to_string(dir.join("meshconfig.yaml")) {
        let (mesh, _) = shoal_config::mesh_config::parse(&text).unwrap();
        s.apply_mesh_config(&mesh);
    }
    let v = read_yaml(dir, "settings.yaml").unwrap_or_default();
    let string = |key: &str| v[key].as_str().map(str::to_string);
    s.cni = v["cni"].as_bool().unwrap_or(s.cni);
    s.native_sidecars = v["native_sidecars"].as_bool().unwrap_or(s.native_sidecars);
    s.revision = string("revision").or(s.revision);
    s.network = string("network").or(s.network);
    s.image_pull_policy = string("image_pull_policy").or(s.image_pull_policy);
    s.cluster_id = string("cluster_id").unwrap_or(s.cluster_id);
    s.ca_address = string("ca_address").unwrap_or(s.ca_address);
    s.discovery_address = string("discovery_address").unwrap_or(s.discovery_address);
    s
}

fn run_case(dir: &Path) -> Option<String> {
    let pod = read_yaml(dir, "pod.yaml").unwrap();
    let settings = settings(dir);
    let ns_name = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut ns_labels: Labels = read_yaml(dir, "namespace.yaml")
        .map(|v| serde_json::from_value(v).unwrap())
        .unwrap_or_else(|| Labels::from([("istio-injection", "enabled")]));
    ns_labels.extend(shoal_config::k8s::namespace_labels(ns_name, None));
    let decision = inject::decide(&ns_labels, &pod, &settings);
    assert!(decision.is_inject(), "{}: {decision:?}", dir.display());

    let mut store = ConfigStore::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("config.yaml")) {
        store.apply("config.yaml", parse_yaml("config.yaml", &text));
        assert!(
            store.issues().iter().all(|i| !i.is_error()),
            "{:?}",
            store.issues()
        );
    }
    let labels: Labels = serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap();
    let layers = ProxyConfigLayers::for_pod(&store.snapshot(), &settings, ns_name, &labels);
    let injected = inject::inject(&pod, ns_name, &layers, &settings).unwrap();

    let ops = inject::patch(&pod, &injected);
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &ops).unwrap();
    assert_eq!(
        patched,
        injected,
        "{}: the patch does not apply",
        dir.display()
    );

    let got = serde_saphyr::to_string(&injected).unwrap();
    let path = dir.join("injected.yaml");
    if std::env::var_os("SHOAL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return None;
    }
    (std::fs::read_to_string(&path).ok().as_deref() != Some(got.as_str())).then(|| {
        format!(
            "{} differs (SHOAL_UPDATE_GOLDEN=1 to regenerate, then review)",
            path.display()
        )
    })
}

#[test]
fn golden_inject() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inject");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "{cases:?}");
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c)).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
