//! The mesh-wide options of `serve`: its flags, over what `--mesh-config` (Istio's
//! MeshConfig) sets, over the defaults. The file is read at start — an error there stops
//! the start — and then watched: a changed file moves every view to the new options, a
//! broken one is reported and the last good options stay in force. A flag given
//! explicitly always wins over the file.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_config::mesh_config::{self, MeshConfig};
use shoal_translate::MeshOptions;

use crate::cli::ServeArgs;
use crate::config::MeshFile;
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
        jwks_fetch: args.jwks_fetch.into(),
        trust_domain: args.security.trust_domain.clone(),
        ..MeshOptions::default()
    }
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

/// Reads and checks a MeshConfig file, logging its warnings.
fn read(path: &Path, text: &str) -> anyhow::Result<MeshConfig> {
    let (mesh, issues) =
        mesh_config::parse(text).with_context(|| format!("--mesh-config {}", path.display()))?;
    for i in &issues {
        tracing::warn!(file = %path.display(), "MeshConfig {i}");
    }
    Ok(mesh)
}

/// The options to start with: `flags` combined with the MeshConfig file at `path` (an
/// error there stops the start).
pub fn load(
    path: &Path,
    flags: &MeshOptions,
    explicit: &BTreeSet<String>,
) -> anyhow::Result<MeshOptions> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--mesh-config {}", path.display()))?;
    let options = combine(flags, explicit, &read(path, &text)?);
    tracing::info!(
        file = %path.display(),
        trust_domain = %options.trust_domain,
        root_namespace = %options.root_namespace,
        auto_mtls = options.auto_mtls,
        "MeshConfig read"
    );
    Ok(options)
}

/// Follows a MeshConfig file while running.
pub struct Watch {
    file: MeshFile,
}

impl Watch {
    pub fn new(file: &MeshFile) -> Watch {
        Watch { file: file.clone() }
    }

    /// The options a changed file's `text` gives, or why it is refused. The trust domain
    /// stays the running one: the CA signs for it until a restart.
    fn options(&self, text: &str, running: &MeshOptions) -> anyhow::Result<MeshOptions> {
        let f = &self.file;
        let mut options = combine(&f.flags, &f.explicit, &read(&f.path, text)?);
        if options.trust_domain != running.trust_domain {
            tracing::warn!(
                running = %running.trust_domain,
                file = %options.trust_domain,
                "MeshConfig trustDomain changed: it takes effect at the next restart"
            );
            options.trust_domain = running.trust_domain.clone();
        }
        Ok(options)
    }

    /// Applies every change of the file until the task is dropped.
    pub async fn run(self, pipeline: Arc<Pipeline>) {
        let path = &self.file.path;
        let mut last = std::fs::read_to_string(path).ok();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tick.tick().await;
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    if last.is_some() {
                        tracing::warn!(file = %path.display(), error = %e, "MeshConfig unreadable; keeping the last one");
                    }
                    last = None;
                    continue;
                }
            };
            if last.as_deref() == Some(text.as_str()) {
                continue;
            }
            last = Some(text.clone());
            let options = match self.options(&text, &pipeline.options()) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "MeshConfig refused; keeping the last good one");
                    continue;
                }
            };
            tracing::info!(file = %path.display(), "MeshConfig changed");
            let p = pipeline.clone();
            let _ = tokio::task::spawn_blocking(move || p.set_options(options)).await;
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
        let watch = super::Watch::new(&config.mesh.file.unwrap_or_else(|| panic!("a file")));
        let next = watch
            .options("trustDomain: b.example\nenableAutoMtls: false\n", &running)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(next.trust_domain, "a.example");
        assert!(!next.auto_mtls);
        assert!(watch.options("connectTimeout: never\n", &running).is_err());
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
