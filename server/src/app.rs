//! `shoal serve`, wired: [`build`] turns one [`Config`] into a running control plane —
//! config source and loop, identity, the ADS service, the shard group member and its
//! router, the admin server — and returns an [`App`] handle that a test can run in-process
//! and stop. [`run`] is the binary's way: build, wait for a signal, shut down.
//!
//! Order matters and is the only thing this file decides: the pipeline first (everything
//! reads it), identity next (streams need admission), the shard group before any xDS
//! port serves (a replica must know what it owns), and the xDS ports only once the
//! initial config is in, so that no proxy is ever served an empty config.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_cache::AdsServer;
use shoal_config::source::etcd::EtcdSource;
use shoal_config::source::kubernetes::{self, KubernetesSource};
use shoal_config::source::{ConfigSource, file::FileSource};
use shoal_shard::ShardNode;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::Config;
use crate::epoch::Epoch;
use crate::pipeline::Pipeline;
use crate::streams::Streams;

/// A running control plane.
pub struct App {
    pub pipeline: Arc<Pipeline>,
    /// Where each server listens (the bound addresses: a configured port 0 is resolved).
    pub admin_addr: SocketAddr,
    pub xds_addr: Option<SocketAddr>,
    pub xds_tls_addr: Option<SocketAddr>,
    pub webhook_addr: Option<SocketAddr>,
    node: Option<Arc<ShardNode>>,
    stop: watch::Sender<bool>,
    /// Servers that stop gracefully on `stop`.
    servers: Vec<JoinHandle<()>>,
    /// Everything else: aborted at shutdown (and when the handle is dropped).
    tasks: JoinSet<()>,
    /// Runs the shard node (its own thread); declared last, so dropped last.
    _shard_runtime: Option<crate::cluster::ShardRuntime>,
}

/// Runs `shoal serve` until SIGINT or SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = build(Arc::new(config)).await?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
            _ = terminate() => tracing::info!("terminated, shutting down"),
        }
        app.shutdown().await;
        Ok(())
    })
}

