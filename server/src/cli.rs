//! The command line: what `shoal` accepts, parsed and nothing more. `main.rs` dispatches;
//! `serve`'s flags become a [`crate::config::Config`] there.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about = "An Istio-compatible service-mesh control plane"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve xDS to proxies from a directory of Kubernetes and Istio YAML.
    Serve(Box<ServeArgs>),
    /// Check a directory of config the way `serve` would, like `istioctl analyze`.
    Validate(ValidateArgs),
    /// Show the sync status of every proxy connected to a running server.
    Status(StatusArgs),
    /// A standalone router tier: accepts proxy streams and forwards each to the replica
    /// that owns it.
    Router(RouterArgs),
    /// Root rotation of shoal's CA, one step at a time (replicas sharing the CA directory
    /// pick each step up within --cert-check-interval).
    Ca(CaArgs),
    /// Print the CustomResourceDefinitions of the kinds shoal reads (for installing
    /// without Istio's CRDs), generated from shoal's own kind table.
    Crds,
}

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub step: CaStep,
    /// The CA directory the replicas use.
    #[arg(long, default_value = "shoal-data/ca", global = true)]
    pub ca_dir: PathBuf,
    #[arg(long, default_value = "cluster.local", global = true)]
    pub trust_domain: String,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CaStep {
    /// Step 1: make the next root; proxies trust it from now on, signing stays.
    Rotate,
    /// Step 2 (once every proxy has the new bundle): sign with the next root; the old one
    /// stays trusted, and every workload certificate is reissued.
    Promote,
    /// Step 3 (once the old root's certificates have expired): stop trusting it.
    DropPrevious,
    /// Print the trust bundle.
    Bundle,
}

/// etcd as a config source (`serve` follows it, `validate` reads it once).
#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// Read config from etcd too: its endpoints, `http://HOST:PORT` or `https://HOST:PORT`,
    /// comma-separated. Every key below --etcd-prefix is one object,
    /// `PREFIX/KIND/NAMESPACE/NAME` (`PREFIX/KIND/NAME` for cluster-scoped kinds), its
    /// value YAML or JSON.
    #[arg(
        long,
        env = "SHOAL_ETCD_ENDPOINTS",
        value_delimiter = ',',
        value_name = "ENDPOINTS"
    )]
    pub etcd: Vec<String>,
    /// The prefix of shoal's keys in etcd.
    #[arg(long, env = "SHOAL_ETCD_PREFIX", default_value = "/shoal/config")]
    pub etcd_prefix: String,
    /// PEM file: the CA of etcd's serving certificate (https endpoints; without it, the
    /// system's roots).
    #[arg(long, requires = "etcd")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM file: a client certificate for etcd's `--client-cert-auth` (with --etcd-key).
    #[arg(long, requires_all = ["etcd", "etcd_key"])]
    pub etcd_cert: Option<PathBuf>,
    /// PEM file: the key of --etcd-cert.
    #[arg(long, requires_all = ["etcd", "etcd_cert"])]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (etcd's own authentication; with --etcd-password-file).
    #[arg(long, requires_all = ["etcd", "etcd_password_file"])]
    pub etcd_user: Option<String>,
    /// File holding the password of --etcd-user (a trailing newline is dropped).
    #[arg(long, requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
}

