//! The runtime configuration of `shoal serve`, resolved once — flags over Istio's
//! MeshConfig over defaults, files it names read, addresses and peers parsed, contradictions
//! refused — and then shared read-only as `Arc<Config>` by every component. Nothing reads
//! the command line after [`Config::resolve`]; a test builds a `Config` without one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use shoal_ca::auth::{IssuerKeys, TrustedIssuer};
use shoal_cache::AdsConfig;
use shoal_cache::debug::ControlPlane;
use shoal_cache::session::Limits;
use shoal_config::source::etcd::{self, Prefix};
use shoal_config::source::kubernetes::mesh::MeshConfigMap;
use shoal_config::source::kubernetes::remote::RemoteSecrets;
use shoal_config::source::kubernetes::{self, Connection};
use shoal_shard::Node;
use shoal_translate::MeshOptions;

use crate::cli::{EtcdArgs, ServeArgs};
use crate::identity::readers::{CredentialReaders, DebugReaders};
use crate::jwks::JwksConfig;

/// Everything `shoal serve` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub sources: SourcesConfig,
    pub mesh: MeshSettings,
    pub xds: XdsConfig,
    /// The admin HTTP server (`/ready`, `/metrics`, `/debug/...`).
    pub admin_addr: SocketAddr,
    /// Quiet period after a config change before building, and the longest wait while
    /// changes keep coming.
    pub debounce: Duration,
    pub debounce_max: Duration,
    pub jwks: JwksConfig,
    /// Workload identity (the CA and the TLS port); `None` with `--no-ca`.
    pub identity: Option<IdentityConfig>,
    /// Membership of a shard group; `None` for a single replica.
    pub cluster: Option<ClusterConfig>,
    /// The admission webhooks; `None` unless `--webhook-addr` is given.
    pub webhook: Option<WebhookConfig>,
}

/// The admission webhooks' server.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    /// Injection settings from the flags (the live MeshConfig is laid over them).
    pub settings: shoal_translate::inject::Settings,
    /// The configurations whose `caBundle` shoal keeps current (with --kubernetes).
    pub names: crate::webhook::WebhookNames,
}

fn webhook(
    args: &ServeArgs,
    options: &MeshOptions,
    identity: Option<&IdentityConfig>,
) -> anyhow::Result<Option<WebhookConfig>> {
    use shoal_translate::inject::{InjectionPolicy, Settings};
    let w = &args.webhook;
    let Some(addr) = w.webhook_addr else {
        return Ok(None);
    };
    anyhow::ensure!(
        identity.is_some(),
        "--webhook-addr needs the CA (its serving certificate); drop --no-ca"
    );
    let policy: InjectionPolicy = w
        .injection_policy
        .parse()
        .map_err(|e| anyhow::anyhow!("--injection-policy: {e}"))?;
    let istiod = match &args.revision {
        Some(rev) if rev != "default" => format!("istiod-{rev}"),
        _ => "istiod".to_string(),
    };
    let discovery = w
        .discovery_address
        .clone()
        .unwrap_or_else(|| format!("{istiod}.{}.svc:15012", options.root_namespace));
    let mut settings = Settings {
        policy,
        cni: w.cni,
        native_sidecars: w.native_sidecars,
        cluster_id: w.cluster_id.clone(),
        network: w.network.clone(),
        ca_address: discovery.clone(),
        discovery_address: discovery,
        revision: args.revision.clone(),
        // Trust domain, suffix, root namespace and the mesh-wide ProxyConfig come from the
        // running MeshConfig, per request (`webhook::settings_now`).
        ..Settings::default()
    };
    if let Some(image) = &w.proxy_image {
        settings.image = image.clone();
    }
    let injector = w
        .injector_webhook
        .clone()
        .unwrap_or_else(|| match &args.revision {
            Some(rev) if rev != "default" => format!("istio-sidecar-injector-{rev}"),
            _ => "istio-sidecar-injector".to_string(),
        });
    Ok(Some(WebhookConfig {
        addr,
        settings,
        names: crate::webhook::WebhookNames {
            mutating: injector,
            validating: w.validator_webhook.clone(),
        },
    }))
}

