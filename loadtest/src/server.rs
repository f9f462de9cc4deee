//! The one process harness: how `shoal serve` is started, watched and stopped, shared by
//! the load tester and the multi-process tests (`shoal-tests`). A started server (or any
//! other process spawned through [`Proc`]) is killed and reaped when its handle drops.
//!
//! The server under test is measured from the outside: RSS and CPU time from /proc,
//! counters from its /metrics. It is either started here or attached to (`--xds`,
//! `--admin`, `--pid`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// A child process writing stdout and stderr to a log file. Dropping it kills the process
/// (SIGKILL) and reaps it; when the thread is panicking (a failing test) the tail of the
/// log is printed first.
pub struct Proc {
    name: String,
    child: Mutex<Child>,
    log: PathBuf,
    /// Holds the log when the caller chose no place for it.
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// Spawns `cmd` with its log in a temporary directory owned by the handle.
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Proc> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        Proc::spawn_logged(name, cmd, &log, Some(dir))
    }

    /// Spawns `cmd` with its log at `log` (which outlives the process).
    pub fn spawn_logging_to(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        Proc::spawn_logged(name, cmd, log, None)
    }

    fn spawn_logged(
        name: &str,
        cmd: &mut Command,
        log: &Path,
        dir: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Proc> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child: Mutex::new(child),
            log: log.to_path_buf(),
            _dir: dir,
        })
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `None` while it runs, else how it ended.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    pub fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        // A poisoned lock still holds a valid `Child`: killing it must not be skipped.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
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

/// A free TCP port on `ip`, for a process about to be started.
///
/// Ports come from below the kernel's ephemeral range, so the outgoing connections of
/// whatever runs alongside (thousands of simulated proxies) can never take one between this
/// check and the process binding it; a per-process counter keeps concurrent callers apart.
pub fn free_port(ip: &str) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    let high = ephemeral_start().clamp(LOW + 1_000, 32_768);
    let span = high - LOW;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Processes using this (test binaries, load testers) each start at their own place.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        // Istio's ports (15000-15999) and the fixed ports golden views bind on loopback
        // (18080...) are never handed out: a proxy under test may need them.
        if (15_000..16_000).contains(&port) || (18_000..18_100).contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip} in {LOW}..{high}")
}

/// The first port the kernel hands out for outgoing connections.
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A port free on every given address (backends bind the same port on several loopback
/// addresses, like pods of one service).
pub fn free_port_on(ips: &[&str]) -> u16 {
    for _ in 0..200 {
        let p = free_port(ips[0]);
        if ips
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, p)).is_ok())
        {
            return p;
        }
    }
    panic!("no port free on all of {ips:?}")
}

/// A free loopback address (`127.0.0.1:PORT`).
pub fn free_loopback_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")))
}

/// An HTTP/1.1 GET with optional headers, bounded by 10 s; returns status and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    request(addr, path, headers, Duration::from_secs(10)).await
}

/// An HTTP GET of the admin API (bounded by 30 s: a config dump of a large mesh takes a
/// while) returning the body of a successful response.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let (status, body) = request(addr, path, &[], Duration::from_secs(30)).await?;
    anyhow::ensure!(
        (200..300).contains(&status),
        "{path}: HTTP {status}: {body}"
    );
    Ok(body)
}

async fn request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new()))?;
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .with_context(|| format!("GET {path} timed out after {timeout:?}"))??;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The command line of one `shoal serve`. Every address is chosen before the process
/// starts, so callers can hand them to other processes (peers, proxies) first.
#[derive(Debug, Clone)]
pub struct Serve {
    pub bin: PathBuf,
    pub config_dir: PathBuf,
    pub xds: SocketAddr,
    /// The TLS xDS port (ADS and the CSR API).
    pub xds_tls: SocketAddr,
    pub admin: SocketAddr,
    /// `--data-dir`; the CA lives in `ca/` there unless `args` name a `--ca-dir`.
    pub data_dir: PathBuf,
    /// Every other argument (`--id`, `--peers`, `--ca-dir`, the flags under test).
    pub args: Vec<String>,
    /// The process's `RUST_LOG`.
    pub log_filter: String,
    /// Runs the server inside this network namespace (`ip netns exec`, root only).
    pub netns: Option<String>,
}