/// Replica flags: with `--id`, the server joins a Raft group and serves only the proxies
/// whose shards it owns (forwarding the others to their owners).
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// This replica's id in the shard group (enables replication).
    #[arg(long, requires = "raft_addr")]
    pub id: Option<u64>,
    /// Address of the Raft RPC server.
    #[arg(long)]
    pub raft_addr: Option<SocketAddr>,
    /// The initial voters: `ID=RAFT_ADDR,...` (this replica included). Omit with --join.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Join a running group through this member's Raft address (as a learner that still
    /// owns shards).
    #[arg(long)]
    pub join: Option<String>,
    /// Where the Raft log, snapshots and the ownership log are kept.
    #[arg(long, default_value = "shoal-data")]
    pub data_dir: PathBuf,
    /// Virtual shards proxies are hashed into (fixed for the life of a group).
    #[arg(long, default_value_t = 1024)]
    pub shards: u32,
    /// Shards handed over per second when rebalancing.
    #[arg(long, default_value_t = 100.0)]
    pub migration_rate: f64,
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub heartbeat: Duration,
    /// How long a committed heartbeat lets a replica serve (must be below --down-after).
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub lease: Duration,
    /// Silence after which the leader gives a replica's shards away.
    #[arg(long, default_value = "4s", value_parser = duration)]
    pub down_after: Duration,
    /// Streams of a shard that moves away are closed within this (random) delay.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub drain: Duration,
    /// Raft address other replicas use to reach this one, recorded in the group's
    /// membership (default: this replica's own --peers entry when --raft-addr binds every
    /// interface, else --raft-addr). A stable DNS name in a StatefulSet.
    #[arg(long)]
    pub advertise_raft: Option<String>,
    /// xDS address other replicas use to reach this one (default: --xds-addr).
    #[arg(long)]
    pub advertise_xds: Option<String>,
    /// TLS xDS address other replicas forward to (default: --xds-tls-addr unless it is a
    /// wildcard address).
    #[arg(long)]
    pub advertise_xds_tls: Option<String>,
    /// Admin address other replicas use to reach this one (default: --admin-addr).
    #[arg(long)]
    pub advertise_admin: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RouterArgs {
    /// Address proxies connect to.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub listen: SocketAddr,
    /// Raft addresses of the replicas (their shard maps are polled).
    #[arg(long, value_delimiter = ',', required = true)]
    pub peers: Vec<String>,
    /// Admin server (/ready, /metrics).
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub admin_addr: SocketAddr,
    /// The replicas' CA directory: the router gets a replica certificate from it and talks
    /// to the replicas over mTLS (needed when they run with a CA). Without it: plaintext.
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Also accept proxies over TLS here (needs --ca-dir): a client certificate or token
    /// authenticates them, as on a replica's TLS port.
    #[arg(long)]
    pub listen_tls: Option<SocketAddr>,
    /// DNS names in the router's serving certificate.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "localhost,istiod.istio-system.svc,shoal"
    )]
    pub tls_names: Vec<String>,
}