/// Where config comes from.
#[derive(Debug, Clone)]
pub struct SourcesConfig {
    /// A watched directory of YAML files.
    pub config_dir: Option<PathBuf>,
    /// The Kubernetes API server to watch.
    pub kubernetes: Option<KubernetesConfig>,
    /// The etcd prefix to follow.
    pub etcd: Option<EtcdConfig>,
    /// Peer groups to import from (`--federate`); needs the CA.
    pub federation: Option<crate::federation::FederationConfig>,
}

#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub connection: etcd::Connection,
    pub options: etcd::Options,
}

/// The etcd connection the `--etcd*` flags describe (`None` without `--etcd`), with the
/// files they name read; every error names its flag.
pub fn etcd_connection(args: &EtcdArgs) -> anyhow::Result<Option<etcd::Connection>> {
    if args.etcd.is_empty() {
        return Ok(None);
    }
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
    };
    let ca = args
        .etcd_ca
        .as_deref()
        .map(|p| read("--etcd-ca", p))
        .transpose()?;
    let identity = match (&args.etcd_cert, &args.etcd_key) {
        (Some(cert), Some(key)) => Some((read("--etcd-cert", cert)?, read("--etcd-key", key)?)),
        _ => None,
    };
    let user = match (&args.etcd_user, &args.etcd_password_file) {
        (Some(user), Some(file)) => {
            let password = String::from_utf8(read("--etcd-password-file", file)?)
                .with_context(|| format!("--etcd-password-file {}: not UTF-8", file.display()))?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            Some((user.clone(), password))
        }
        _ => None,
    };
    let connection = etcd::Connection {
        endpoints: args.etcd.iter().map(|e| e.trim().to_string()).collect(),
        prefix: Prefix::new(&args.etcd_prefix),
        ca,
        identity,
        user,
    };
    connection.check().context("--etcd")?;
    Ok(Some(connection))
}

#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    pub connection: Connection,
    pub options: kubernetes::Options,
    /// Write Gateway API status back.
    pub write_status: bool,
    /// Write Istio analysis messages to Istio objects' status.
    pub write_analysis: bool,
}

/// The mesh-wide options: those to start with, what a MeshConfig read while running
/// combines with, and the MeshConfig file followed (if any).
#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub options: MeshOptions,
    pub base: MeshBase,
    pub file: Option<PathBuf>,
    /// `--mesh-networks`, followed while running.
    pub networks_file: Option<PathBuf>,
}

/// What every MeshConfig combines with.
#[derive(Debug, Clone)]
pub struct MeshBase {
    /// The options the flags alone give.
    pub flags: MeshOptions,
    /// Flags given explicitly, which win over the MeshConfig.
    pub explicit: BTreeSet<String>,
    /// MeshNetworks comes from `--mesh-networks` (what a source holds is not used).
    pub networks_from_file: bool,
}

/// The xDS ports and the ADS service's tuning.
#[derive(Debug, Clone)]
pub struct XdsConfig {
    /// The plaintext port, only when asked for.
    pub plaintext_addr: Option<SocketAddr>,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub ads: AdsConfig,
}

/// The CA, the TLS xDS port and who may call them.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub tls_addr: SocketAddr,
    pub ca_dir: PathBuf,
    pub trust_domain: String,
    pub workload_cert_ttl: Duration,
    /// Longest lifetime a CSR may ask for.
    pub max_workload_cert_ttl: Duration,
    /// Service-account token issuers, with their keys read.
    pub issuers: Vec<TrustedIssuer>,
    pub cert_check_interval: Duration,
    pub credential_readers: CredentialReaders,
    /// Who may ask the debug xDS types.
    pub debug_readers: DebugReaders,
    /// Which peer groups' replicas may import this group's exports.
    pub federation_peers: DebugReaders,
    /// DNS names of the TLS port's serving certificate.
    pub tls_names: Vec<String>,
    /// This cluster's id: node proxies may ask certificates for this cluster's pods only.
    pub cluster_id: String,
}

/// This replica's place in a shard group.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub id: u64,
    pub raft_addr: SocketAddr,
    /// The initial voters (this replica included, with its advertised addresses); empty
    /// when joining.
    pub peers: BTreeMap<u64, Node>,
    pub join: Option<String>,
    /// Where other replicas reach this one.
    pub advertised: Node,
    pub data_dir: PathBuf,
    pub shards: u32,
    pub migration_rate: f64,
    pub heartbeat: Duration,
    pub lease: Duration,
    pub down_after: Duration,
    pub drain: Duration,
}

