//! What README promises a newcomer: the example Envoy bootstrap (`examples/envoy/
//! sidecar.yaml`, started by `./scripts/envoy`) connects productpage's sidecar to shoal
//! serving the example mesh, and its listeners and clusters arrive.

use std::time::Duration;

use shoal_tests::{Envoy, env, eventually, free_port, start_shoal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_bootstrap_gets_the_example_mesh() {
    let Some(bin) = env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    let root = env::workspace_root();
    let shoal = start_shoal(&root.join("examples/mesh"), &[]).await.unwrap();
    // The file as shipped, with this test's ports for shoal and Envoy's admin.
    let text = std::fs::read_to_string(root.join("examples/envoy/sidecar.yaml")).unwrap();
    let mut bootstrap: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    bootstrap["admin"]["address"]["socket_address"]["port_value"] = admin.port().into();
    let xds = &mut bootstrap["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
        ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    assert_eq!(xds["port_value"], 15010, "README's plaintext port");
    xds["port_value"] = shoal.xds.port().into();
    let envoy = Envoy::start_bootstrap(bin, admin, bootstrap).await.unwrap();

    let listeners = eventually(
        Duration::from_secs(30),
        "the example's listeners",
        || async {
            let l = envoy.listeners().await.ok()?;
            (l.iter().any(|n| n == "virtualOutbound") && l.iter().any(|n| n == "0.0.0.0_9080"))
                .then_some(l)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.log()));
    assert!(
        listeners.iter().any(|n| n == "virtualInbound"),
        "{listeners:?}"
    );
    let clusters: Vec<String> = envoy
        .clusters()
        .await
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        clusters
            .iter()
            .any(|c| c == "outbound|9080||reviews.bookinfo.svc.cluster.local"),
        "{clusters:?}"
    );
}
