//! Replication wiring: the shard group member of `shoal serve --id`, and the standalone
//! `shoal router`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_router::{Router, RouterConfig};
use shoal_shard::{ShardConfig, ShardNode};
use tokio::task::JoinSet;

use crate::cli::RouterArgs;
use crate::config::{ClusterConfig, Config};

/// The runtime a replica's shard group member runs on: Raft, its RPC server and the lease
/// loops get a thread of their own, so that a replica busy serving proxies (its workers
/// encoding large views, or waiting on a build) still answers heartbeats and renews its
/// leases on time, instead of losing its shards and sending its proxies reconnecting —
/// which would only add to the load that starved it.
pub struct ShardRuntime(Option<tokio::runtime::Runtime>);

impl ShardRuntime {
    fn new() -> anyhow::Result<ShardRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("shoal-shard")
            .enable_all()
            .build()
            .context("starting the shard runtime")?;
        Ok(ShardRuntime(Some(rt)))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for ShardRuntime {
    fn drop(&mut self) {
        // Dropped from async code too: do not wait for its tasks.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Starts this replica's shard node and its Raft RPC server (on `tasks`, run by the
/// returned [`ShardRuntime`]). With identity, Raft links are mTLS between replica
/// certificates.
pub async fn start_node(
    c: &ClusterConfig,
    identity: Option<&crate::identity::Running>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<(Arc<ShardNode>, ShardRuntime)> {
    let cfg = ShardConfig {
        peers: c.peers.clone(),
        join: c.join.clone(),
        shard_count: c.shards,
        heartbeat: c.heartbeat,
        lease: c.lease,
        down_after: c.down_after,
        migration_rate: c.migration_rate,
        drain: c.drain,
        tls: match identity {
            Some(s) => Some(s.tls.client_config()?),
            None => None,
        },
        ..ShardConfig::defaults(c.id, c.data_dir.clone(), c.advertised.clone())
    };
    let runtime = ShardRuntime::new()?;
    let handle = runtime
        .handle()
        .context("the shard runtime is running")?
        .clone();
    let raft_addr = c.raft_addr;
    let links = identity.map(|s| s.tls.clone());
    // Everything of the node is made on its runtime: its sockets are driven there.
    let (node, listener) = handle
        .spawn(async move {
            let node = ShardNode::start(cfg).await?;
            let listener = tokio::net::TcpListener::bind(raft_addr)
                .await
                .with_context(|| format!("binding Raft address {raft_addr}"))?;
            anyhow::Ok((node, listener))
        })
        .await
        .context("the shard runtime stopped")??;
    let app = shoal_shard::http::router(node.clone());
    match links {
        Some(tls) => {
            // Its accept loop is spawned on the shard runtime too.
            let listener = {
                let _shard = handle.enter();
                crate::tls::TlsListener::new(listener, tls, crate::tls::Port::Links)?
            };
            tasks.spawn_on(
                async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "raft server failed");
                    }
                },
                &handle,
            );
        }
        None => {
            tasks.spawn_on(
                async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "raft server failed");
                    }
                },
                &handle,
            );
        }
    }
    tracing::info!(id = c.id, %raft_addr, "shard group member started");
    Ok((node, runtime))
}

/// How this replica's router reaches the owners (itself included, by its own address).
/// How this replica's router reaches the owners (itself included, by its own address):
/// over mTLS to their TLS ports when the replicas have a CA and advertise one. Decided from
/// this replica's configuration, never from a shard map that may not list it yet (a router
/// built before its membership was applied would otherwise forward in the clear).
pub fn router_config(
    config: &Config,
    identity: Option<&crate::identity::Running>,
) -> anyhow::Result<RouterConfig> {
    let me = config.cluster.as_ref().map(|c| &c.advertised);
    let plain = me
        .map(|m| m.xds_addr.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| config.xds.plaintext_addr.map(|a| a.to_string()));
    let tls_addr = me.map(|m| m.xds_tls_addr.clone()).filter(|s| !s.is_empty());
    let (self_addr, tls, caller) = match (identity, tls_addr) {
        (Some(s), Some(addr)) => (
            Some(format!("https://{addr}")),
            Some(s.tls.client_config()?),
            Some(crate::identity::caller_fn(s.identity.ca.clone())),
        ),
        _ => (plain.map(|p| format!("http://{p}")), None, None),
    };
    Ok(RouterConfig {
        max_message_size: config.xds.ads.max_message_size,
        drain: config
            .cluster
            .as_ref()
            .map_or(Duration::from_millis(500), |c| c.drain),
        wait_for_owner: Duration::from_secs(10),
        self_addr,
        tls,
        caller,
    })
}