impl Config {
    /// Resolves a command line (with the ids of the flags it gave explicitly) into the
    /// configuration to run with. Reads the files the flags name (MeshConfig, token
    /// issuers' keys); every error names the flag.
    pub fn resolve(args: &ServeArgs, explicit: &BTreeSet<String>) -> anyhow::Result<Config> {
        if let Some(dir) = &args.config_dir {
            anyhow::ensure!(
                dir.is_dir(),
                "--config-dir {} is not a directory",
                dir.display()
            );
        }
        let etcd = etcd_connection(&args.etcd)?;
        anyhow::ensure!(
            args.config_dir.is_some() || args.kubernetes || etcd.is_some(),
            "no config source: give --config-dir, --kubernetes, --etcd, or several"
        );
        for g in &args.webhook.network_gateways {
            crate::mesh::network_gateway(g).map_err(anyhow::Error::msg)?;
        }
        let mut flags = crate::mesh::from_flags(args);
        if let Some(path) = &args.mesh_networks {
            flags.mesh_networks = crate::mesh::load_networks(path)?;
        }
        let options = match &args.mesh_config {
            Some(path) => crate::mesh::load(path, &flags, explicit)?,
            None => flags.clone(),
        };
        let base = MeshBase {
            flags,
            explicit: explicit.clone(),
            networks_from_file: args.mesh_networks.is_some(),
        };
        let identity = if args.security.no_ca {
            None
        } else {
            Some(identity(args, &options.trust_domain)?)
        };
        anyhow::ensure!(
            args.xds_addr.is_some() || identity.is_some(),
            "nothing to serve: --no-ca turns the TLS port off; give --xds-addr for plaintext"
        );
        let federation = federation(args, identity.is_some())?;
        let cluster = cluster(args, identity.as_ref())?;
        let webhook = webhook(args, &options, identity.as_ref())?;
        Ok(Config {
            sources: SourcesConfig {
                config_dir: args.config_dir.clone(),
                kubernetes: args.kubernetes.then(|| KubernetesConfig {
                    connection: Connection {
                        kubeconfig: args.kubeconfig.clone(),
                        context: args.kube_context.clone(),
                    },
                    options: kubernetes::Options {
                        rediscover: args.kube_rediscover_interval,
                        // A MeshConfig file, when given, is the one (as istiod's mounted
                        // ConfigMap); otherwise the cluster's.
                        mesh_config: args.mesh_config.is_none().then(|| {
                            MeshConfigMap::istio(&args.root_namespace, args.revision.as_deref())
                        }),
                        // Remote secrets live where istiod's do; a key naming this
                        // cluster's own id is refused.
                        remote_secrets: args.kube_remote_secrets.then(|| RemoteSecrets {
                            namespace: options.root_namespace.clone(),
                            cluster_id: options.cluster_id.clone(),
                        }),
                        ..Default::default()
                    },
                    write_status: args.kube_write_status,
                    write_analysis: args.kube_write_analysis,
                }),
                etcd: etcd.map(|connection| EtcdConfig {
                    connection,
                    options: etcd::Options::default(),
                }),
                federation,
            },
            mesh: MeshSettings {
                options,
                base,
                file: args.mesh_config.clone(),
                networks_file: args.mesh_networks.clone(),
            },
            xds: XdsConfig {
                plaintext_addr: args.xds_addr,
                keepalive_interval: args.keepalive_interval,
                keepalive_timeout: args.keepalive_timeout,
                ads: AdsConfig {
                    limits: Limits {
                        max_names: args.max_names,
                    },
                    stream_rate: args.stream_rate,
                    stream_burst: args.stream_burst,
                    push_concurrency: args.push_concurrency,
                    max_message_size: args.max_message_size,
                    control_plane: control_plane(args),
                    ..AdsConfig::default()
                },
            },
            admin_addr: args.admin_addr,
            debounce: args.debounce,
            debounce_max: args.debounce_max,
            jwks: JwksConfig {
                refresh: args.jwks_refresh,
                timeout: args.jwks_timeout,
                extra_roots: args.jwks_ca.clone(),
            },
            identity,
            cluster,
            webhook,
        })
    }
}

