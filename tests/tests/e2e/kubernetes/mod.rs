//! `shoal serve --kubernetes` against an API server: the kube emulator
//! (`tests/kube-emulator`), driven with `kubectl` as a user drives a cluster, shoal's own
//! client plain kube-rs. Real Envoy where traffic is the proof, a raw delta stream where
//! what is (not) pushed is. `source`: the source's contract (sync, re-list, outages, RBAC);
//! `scope`: what is in the mesh (discovery selectors, revisions, the cluster's MeshConfig);
//! `status`: Gateway API status written back; `bookinfo`: Istio's sample as users apply it;
//! `remote`: other clusters' service discovery through Istio's remote secrets.

use std::path::PathBuf;
use std::time::Duration;

use shoal_kube_emulator::{Emulator, Options};
use shoal_tests::{Shoal, http_get, start_shoal};

mod bookinfo;
mod cacerts;
mod deploy;
mod remote;
mod root_cert;
mod scope;
mod source;
mod status;
mod token_review;
mod webhook;

/// The kubectl the suite uses (`SHOAL_KUBECTL`, its first entry; else `kubectl` on PATH).
pub(super) fn kubectl_path() -> Option<PathBuf> {
    if let Ok(list) = std::env::var("SHOAL_KUBECTL")
        && let Some(first) = list.split(':').find(|p| !p.is_empty())
    {
        return Some(PathBuf::from(first));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kubectl"))
            .find(|p| p.is_file())
    })
}

/// kubectl on one cluster, with its own discovery cache (kubectl 1.20's cache would not
/// see CRDs created after it was written).
pub(super) struct Kubectl {
    pub(super) bin: PathBuf,
    pub(super) kubeconfig: PathBuf,
    /// Holds the cache and the manifests applied.
    pub(super) dir: PathBuf,
}

impl Kubectl {
    /// `kubectl apply -f` of `yaml`, as a user would.
    pub(super) async fn apply(&self, yaml: &str) {
        let file = self.dir.join("apply.yaml");
        std::fs::write(&file, yaml).expect("write manifest");
        self.run(&["apply", "-f", &file.display().to_string()])
            .await;
    }

    /// Drops kubectl's discovery cache (kubectl 1.20 does not look again by itself when a
    /// resource type it has not cached is asked for, e.g. one a CRD just added).
    pub(super) fn forget_discovery(&self) {
        let _ = std::fs::remove_dir_all(self.dir.join("kube-cache"));
    }

    pub(super) async fn run(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(&self.bin)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(self.dir.join("kube-cache"))
                .args(args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kubectl within 60 s")
        .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// An emulated cluster, a kubeconfig for it and the kubectl to drive it.
pub(super) struct Cluster {
    pub(super) emu: Emulator,
    pub(super) dir: tempfile::TempDir,
    pub(super) kubectl: Kubectl,
}

impl Cluster {
    /// `None` (the test skips, saying why) when no kubectl is installed.
    pub(super) async fn start() -> Option<Cluster> {
        let Some(bin) = kubectl_path() else {
            eprintln!("SKIP: no kubectl (set SHOAL_KUBECTL or run scripts/kubectl.sh)");
            return None;
        };
        let emu = Emulator::start(Options::default())
            .await
            .expect("kube emulator");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
        let kubeconfig = dir.path().join("kubeconfig");
        emu.kubeconfig(&kubeconfig).expect("kubeconfig");
        let kubectl = Kubectl {
            bin,
            kubeconfig,
            dir: dir.path().to_path_buf(),
        };
        Some(Cluster { emu, dir, kubectl })
    }

    pub(super) fn kubeconfig(&self) -> PathBuf {
        self.kubectl.kubeconfig.clone()
    }

    pub(super) async fn apply(&self, yaml: &str) {
        self.kubectl.apply(yaml).await;
    }

    /// `shoal serve --kubernetes` on this cluster (with an empty config directory beside).
    pub(super) async fn shoal(&self) -> Shoal {
        self.shoal_with(&[]).await
    }

    /// [`Cluster::shoal`] with more flags.
    pub(super) async fn shoal_with(&self, extra: &[&str]) -> Shoal {
        let kubeconfig = self.kubeconfig().display().to_string();
        let mut args = vec![
            "--kubernetes",
            "--kubeconfig",
            &kubeconfig,
            "--kube-rediscover-interval",
            "1s",
        ];
        args.extend(extra);
        start_shoal(&self.dir.path().join("config"), &args)
            .await
            .expect("shoal serving from the cluster")
    }
}

/// `/debug/configz`.
pub(super) async fn configz(shoal: &Shoal) -> serde_json::Value {
    let (status, body) = http_get(shoal.admin, "/debug/configz", &[])
        .await
        .expect("configz");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("configz is JSON")
}

pub(super) fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n---\n")
}

/// A JWT-shaped token (shoal reads only its issuer and expiry; the API server decides).
pub(super) fn token(name: &str) -> String {
    use base64::Engine;
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 3600)
        .unwrap_or_default();
    format!(
        "{}.{}.{}",
        enc(r#"{"alg":"RS256","kid":"k"}"#),
        enc(&format!(
            r#"{{"iss":"https://kubernetes.default.svc.cluster.local","sub":"system:serviceaccount:shop:web","aud":["istio-ca"],"exp":{exp},"n":"{name}"}}"#
        )),
        enc("signature")
    )
}

/// The first finding of `/debug/configz` whose text contains `needle`.
pub(super) async fn issue_mentioning(shoal: &Shoal, needle: &str) -> Option<String> {
    configz(shoal).await["issues"]
        .as_array()?
        .iter()
        .filter_map(|i| i["message"].as_str())
        .find(|m| m.contains(needle))
        .map(str::to_string)
}

/// The `root-cert.pem` of namespace `ns`'s `istio-ca-root-cert` ConfigMap, if it has one.
pub(super) fn root_cert_in(emu: &Emulator, ns: &str) -> Option<String> {
    emu.get("configmaps", Some(ns), "istio-ca-root-cert")
        .ok()
        .flatten()?
        .pointer("/data/root-cert.pem")?
        .as_str()
        .map(str::to_string)
}

/// Delta responses until none comes for `quiet`, each ACKed.
pub(super) async fn responses(
    s: &mut shoal_tests::xds::DeltaStream,
    quiet: std::time::Duration,
) -> Vec<shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse> {
    s.drain(quiet, usize::MAX).await
}
