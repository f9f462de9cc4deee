//! Workload identity, as its own component: the CA, who a stream is
//! ([`authn`](Identity::authenticate)), what it may read ([`admission`](Identity::admit)),
//! the per-identity secrets views ([`secrets`]), and the gateway credentials they serve.
//!
//! Identity reads config only through the pipeline's published snapshots (a `watch`
//! channel): it follows them to keep gateway credentials current and to notice gateway
//! workloads coming or going, and never calls back into the pipeline.

mod admission;
mod authn;
pub mod readers;
mod secrets;
pub mod token_review;

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context;
use shoal_ca::grpc::PeerCertificates;
use shoal_ca::{CertificateAuthority, JwtAuthenticator};
use shoal_config::k8s::topology;
use shoal_config::{ConfigSnapshot, Kind, Object, ObjectKey};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use authn::{PLAINTEXT_TOKEN, Transport, refuse_credentials_in_clear};
pub use readers::CredentialReaders;
pub use secrets::SecretViews;

use crate::config::IdentityConfig;
use crate::epoch::Epoch;

/// The CA, the token verifier and the per-identity secrets views.
pub struct Identity {
    pub ca: Arc<CertificateAuthority>,
    jwt: Arc<JwtAuthenticator>,
    pub secrets: SecretViews,
    /// Who may read its namespace's credentials besides the registry's gateways.
    readers: CredentialReaders,
    /// Who may ask the debug xDS types.
    debug_readers: readers::DebugReaders,
    /// Which peer groups may import this group's exports.
    federation_peers: readers::DebugReaders,
    /// The config as last published by the pipeline.
    config: watch::Receiver<ConfigSnapshot>,
    epoch: Arc<Epoch>,
}

/// The running identity pieces of `shoal serve`.
pub struct Running {
    pub identity: Arc<Identity>,
    pub tls: Arc<crate::tls::ServingTls>,
    pub csr: shoal_ca::grpc::CertificateService,
}

impl Identity {
    pub fn new(
        ca: Arc<CertificateAuthority>,
        jwt: Arc<JwtAuthenticator>,
        cfg: &IdentityConfig,
        config: watch::Receiver<ConfigSnapshot>,
        epoch: Arc<Epoch>,
    ) -> Self {
        Identity {
            secrets: SecretViews::new(ca.clone(), cfg.workload_cert_ttl),
            ca,
            jwt,
            readers: cfg.credential_readers.clone(),
            debug_readers: cfg.debug_readers.clone(),
            federation_peers: cfg.federation_peers.clone(),
            config,
            epoch,
        }
    }

    /// Loads the CA (creating a root on first start), the token issuers and the serving
    /// certificate; follows the config and keeps certificates fresh on `tasks`.
    /// With a Kubernetes client, tokens of issuers without configured keys are checked by
    /// TokenReview.
    pub async fn start(
        cfg: &IdentityConfig,
        config: watch::Receiver<ConfigSnapshot>,
        epoch: Arc<Epoch>,
        kube: Option<kube::Client>,
        tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<Running> {
        let mut ca_config = shoal_ca::CaConfig::new(cfg.trust_domain.clone());
        ca_config.default_ttl = cfg.workload_cert_ttl;
        ca_config.max_ttl = cfg.max_workload_cert_ttl;
        // Workload certificates may be shorter-lived than what CSR callers may ask for.
        ca_config.min_ttl = ca_config.min_ttl.min(cfg.workload_cert_ttl);
        let dir = cfg.ca_dir.clone();
        let ca = tokio::task::spawn_blocking(move || {
            CertificateAuthority::load_or_create_with(&dir, ca_config)
        })
        .await?
        .with_context(|| format!("loading the CA in {}", cfg.ca_dir.display()))?;
        tracing::info!(dir = %cfg.ca_dir.display(), mode = ?ca.mode(), "certificate authority ready");
        let ca = Arc::new(ca);
        let mut jwt = JwtAuthenticator::new(&cfg.trust_domain, cfg.issuers.clone())?;
        if let Some(client) = kube {
            jwt = jwt.with_reviewer(Arc::new(token_review::KubeTokenReview::new(
                client,
                tokio::runtime::Handle::current(),
                &cfg.trust_domain,
            )));
            tracing::info!(
                "service-account tokens are reviewed by the Kubernetes API server (TokenReview, audience istio-ca)"
            );
        }
        let jwt = Arc::new(jwt);
        let identity = Arc::new(Identity::new(
            ca.clone(),
            jwt.clone(),
            cfg,
            config.clone(),
            epoch,
        ));
        let tls = Arc::new(crate::tls::ServingTls::new(
            ca.clone(),
            cfg.tls_names.clone(),
        )?);
        let csr = shoal_ca::grpc::CertificateService::new(
            ca,
            jwt,
            shoal_ca::Authorizer::new(&cfg.trust_domain)?,
            Arc::new(PodDirectory {
                config: config.clone(),
                cluster_id: cfg.cluster_id.clone(),
            }),
        );
        tasks.spawn(identity.clone().follow(config));
        tasks.spawn(upkeep(
            identity.clone(),
            tls.clone(),
            cfg.cert_check_interval,
        ));
        Ok(Running { identity, tls, csr })
    }

    /// Follows the published config: gateway credentials to the gateway views, and a
    /// re-resolution of every stream when the identities that run gateways change (that is
    /// where a gateway's credentials are granted or withdrawn).
    async fn follow(self: Arc<Self>, mut config: watch::Receiver<ConfigSnapshot>) {
        let mut secrets_seen: Vec<(ObjectKey, usize)> = Vec::new();
        let mut gateways: Option<BTreeSet<(String, String)>> = None;
        loop {
            let snapshot = config.borrow_and_update().clone();
            // Encoding credentials is work: only when some Secret object changed.
            let secrets_now: Vec<(ObjectKey, usize)> = snapshot
                .of_kind(Kind::Secret)
                .map(|(k, e)| (k.clone(), Arc::as_ptr(&e.object) as usize))
                .collect();
            if secrets_now != secrets_seen {
                secrets_seen = secrets_now;
                let (me, snap) = (self.clone(), snapshot.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    me.secrets
                        .set_credentials(shoal_translate::sds::credentials(&snap))
                })
                .await;
            }
            let now = readers::gateway_identities(&snapshot);
            if gateways.as_ref().is_some_and(|known| *known != now) {
                tracing::info!("gateway workloads changed: streams resolve their identity again");
                self.epoch.bump();
            }
            gateways = Some(now);
            if config.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Renews workload and serving certificates, and follows root rotations that another
/// replica made in the shared CA directory.
async fn upkeep(
    identity: Arc<Identity>,
    tls: Arc<crate::tls::ServingTls>,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let (identity, tls) = (identity.clone(), tls.clone());
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = identity.ca.reload() {
                tracing::warn!(error = %e, "reloading the CA failed");
            }
            identity.secrets.maintain();
            tls.maintain();
        })
        .await;
    }
}

