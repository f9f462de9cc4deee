//! `deploy/kind/` without docker or kind: the manifests are applied with kubectl to the
//! emulated API server as written, and the StatefulSet's own command line, rendered for
//! its three pods, starts three real replicas that form one shard group.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use shoal_tests::{Proc, env, eventually, http_get};

use super::Cluster;

fn deploy_dir() -> PathBuf {
    env::workspace_root().join("deploy/kind")
}

/// The install's manifests in apply order (as `up.sh` applies them).
const MANIFESTS: [&str; 7] = [
    "00-namespace.yaml",
    "10-crds.yaml",
    "20-rbac.yaml",
    "30-service.yaml",
    "40-statefulset.yaml",
    "50-pdb.yaml",
    "60-webhooks.yaml",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_manifests_are_accepted_as_written() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    for m in MANIFESTS.iter().chain(&["demo.yaml"]) {
        let path = deploy_dir().join(m).display().to_string();
        cluster.kubectl.run(&["apply", "-f", &path]).await;
    }
    let out = cluster
        .kubectl
        .run(&[
            "get",
            "statefulset,service,pdb",
            "-n",
            "istio-system",
            "-o",
            "name",
        ])
        .await;
    for want in [
        "statefulset.apps/shoal",
        "service/istiod",
        "service/shoal-peers",
        "poddisruptionbudget.policy/shoal",
    ] {
        assert!(out.contains(want), "{want} in {out}");
    }
    // The CRDs serve the short names users type.
    cluster.kubectl.forget_discovery();
    let crds = cluster.kubectl.run(&["get", "vs,dr,gw", "-A"]).await;
    assert!(!crds.contains("error"), "{crds}");
    // What `shoal crds` prints is what the install applies.
    let printed = std::process::Command::new(env::shoal_bin())
        .arg("crds")
        .output()
        .expect("shoal crds");
    let committed = std::fs::read_to_string(deploy_dir().join("10-crds.yaml")).expect("crds");
    assert_eq!(String::from_utf8_lossy(&printed.stdout), committed);
}

/// The container args of the StatefulSet, for pod `ordinal`, with the cluster's DNS names
/// and wildcard binds mapped to `ip` (one loopback address per pod, as each pod has its
/// own IP) and its volumes to `data`.
fn pod_args(
    statefulset: &Value,
    ordinal: usize,
    ip_of: &dyn Fn(usize) -> String,
    data: &Path,
) -> Vec<String> {
    let container = &statefulset["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    args.into_iter()
        .map(|a| {
            let mut a = a
                .replace("$(POD_NAME)", &format!("shoal-{ordinal}"))
                .replace("$(SHOAL_REPLICA_ID)", &ordinal.to_string())
                .replace("0.0.0.0:", &format!("{}:", ip_of(ordinal)))
                .replace("/var/lib/shoal", &data.display().to_string());
            for peer in 0..3 {
                a = a.replace(
                    &format!("shoal-{peer}.shoal-peers.istio-system.svc"),
                    &ip_of(peer),
                );
            }
            a
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statefulsets_command_line_forms_one_group() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // What up.sh makes once: the mesh CA as Istio's cacerts Secret (shoal's own root here).
    let ca = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env::shoal_bin())
        .args(["ca", "bundle", "--ca-dir", &ca.path().display().to_string()])
        .output()
        .expect("shoal ca bundle");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read(ca.path().join("shoal-root").join(f)).expect("CA file");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for m in ["00-namespace.yaml", "10-crds.yaml"] {
        let path = deploy_dir().join(m).display().to_string();
        cluster.kubectl.run(&["apply", "-f", &path]).await;
    }
    cluster
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: cacerts, namespace: istio-system}}\ndata:\n  ca-cert.pem: {}\n  ca-key.pem: {}\n  root-cert.pem: {}\n  cert-chain.pem: ''\n",
            b64(&read("root-cert.pem")),
            b64(&read("root-key.pem")),
            b64(&read("root-cert.pem")),
        ))
        .await;

    let text = std::fs::read_to_string(deploy_dir().join("40-statefulset.yaml")).expect("manifest");
    let statefulset: Value = serde_saphyr::from_str(&text).expect("YAML");
    let ip_of = |i: usize| format!("127.0.41.{}", i + 1);
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let work = tempfile::tempdir().expect("tempdir");
    let mut replicas: Vec<Proc> = Vec::new();
    for i in 0..3 {
        let data = work.path().join(format!("shoal-{i}"));
        std::fs::create_dir_all(&data).expect("data dir");
        let args = pod_args(&statefulset, i, &ip_of, &data);
        let mut cmd = std::process::Command::new(env::shoal_bin());
        cmd.args(&args)
            .args(["--kubeconfig", &kubeconfig])
            .env("RUST_LOG", "info");
        replicas.push(Proc::spawn(&format!("shoal-{i}"), &mut cmd).expect("a replica"));
    }
    let admin = |i: usize| -> SocketAddr { format!("{}:15014", ip_of(i)).parse().expect("admin") };
    let logs = |replicas: &[Proc]| {
        replicas
            .iter()
            .map(Proc::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let leaders = eventually(Duration::from_secs(60), "one group, one leader", || async {
        let mut leaders = Vec::new();
        for i in 0..3 {
            let (status, body) = http_get(admin(i), "/debug/shardz", &[]).await.ok()?;
            let shardz: Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
            leaders.push(shardz["leader"].as_u64()?);
        }
        leaders.windows(2).all(|w| w[0] == w[1]).then_some(leaders)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&replicas)));
    assert!(leaders[0] < 3, "{leaders:?}");
    for i in 0..3 {
        let (status, _) = http_get(admin(i), "/ready", &[]).await.expect("ready");
        assert_eq!(status, 200, "shoal-{i} ready");
    }
}