/// A revision is a label value (and a ConfigMap name suffix).
fn revision(s: &str) -> Result<String, String> {
    if shoal_config::host::is_dns_label(s) && !s.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a revision name (a DNS-1123 label)"))
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    shoal_config::duration::parse(s)
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory of YAML files (watched; nested directories included). With
    /// --kubernetes or --etcd, optional: every source feeds one store.
    #[arg(long, env = "SHOAL_CONFIG_DIR", required_unless_present_any = ["kubernetes", "etcd"])]
    pub config_dir: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Read config from the Kubernetes API server too: Services, EndpointSlices, Pods,
    /// Nodes, Namespaces, gateway credential Secrets, and the Istio and Gateway API
    /// resources whose CRDs are installed. In a pod, its service account; else
    /// --kubeconfig, `KUBECONFIG` or `~/.kube/config`.
    #[arg(long, env = "SHOAL_KUBERNETES")]
    pub kubernetes: bool,
    /// The kubeconfig file for --kubernetes.
    #[arg(long, requires = "kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context for --kubernetes (its current context by default).
    #[arg(long, requires = "kubernetes")]
    pub kube_context: Option<String>,
    /// How often --kubernetes looks again for kinds whose CRD is not installed (a CRD
    /// installed later is picked up then).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub kube_rediscover_interval: Duration,
    /// With --kubernetes, write Gateway API status (Gateways of class `istio` and their
    /// routes) back to the cluster, as Istio's gateway controller does; with a shard group
    /// only the Raft leader writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub kube_write_status: bool,
    /// With --kubernetes, read other clusters' service discovery (Services, EndpointSlices,
    /// Pods) as istiod's multi-primary mode does: through the kubeconfigs in the Secrets of
    /// the root namespace labelled `istio/multiCluster=true` (`istioctl
    /// create-remote-secret`). `false` reads this cluster only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub kube_remote_secrets: bool,
    /// With --kubernetes, write the analysis findings that are Istio analysis messages
    /// (`IST0101`…) to `status.validationMessages` of the Istio objects they are about, as
    /// istiod does with `istiod.enableAnalysis`.
    #[arg(long)]
    pub kube_write_analysis: bool,
    /// Import what a peer shoal group exports (`NAME=HOST:PORT` of its TLS xDS port;
    /// repeatable): its services' endpoints join the local Services of the same name.
    /// Both groups' CAs must share a root (Istio's plug-in CA: --ca-dir with a common
    /// root and per-cluster intermediates), and the peer must list this group's identity
    /// in its --federation-peers.
    #[arg(long = "federate", value_name = "NAME=HOST:PORT")]
    pub federate: Vec<String>,
    /// How long a peer group may be unreachable before the endpoints it exported are
    /// withdrawn (until then its last exports stay).
    #[arg(long, default_value = "300s", value_parser = duration)]
    pub federation_stale_after: Duration,
    /// Who may import this group's exports (peer groups' replicas, authenticated on the
    /// TLS port by their certificates): namespaces (`NS`) or identities (`NS/SA`). Empty
    /// (the default): federation streams are refused.
    #[arg(long, value_delimiter = ',')]
    pub federation_peers: Vec<String>,
    /// Which Services this group exports to its peers: `all` public ones (`exportTo` `*`,
    /// Istio's default), or only those with a Multi-Cluster Services `ServiceExport`
    /// (`multicluster.x-k8s.io/v1alpha1`) of the same name and namespace
    /// (`service-export`, MCS semantics).
    #[arg(long, value_enum, default_value = "all")]
    pub federation_export: FederationExportArg,
    /// Istio's MeshConfig (the `mesh` key of the `istio` ConfigMap, or that ConfigMap):
    /// trustDomain, rootNamespace, enableAutoMtls, connectTimeout, outboundTrafficPolicy,
    /// localityLbSetting, trustDomainAliases and accessLogFile/Encoding/Format are
    /// honoured, other fields reported by name. Flags given explicitly take precedence.
    /// Followed while running: an edit rebuilds every view, a broken one is refused.
    #[arg(long, env = "SHOAL_MESH_CONFIG")]
    pub mesh_config: Option<PathBuf>,
    /// Istio's MeshNetworks (istiod's `--meshNetworks`): the networks of endpoints no
    /// `topology.istio.io/network` label places (`fromRegistry` by cluster, `fromCidr` by
    /// address) and their gateways (`address`, or `registryServiceName`). Read at start
    /// (an error stops it), then followed; a broken edit is refused. With `--kubernetes`
    /// and no `--mesh-config`, the `meshNetworks` key of the `istio` ConfigMap is read
    /// instead when this is not given.
    #[arg(long, env = "SHOAL_MESH_NETWORKS")]
    pub mesh_networks: Option<PathBuf>,
    /// A plaintext xDS port (Istio's 15010), only when asked for: proxies there are
    /// anonymous and get config without secrets; a token sent there is refused (it would
    /// travel in the clear). The TLS port (--xds-tls-addr) is the default way in.
    #[arg(long, env = "SHOAL_XDS_ADDR")]
    pub xds_addr: Option<SocketAddr>,
    /// Address of the admin HTTP server (/ready, /metrics, /debug/...).
    #[arg(long, default_value = "127.0.0.1:15014", env = "SHOAL_ADMIN_ADDR")]
    pub admin_addr: SocketAddr,
    /// Quiet period after a config change before pushing (as istiod's PILOT_DEBOUNCE_AFTER).
    #[arg(long, default_value = "100ms", value_parser = duration)]
    pub debounce: Duration,
    /// Longest a push waits while changes keep coming (as PILOT_DEBOUNCE_MAX).
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub debounce_max: Duration,
    /// Streams computing a push at the same time.
    #[arg(long, default_value_t = 100)]
    pub push_concurrency: usize,
    /// New xDS streams admitted per second; more wait their turn.
    #[arg(long, default_value_t = 2000.0)]
    pub stream_rate: f64,
    /// New xDS streams admitted at once before --stream-rate applies.
    #[arg(long, default_value_t = 500.0)]
    pub stream_burst: f64,
    /// Largest request message accepted, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_message_size: usize,
    /// Most resource names one stream may subscribe to per type.
    #[arg(long, default_value_t = 100_000)]
    pub max_names: usize,
    /// HTTP/2 keepalive ping interval on xDS connections.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub keepalive_timeout: Duration,
    /// DNS suffix of Kubernetes services.
    #[arg(long, default_value = "cluster.local")]
    pub domain_suffix: String,
    /// Namespace whose Sidecar and DestinationRules apply mesh-wide.
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
    /// This control plane's revision (Istio's `istio.io/rev`): config objects labelled
    /// for another revision are left to it; unlabelled ones are read by every revision.
    /// With --kubernetes, the MeshConfig is read from the `istio-REVISION` ConfigMap.
    #[arg(long, value_parser = revision)]
    pub revision: Option<String>,
    /// Mesh-wide `outboundTrafficPolicy`: `allow-any` passes traffic to unknown hosts
    /// through, `registry-only` drops it (a Sidecar's own policy takes precedence).
    #[arg(long, value_enum, default_value = "allow-any")]
    pub outbound_traffic_policy: OutboundPolicyArg,
    /// Who fetches the keys of RequestAuthentication `jwksUri`s (Istio's
    /// PILOT_JWT_ENABLE_REMOTE_JWKS): `shoal` fetches them (or discovers them from the
    /// issuer) and inlines them; `envoy` has proxies fetch them through the outbound
    /// cluster of the URI's host; `hybrid` does that for hosts of the registry only.
    #[arg(long, value_enum, default_value = "shoal")]
    pub jwks_fetch: JwksFetchArg,
    /// How often fetched JWKS are refreshed.
    #[arg(long, default_value = "20m", value_parser = duration)]
    pub jwks_refresh: Duration,
    /// Timeout of one JWKS (or OpenID configuration) request.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub jwks_timeout: Duration,
    /// PEM file of CAs trusted for https JWKS servers besides the system's roots
    /// (repeatable).
    #[arg(long)]
    pub jwks_ca: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// Istio's admission webhooks: sidecar injection and config validation.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Serve the admission webhooks (`/inject`, `/validate`) over HTTPS here, with a
    /// serving certificate from shoal's CA (Istio's port: 0.0.0.0:15017). Needs the CA.
    #[arg(long)]
    pub webhook_addr: Option<SocketAddr>,
    /// Inject pods of namespaces labelled for injection (`enabled`), or only pods that ask
    /// (`disabled`), as MeshConfig's injection policy.
    #[arg(long, default_value = "enabled")]
    pub injection_policy: String,
    /// The injected proxy's image (Istio's proxyv2 of the release shoal follows by default).
    #[arg(long)]
    pub proxy_image: Option<String>,
    /// Istio CNI sets up traffic capture: no `istio-init` init container.
    #[arg(long)]
    pub cni: bool,
    /// Inject the proxy as a native sidecar (an init container with `restartPolicy:
    /// Always`) unless a pod says otherwise.
    #[arg(long)]
    pub native_sidecars: bool,
    /// The cluster's id (Istio's `CLUSTER_ID`), given to injected proxies.
    #[arg(long, default_value = "Kubernetes")]
    pub cluster_id: String,
    /// The network of this cluster's workloads (Istio's `topology.istio.io/network`).
    #[arg(long)]
    pub network: Option<String>,
    /// The east-west gateway of another network (`NETWORK=HOST_IP:PORT`, Istio's 15443;
    /// repeatable): endpoints on that network (their `topology.istio.io/network` label,
    /// e.g. a federated peer's) are reached through it with mTLS, passed on by SNI.
    /// Endpoints of a network without a gateway are left out.
    #[arg(long = "network-gateway", value_name = "NETWORK=IP:PORT")]
    pub network_gateways: Vec<String>,
    /// Where injected proxies find the control plane (default: `istiod[-REVISION].ROOT_
    /// NAMESPACE.svc:15012`, the Service of the install).
    #[arg(long)]
    pub discovery_address: Option<String>,
    /// The MutatingWebhookConfiguration whose `caBundle` shoal keeps current (default:
    /// Istio's `istio-sidecar-injector[-REVISION]`).
    #[arg(long)]
    pub injector_webhook: Option<String>,
    /// The ValidatingWebhookConfiguration whose `caBundle` shoal keeps current.
    #[arg(long, default_value = "istio-validator-istio-system")]
    pub validator_webhook: String,
}