/// `shoal router`: forwards every stream to its shard's owner.
pub fn run_router(args: RouterArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let metrics = crate::metrics::install()?;
        // A replica certificate from the shared CA, for mTLS to the replicas.
        let serving = match &args.ca_dir {
            Some(dir) => {
                let ca = Arc::new(
                    shoal_ca::CertificateAuthority::load_or_create(dir, &args.trust_domain)
                        .with_context(|| format!("loading the CA in {}", dir.display()))?,
                );
                let serving = Arc::new(crate::tls::ServingTls::new(
                    ca.clone(),
                    args.tls_names.clone(),
                )?);
                let (s, c) = (serving.clone(), ca.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(10));
                    loop {
                        tick.tick().await;
                        let (s, c) = (s.clone(), c.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            // A rotation by the replicas shows in the shared directory.
                            if let Err(e) = c.reload() {
                                tracing::warn!(error = %e, "reloading the CA failed");
                            }
                            s.maintain();
                        })
                        .await;
                    }
                });
                Some((ca, serving))
            }
            None => None,
        };
        let tls = match &serving {
            Some((_, s)) => Some(s.client_config()?),
            None => None,
        };
        let transport = Arc::new(shoal_shard::HttpTransport::new(tls.clone())?);
        let view =
            shoal_shard::watch_peers(transport, args.peers.clone(), Duration::from_millis(250));
        let router: Router<shoal_cache::service::AdsService<crate::streams::Streams>> = Router::new(
            None,
            view.clone(),
            RouterConfig {
                max_message_size: 4 << 20,
                drain: Duration::from_millis(500),
                wait_for_owner: Duration::from_secs(10),
                self_addr: None,
                tls,
                caller: serving
                    .as_ref()
                    .map(|(ca, _)| crate::identity::caller_fn(ca.clone())),
            },
        );
        let admin = axum::Router::new()
            .route("/ready", axum::routing::get(|| async { "ready\n" }))
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let m = metrics.clone();
                    async move { m.render() }
                }),
            );
        let admin_listener = tokio::net::TcpListener::bind(args.admin_addr).await?;
        tokio::spawn(async move { axum::serve(admin_listener, admin).await });
        // Proxies over TLS: the router's certificate, and theirs vouched for to the owner.
        if let Some(addr) = args.listen_tls {
            let Some((_, s)) = &serving else {
                anyhow::bail!("--listen-tls needs --ca-dir");
            };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            tracing::info!(%addr, "router listening (TLS)");
            let incoming = crate::tls::incoming(listener, s.clone());
            let router = router.clone();
            tokio::spawn(async move {
                if let Err(e) = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .add_service(router)
                    .serve_with_incoming(incoming)
                    .await
                {
                    tracing::error!(error = %e, "TLS router listener failed");
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(listen = %args.listen, peers = ?args.peers, "router listening");
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(router)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
            )
            .await?;
        Ok(())
    })
}

/// Whether this replica is the one that writes to the cluster (status, webhook bundles, the
/// root ConfigMap): alone it always is; in a shard group only the Raft leader is, and a
/// replica whose group has stopped never is.
pub struct Leadership {
    ownership: Option<tokio::sync::watch::Receiver<Arc<shoal_shard::Ownership>>>,
    stopped: bool,
}

impl Leadership {
    /// For `node`'s group (`None`: a replica on its own).
    pub fn of(node: Option<&Arc<ShardNode>>) -> Self {
        Leadership {
            ownership: node.map(|n| n.ownership()),
            stopped: false,
        }
    }

    pub fn is_leader(&self) -> bool {
        match &self.ownership {
            None => true,
            Some(_) if self.stopped => false,
            Some(o) => o.borrow().is_leader(),
        }
    }

    /// Returns when the group's view changed (never, alone or once the group stopped).
    pub async fn changed(&mut self) {
        match &mut self.ownership {
            Some(o) if !self.stopped => {
                if o.changed().await.is_err() {
                    self.stopped = true;
                }
            }
            _ => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_shard::{Ownership, ShardState, ShardsReport};

    fn view(me: u64, leader: Option<u64>) -> Arc<Ownership> {
        let mut o = Ownership::observed(ShardsReport {
            node: me,
            leader,
            term: 1,
            commit_index: 1,
            state: ShardState::default(),
        });
        o.me = me;
        Arc::new(o)
    }

    #[tokio::test]
    async fn only_the_leader_of_a_running_group_writes() {
        assert!(Leadership::of(None).is_leader(), "alone");
        let (tx, rx) = tokio::sync::watch::channel(view(1, Some(2)));
        let mut l = Leadership {
            ownership: Some(rx),
            stopped: false,
        };
        assert!(!l.is_leader());
        tx.send_replace(view(1, Some(1)));
        l.changed().await;
        assert!(l.is_leader());
        // The group stops: this replica writes no more, and waits for nothing.
        drop(tx);
        l.changed().await;
        assert!(!l.is_leader());
        assert!(
            futures::FutureExt::now_or_never(l.changed()).is_none(),
            "no change ever comes"
        );
    }
}