/// `deploy/multicluster/`: its manifests over deploy/kind's, applied with kubectl as
/// written, and the flags `up.sh` adds to the StatefulSet, patched in the way it patches
/// them and then accepted by `shoal serve`'s command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multicluster_manifests_and_flags_are_accepted() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let multicluster = env::workspace_root().join("deploy/multicluster");
    for m in MANIFESTS {
        let path = deploy_dir().join(m).display().to_string();
        cluster.kubectl.run(&["apply", "-f", &path]).await;
    }
    for m in [
        "federation.yaml",
        "eastwest-gateway.yaml",
        "sample.yaml",
        "helloworld-v1.yaml",
        "helloworld-v2.yaml",
    ] {
        let path = multicluster.join(m).display().to_string();
        cluster.kubectl.run(&["apply", "-f", &path]).await;
    }
    let out = cluster
        .kubectl
        .run(&["get", "service,deployment", "-A", "-o", "name"])
        .await;
    for want in [
        "service/shoal-federation",
        "service/istio-eastwestgateway",
        "deployment.apps/istio-eastwestgateway",
        "service/helloworld",
        "deployment.apps/helloworld-v1",
        "deployment.apps/sleep",
    ] {
        assert!(out.contains(want), "{want} in {out}");
    }
    let patch = r#"[
        {"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--cluster-id=east"},
        {"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--network=net-east"},
        {"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--federation-peers=istio-system/shoal"},
        {"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--federate=west=172.18.0.3:30012"},
        {"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--network-gateway=net-west=172.18.0.3:31443"}
    ]"#;
    cluster
        .kubectl
        .run(&[
            "-n",
            "istio-system",
            "patch",
            "statefulset",
            "shoal",
            "--type",
            "json",
            "-p",
            patch,
        ])
        .await;
    let sts: Value = serde_json::from_str(
        &cluster
            .kubectl
            .run(&[
                "-n",
                "istio-system",
                "get",
                "statefulset",
                "shoal",
                "-o",
                "json",
            ])
            .await,
    )
    .expect("the StatefulSet as JSON");
    let data = tempfile::tempdir().expect("tempdir");
    let args = pod_args(&sts, 0, &|i| format!("127.0.0.{}", 10 + i), data.path());
    assert!(
        args.iter().any(|a| a == "--federate=west=172.18.0.3:30012"),
        "{args:?}"
    );
    // clap checks every flag before it honours --help.
    let out = std::process::Command::new(env::shoal_bin())
        .args(&args)
        .arg("--help")
        .output()
        .expect("shoal serve");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
