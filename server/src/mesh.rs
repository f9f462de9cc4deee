//! The mesh-wide options of `serve`: its flags, over what Istio's MeshConfig sets, over
//! the defaults. The MeshConfig comes from `--mesh-config` (read at start — an error there
//! stops the start — and then watched) or, with `--kubernetes` and no file, from the
//! cluster's `istio` ConfigMap (delivered by the source, applied by the pipeline). A changed
//! MeshConfig moves every view to the new options; a broken one is reported and the last
//! good options stay in force. A flag given explicitly always wins over the MeshConfig.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_config::mesh_config::{self, MeshConfig};
use shoal_config::mesh_networks::MeshNetworks;
use shoal_translate::MeshOptions;

use crate::cli::ServeArgs;
use crate::config::MeshBase;
use crate::pipeline::Pipeline;

/// How often the MeshConfig file is checked for changes (a mounted ConfigMap changes by
/// a symlink swap, which file events do not reliably report).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The options the flags alone give.
pub fn from_flags(args: &ServeArgs) -> MeshOptions {
    MeshOptions {
        domain_suffix: args.domain_suffix.clone(),
        root_namespace: args.root_namespace.clone(),
        outbound_traffic_policy: args.outbound_traffic_policy.into(),
        federation_export: args.federation_export.into(),
        jwks_fetch: args.jwks_fetch.into(),
        trust_domain: args.security.trust_domain.clone(),
        revision: args.revision.clone(),
        cluster_id: args.webhook.cluster_id.clone(),
        network: args.webhook.network.clone().unwrap_or_default(),
        network_gateways: args
            .webhook
            .network_gateways
            .iter()
            .filter_map(|g| network_gateway(g).ok())
            .collect(),
        ..MeshOptions::default()
    }
}

/// Parses `NETWORK=IP:PORT` (`--network-gateway`).
pub fn network_gateway(s: &str) -> Result<(String, (String, u16)), String> {
    let bad = || format!("--network-gateway {s:?} is not NETWORK=IP:PORT");
    let (network, addr) = s.split_once('=').ok_or_else(bad)?;
    let addr: std::net::SocketAddr = addr.parse().map_err(|_| bad())?;
    if network.is_empty() {
        return Err(bad());
    }
    Ok((network.to_string(), (addr.ip().to_string(), addr.port())))
}

/// `flags` with what `mesh` sets, except where a flag was given explicitly.
fn combine(flags: &MeshOptions, explicit: &BTreeSet<String>, mesh: &MeshConfig) -> MeshOptions {
    let mut options = flags.clone();
    options.apply_mesh_config(mesh);
    if explicit.contains("trust_domain") {
        options.trust_domain = flags.trust_domain.clone();
    }
    if explicit.contains("root_namespace") {
        options.root_namespace = flags.root_namespace.clone();
    }
    if explicit.contains("outbound_traffic_policy") {
        options.outbound_traffic_policy = flags.outbound_traffic_policy;
    }
    options
}

/// Reads and checks a MeshConfig from `origin`, logging its warnings.
fn read(origin: &str, text: &str) -> anyhow::Result<MeshConfig> {
    let (mesh, issues) = mesh_config::parse(text).with_context(|| origin.to_string())?;
    for i in &issues {
        tracing::warn!(origin, "MeshConfig {i}");
    }
    Ok(mesh)
}

/// The options a MeshConfig `text` from `origin` gives (`None`: there is none, the flags
/// and defaults apply), or why it is refused. The trust domain stays the running one: the
/// CA signs for it until a restart.
pub fn options(
    base: &MeshBase,
    origin: &str,
    text: Option<&str>,
    running: &MeshOptions,
) -> anyhow::Result<MeshOptions> {
    let mesh = match text {
        Some(text) => read(origin, text)?,
        None => MeshConfig::default(),
    };
    let mut options = combine(&base.flags, &base.explicit, &mesh);
    // MeshNetworks is a document of its own: a MeshConfig change keeps the running one.
    options.mesh_networks = running.mesh_networks.clone();
    if options.trust_domain != running.trust_domain {
        tracing::warn!(
            running = %running.trust_domain,
            wanted = %options.trust_domain,
            origin,
            "MeshConfig trustDomain changed: it takes effect at the next restart"
        );
        options.trust_domain = running.trust_domain.clone();
    }
    Ok(options)
}

