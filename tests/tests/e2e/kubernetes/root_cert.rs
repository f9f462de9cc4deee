//! The `istio-ca-root-cert` ConfigMap: written into every namespace of the mesh (those
//! the discovery selectors include), into namespaces that join later, restored when edited
//! or deleted, and updated when the root rotates.

use std::time::Duration;

use shoal_tests::{env, eventually};

use super::{Cluster, root_cert_in};

fn namespace(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n---\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_certificate_reaches_every_namespace_of_the_mesh() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster
        .apply(&format!(
            "{}{}{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    discoverySelectors: [{{matchLabels: {{mesh: 'on'}}}}]\n",
            namespace("istio-system", ""),
            namespace("shop", "mesh: 'on'"),
            namespace("outside", ""),
        ))
        .await;
    let ca = cluster.dir.path().join("ca");
    let ca_arg = ca.display().to_string();
    let shoal = cluster
        .shoal_with(&["--ca-dir", &ca_arg, "--cert-check-interval", "1s"])
        .await;
    let bundle =
        || std::fs::read_to_string(ca.join("shoal-root/root-cert.pem")).unwrap_or_default();
    let held = |ns: &'static str| {
        let emu = &cluster.emu;
        async move { root_cert_in(emu, ns) }
    };
    let root = bundle();
    for ns in ["shop", "istio-system"] {
        eventually(Duration::from_secs(30), ns, || async {
            held(ns).await.filter(|b| b.trim() == root.trim())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    }
    assert_eq!(held("outside").await, None, "not in the mesh");

    // A namespace that joins later gets it; edits and deletes are undone.
    cluster.apply(&namespace("late", "mesh: 'on'")).await;
    eventually(Duration::from_secs(30), "late", || async {
        held("late").await.filter(|b| b.trim() == root.trim())
    })
    .await
    .expect("the late namespace");
    cluster
        .apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-ca-root-cert, namespace: shop}\ndata: {root-cert.pem: tampered}\n")
        .await;
    eventually(
        Duration::from_secs(30),
        "restored after an edit",
        || async { held("shop").await.filter(|b| b.trim() == root.trim()) },
    )
    .await
    .expect("restored");
    cluster
        .kubectl
        .run(&["delete", "configmap", "istio-ca-root-cert", "-n", "shop"])
        .await;
    eventually(
        Duration::from_secs(30),
        "restored after a delete",
        || async { held("shop").await.filter(|b| b.trim() == root.trim()) },
    )
    .await
    .expect("restored");

    // A root rotation: the new bundle (both roots) reaches the namespaces.
    let out = std::process::Command::new(env::shoal_bin())
        .args(["ca", "rotate", "--ca-dir", &ca_arg])
        .output()
        .expect("shoal ca rotate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = eventually(Duration::from_secs(30), "the rotated bundle", || async {
        held("shop")
            .await
            .filter(|b| b.matches("BEGIN CERTIFICATE").count() == 2)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    assert!(rotated.contains(root.trim()), "the old root stays trusted");
}