/// Workload identity: the CA, the TLS xDS port, and who may call them.
#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// The TLS xDS port (ADS and Istio's CSR API), with a certificate from shoal's CA.
    #[arg(long, default_value = "127.0.0.1:15012", env = "SHOAL_XDS_TLS_ADDR")]
    pub xds_tls_addr: SocketAddr,
    /// Run without a CA and without the TLS port (plaintext xDS only, no secrets).
    #[arg(long)]
    pub no_ca: bool,
    /// The CA's directory: Istio's `cacerts` layout (ca-cert.pem, ca-key.pem,
    /// root-cert.pem, cert-chain.pem) to plug in a CA, else a root shoal generates there on
    /// first start. Every replica must point at the same CA. Default: DATA_DIR/ca.
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
    /// Trust domain of workload identities (spiffe://TRUST_DOMAIN/ns/NS/sa/SA).
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Lifetime of workload certificates pushed over SDS (renewed at half of it), and of
    /// those a certificate request asks no lifetime for (Istio's
    /// DEFAULT_WORKLOAD_CERT_TTL).
    #[arg(long, default_value = "24h", value_parser = duration)]
    pub workload_cert_ttl: Duration,
    /// Longest lifetime a certificate request may ask for: a longer one is refused with
    /// INVALID_ARGUMENT, as Istio's CA refuses it (MAX_WORKLOAD_CERT_TTL).
    #[arg(long, default_value = "2160h", value_parser = duration)]
    pub max_workload_cert_ttl: Duration,
    /// A service-account token issuer: `ISSUER=FILE`, FILE a JWKS document or PEM public
    /// keys (repeatable). Tokens must carry the audience `istio-ca`.
    #[arg(long)]
    pub jwt_issuer: Vec<String>,
    /// How often certificates are checked for renewal and the CA directory for a rotation.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub cert_check_interval: Duration,
    /// Identities (`NAMESPACE/SERVICE_ACCOUNT`, `*` for any part) that may read their
    /// namespace's gateway credentials (`credentialName`) besides the gateway workloads the
    /// registry shows (Pods an Istio Gateway selects or that carry a Gateway API
    /// gateway-name label).
    #[arg(long, value_delimiter = ',')]
    pub credential_readers: Vec<String>,
    /// Who may ask Istio's debug xDS types on the TLS port (`istioctl proxy-status
    /// --xds-address`, `proxy-config`): namespaces (`NS`, any identity in it) or identities
    /// (`NS/SA`), authenticated by token or client certificate. Istio's rule: its system
    /// namespace. Anonymous callers are always refused.
    #[arg(long, value_delimiter = ',', default_value = "istio-system")]
    pub debug_readers: Vec<String>,
    /// DNS names in the serving certificate of the TLS port.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "localhost,istiod.istio-system.svc,shoal"
    )]
    pub tls_names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Directory of YAML files (optional with --etcd).
    #[arg(required_unless_present = "etcd")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Print warnings too (errors are always printed).
    #[arg(long)]
    pub warnings: bool,
    /// Check an Istio MeshConfig file too (as `serve --mesh-config` reads it).
    #[arg(long)]
    pub mesh_config: Option<PathBuf>,
    /// Check an Istio MeshNetworks file too (as `serve --mesh-networks` reads it): an
    /// entry serve would leave out is an error here.
    #[arg(long)]
    pub mesh_networks: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Admin address of the running server.
    #[arg(long, default_value = "127.0.0.1:15014", env = "SHOAL_ADMIN_ADDR")]
    pub admin_addr: SocketAddr,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The flags `--mesh-config` also sets: an explicit one wins over the file.
