//! A real etcd server for the `serve --etcd` tests: one member on free loopback ports with
//! its data in a temporary directory, killed when its handle drops. It can be stopped and
//! started again on the same data (an outage, a restart), on its own port or another one
//! (where shoal cannot see what happens meanwhile). Tests write keys with the etcd-client
//! crate, never with shoal's own code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Proc, free_port, http_get};

pub struct Etcd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Where clients reach it (`http://` or, with TLS, `https://`).
    pub client: SocketAddr,
    peer: SocketAddr,
    tls: Option<Tls>,
    proc: Option<Proc>,
}

/// Serving certificate, key and the CA that client certificates must chain to (PEM files).
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl Etcd {
    /// Starts etcd `bin` (see [`crate::env::etcd`]) and waits until it is healthy.
    pub async fn start(bin: &Path) -> anyhow::Result<Etcd> {
        Etcd::start_with(bin, None).await
    }

    /// Starts etcd serving clients over TLS, requiring a client certificate.
    pub async fn start_with(bin: &Path, tls: Option<Tls>) -> anyhow::Result<Etcd> {
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let mut etcd = Etcd {
            bin: bin.to_path_buf(),
            dir: tempfile::tempdir()?,
            client: loopback(free_port("127.0.0.1")),
            peer: loopback(free_port("127.0.0.1")),
            tls,
            proc: None,
        };
        etcd.run(etcd.client).await?;
        Ok(etcd)
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS): what `--etcd` takes.
    pub fn endpoint(&self) -> String {
        self.url(self.client)
    }

    fn url(&self, at: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{at}")
    }

    /// Kills the server (SIGKILL: an outage, not a goodbye).
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again on the same data, serving clients at `client` (its own address, or
    /// another one nobody else knows), and waits until it is healthy.
    pub async fn restart_at(&mut self, client: SocketAddr) -> anyhow::Result<()> {
        self.stop();
        self.run(client).await
    }

    /// Starts it again on the same data and address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.restart_at(self.client).await
    }

    /// What it has logged (since it last started).
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }

    async fn run(&mut self, client: SocketAddr) -> anyhow::Result<()> {
        let url = self.url(client);
        let peer = format!("http://{}", self.peer);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--name")
            .arg("shoal-test")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("shoal-test={peer}")])
            .args(["--logger", "zap", "--log-level", "warn"]);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.client_ca)
                .arg("--client-cert-auth");
        }
        let proc = Proc::spawn("etcd", &mut cmd)?;
        // Healthy once the member has elected itself and serves requests. Without TLS,
        // /health answers over plain HTTP; with it, the port is merely tried.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = match &self.tls {
                None => matches!(
                    http_get(client, "/health", &[]).await,
                    Ok((200, body)) if body.contains("true")
                ),
                Some(_) => tokio::net::TcpStream::connect(client).await.is_ok(),
            };
            if up {
                break;
            }
            if let Some(status) = proc.exit_status() {
                anyhow::bail!("etcd exited ({status}):\n{}", proc.log());
            }
            if Instant::now() > deadline {
                anyhow::bail!("etcd not healthy after 30 s:\n{}", proc.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.proc = Some(proc);
        Ok(())
    }
}
