//! A pod's network: a network namespace joined to the host by a veth pair (host side
//! `.1`, pod side `.2` of a /24 of its own), with the traffic capture Istio's init
//! container installs, removed on drop. Root with iproute2 and iptables only
//! ([`PodNet::available`] says whether this machine has them).

use std::process::Command;

use anyhow::Context;

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    anyhow::ensure!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The uid Istio's sidecar runs as: its own connections are never captured.
pub const PROXY_UID: u32 = 1337;

pub struct PodNet {
    pub name: String,
    pub host_ip: String,
    pub pod_ip: String,
    /// The veth end on the host.
    host_if: String,
}

impl PodNet {
    /// Whether pod networks can be made here: root, iproute2, iptables and setpriv (to run
    /// the proxy as [`PROXY_UID`]).
    pub fn available() -> bool {
        let runs = |c: &str, a: &str| {
            Command::new(c)
                .arg(a)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        crate::cluster::namespaces_available()
            && runs("iptables", "-V")
            && runs("setpriv", "--version")
    }

    /// A new pod network, unique in this process and across concurrent processes.
    pub fn create() -> anyhow::Result<PodNet> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() * 7 + n) % 250;
        let name = format!("shoalpod{}-{n}", std::process::id());
        let (host_if, pod_if) = (format!("sp{id}h"), format!("sp{id}p"));
        let (host_ip, pod_ip) = (format!("10.214.{id}.1"), format!("10.214.{id}.2"));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        sh(&["ip", "netns", "add", &name])?;
        let net = PodNet {
            name,
            host_ip,
            pod_ip,
            host_if: host_if.clone(),
        };
        sh(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &pod_if,
        ])?;
        sh(&["ip", "link", "set", &pod_if, "netns", &net.name])?;
        let host_cidr = format!("{}/24", net.host_ip);
        sh(&["ip", "addr", "add", &host_cidr, "dev", &host_if])?;
        sh(&["ip", "link", "set", &host_if, "up"])?;
        let pod_cidr = format!("{}/24", net.pod_ip);
        net.exec(&["ip", "addr", "add", &pod_cidr, "dev", &pod_if])?;
        net.exec(&["ip", "link", "set", &pod_if, "up"])?;
        net.exec(&["ip", "link", "set", "lo", "up"])?;
        // Every other address is reached through the host (captured connections to
        // addresses nobody has still need a route before iptables redirects them).
        net.exec(&["ip", "route", "add", "default", "via", &net.host_ip])?;
        Ok(net)
    }

    /// One more host address the pod reaches directly (`.N` of the pod network's /24, on
    /// the host's veth end): another "pod" whose servers run on the host. Gone with the
    /// veth when the network is dropped.
    pub fn host_alias(&self, n: u8) -> anyhow::Result<String> {
        let prefix = self
            .host_ip
            .rsplit_once('.')
            .map(|(p, _)| p)
            .context("host address")?;
        let ip = format!("{prefix}.{n}");
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{ip}/32"),
            "dev",
            &self.host_if,
        ])?;
        Ok(ip)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// What the init container does for inbound traffic: connections to the
    /// application's `port` go to Envoy's `virtualInbound` (15006).
    pub fn capture_inbound(&self, port: u16) -> anyhow::Result<()> {
        let port = port.to_string();
        self.exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "REDIRECT",
            "--to-ports",
            "15006",
        ])
    }

    /// What the init container does for outbound traffic: every TCP connection the pod
    /// opens goes to Envoy's `virtualOutbound` (15001), except the proxy's own (it runs as
    /// [`PROXY_UID`]) and those to loopback. Envoy reads the original destination back.
    pub fn capture_outbound(&self) -> anyhow::Result<()> {
        let uid = PROXY_UID.to_string();
        let nat = ["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp"];
        let rule = |extra: &[&str]| {
            let mut args = nat.to_vec();
            args.extend_from_slice(extra);
            self.exec(&args)
        };
        rule(&["-m", "owner", "--uid-owner", &uid, "-j", "RETURN"])?;
        rule(&["-d", "127.0.0.0/8", "-j", "RETURN"])?;
        rule(&["-j", "REDIRECT", "--to-ports", "15001"])
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
