//! What a client may assume about a destination namespace's mTLS mode. (Which policies
//! apply to a workload, and the modes they compose to: `scope/policies/tests.rs`.)

#![allow(clippy::unwrap_used)]

use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use super::*;
use crate::MeshOptions;

fn model(yaml: &str) -> Model {
    let mut store = ConfigStore::new();
    store.apply("t.yaml", parse_yaml("t.yaml", yaml));
    let errors: Vec<String> = store
        .issues()
        .iter()
        .filter(|i| i.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    Model::build(store.snapshot(), MeshOptions::default())
}

fn pa(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
    )
}

#[test]
fn destination_namespace_mode_for_auto_mtls() {
    let m = model(
        &(pa("istio-system", "mesh", "  mtls: {mode: STRICT}\n")
            + &pa("legacy", "default", "  mtls: {mode: DISABLE}\n")
            + &pa("unset", "default", "  mtls: {}\n")
            + &pa(
                "wl",
                "w",
                "  selector: {matchLabels: {app: a}}\n  mtls: {mode: DISABLE}\n",
            )),
    );
    assert_eq!(namespace_mode(&m, "legacy"), Some(PeerMode::Disable));
    assert_eq!(namespace_mode(&m, "unset"), Some(PeerMode::Strict));
    // Workload-level policies are not a namespace's mode.
    assert_eq!(namespace_mode(&m, "wl"), Some(PeerMode::Strict));
    assert_eq!(namespace_mode(&model(""), "x"), None);
}
