//! Shard groups of real shoal processes: start, kill, restart, and — with network
//! namespaces — cut a replica off the others.
//!
//! With `Net::Namespaces`, each replica runs in its own network namespace, joined to the
//! test by a veth pair on a bridge (root required: tests skip with a message otherwise).
//! Everything is removed when the cluster drops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::netns::sh;
use crate::{Proc, Serve, env, eventually, free_port, http_get};

/// Where replicas live on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Loopback,
    Namespaces,
}

pub struct Replica {
    pub id: u64,
    pub ip: String,
    pub raft: SocketAddr,
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    /// Port of the TLS xDS listener.
    pub tls_port: u16,
    pub netns: Option<String>,
    pub proc: Option<Proc>,
    /// When it was last killed (wall clock ms), for checking the ownership logs.
    pub killed_at_ms: Option<u64>,
}

/// Network namespaces, veth pairs and a bridge, removed on drop.
struct Netns {
    prefix: String,
    bridge: String,
    namespaces: Vec<String>,
}

impl Netns {
    fn create(n: usize) -> anyhow::Result<(Netns, Vec<String>)> {
        let tag = std::process::id() % 10_000;
        let subnet = format!("10.231.{}", std::process::id() % 250);
        let prefix = format!("sh{tag}");
        let bridge = format!("{prefix}br");
        let mut net = Netns {
            prefix: prefix.clone(),
            bridge: bridge.clone(),
            namespaces: Vec::new(),
        };
        sh(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{subnet}.254/24"),
            "dev",
            &bridge,
        ])?;
        sh(&["ip", "link", "set", &bridge, "up"])?;
        let mut ips = Vec::new();
        for k in 1..=n {
            let ns = format!("{prefix}n{k}");
            let host = format!("{prefix}h{k}");
            let peer = format!("{prefix}p{k}");
            let ip = format!("{subnet}.{k}");
            sh(&["ip", "netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            sh(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
            ])?;
            sh(&["ip", "link", "set", &peer, "netns", &ns])?;
            sh(&["ip", "link", "set", &host, "master", &bridge])?;
            sh(&["ip", "link", "set", &host, "up"])?;
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                &peer,
            ])?;
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", &peer, "up"])?;
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
            ips.push(ip);
        }
        Ok((net, ips))
    }

    fn link(&self, k: u64, up: bool) -> anyhow::Result<()> {
        sh(&[
            "ip",
            "link",
            "set",
            &format!("{}h{k}", self.prefix),
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        for k in 1..=self.namespaces.len() {
            let _ = sh(&["ip", "link", "del", &format!("{}h{k}", self.prefix)]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

/// Whether network namespaces can be made here (root with iproute2).
pub fn namespaces_available() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    root && Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub config_dir: PathBuf,
    extra: Vec<String>,
    _work: tempfile::TempDir,
    net: Option<Netns>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Cluster {
    /// `n` replicas serving `config_dir`, started and settled (every shard served).
    pub async fn start(
        n: usize,
        config_dir: &Path,
        net: Net,
        extra: &[&str],
    ) -> anyhow::Result<Cluster> {
        Cluster::start_with_ca(n, config_dir, net, extra, None).await
    }

    /// As [`Cluster::start`], the replicas' CA directory first filled from `ca` (Istio's
    /// plug-in `cacerts` files), so that they sign with that CA.
    pub async fn start_with_ca(
        n: usize,
        config_dir: &Path,
        net: Net,
        extra: &[&str],
        ca: Option<&Path>,
    ) -> anyhow::Result<Cluster> {
        let work = tempfile::tempdir()?;
        if let Some(ca) = ca {
            let dir = work.path().join("ca");
            std::fs::create_dir_all(&dir)?;
            for f in [
                "ca-cert.pem",
                "ca-key.pem",
                "root-cert.pem",
                "cert-chain.pem",
            ] {
                std::fs::copy(ca.join(f), dir.join(f))?;
            }
        }
        let (netns, ips) = match net {
            Net::Loopback => (None, vec!["127.0.0.1".to_string(); n]),
            Net::Namespaces => {
                let (ns, ips) = Netns::create(n)?;
                (Some(ns), ips)
            }
        };
        let mut replicas = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let port = |ip: &str| -> anyhow::Result<SocketAddr> {
                // In namespaces every replica has its own address: fixed ports do.
                let p = if netns.is_some() { 0 } else { free_port(ip) };
                Ok(format!("{ip}:{p}").parse()?)
            };
            let (raft, xds, admin) = if netns.is_some() {
                (
                    format!("{ip}:7001").parse()?,
                    format!("{ip}:7010").parse()?,
                    format!("{ip}:7014").parse()?,
                )
            } else {
                (port(ip)?, port(ip)?, port(ip)?)
            };
            replicas.push(Replica {
                id: i as u64 + 1,
                ip: ip.clone(),
                raft,
                xds,
                admin,
                data_dir: work.path().join(format!("replica-{}", i + 1)),
                tls_port: if netns.is_some() { 7012 } else { free_port(ip) },
                netns: netns.as_ref().map(|n| n.namespaces[i].clone()),
                proc: None,
                killed_at_ms: None,
            });
        }
        let mut cluster = Cluster {
            replicas,
            config_dir: config_dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _work: work,
            net: netns,
        };
        for id in 1..=n as u64 {
            cluster.spawn(id, None)?;
        }
        for id in 1..=n as u64 {
            cluster.wait_ready(id).await?;
        }
        cluster.wait_settled(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// The CA directory every replica shares.
    pub fn ca_dir(&self) -> PathBuf {
        self._work.path().join("ca")
    }

    fn peers(&self) -> String {
        self.replicas
            .iter()
            .map(|r| format!("{}={}", r.id, r.raft))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn replica(&self, id: u64) -> &Replica {
        &self.replicas[(id - 1) as usize]
    }

    /// Starts (or restarts) a replica's process; `join`: join through that Raft address
    /// instead of being an initial voter.
    pub fn spawn(&mut self, id: u64, join: Option<&str>) -> anyhow::Result<()> {
        let peers = self.peers();
        let extra = self.extra.clone();
        let config_dir = self.config_dir.clone();
        let ca_dir = self._work.path().join("ca");
        let r = &mut self.replicas[(id - 1) as usize];
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--raft-addr".into(),
            r.raft.to_string(),
            // Every replica signs with the same CA.
            "--ca-dir".into(),
            ca_dir.display().to_string(),
        ];
        args.extend(extra);
        match join {
            Some(addr) => args.extend(["--join".to_string(), addr.to_string()]),
            None => args.extend(["--peers".to_string(), peers]),
        }
        let serve = Serve {
            bin: env::shoal_bin(),
            config_dir,
            xds: r.xds,
            xds_tls: format!("{}:{}", r.ip, r.tls_port).parse()?,
            admin: r.admin,
            data_dir: r.data_dir.clone(),
            args,
            log_filter: String::new(),
            netns: r.netns.clone(),
        }
        .log_filter_from_env("SHOAL_TEST_LOG", "info,openraft=warn");
        let mut cmd = serve.command();
        r.proc = Some(Proc::spawn(&format!("shoal-{id}"), &mut cmd)?);
        Ok(())
    }

    /// Adds a replica to the cluster (not started).
    pub fn add_replica(&mut self) -> anyhow::Result<u64> {
        anyhow::ensure!(
            self.net.is_none(),
            "adding replicas is only done on loopback"
        );
        let id = self.replicas.len() as u64 + 1;
        let ip = "127.0.0.1";
        let p = || -> anyhow::Result<SocketAddr> { Ok(format!("{ip}:{}", free_port(ip)).parse()?) };
        let data_dir = self._work.path().join(format!("replica-{id}"));
        self.replicas.push(Replica {
            id,
            ip: ip.into(),
            raft: p()?,
            xds: p()?,
            admin: p()?,
            data_dir,
            tls_port: free_port(ip),
            netns: None,
            proc: None,
            killed_at_ms: None,
        });
        Ok(id)
    }

    pub async fn wait_ready(&self, id: u64) -> anyhow::Result<()> {
        let admin = self.replica(id).admin;
        eventually(
            Duration::from_secs(60),
            &format!("replica {id} ready"),
            || async move {
                http_get(admin, "/ready", &[])
                    .await
                    .ok()
                    .filter(|(s, _)| *s == 200)
            },
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            let log = |r: &Replica| r.proc.as_ref().map(|p| p.log()).unwrap_or_default();
            let logs: String = self
                .replicas
                .iter()
                .map(|r| format!("\n--- replica {} ---\n{}", r.id, tail(&log(r), 60)))
                .collect();
            anyhow::anyhow!("{e}{logs}")
        })
    }

    /// Kills a replica outright (SIGKILL).
    pub fn kill(&mut self, id: u64) {
        let r = &mut self.replicas[(id - 1) as usize];
        if let Some(p) = r.proc.take() {
            p.kill();
            r.killed_at_ms = Some(now_ms());
        }
    }

    /// Stops a replica gracefully (SIGTERM, then waits for it).
    pub fn stop(&mut self, id: u64) {
        let r = &mut self.replicas[(id - 1) as usize];
        if let Some(p) = r.proc.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.pid().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while p.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            p.kill();
            r.killed_at_ms = Some(now_ms());
        }
    }

    pub fn running(&self) -> Vec<u64> {
        self.replicas
            .iter()
            .filter(|r| r.proc.is_some())
            .map(|r| r.id)
            .collect()
    }

    pub async fn shardz(&self, id: u64) -> anyhow::Result<serde_json::Value> {
        let (status, body) = http_get(self.replica(id).admin, "/debug/shardz", &[]).await?;
        anyhow::ensure!(status == 200, "shardz: {status}");
        Ok(serde_json::from_str(&body)?)
    }

    /// The shard map a replica holds: owner per shard.
    pub async fn owners(&self, id: u64) -> anyhow::Result<Vec<Option<u64>>> {
        // The Raft port speaks mTLS between replicas only: ask the admin server.
        let v = self.shardz(id).await?;
        Ok(v["owners"]
            .as_array()
            .into_iter()
            .flatten()
            .map(serde_json::Value::as_u64)
            .collect())
    }

    /// The leader as the running replicas agree on it.
    pub async fn leader(&self) -> Option<u64> {
        let mut seen = None;
        for id in self.running() {
            let l = self.shardz(id).await.ok()?["leader"].as_u64();
            if seen.is_some() && seen != l {
                return None;
            }
            seen = l;
        }
        seen
    }

    /// Waits until the running replicas serve every shard between them.
    pub async fn wait_settled(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_settled_among(&self.running(), timeout).await
    }

    /// Waits until these replicas serve every shard between them.
    pub async fn wait_settled_among(&self, ids: &[u64], timeout: Duration) -> anyhow::Result<()> {
        let settled = eventually(timeout, "every shard served", || async {
            let mut serving = 0;
            let mut total = 0;
            for id in ids.iter().copied() {
                let z = self.shardz(id).await.ok()?;
                serving += z["serving"].as_u64()?;
                total = z["owned"]
                    .as_object()?
                    .values()
                    .filter_map(serde_json::Value::as_u64)
                    .sum::<u64>();
            }
            (total > 0 && serving == total).then_some(())
        })
        .await;
        let Err(e) = settled else { return Ok(()) };
        // What each replica thought, to tell a slow handover from a lost lease.
        let mut states = Vec::new();
        for id in ids {
            let z = self.shardz(*id).await.unwrap_or_default();
            states.push(format!(
                "replica {id}: serving {} lease {} leader {} owned {} members {}",
                z["serving"], z["lease"], z["leader"], z["owned"], z["members"]
            ));
        }
        Err(e.context(states.join("\n")))
    }

    /// Waits until the running replicas own an even share each and serve all of it: the
    /// planner has nothing left to move.
    pub async fn wait_balanced(&self, timeout: Duration) -> anyhow::Result<()> {
        let ids = self.running();
        eventually(timeout, "shards evenly spread and served", || async {
            let z = self.shardz(*ids.first()?).await.ok()?;
            let owned = z["owned"].as_object()?;
            let total: u64 = owned.values().filter_map(serde_json::Value::as_u64).sum();
            let share = total / ids.len() as u64;
            let even = ids.iter().all(|id| {
                owned
                    .get(&id.to_string())
                    .and_then(serde_json::Value::as_u64)
                    .is_some_and(|n| n == share || n == share + 1)
            });
            even.then_some(())
        })
        .await?;
        self.wait_settled(timeout).await
    }

    /// Cuts a replica off the network (namespaces only), or reconnects it.
    pub fn link(&self, id: u64, up: bool) -> anyhow::Result<()> {
        self.net
            .as_ref()
            .context("partitions need network namespaces")?
            .link(id, up)
    }

    /// Every replica's ownership log: (replica, time ms, shard, serving?) in order.
    pub fn ownership_events(&self) -> Vec<(u64, u64, u32, bool)> {
        let mut out = Vec::new();
        for r in &self.replicas {
            let Ok(text) = std::fs::read_to_string(r.data_dir.join("ownership.log")) else {
                continue;
            };
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let t = v["t_ms"].as_u64().unwrap_or(0);
                for (key, serving) in [("stop", false), ("serve", true)] {
                    for range in v[key].as_array().into_iter().flatten() {
                        let a = range[0].as_u64().unwrap_or(0) as u32;
                        let b = range[1].as_u64().unwrap_or(0) as u32;
                        for s in a..=b {
                            out.push((r.id, t, s, serving));
                        }
                    }
                }
            }
            // A killed replica stopped serving everything when it died.
            if let Some(t) = r.killed_at_ms {
                out.push((r.id, t, u32::MAX, false));
            }
        }
        out.sort_by_key(|e| e.1);
        out
    }

    /// Checks from the ownership logs that no shard was ever served by two replicas at
    /// once. Returns the violations.
    pub fn double_serving(&self) -> Vec<String> {
        use std::collections::BTreeMap;
        let mut serving: BTreeMap<u32, BTreeMap<u64, u64>> = BTreeMap::new();
        let mut out = Vec::new();
        for (node, t, shard, on) in self.ownership_events() {
            if shard == u32::MAX {
                for owners in serving.values_mut() {
                    owners.remove(&node);
                }
                continue;
            }
            let owners = serving.entry(shard).or_default();
            if on {
                if let Some((other, since)) = owners.iter().find(|(n, _)| **n != node) {
                    out.push(format!("shard {shard}: replica {node} started at {t} while replica {other} served it since {since}"));
                }
                owners.insert(node, t);
            } else {
                owners.remove(&node);
            }
        }
        out
    }
}

/// The last `n` lines of a log.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
