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
    killed: bool,
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
            // The TLS port on a port of its own; replicas started together share one CA.
            .arg("--xds-tls-addr")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .arg("--ca-dir")
            .arg(log.parent().unwrap_or(Path::new(".")).join("ca"))
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
            killed: false,
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

    /// Starts `n` replicas forming one shard group on `config_dir` (each with its own data
    /// directory under `work`), and waits until every shard is served.
    pub async fn spawn_cluster(
        bin: &Path,
        config_dir: &Path,
        work: &Path,
        n: usize,
        extra: &[String],
    ) -> anyhow::Result<Vec<Server>> {
        let raft: Vec<u16> = (0..n).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        let peers: Vec<String> = raft
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect();
        let mut pending = Vec::new();
        for (i, port) in raft.iter().enumerate() {
            let mut args: Vec<String> = vec![
                "--id".into(),
                (i + 1).to_string(),
                "--raft-addr".into(),
                format!("127.0.0.1:{port}"),
                "--peers".into(),
                peers.join(","),
                "--data-dir".into(),
                work.join(format!("replica-{}", i + 1))
                    .display()
                    .to_string(),
            ];
            args.extend(extra.iter().cloned());
            let log = work.join(format!("shoal-{}.log", i + 1));
            let bin = bin.to_path_buf();
            let dir = config_dir.to_path_buf();
            pending.push(tokio::spawn(async move {
                Server::spawn(&bin, &dir, &log, &args).await
            }));
        }
        let mut servers = Vec::with_capacity(n);
        for p in pending {
            servers.push(p.await??);
        }
        // Every shard served by somebody.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (serving, shards) = served(&servers.iter().collect::<Vec<_>>()).await;
            if shards > 0 && serving == shards {
                return Ok(servers);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the shard group did not settle ({serving}/{shards} shards served)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn is_running(&self) -> bool {
        !self.killed
    }

    /// Kills the server outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.killed = true;
    }

    /// The leader's id, as this replica sees it.
    pub async fn leader(&self) -> Option<u64> {
        let body = get(self.admin, "/debug/shardz").await.ok()?;
        serde_json::from_str::<serde_json::Value>(&body).ok()?["leader"].as_u64()
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
            killed: false,
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

/// (Shards served by these replicas, shards owned in all.)
pub async fn served(servers: &[&Server]) -> (u64, u64) {
    let mut serving = 0u64;
    let mut shards = 0u64;
    for s in servers {
        if let Ok(body) = get(s.admin, "/debug/shardz").await
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
        {
            serving += v["serving"].as_u64().unwrap_or(0);
            shards = shards.max(v["owned"].as_object().map_or(0, |o| {
                o.values().filter_map(serde_json::Value::as_u64).sum()
            }));
        }
    }
    (serving, shards)
}

/// Whether one of these replicas reports `id` as not alive in its shard map.
pub async fn marked_down(servers: &[&Server], id: u64) -> bool {
    for s in servers {
        if let Ok(body) = get(s.admin, "/debug/shardz").await
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
            && v["members"][id.to_string()]["alive"] == serde_json::Value::Bool(false)
        {
            return true;
        }
    }
    false
}