/// How debug responses name this replica (istioctl's ISTIOD column): the pod's name where
/// Kubernetes gives one (`POD_NAME`, as istiod), else `shoal-ID` for a replica, else `shoal`.
fn control_plane(args: &ServeArgs) -> ControlPlane {
    let id = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| args.cluster.id.map(|id| format!("shoal-{id}")))
        .unwrap_or_else(|| "shoal".into());
    ControlPlane {
        id,
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

fn identity(args: &ServeArgs, trust_domain: &str) -> anyhow::Result<IdentityConfig> {
    let sa = &args.security;
    anyhow::ensure!(
        sa.workload_cert_ttl <= sa.max_workload_cert_ttl,
        "--workload-cert-ttl must not exceed --max-workload-cert-ttl"
    );
    let mut issuers = Vec::new();
    for spec in &sa.jwt_issuer {
        let (iss, file) = spec
            .split_once('=')
            .with_context(|| format!("--jwt-issuer {spec:?} is not ISSUER=FILE"))?;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the keys of issuer {iss} from {file}"))?;
        let keys = if text.trim_start().starts_with('{') {
            IssuerKeys::Jwks(text)
        } else {
            IssuerKeys::Pem(vec![text])
        };
        issuers.push(TrustedIssuer::new(iss, keys));
    }
    Ok(IdentityConfig {
        tls_addr: sa.xds_tls_addr,
        ca_dir: sa
            .ca_dir
            .clone()
            .unwrap_or_else(|| args.cluster.data_dir.join("ca")),
        trust_domain: trust_domain.to_string(),
        workload_cert_ttl: sa.workload_cert_ttl,
        max_workload_cert_ttl: sa.max_workload_cert_ttl,
        issuers,
        cert_check_interval: sa.cert_check_interval.max(Duration::from_millis(100)),
        credential_readers: CredentialReaders::parse(&sa.credential_readers)?,
        debug_readers: DebugReaders::parse(&sa.debug_readers)?,
        federation_peers: DebugReaders::parse_flag("--federation-peers", &args.federation_peers)?,
        tls_names: sa.tls_names.clone(),
        cluster_id: args.webhook.cluster_id.clone(),
    })
}

/// The peer groups of `--federate`, which need this replica's certificate.
fn federation(
    args: &ServeArgs,
    has_ca: bool,
) -> anyhow::Result<Option<crate::federation::FederationConfig>> {
    if args.federate.is_empty() {
        return Ok(None);
    }
    anyhow::ensure!(
        has_ca,
        "--federate needs the CA (a certificate to authenticate to peers): drop --no-ca"
    );
    let peers = args
        .federate
        .iter()
        .map(|p| crate::federation::Peer::parse(p).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    anyhow::ensure!(
        names.windows(2).all(|w| w[0] != w[1]),
        "--federate names a peer twice"
    );
    Ok(Some(crate::federation::FederationConfig {
        peers,
        stale_after: args.federation_stale_after,
    }))
}

/// Parses `ID=RAFT_ADDR` pairs.
fn peers(list: &[String]) -> anyhow::Result<BTreeMap<u64, Node>> {
    let mut out = BTreeMap::new();
    for p in list {
        let (id, addr) = p
            .split_once('=')
            .with_context(|| format!("--peers entry {p:?} is not ID=RAFT_ADDR"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("--peers entry {p:?}: bad id"))?;
        out.insert(
            id,
            Node {
                raft_addr: addr.trim().to_string(),
                ..Node::default()
            },
        );
    }
    Ok(out)
}

fn cluster(
    args: &ServeArgs,
    identity: Option<&IdentityConfig>,
) -> anyhow::Result<Option<ClusterConfig>> {
    let c = &args.cluster;
    let (Some(id), Some(raft_addr)) = (c.id, c.raft_addr) else {
        return Ok(None);
    };
    anyhow::ensure!(
        c.lease < c.down_after,
        "--lease must be shorter than --down-after"
    );
    let mut peers = peers(&c.peers)?;
    // What the others record for this replica: never a wildcard bind address.
    let raft_advertised = match (&c.advertise_raft, peers.get(&id)) {
        (Some(a), _) => a.clone(),
        (None, Some(me)) if raft_addr.ip().is_unspecified() => me.raft_addr.clone(),
        _ => raft_addr.to_string(),
    };
    anyhow::ensure!(
        !raft_advertised.starts_with("0.0.0.0:") && !raft_advertised.starts_with("[::]:"),
        "--raft-addr {raft_addr} binds every interface: give --advertise-raft (or this replica's own --peers entry)"
    );
    let advertised = Node {
        raft_addr: raft_advertised,
        xds_addr: c
            .advertise_xds
            .clone()
            .or_else(|| args.xds_addr.map(|a| a.to_string()))
            .unwrap_or_default(),
        admin_addr: c
            .advertise_admin
            .clone()
            .unwrap_or_else(|| args.admin_addr.to_string()),
        // Routers forward over TLS only where the replicas have a CA.
        xds_tls_addr: match (&c.advertise_xds_tls, identity) {
            (Some(a), Some(_)) => a.clone(),
            (None, Some(i)) if !i.tls_addr.ip().is_unspecified() => i.tls_addr.to_string(),
            _ => String::new(),
        },
    };
    if let Some(me) = peers.get_mut(&id) {
        *me = advertised.clone();
    }
    anyhow::ensure!(
        !peers.is_empty() || c.join.is_some(),
        "give --peers (the initial voters) or --join"
    );
    Ok(Some(ClusterConfig {
        id,
        raft_addr,
        peers,
        join: c.join.clone(),
        advertised,
        data_dir: c.data_dir.clone(),
        shards: c.shards,
        migration_rate: c.migration_rate,
        heartbeat: c.heartbeat,
        lease: c.lease,
        down_after: c.down_after,
        drain: c.drain,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, parse_from};

    fn resolve(extra: &[&str]) -> anyhow::Result<Config> {
        let dir = std::env::temp_dir();
        let dir = dir.display().to_string();
        let mut argv = vec!["shoal", "serve", "--config-dir", &dir];
        argv.extend(extra);
        let parsed = parse_from(argv)?;
        match parsed.command {
            Command::Serve(args) => Config::resolve(&args, &parsed.explicit),
            other => anyhow::bail!("not serve: {other:?}"),
        }
    }

    #[test]
    fn contradictions_are_refused_with_the_flag() {
        let err = |extra: &[&str]| match resolve(extra) {
            Ok(_) => panic!("{extra:?} accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err(&["--no-ca"]).contains("nothing to serve"));
        assert!(
            err(&[
                "--id",
                "1",
                "--raft-addr",
                "127.0.0.1:7001",
                "--lease",
                "5s",
                "--down-after",
                "4s",
                "--peers",
                "1=127.0.0.1:7001"
            ])
            .contains("--lease")
        );
        assert!(err(&["--id", "1", "--raft-addr", "127.0.0.1:7001"]).contains("--join"));
        assert!(err(&["--jwt-issuer", "no-file"]).contains("ISSUER=FILE"));
        assert!(err(&["--credential-readers", "ns"]).contains("--credential-readers"));
        assert!(err(&["--debug-readers", "Not A Namespace"]).contains("--debug-readers"));
        assert!(
            err(&[
                "--workload-cert-ttl",
                "48h",
                "--max-workload-cert-ttl",
                "24h"
            ])
            .contains("--max-workload-cert-ttl")
        );
    }

    fn resolve_argv(argv: &[&str]) -> anyhow::Result<Config> {
        let parsed = parse_from(argv)?;
        match parsed.command {
            Command::Serve(args) => Config::resolve(&args, &parsed.explicit),
            other => anyhow::bail!("not serve: {other:?}"),
        }
    }

    #[test]
    fn etcd_is_a_config_source_of_its_own_or_beside_others() {
        let c = resolve_argv(&[
            "shoal",
            "serve",
            "--etcd",
            "http://127.0.0.1:2379,http://127.0.0.2:2379",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        let etcd = c.sources.etcd.unwrap_or_else(|| panic!("etcd"));
        assert_eq!(etcd.connection.endpoints.len(), 2);
        assert_eq!(etcd.connection.prefix.as_str(), "/shoal/config");
        assert!(c.sources.config_dir.is_none());
        let c = resolve(&["--etcd", "http://127.0.0.1:2379", "--etcd-prefix", "/mesh/"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(c.sources.config_dir.is_some());
        assert_eq!(
            c.sources
                .etcd
                .map(|e| e.connection.prefix.as_str().to_string())
                .as_deref(),
            Some("/mesh")
        );

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").unwrap_or_else(|e| panic!("{e}"));
        let password = password.display().to_string();
        let c = resolve(&[
            "--etcd",
            "http://127.0.0.1:2379",
            "--etcd-user",
            "shoal",
            "--etcd-password-file",
            &password,
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            c.sources.etcd.and_then(|e| e.connection.user),
            Some(("shoal".to_string(), "s3cret".to_string())),
            "the password without its newline"
        );
    }

    #[test]
    fn etcd_flags_that_cannot_work_are_refused_with_the_flag() {
        let err = |argv: &[&str]| match resolve(argv) {
            Ok(_) => panic!("{argv:?} accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err(&["--etcd", "127.0.0.1:2379"]).contains("--etcd: etcd endpoint"));
        assert!(err(&["--etcd", "http://a:1,https://b:1"]).contains("mix"));
        assert!(
            err(&["--etcd", "http://a:1", "--etcd-ca", "/nonexistent"])
                .contains("--etcd-ca /nonexistent")
        );
        // Flags that need another: refused by the parser.
        assert!(
            parse_from(["shoal", "serve", "--etcd", "http://a:1", "--etcd-user", "u"]).is_err()
        );
        assert!(
            parse_from(["shoal", "serve", "--etcd", "http://a:1", "--etcd-cert", "c"]).is_err()
        );
        assert!(parse_from(["shoal", "serve"]).is_err(), "no source at all");
        assert!(
            parse_from(["shoal", "validate"]).is_err(),
            "nothing to validate"
        );
        assert!(parse_from(["shoal", "validate", "--etcd", "http://a:1"]).is_ok());
    }

    #[test]
    fn a_replica_advertises_its_own_addresses_among_its_peers() {
        let c = resolve(&[
            "--id",
            "2",
            "--raft-addr",
            "127.0.0.1:7002",
            "--peers",
            "1=127.0.0.1:7001,2=127.0.0.1:7002",
            "--xds-addr",
            "127.0.0.1:16010",
            "--xds-tls-addr",
            "127.0.0.1:16012",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        let cluster = c.cluster.unwrap_or_else(|| panic!("a cluster"));
        let me = &cluster.peers[&2];
        assert_eq!(me.xds_addr, "127.0.0.1:16010");
        assert_eq!(me.xds_tls_addr, "127.0.0.1:16012");
        assert_eq!(
            cluster.peers[&1].xds_addr, "",
            "learnt from the peer itself"
        );
        // Without a CA, nothing is advertised for TLS.
        let c = resolve(&[
            "--no-ca",
            "--xds-addr",
            "127.0.0.1:16010",
            "--id",
            "1",
            "--raft-addr",
            "127.0.0.1:7001",
            "--peers",
            "1=127.0.0.1:7001",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(c.identity.is_none());
        assert_eq!(
            c.cluster.map(|c| c.advertised.xds_tls_addr),
            Some(String::new())
        );
    }

    #[test]
    fn a_replica_binding_every_interface_advertises_a_name() {
        let peers = "0=shoal-0.shoal-peers:15030,1=shoal-1.shoal-peers:15030";
        let raft = |extra: &[&str]| {
            let mut argv = vec![
                "--id",
                "1",
                "--raft-addr",
                "0.0.0.0:15030",
                "--peers",
                peers,
            ];
            argv.extend(extra);
            resolve(&argv).map(|c| c.cluster.map(|c| c.peers[&1].raft_addr.clone()))
        };
        // Its own --peers entry, or --advertise-raft; never the wildcard.
        assert_eq!(
            raft(&[]).unwrap_or_else(|e| panic!("{e:#}")).as_deref(),
            Some("shoal-1.shoal-peers:15030")
        );
        assert_eq!(
            raft(&["--advertise-raft", "10.0.0.7:15030"])
                .unwrap_or_else(|e| panic!("{e:#}"))
                .as_deref(),
            Some("10.0.0.7:15030")
        );
        let alone = resolve(&["--id", "1", "--raft-addr", "0.0.0.0:15030", "--join", "x:1"]);
        assert!(alone.is_err_and(|e| e.to_string().contains("--advertise-raft")));
    }
}