/// Which workloads run on which node, from this cluster's Pods in the config
/// (`spec.nodeName`, `spec.serviceAccountName`): a node proxy may ask for certificates only
/// for those. Pods of other clusters (read through remote secrets, their nodes renamed
/// `NODE.CLUSTER`, or imported from a peer) are labelled with their cluster and never
/// count, whatever a local node is named.
pub struct PodDirectory {
    pub config: watch::Receiver<ConfigSnapshot>,
    pub cluster_id: String,
}

impl shoal_ca::NodeDirectory for PodDirectory {
    fn has_workload_on_node(&self, node: &str, identity: &shoal_ca::Identity) -> bool {
        let config = self.config.borrow();
        config
            .of_kind_in(Kind::Pod, &identity.namespace)
            .any(|(_, entry)| match entry.object.as_ref() {
                Object::Pod(pod) => {
                    topology::cluster_of(&pod.metadata.labels, &self.cluster_id) == self.cluster_id
                        && pod.spec.node_name.as_deref() == Some(node)
                        && pod
                            .spec
                            .service_account_name
                            .as_deref()
                            .unwrap_or("default")
                            == identity.service_account
                }
                _ => false,
            })
    }
}

/// `shoal ca STEP`: one step of a root rotation on the CA directory the replicas share.
pub fn ca_step(args: &crate::cli::CaArgs) -> anyhow::Result<()> {
    use crate::cli::CaStep;
    let ca = CertificateAuthority::load_or_create(&args.ca_dir, &args.trust_domain)
        .with_context(|| format!("loading the CA in {}", args.ca_dir.display()))?;
    match args.step {
        CaStep::Rotate => ca.rotate_root()?,
        CaStep::Promote => ca.promote_next_root()?,
        CaStep::DropPrevious => ca.drop_previous_root()?,
        CaStep::Bundle => {}
    }
    print!("{}", ca.trust_bundle().concat());
    eprintln!("{} root(s) trusted", ca.trust_bundle().len());
    Ok(())
}

/// For the router: the identity a stream's client certificate proves (streams with a token
/// are verified by the owner from the token itself).
pub fn caller_fn(ca: Arc<CertificateAuthority>) -> shoal_router::CallerFn {
    Arc::new(move |parts: &http::request::Parts| {
        if parts.headers.contains_key(http::header::AUTHORIZATION) {
            return None;
        }
        let PeerCertificates(chain) = parts.extensions.get::<PeerCertificates>()?;
        let caller = ca.authenticate_client_cert(chain).ok()?;
        Some(caller.identity.spiffe_uri())
    })
}

#[cfg(test)]
mod tests {
    use shoal_ca::NodeDirectory;
    use shoal_config::ConfigStore;
    use shoal_config::parse::parse_yaml;

    use super::*;

    #[test]
    fn only_this_cluster_s_pods_count_on_a_node() {
        // A local node is named like a remote one as shoal renames it (`node-1.cluster2`):
        // the remote pod on it lends its identity to no local node proxy.
        let pod = |name: &str, sa: &str, node: &str, labels: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: app, labels: {{{labels}}}}}\nspec: {{serviceAccountName: {sa}, nodeName: {node}}}\n---\n"
            )
        };
        let yaml = pod("web-0", "web", "node-1.cluster2", "")
            + &pod(
                "own-0",
                "own",
                "node-1.cluster2",
                "topology.istio.io/cluster: cluster1",
            )
            + &pod(
                "db-0.cluster2",
                "db",
                "node-1.cluster2",
                "topology.istio.io/cluster: cluster2",
            );
        let mut store = ConfigStore::new();
        store.apply("pods.yaml", parse_yaml("pods.yaml", &yaml));
        let (_tx, config) = watch::channel(store.snapshot());
        let directory = PodDirectory {
            config,
            cluster_id: "cluster1".into(),
        };
        let on_node = |sa: &str| {
            let id = shoal_ca::Identity::new("cluster.local", "app", sa).expect("identity");
            directory.has_workload_on_node("node-1.cluster2", &id)
        };
        assert!(
            on_node("web"),
            "a pod without a cluster label is this cluster's"
        );
        assert!(on_node("own"), "a pod labelled with this cluster");
        assert!(!on_node("db"), "another cluster's pod");
    }
}
