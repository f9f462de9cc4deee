//! Replication wiring: the shard group member of `shoal serve --id`, and the standalone
//! `shoal router`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_router::{Router, RouterConfig};
use shoal_shard::{Node, ShardConfig, ShardNode};

use crate::cli::{RouterArgs, ServeArgs};

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

/// Starts this replica's shard node and its Raft RPC server.
/// With `security`, Raft links are mTLS between replica certificates.
pub async fn start_node(
    args: &ServeArgs,
    security: Option<&crate::security::Running>,
) -> anyhow::Result<Option<Arc<ShardNode>>> {
    let c = &args.cluster;
    let (Some(id), Some(raft_addr)) = (c.id, c.raft_addr) else {
        return Ok(None);
    };
    anyhow::ensure!(
        c.lease < c.down_after,
        "--lease must be shorter than --down-after"
    );
    let addrs = Node {
        raft_addr: raft_addr.to_string(),
        xds_addr: c
            .advertise_xds
            .clone()
            .or_else(|| args.xds_addr.map(|a| a.to_string()))
            .unwrap_or_default(),
        admin_addr: c
            .advertise_admin
            .clone()
            .unwrap_or_else(|| args.admin_addr.to_string()),
        xds_tls_addr: match (&c.advertise_xds_tls, security) {
            (Some(a), Some(_)) => a.clone(),
            (None, Some(_)) if !args.security.xds_tls_addr.ip().is_unspecified() => {
                args.security.xds_tls_addr.to_string()
            }
            _ => String::new(),
        },
    };
    let mut peers = peers(&c.peers)?;
    if let Some(me) = peers.get_mut(&id) {
        *me = addrs.clone();
    }
    anyhow::ensure!(
        !peers.is_empty() || c.join.is_some(),
        "give --peers (the initial voters) or --join"
    );
    let cfg = ShardConfig {
        peers,
        join: c.join.clone(),
        shard_count: c.shards,
        heartbeat: c.heartbeat,
        lease: c.lease,
        down_after: c.down_after,
        migration_rate: c.migration_rate,
        drain: c.drain,
        tls: match security {
            Some(s) => Some(s.tls.client_config()?),
            None => None,
        },
        ..ShardConfig::defaults(id, c.data_dir.clone(), addrs)
    };
    let node = ShardNode::start(cfg).await?;
    let listener = tokio::net::TcpListener::bind(raft_addr)
        .await
        .with_context(|| format!("binding Raft address {raft_addr}"))?;
    let app = node.router();
    match security {
        Some(s) => {
            let listener = crate::tls::LinkListener::new(listener, s.tls.clone())?;
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "raft server failed");
                }
            });
        }
        None => {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "raft server failed");
                }
            });
        }
    }
    tracing::info!(id, %raft_addr, "shard group member started");
    Ok(Some(node))
}

pub fn router_config(
    args: &ServeArgs,
    node: &ShardNode,
    security: Option<&crate::security::Running>,
) -> anyhow::Result<RouterConfig> {
    let me = node
        .current()
        .state
        .members
        .get(&node.id())
        .map(|m| m.addrs.clone());
    let plain = me
        .as_ref()
        .map(|m| m.xds_addr.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| args.xds_addr.map(|a| a.to_string()));
    let tls_addr = me.map(|m| m.xds_tls_addr).filter(|s| !s.is_empty());
    let (self_addr, tls, caller) = match (security, tls_addr) {
        (Some(s), Some(addr)) => (
            Some(format!("https://{addr}")),
            Some(s.tls.client_config()?),
            Some(crate::security::caller_fn(s.security.ca.clone())),
        ),
        _ => (plain.map(|p| format!("http://{p}")), None, None),
    };
    Ok(RouterConfig {
        max_message_size: args.max_message_size,
        drain: args.cluster.drain,
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
        let client = shoal_shard::network::http_client(tls.clone())?;
        let view = shoal_router::poll::watch_replicas(
            args.peers.clone(),
            Duration::from_millis(250),
            client,
        );
        let router: Router<shoal_cache::service::AdsService<crate::pipeline::Pipeline>> =
            Router::new(
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
                        .map(|(ca, _)| crate::security::caller_fn(ca.clone())),
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
