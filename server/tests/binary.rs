//! Makes `cargo test` build the `shoal` binary, which the multi-process tests in `tests/`
//! run, and checks its command line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn validate_accepts_the_example_mesh_and_rejects_bad_config() {
    let bin = env!("CARGO_BIN_EXE_shoal");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = Command::new(bin)
        .arg("validate")
        .arg(root.join("examples/mesh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subset: v9}\n",
    )
    .unwrap();
    let out = Command::new(bin)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.yaml:1 (document 1): VirtualService default/r: spec.http[0].route[0].destination.subset"), "{text}");
}

/// `validate --etcd` (the reading itself is tested against a real etcd in
/// `tests/tests/e2e/etcd.rs`) refuses what can never work before trying, naming the flag.
#[test]
fn validate_refuses_an_etcd_endpoint_that_is_not_a_url() {
    let bin = env!("CARGO_BIN_EXE_shoal");
    let out = Command::new(bin)
        .args(["validate", "--etcd", "127.0.0.1:2379"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--etcd: etcd endpoint \"127.0.0.1:2379\" is not http://HOST:PORT"),
        "{text}"
    );
    let out = Command::new(bin).arg("validate").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a directory or --etcd is needed"
    );
}

/// As `istioctl analyze`: undefined subsets and unknown hosts of `tcp` and `tls` routes are
/// reported as those of `http` routes are.
#[test]
fn validate_checks_tcp_and_tls_route_destinations() {
    let bin = env!("CARGO_BIN_EXE_shoal");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("l4.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  ports: [{name: tcp, port: 5432}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: l4}\nspec:\n  hosts: [db, api.example.com]\n\
         \x20 tcp:\n  - route:\n    - destination: {host: db, subset: primary}\n\
         \x20 tls:\n  - match: [{sniHosts: [api.example.com]}]\n    route:\n    - destination: {host: nowhere.example.com}\n",
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["validate", "--warnings"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the undefined subset is an error: {text}"
    );
    assert!(
        text.contains("spec.tcp[0].route[0].destination.subset"),
        "{text}"
    );
    assert!(
        text.contains("spec.tls[0].route[0].destination.host")
            && text.contains("nowhere.example.com"),
        "{text}"
    );
}
