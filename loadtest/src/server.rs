//! The server under test: started by the tool (a `shoal serve` on a generated mesh) or
//! attached to (`--xds`, `--admin`, `--pid`). Measured from the outside: RSS and CPU time
//! from /proc, counters from its /metrics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

pub struct Server {
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    pub pid: Option<u32>,
    pub config_dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Memory and CPU of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// A free port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An HTTP GET returning the body.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("http://{addr}{path}").parse()?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .context("timed out")??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status.is_success(), "{path}: HTTP {status}");
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl Server {
    /// Starts `shoal serve` on `config_dir` (ports chosen here) and waits until ready.
    pub async fn spawn(
        bin: &Path,
        config_dir: &Path,
        log: &Path,
        extra: &[String],
    ) -> anyhow::Result<Server> {
        let xds: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let file = std::fs::File::create(log)?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config-dir")
            .arg(config_dir)
            .arg("--xds-addr")
            .arg(xds.to_string())
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("SHOAL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        let mut server = Server {
            xds,
            admin,
            pid: Some(pid),
            config_dir: config_dir.to_path_buf(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if get(admin, "/ready").await.is_ok() {
                return Ok(server);
            }
            if let Some(c) = server.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                anyhow::bail!("shoal exited ({status}); see {}", log.display());
            }
            anyhow::ensure!(Instant::now() < deadline, "shoal did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn attach(
        xds: SocketAddr,
        admin: SocketAddr,
        pid: Option<u32>,
        config_dir: PathBuf,
    ) -> Server {
        Server {
            xds,
            admin,
            pid,
            config_dir,
            child: None,
        }
    }

    /// RSS and CPU time from /proc (Linux), when the pid is known.
    pub fn usage(&self) -> Option<Usage> {
        let pid = self.pid?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after ')'.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some(Usage {
            rss_bytes: rss_kib * 1024,
            cpu_seconds: (utime + stime) / 100.0,
        })
    }

    /// Settled RSS: the smallest of a few readings (allocators return memory lazily).
    pub async fn settled_usage(&self) -> Option<Usage> {
        let mut best: Option<Usage> = None;
        for _ in 0..5 {
            if let Some(u) = self.usage() {
                best = Some(match best {
                    Some(b) if b.rss_bytes <= u.rss_bytes => Usage {
                        cpu_seconds: u.cpu_seconds,
                        ..b
                    },
                    _ => u,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        best
    }

    /// A counter or gauge from /metrics, summed over its label sets.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = get(self.admin, "/metrics").await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}
