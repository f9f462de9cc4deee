//! Processes under test: shoal, Envoy, Python. Each is killed (and reaped) when dropped;
//! if the test is failing, the tail of its log is printed first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::{env, eventually, free_port};

/// A child process with its log file.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Proc> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log,
            _dir: dir,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- last lines of {} ----", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// An HTTP/1.1 GET with optional headers; returns status and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new()))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .context("HTTP request timed out")??;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A running `shoal serve`.
pub struct Shoal {
    pub xds: SocketAddr,
    /// The TLS xDS port (ADS and the CSR API).
    pub xds_tls: SocketAddr,
    pub admin: SocketAddr,
    pub proc: Proc,
    /// Data dir (the CA lives in `ca/`), removed on drop.
    pub data: tempfile::TempDir,
}

impl Shoal {
    /// Starts shoal on free loopback ports and waits until it is ready.
    pub async fn start(config_dir: &Path, extra: &[&str]) -> anyhow::Result<Shoal> {
        let xds: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")).parse()?;
        // A test may choose the TLS address (to reach it from a network namespace).
        let tls_arg = extra.iter().position(|a| *a == "--xds-tls-addr");
        let xds_tls: SocketAddr = match tls_arg.and_then(|i| extra.get(i + 1)) {
            Some(a) => a.parse()?,
            None => format!("127.0.0.1:{}", free_port("127.0.0.1")).parse()?,
        };
        let data = tempfile::tempdir()?;
        let mut cmd = Command::new(env::shoal_bin());
        cmd.arg("serve")
            .arg("--config-dir")
            .arg(config_dir)
            .arg("--xds-addr")
            .arg(xds.to_string())
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(if tls_arg.is_none() {
                vec!["--xds-tls-addr".to_string(), xds_tls.to_string()]
            } else {
                Vec::new()
            })
            .arg("--data-dir")
            .arg(data.path())
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("SHOAL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let mut shoal = Shoal {
            xds,
            xds_tls,
            admin,
            proc: Proc::spawn("shoal", &mut cmd)?,
            data,
        };
        eventually(Duration::from_secs(30), "shoal /ready", || {
            let admin = shoal.admin;
            async move {
                http_get(admin, "/ready", &[])
                    .await
                    .ok()
                    .filter(|(s, _)| *s == 200)
            }
        })
        .await?;
        anyhow::ensure!(shoal.proc.is_running(), "shoal exited");
        Ok(shoal)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        let (status, body) = http_get(self.admin, path, &[]).await?;
        anyhow::ensure!(status == 200, "{path}: HTTP {status}: {body}");
        Ok(body)
    }

    pub async fn json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.get(path).await?)?)
    }

    /// The config revision the server has loaded.
    pub async fn revision(&self) -> anyhow::Result<u64> {
        Ok(self.json("/debug/configz").await?["revision"]
            .as_u64()
            .unwrap_or(0))
    }
}

/// A running Envoy connected to shoal over ADS.
pub struct Envoy {
    pub admin: SocketAddr,
    pub proc: Proc,
}

impl Envoy {
    /// Starts Envoy with ADS to `xds` (`delta`: DELTA_GRPC, else GRPC). `None` when Envoy is
    /// not installed and SHOAL_SKIP_E2E is set.
    pub async fn start(
        xds: SocketAddr,
        node_id: &str,
        metadata: serde_json::Value,
        delta: bool,
    ) -> anyhow::Result<Option<Envoy>> {
        let node = serde_json::json!({ "id": node_id, "cluster": "test", "metadata": metadata });
        Envoy::start_node(xds, node, delta).await
    }

    /// A bootstrap with ADS to `xds` for `node`, its admin on `admin`.
    pub fn ads_bootstrap(
        xds: SocketAddr,
        node: serde_json::Value,
        delta: bool,
        admin: SocketAddr,
    ) -> serde_json::Value {
        serde_json::json!({
            "node": node,
            "dynamic_resources": {
                "ads_config": {
                    "api_type": if delta { "DELTA_GRPC" } else { "GRPC" },
                    "transport_api_version": "V3",
                    "grpc_services": [{ "envoy_grpc": { "cluster_name": "xds" } }]
                },
                "cds_config": { "ads": {}, "resource_api_version": "V3" },
                "lds_config": { "ads": {}, "resource_api_version": "V3" }
            },
            "static_resources": { "clusters": [{
                "name": "xds",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                },
                "load_assignment": { "cluster_name": "xds", "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                    "socket_address": { "address": xds.ip().to_string(), "port_value": xds.port() }
                } } }] }] }
            }] },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin.port() } } }
        })
    }

    /// As [`Envoy::start`], with the whole bootstrap `node` (e.g. with a `locality`).
    pub async fn start_node(
        xds: SocketAddr,
        node: serde_json::Value,
        delta: bool,
    ) -> anyhow::Result<Option<Envoy>> {
        let Some(bin) = env::envoy() else {
            return Ok(None);
        };
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")).parse()?;
        let bootstrap = Envoy::ads_bootstrap(xds, node, delta, admin);
        let envoy = Envoy::start_bootstrap(bin, admin, bootstrap).await?;
        eventually(Duration::from_secs(30), "envoy ready", || async {
            http_get(admin, "/ready", &[])
                .await
                .ok()
                .filter(|(s, _)| *s == 200)
        })
        .await?;
        Ok(Some(envoy))
    }

    /// Starts Envoy with a whole bootstrap of the caller's (its admin on `admin`).
    pub async fn start_bootstrap(
        bin: std::path::PathBuf,
        admin: SocketAddr,
        bootstrap: serde_json::Value,
    ) -> anyhow::Result<Envoy> {
        Envoy::start_bootstrap_in(None, bin, admin, bootstrap).await
    }

    /// As [`Envoy::start_bootstrap`], inside network namespace `netns` if given.
    pub async fn start_bootstrap_in(
        netns: Option<&str>,
        bin: std::path::PathBuf,
        admin: SocketAddr,
        bootstrap: serde_json::Value,
    ) -> anyhow::Result<Envoy> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bootstrap.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&bootstrap)?)?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("-c")
            .arg(&path)
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg("info")
            .arg("--concurrency")
            .arg("1")
            // Access logs reach their files within a tenth of a second (default 10 s).
            .arg("--file-flush-interval-msec")
            .arg("100");
        let proc = Proc::spawn("envoy", &mut cmd)?;
        let envoy = Envoy { admin, proc };
        // Up (ready or still initializing: a refused proxy never gets ready).
        eventually(Duration::from_secs(30), "envoy admin", || async {
            http_get(admin, "/ready", &[])
                .await
                .ok()
                .filter(|(s, _)| *s == 200 || *s == 503)
        })
        .await
        .with_context(|| envoy.proc.log())?;
        drop(dir);
        Ok(envoy)
    }

    pub async fn config_dump(&self) -> anyhow::Result<serde_json::Value> {
        let (_, body) = http_get(self.admin, "/config_dump", &[]).await?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Names of the active dynamic listeners.
    pub async fn listeners(&self) -> anyhow::Result<Vec<String>> {
        let dump = self.config_dump().await?;
        let mut out = Vec::new();
        for c in dump["configs"].as_array().into_iter().flatten() {
            for l in c["dynamic_listeners"].as_array().into_iter().flatten() {
                if l.get("active_state").is_some() {
                    out.push(l["name"].as_str().unwrap_or_default().to_string());
                }
            }
        }
        Ok(out)
    }
}

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
