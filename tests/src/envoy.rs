//! Envoy processes connected to shoal over ADS, killed when their handle drops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::{Proc, env, eventually, free_port, http_get};

/// The bootstrap extension internal listeners need (a waypoint's `main_internal` and
/// `connect_originate`): Istio's bootstrap carries it for every proxy.
pub fn internal_listeners() -> serde_json::Value {
    serde_json::json!([{
        "name": "envoy.bootstrap.internal_listener",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
        }
    }])
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
            "bootstrap_extensions": internal_listeners(),
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
            "admin": { "address": { "socket_address": { "address": admin.ip().to_string(), "port_value": admin.port() } } }
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
        let cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        Envoy::run(cmd, admin, bootstrap).await
    }

    /// A pod's sidecar: Envoy inside the pod network `net`, running as Istio's proxy user
    /// ([`crate::netns::PROXY_UID`]) so that the pod's outbound capture leaves its own
    /// connections alone.
    pub async fn start_in_pod(
        net: &crate::netns::PodNet,
        bin: std::path::PathBuf,
        admin: SocketAddr,
        bootstrap: serde_json::Value,
    ) -> anyhow::Result<Envoy> {
        let id = crate::netns::PROXY_UID.to_string();
        let mut cmd = net.command("setpriv");
        cmd.args(["--reuid", &id, "--regid", &id, "--clear-groups"])
            .arg(bin);
        Envoy::run(cmd, admin, bootstrap).await
    }

    async fn run(
        mut cmd: Command,
        admin: SocketAddr,
        bootstrap: serde_json::Value,
    ) -> anyhow::Result<Envoy> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bootstrap.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&bootstrap)?)?;
        // Readable by a proxy that does not run as the test's user.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
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

    /// The active dynamic clusters, as Envoy holds them (the `cluster` of each entry).
    pub async fn clusters(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let dump = self.config_dump().await?;
        let mut out = Vec::new();
        for c in dump["configs"].as_array().into_iter().flatten() {
            for entry in c["dynamic_active_clusters"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push(entry["cluster"].clone());
            }
        }
        Ok(out)
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

    /// What Envoy received over xDS, per type (`CDS`, `EDS`, `LDS`, `RDS`): the names of
    /// its dynamic resources, active or warming (waiting for secrets or endpoints), from
    /// its config dump with endpoints. Static resources of the bootstrap are left out.
    pub async fn received(&self) -> anyhow::Result<BTreeMap<&'static str, BTreeSet<String>>> {
        let (_, body) = http_get(self.admin, "/config_dump?include_eds", &[]).await?;
        let dump: serde_json::Value = serde_json::from_str(&body)?;
        let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
        let mut add = |ty: &'static str, items: &serde_json::Value, name: &[&str]| {
            for item in items.as_array().into_iter().flatten() {
                let n = name.iter().fold(item, |v, k| &v[*k]);
                if let Some(n) = n.as_str() {
                    out.entry(ty).or_default().insert(n.to_string());
                }
            }
        };
        for c in dump["configs"].as_array().into_iter().flatten() {
            let kind = c["@type"].as_str().unwrap_or_default();
            if kind.ends_with(".ClustersConfigDump") {
                add("CDS", &c["dynamic_active_clusters"], &["cluster", "name"]);
                add("CDS", &c["dynamic_warming_clusters"], &["cluster", "name"]);
            } else if kind.ends_with(".ListenersConfigDump") {
                // Listeners in `error_state` only were rejected: not received.
                let held: Vec<serde_json::Value> = c["dynamic_listeners"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|l| l.get("active_state").is_some() || l.get("warming_state").is_some())
                    .cloned()
                    .collect();
                add("LDS", &serde_json::Value::Array(held), &["name"]);
            } else if kind.ends_with(".RoutesConfigDump") {
                add(
                    "RDS",
                    &c["dynamic_route_configs"],
                    &["route_config", "name"],
                );
            } else if kind.ends_with(".EndpointsConfigDump") {
                add(
                    "EDS",
                    &c["dynamic_endpoint_configs"],
                    &["endpoint_config", "cluster_name"],
                );
            }
        }
        Ok(out)
    }
}
