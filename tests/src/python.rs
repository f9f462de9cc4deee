//! Python scripts (gRPC's own xDS client) run to completion.

use std::time::Duration;

use anyhow::Context;

use crate::env;

/// Runs a Python script to completion (bounded by `timeout`), returning its stdout.
pub async fn run_python(
    script: &str,
    args: &[String],
    envs: &[(&str, String)],
    timeout: Duration,
) -> anyhow::Result<Option<String>> {
    let Some(python) = env::python() else {
        return Ok(None);
    };
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(env::py_script(script))
        .args(args)
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .context("python timed out")??;
    anyhow::ensure!(
        out.status.success(),
        "{script} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}