impl Serve {
    /// `bin serve` on `config_dir`, every port free on loopback, log level `warn`.
    pub fn on_loopback(bin: &Path, config_dir: &Path, data_dir: &Path) -> Serve {
        Serve {
            bin: bin.to_path_buf(),
            config_dir: config_dir.to_path_buf(),
            xds: free_loopback_addr(),
            xds_tls: free_loopback_addr(),
            admin: free_loopback_addr(),
            data_dir: data_dir.to_path_buf(),
            args: Vec::new(),
            log_filter: "warn".into(),
            netns: None,
        }
    }

    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Serve {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// `RUST_LOG` from the environment variable `var` when set, else `default`.
    pub fn log_filter_from_env(mut self, var: &str, default: &str) -> Serve {
        self.log_filter = std::env::var(var).unwrap_or_else(|_| default.into());
        self
    }

    /// The command to spawn.
    pub fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("serve")
            .arg("--config-dir")
            .arg(&self.config_dir)
            .args(["--xds-addr", &self.xds.to_string()])
            .args(["--xds-tls-addr", &self.xds_tls.to_string()])
            .args(["--admin-addr", &self.admin.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUST_LOG", &self.log_filter);
        cmd
    }
}

/// A `shoal serve` under test: started here (killed when dropped) or attached to.
pub struct Server {
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    pub pid: Option<u32>,
    pub config_dir: PathBuf,
    /// What it was started with; `None` when attached.
    serve: Option<Serve>,
    proc: Option<Proc>,
    killed: bool,
    /// Scratch space (the data dir) removed after the process is gone: fields drop in
    /// order, so this must stay after `proc`.
    _scratch: Option<tempfile::TempDir>,
}

/// Memory and CPU of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

impl Server {
    /// Starts `serve` (its log at `log`, or in a temporary file when `None`) and waits up
    /// to `ready_within` for `/ready`; fails early if the process exits.
    pub async fn start(
        serve: Serve,
        log: Option<&Path>,
        ready_within: Duration,
    ) -> anyhow::Result<Server> {
        let mut cmd = serve.command();
        let proc = match log {
            Some(log) => Proc::spawn_logging_to("shoal", &mut cmd, log)?,
            None => Proc::spawn("shoal", &mut cmd)?,
        };
        let server = Server {
            xds: serve.xds,
            admin: serve.admin,
            pid: Some(proc.pid()),
            config_dir: serve.config_dir.clone(),
            serve: Some(serve),
            proc: Some(proc),
            killed: false,
            _scratch: None,
        };
        server.wait_ready(ready_within).await?;
        Ok(server)
    }

    /// Starts `bin serve` on `config_dir` on free loopback ports with a temporary data dir
    /// (removed when the server drops), then waits as [`Server::start`].
    pub async fn start_scratch(
        bin: &Path,
        config_dir: &Path,
        configure: impl FnOnce(Serve) -> Serve,
        ready_within: Duration,
    ) -> anyhow::Result<Server> {
        let scratch = tempfile::tempdir()?;
        let serve = configure(Serve::on_loopback(bin, config_dir, scratch.path()));
        let mut server = Server::start(serve, None, ready_within).await?;
        server._scratch = Some(scratch);
        Ok(server)
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if matches!(http_get(self.admin, "/ready", &[]).await, Ok((200, _))) {
                return Ok(());
            }
            if let Some(p) = &self.proc
                && let Some(status) = p.exit_status()
            {
                anyhow::bail!("shoal exited ({status}):\n{}", p.log());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "shoal not ready after {within:?} (log: {})",
                    self.proc
                        .as_ref()
                        .map_or_else(String::new, |p| p.log_path().display().to_string())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `n` replicas forming one shard group on `config_dir`, each with its data
    /// directory and log under `work` and one CA for all, and waits until every shard is
    /// served.
    pub async fn start_cluster(
        bin: &Path,
        config_dir: &Path,
        work: &Path,
        n: usize,
        extra: &[String],
    ) -> anyhow::Result<Vec<Server>> {
        let raft: Vec<u16> = (0..n).map(|_| free_port("127.0.0.1")).collect();
        let peers: Vec<String> = raft
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect();
        let ca_dir = work.join("ca").display().to_string();
        let mut pending = Vec::new();
        for (i, port) in raft.iter().enumerate() {
            let id = i + 1;
            let serve = Serve::on_loopback(bin, config_dir, &work.join(format!("replica-{id}")))
                .args([
                    "--id",
                    &id.to_string(),
                    "--raft-addr",
                    &format!("127.0.0.1:{port}"),
                    "--peers",
                    &peers.join(","),
                    "--ca-dir",
                    &ca_dir,
                ])
                .args(extra)
                .log_filter_from_env("SHOAL_LOG", "warn");
            let log = work.join(format!("shoal-{id}.log"));
            pending.push(tokio::spawn(async move {
                Server::start(serve, Some(&log), Duration::from_secs(120)).await
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

    /// A server started by someone else.
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
            serve: None,
            proc: None,
            killed: false,
            _scratch: None,
        }
    }

    /// The TLS xDS address it was started with.
    ///
    /// # Panics
    /// On an attached server, whose TLS address is not known here.
    pub fn xds_tls(&self) -> SocketAddr {
        self.started().xds_tls
    }

    /// The data directory it was started with (the CA is in `ca/` unless `--ca-dir`).
    ///
    /// # Panics
    /// On an attached server.
    pub fn data_dir(&self) -> &Path {
        &self.started().data_dir
    }

    fn started(&self) -> &Serve {
        self.serve
            .as_ref()
            .expect("an attached server: only its xDS and admin addresses are known")
    }

    /// The server's log so far (empty for an attached server).
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    /// Not killed here and, when started here, still running.
    pub fn is_running(&self) -> bool {
        !self.killed && self.proc.as_ref().is_none_or(Proc::is_running)
    }

    /// Kills the server outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(p) = &self.proc {
            p.kill();
        }
        self.killed = true;
    }

    /// A successful admin response's body.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        get(self.admin, path).await
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

    /// The leader's id, as this replica sees it.
    pub async fn leader(&self) -> Option<u64> {
        self.json("/debug/shardz").await.ok()?["leader"].as_u64()
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
