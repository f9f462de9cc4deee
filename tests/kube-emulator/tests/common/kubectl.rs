//! Running kubectl against an emulator: which kubectl binaries to test (SHOAL_KUBECTL, several
//! separated by ':', else `kubectl` on PATH), each call with its own discovery cache.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use shoal_kube_emulator::Emulator;
use tokio::process::Command;

/// How long one kubectl call may take.
pub const STEP: Duration = Duration::from_secs(30);

pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

pub fn kubectls() -> Vec<PathBuf> {
    match std::env::var("SHOAL_KUBECTL") {
        Ok(v) if !v.is_empty() => v.split(':').map(PathBuf::from).collect(),
        _ => on_path("kubectl").into_iter().collect(),
    }
}

/// Runs `flow` with every kubectl to test; says so and passes when there is none.
pub async fn with_each_kubectl(flow: impl AsyncFn(&Path) -> Result<()>) -> Result<()> {
    let bins = kubectls();
    if bins.is_empty() {
        eprintln!(
            "SKIPPED: no kubectl (set SHOAL_KUBECTL, e.g. SHOAL_KUBECTL=$(scripts/kubectl.sh))"
        );
        return Ok(());
    }
    for bin in bins {
        flow(&bin)
            .await
            .with_context(|| format!("with {}", bin.display()))?;
    }
    Ok(())
}

pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    calls: std::cell::Cell<u32>,
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(bin: &Path, emu: &Emulator) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        emu.kubeconfig(&kubeconfig)?;
        Ok(Kubectl {
            bin: bin.to_path_buf(),
            kubeconfig,
            dir,
            calls: std::cell::Cell::new(0),
        })
    }

    pub fn command(&self, args: &[&str]) -> Command {
        // A fresh discovery cache per call: kubectl 1.20 does not re-read discovery for short
        // names of CRDs created after its cache was written (nor would it against a real server).
        self.calls.set(self.calls.get() + 1);
        let cache = self.dir.path().join(format!("cache-{}", self.calls.get()));
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    pub async fn run(&self, args: &[&str]) -> Result<Out> {
        let out = tokio::time::timeout(STEP, self.command(args).output())
            .await
            .with_context(|| format!("kubectl {args:?} timed out"))??;
        Ok(Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs and requires success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        let o = self.run(args).await?;
        ensure!(o.ok, "kubectl {args:?} failed:\n{}\n{}", o.stdout, o.stderr);
        Ok(o.stdout)
    }

    pub fn write(&self, name: &str, yaml: &str) -> Result<String> {
        let p = self.dir.path().join(name);
        std::fs::write(&p, yaml)?;
        Ok(p.to_string_lossy().into_owned())
    }
}