/// The options to start with: `flags` combined with the MeshConfig file at `path` (an
/// error there stops the start).
pub fn load(
    path: &Path,
    flags: &MeshOptions,
    explicit: &BTreeSet<String>,
) -> anyhow::Result<MeshOptions> {
    let origin = format!("--mesh-config {}", path.display());
    let text = std::fs::read_to_string(path).with_context(|| origin.clone())?;
    let options = combine(flags, explicit, &read(&origin, &text)?);
    tracing::info!(
        file = %path.display(),
        trust_domain = %options.trust_domain,
        root_namespace = %options.root_namespace,
        auto_mtls = options.auto_mtls,
        "MeshConfig read"
    );
    Ok(options)
}

/// Reads a MeshNetworks document (`--mesh-networks`), logging what it leaves out.
pub fn parse_networks(
    origin: &str,
    text: &str,
) -> Result<MeshNetworks, shoal_config::mesh_networks::ParseError> {
    let (networks, left_out) = shoal_config::mesh_networks::parse(text)?;
    for i in &left_out {
        tracing::warn!(origin, "MeshNetworks {i} (left out)");
    }
    Ok(networks)
}

/// The MeshNetworks to start with, from `path` (an error there stops the start).
pub fn load_networks(path: &Path) -> anyhow::Result<MeshNetworks> {
    let origin = format!("--mesh-networks {}", path.display());
    let text = std::fs::read_to_string(path).with_context(|| origin.clone())?;
    let networks = parse_networks(&origin, &text).with_context(|| origin.clone())?;
    tracing::info!(file = %path.display(), networks = networks.networks.len(), "MeshNetworks read");
    Ok(networks)
}

/// Which document a watched file holds.
#[derive(Debug, Clone)]
pub enum Document {
    /// A MeshConfig, combined with the flags of `MeshBase`.
    MeshConfig(Box<MeshBase>),
    MeshNetworks,
}

/// Follows a MeshConfig or MeshNetworks file while running.
pub struct Watch {
    path: std::path::PathBuf,
    document: Document,
}

impl Watch {
    pub fn new(path: &Path, document: Document) -> Watch {
        Watch {
            path: path.to_path_buf(),
            document,
        }
    }