pub const MESH_CONFIG_FLAGS: [&str; 3] =
    ["trust_domain", "root_namespace", "outbound_traffic_policy"];

/// A parsed command line.
#[derive(Debug)]
pub struct Parsed {
    pub command: Command,
    /// Which of [`MESH_CONFIG_FLAGS`] `serve` got on the command line or from the
    /// environment (they win over `--mesh-config`).
    pub explicit: BTreeSet<String>,
}

/// Parses a command line.
pub fn parse_from<I, T>(args: I) -> Result<Parsed, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
    let matches = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let explicit = match matches.subcommand() {
        Some(("serve", sub)) => MESH_CONFIG_FLAGS
            .iter()
            .filter(|id| {
                matches!(
                    sub.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.to_string())
            .collect(),
        _ => BTreeSet::new(),
    };
    Ok(Parsed {
        command: cli.command,
        explicit,
    })
}

/// Values of `--jwks-fetch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JwksFetchArg {
    Shoal,
    Envoy,
    Hybrid,
}

impl From<JwksFetchArg> for shoal_translate::model::JwksFetch {
    fn from(a: JwksFetchArg) -> Self {
        use shoal_translate::model::JwksFetch;
        match a {
            JwksFetchArg::Shoal => JwksFetch::Shoal,
            JwksFetchArg::Envoy => JwksFetch::Envoy,
            JwksFetchArg::Hybrid => JwksFetch::Hybrid,
        }
    }
}

/// Values of `--federation-export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FederationExportArg {
    All,
    ServiceExport,
}

impl From<FederationExportArg> for shoal_translate::FederationExport {
    fn from(a: FederationExportArg) -> Self {
        match a {
            FederationExportArg::All => shoal_translate::FederationExport::All,
            FederationExportArg::ServiceExport => shoal_translate::FederationExport::ServiceExport,
        }
    }
}

/// Values of `--outbound-traffic-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutboundPolicyArg {
    AllowAny,
    RegistryOnly,
}

impl From<OutboundPolicyArg> for shoal_config::istio::OutboundMode {
    fn from(a: OutboundPolicyArg) -> Self {
        match a {
            OutboundPolicyArg::AllowAny => shoal_config::istio::OutboundMode::AllowAny,
            OutboundPolicyArg::RegistryOnly => shoal_config::istio::OutboundMode::RegistryOnly,
        }
    }
}