/// Starts every component of `config` and returns once the initial config is served.
pub async fn build(config: Arc<Config>) -> anyhow::Result<App> {
    raise_nofile_limit();
    let metrics = crate::metrics::install()?;
    let epoch = Arc::new(Epoch::default());
    let pipeline = Pipeline::new(config.mesh.options.clone(), epoch.clone());
    let mut tasks = JoinSet::new();
    let (stop, stop_rx) = watch::channel(false);

    // Sources feed the config loop.
    let (tx, rx) = mpsc::channel(1024);
    let mut sources: Vec<Box<dyn ConfigSource>> = Vec::new();
    if let Some(dir) = &config.sources.config_dir {
        sources.push(Box::new(FileSource::new(dir)));
    }
    let (kubernetes, kube_client) = match &config.sources.kubernetes {
        Some(k) => {
            let (client, server) = kubernetes::connect(&k.connection)
                .await
                .context("--kubernetes")?;
            tracing::info!(%server, "reading config from the Kubernetes API server");
            let source = KubernetesSource::new(client.clone(), server, k.options.clone());
            let status = source.status();
            sources.push(Box::new(source));
            (Some(status), Some(client))
        }
        None => (None, None),
    };
    let etcd = config.sources.etcd.as_ref().map(|e| {
        tracing::info!(endpoints = ?e.connection.endpoints, prefix = %e.connection.prefix, "reading config from etcd");
        let source = EtcdSource::new(e.connection.clone(), e.options.clone());
        let status = source.status();
        sources.push(Box::new(source));
        status
    });
    // Peer groups' exports: followed once this replica has its certificate.
    let mut federation_links = None;
    let mut relays = crate::federation::Relays::default();
    let mut federation = None;
    if let Some(f) = &config.sources.federation {
        let (links_tx, links_rx) = tokio::sync::oneshot::channel();
        federation_links = Some(links_tx);
        let peers: Vec<&str> = f.peers.iter().map(|p| p.name.as_str()).collect();
        tracing::info!(?peers, "importing peer groups' exports");
        let source = crate::federation::FederationSource::new(
            f.clone(),
            config.mesh.options.cluster_id.clone(),
            links_rx,
        );
        relays = source.relays();
        federation = Some(source.status());
        sources.push(Box::new(source));
    }
    let source_count = sources.len();
    for source in sources {
        let kind = source.kind();
        let tx = tx.clone();
        tasks.spawn(async move {
            if let Err(e) = source.run(tx).await {
                tracing::error!(source = kind, error = %e, "config source failed");
            }
        });
    }
    drop(tx);
    let config_loop = tokio::spawn(pipeline.clone().run(
        rx,
        config.mesh.base.clone(),
        source_count,
        config.debounce,
        config.debounce_max,
    ));
    if let Some(file) = &config.mesh.file {
        let document = crate::mesh::Document::MeshConfig(Box::new(config.mesh.base.clone()));
        tasks.spawn(crate::mesh::Watch::new(file, document).run(pipeline.clone()));
    }
    if let Some(file) = &config.mesh.networks_file {
        let document = crate::mesh::Document::MeshNetworks;
        tasks.spawn(crate::mesh::Watch::new(file, document).run(pipeline.clone()));
    }
    let jwks_status = Arc::new(crate::jwks::JwksStatus::default());
    tasks.spawn(crate::jwks::run(
        pipeline.clone(),
        pipeline.jwks_wanted(),
        config.jwks.clone(),
        jwks_status.clone(),
    ));
    tasks.spawn(upkeep(pipeline.clone()));

    // Istio's plug-in CA from the cluster, before the CA loads.
    if let (Some(client), Some(cfg)) = (&kube_client, &config.identity) {
        let namespace = config.mesh.options.root_namespace.clone();
        match crate::cacerts::install(client, &namespace, &cfg.ca_dir).await {
            Ok(true) => {
                tasks.spawn(crate::cacerts::follow(
                    client.clone(),
                    namespace,
                    cfg.ca_dir.clone(),
                ));
            }
            Ok(false) => {}
            Err(e @ crate::cacerts::CacertsError::Read { .. }) => {
                tracing::warn!(error = %e, "the CA uses its directory as it is");
            }
            Err(e) => return Err(e).context("the plug-in CA Secret"),
        }
    }
    let identity = match &config.identity {
        Some(cfg) => Some(
            crate::identity::Identity::start(
                cfg,
                pipeline.config_watch(),
                epoch.clone(),
                kube_client.clone(),
                &mut tasks,
            )
            .await?,
        ),
        None => None,
    };
    let streams = Streams::new(
        pipeline.clone(),
        identity.as_ref().map(|i| i.identity.clone()),
        epoch,
        relays,
    );
    let ads = AdsServer::new(streams, config.xds.ads.clone());

    // With a shard group: join it before serving anyone (over mTLS with the CA).
    let mut shard_runtime = None;
    let node = match &config.cluster {
        Some(cluster) => {
            let (node, runtime) =
                crate::cluster::start_node(cluster, identity.as_ref(), &mut tasks).await?;
            shard_runtime = Some(runtime);
            Some(node)
        }
        None => None,
    };
    // Peer groups are followed once this replica has its certificate and its group.
    if let (Some(tx), Some(running)) = (federation_links, &identity) {
        let _ = tx.send(crate::federation::Links {
            tls: running.tls.client_config()?,
            ownership: node.as_ref().map(|n| n.ownership()),
        });
    }
    let writes_status = config
        .sources
        .kubernetes
        .as_ref()
        .is_some_and(|k| k.write_status || k.write_analysis);
    if let Some(client) = kube_client.clone().filter(|_| writes_status) {
        tasks.spawn(crate::kube_status::run(
            client,
            pipeline.config_watch(),
            crate::kube_status::Settings {
                domain_suffix: config.mesh.options.domain_suffix.clone(),
                gateway_api: config
                    .sources
                    .kubernetes
                    .as_ref()
                    .is_some_and(|k| k.write_status),
                analysis: config
                    .sources
                    .kubernetes
                    .as_ref()
                    .is_some_and(|k| k.write_analysis),
            },
            crate::cluster::Leadership::of(node.as_ref()),
        ));
    }
    // The root certificate in every namespace of the mesh, for injected pods.
    if let (Some(client), Some(running)) = (kube_client.clone(), &identity) {
        tasks.spawn(crate::root_cert::distribute(
            client,
            pipeline.clone(),
            running.tls.clone(),
            crate::cluster::Leadership::of(node.as_ref()),
        ));
    }
    let mut servers = Vec::new();
    let webhook_addr = match (&config.webhook, &identity) {
        (Some(wh), Some(running)) => {
            let listener = bind(wh.addr, "admission webhooks").await?;
            let local = listener.local_addr()?;
            let listener = crate::tls::TlsListener::new(
                listener,
                running.tls.clone(),
                crate::tls::Port::Webhook,
            )?;
            let routes =
                crate::webhook::Webhooks::new(pipeline.clone(), wh.settings.clone()).router();
            let shutdown = stopped(stop_rx.clone());
            servers.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, routes)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "admission webhook server failed");
                }
            }));
            tracing::info!(addr = %local, "admission webhooks listening (HTTPS)");
            if let Some(client) = kube_client.clone() {
                tasks.spawn(crate::webhook::keep_ca_bundles(
                    client,
                    wh.names.clone(),
                    running.tls.clone(),
                    crate::cluster::Leadership::of(node.as_ref()),
                ));
            }
            Some(local)
        }
        _ => None,
    };
    let admin = crate::admin::router(crate::admin::Admin {
        pipeline: pipeline.clone(),
        status: ads.status(),
        metrics,
        node: node.clone(),
        jwks: jwks_status,
        kubernetes,
        etcd,
        federation,
    });
    let listener = bind(config.admin_addr, "admin").await?;
    let admin_addr = listener.local_addr()?;
    tracing::info!(addr = %admin_addr, "admin server listening");
    let shutdown = stopped(stop_rx.clone());
    servers.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, admin)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin server failed");
        }
    }));

    // Bind now (connections wait in the backlog), serve once the initial config is in.
    let plaintext = match config.xds.plaintext_addr {
        Some(addr) => Some(bind(addr, "xDS").await?),
        None => None,
    };
    let tls = match (&config.identity, &identity) {
        (Some(cfg), Some(_)) => Some(bind(cfg.tls_addr, "xDS TLS").await?),
        _ => None,
    };
    let xds_addr = plaintext.as_ref().map(|l| l.local_addr()).transpose()?;
    let xds_tls_addr = tls.as_ref().map(|l| l.local_addr()).transpose()?;
    while !pipeline.is_ready() {
        if config_loop.is_finished() {
            anyhow::bail!("the config source stopped before the initial load finished");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tasks.spawn(async move {
        // The loop ends when every source has; a panic in it is a bug worth a log line.
        if let Err(e) = config_loop.await {
            tracing::error!(error = %e, "the config loop failed");
        }
    });

    // A replica's router serves what this replica owns and forwards the rest.
    let router = match &node {
        Some(node) => Some(shoal_router::Router::new(
            Some(ads.service()),
            node.ownership(),
            crate::cluster::router_config(&config, identity.as_ref())?,
        )),
        None => None,
    };
    let xds = &config.xds;
    let builder = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(xds.keepalive_interval))
            .http2_keepalive_timeout(Some(xds.keepalive_timeout))
            .tcp_nodelay(true)
    };
    if let Some(listener) = plaintext {
        tracing::info!(addr = ?xds_addr, "plaintext xDS server listening");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        // Credentials never cross the plaintext port (with a CA; without one there are
        // no identities to protect).
        let guarded = identity.is_some();
        let refuse = tonic::service::InterceptorLayer::new(move |req| match guarded {
            true => crate::identity::refuse_credentials_in_clear(req),
            false => Ok(req),
        });
        let mut b = builder().layer(refuse);
        let routes = match &router {
            Some(router) => b.add_service(router.clone()),
            None => b.add_service(ads.service()),
        };
        let shutdown = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            if let Err(e) = routes
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = %e, "plaintext xDS server failed");
            }
        }));
    }
    // The TLS port: the same ADS service (authenticated) and Istio's CSR API.
    if let (Some(listener), Some(running)) = (tls, &identity) {
        tracing::info!(addr = ?xds_tls_addr, "xDS TLS server listening");
        let incoming = crate::tls::incoming(listener, running.tls.clone());
        let mut b = builder();
        let routes = match &router {
            Some(router) => b.add_service(router.clone()),
            None => b.add_service(ads.service()),
        }
        .add_service(running.csr.clone());
        let shutdown = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            if let Err(e) = routes
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = %e, "xDS TLS server failed");
            }
        }));
    }
    Ok(App {
        pipeline,
        admin_addr,
        xds_addr,
        xds_tls_addr,
        webhook_addr,
        node,
        stop,
        servers,
        tasks,
        _shard_runtime: shard_runtime,
    })
}

impl App {
    /// The shard group member, when this replica is one.
    pub fn node(&self) -> Option<&Arc<ShardNode>> {
        self.node.as_ref()
    }

    /// Hands this replica's shards over (if it has any), stops the servers (waiting a few
    /// seconds for open requests) and every background task.
    pub async fn shutdown(mut self) {
        if let Some(node) = &self.node {
            node.leave().await;
        }
        let _ = self.stop.send(true);
        self.tasks.abort_all();
        let servers = std::mem::take(&mut self.servers);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            for s in servers {
                let _ = s.await;
            }
        })
        .await;
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} address {addr}"))
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Periodic upkeep of the views: idle views and unused shared responses are dropped.
async fn upkeep(pipeline: Arc<Pipeline>) {
    let mut tick = tokio::time::interval(crate::pipeline::MAINTENANCE);
    loop {
        tick.tick().await;
        pipeline.maintain();
    }
}

/// Every proxy holds a connection: let the process hold as many sockets as it may.
fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending::<()>().await
}