    fn flag(&self) -> &'static str {
        match self.document {
            Document::MeshConfig(_) => "--mesh-config",
            Document::MeshNetworks => "--mesh-networks",
        }
    }

    /// Applies every change of the file until the task is dropped.
    pub async fn run(self, pipeline: Arc<Pipeline>) {
        let path = &self.path;
        let mut last = std::fs::read_to_string(path).ok();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tick.tick().await;
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    if last.is_some() {
                        tracing::warn!(file = %path.display(), error = %e, flag = self.flag(), "unreadable; keeping the last good document");
                    }
                    last = None;
                    continue;
                }
            };
            if last.as_deref() == Some(text.as_str()) {
                continue;
            }
            last = Some(text.clone());
            let origin = format!("{} {}", self.flag(), path.display());
            match &self.document {
                Document::MeshConfig(base) => {
                    pipeline
                        .clone()
                        .mesh_config(base, &origin, Some(&text))
                        .await;
                }
                Document::MeshNetworks => {
                    pipeline.clone().mesh_networks(&origin, Some(&text)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Command, parse_from};
    use crate::config::Config;

    fn resolve(extra: &[&str]) -> anyhow::Result<Config> {
        let dir = std::env::temp_dir().display().to_string();
        let mut argv = vec!["shoal", "serve", "--config-dir", &dir];
        argv.extend(extra);
        let parsed = parse_from(argv)?;
        match parsed.command {
            Command::Serve(args) => Config::resolve(&args, &parsed.explicit),
            other => anyhow::bail!("not serve: {other:?}"),
        }
    }

    #[test]
    fn a_changed_file_keeps_the_running_trust_domain_and_refuses_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("mesh.yaml");
        let path = file.display().to_string();
        std::fs::write(&file, "trustDomain: a.example\n").unwrap_or_else(|e| panic!("{e}"));
        let config = resolve(&["--mesh-config", &path]).unwrap_or_else(|e| panic!("{e:#}"));
        let running = config.mesh.options;
        let base = &config.mesh.base;
        let changed = |text| super::options(base, "test", Some(text), &running);
        let next = changed("trustDomain: b.example\nenableAutoMtls: false\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(next.trust_domain, "a.example");
        assert!(!next.auto_mtls);
        assert!(changed("connectTimeout: never\n").is_err());
        // No MeshConfig any more: the flags and defaults, with the running trust domain.
        let none = super::options(base, "test", None, &running).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.auto_mtls);
        assert_eq!(none.trust_domain, "a.example");
    }

    #[test]
    fn mesh_networks_are_read_at_start_and_kept_across_mesh_config_changes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("networks.yaml");
        std::fs::write(
            &file,
            "networks:\n  n1:\n    endpoints: [{fromRegistry: c1}]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let path = file.display().to_string();
        let config = resolve(&["--mesh-networks", &path, "--cluster-id", "c1"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let running = config.mesh.options;
        assert_eq!(running.own_network(), "n1");
        assert!(config.mesh.base.networks_from_file);
        let next = super::options(
            &config.mesh.base,
            "test",
            Some("enableAutoMtls: false\n"),
            &running,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!next.auto_mtls);
        assert_eq!(next.mesh_networks, running.mesh_networks);
        // A broken file stops the start, naming the flag.
        std::fs::write(&file, "networks: [").unwrap_or_else(|e| panic!("{e}"));
        let err = resolve(&["--mesh-networks", &path])
            .map(|_| ())
            .unwrap_err();
        assert!(format!("{err:#}").contains("--mesh-networks"), "{err:#}");
    }

    #[test]
    fn mesh_config_sets_what_flags_leave_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("mesh.yaml");
        std::fs::write(
            &file,
            "trustDomain: corp.example\nrootNamespace: mesh-root\nenableAutoMtls: false\n\
             outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nconnectTimeout: 3s\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let path = file.display().to_string();
        let config = resolve(&["--mesh-config", &path, "--root-namespace", "flag-root"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let o = &config.mesh.options;
        assert_eq!(o.trust_domain, "corp.example");
        assert_eq!(
            config.identity.map(|i| i.trust_domain).as_deref(),
            Some("corp.example"),
            "the CA's too"
        );
        assert_eq!(o.root_namespace, "flag-root", "an explicit flag wins");
        assert!(!o.auto_mtls);
        assert_eq!(o.connect_timeout_ms, 3000);
        assert_eq!(
            o.outbound_traffic_policy,
            shoal_config::istio::OutboundMode::RegistryOnly
        );
        // Without the file, the flags and their defaults.
        let o = resolve(&[])
            .unwrap_or_else(|e| panic!("{e:#}"))
            .mesh
            .options;
        assert_eq!(o.trust_domain, "cluster.local");
        assert!(o.auto_mtls);
        // A file with an error stops the start, naming the field.
        std::fs::write(&file, "connectTimeout: never\n").unwrap_or_else(|e| panic!("{e}"));
        let err = resolve(&["--mesh-config", &path]).map(|_| ()).unwrap_err();
        assert!(format!("{err:#}").contains("connectTimeout"), "{err:#}");
    }
}
