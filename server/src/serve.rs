//! `shoal serve`: the control plane.

use anyhow::Context;
use shoal_cache::session::Limits;
use shoal_cache::{AdsConfig, AdsServer};
use shoal_config::source::{ConfigSource, file::FileSource};
use tokio::sync::{mpsc, watch};

use crate::cli::ServeArgs;
use crate::pipeline::Pipeline;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Every proxy holds a connection: let the process hold as many sockets as it may.
fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}

pub async fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    raise_nofile_limit();
    if !args.config_dir.is_dir() {
        anyhow::bail!(
            "--config-dir {} is not a directory",
            args.config_dir.display()
        );
    }
    let metrics = crate::metrics::install()?;
    let options = crate::mesh::initial(&mut args)?;
    let pipeline = Pipeline::new(options);
    let (stop_tx, stop_rx) = watch::channel(false);

    // Sources feed the config loop.
    let (tx, rx) = mpsc::channel(1024);
    let source: Box<dyn ConfigSource> = Box::new(FileSource::new(&args.config_dir));
    let source_kind = source.kind();
    let source_task = tokio::spawn(async move {
        if let Err(e) = source.run(tx).await {
            tracing::error!(source = source_kind, error = %e, "config source failed");
        }
    });
    let config_loop = tokio::spawn(
        pipeline
            .clone()
            .run(rx, 1, args.debounce, args.debounce_max),
    );

    let mesh_watch = crate::mesh::Watch::new(&args).map(|w| tokio::spawn(w.run(pipeline.clone())));
    let jwks = tokio::spawn(crate::jwks::run(
        pipeline.clone(),
        pipeline.jwks_wanted(),
        crate::jwks::JwksConfig {
            refresh: args.jwks_refresh,
            timeout: args.jwks_timeout,
            extra_roots: args.jwks_ca.clone(),
        },
    ));
    let upkeep = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::pipeline::MAINTENANCE);
            loop {
                tick.tick().await;
                pipeline.maintain();
            }
        })
    };

    let ads = AdsServer::new(
        pipeline.clone(),
        AdsConfig {
            limits: Limits {
                max_names: args.max_names,
            },
            stream_rate: args.stream_rate,
            stream_burst: args.stream_burst,
            push_concurrency: args.push_concurrency,
            max_message_size: args.max_message_size,
            ..AdsConfig::default()
        },
    );

    let security = if args.security.no_ca {
        None
    } else {
        Some(crate::security::start(&args, pipeline.clone()).await?)
    };
    // With --id: join the shard group before serving anyone (over mTLS with the CA).
    let node = crate::cluster::start_node(&args, security.as_ref()).await?;
    let admin = crate::admin::router(pipeline.clone(), ads.status(), metrics, node.clone());
    let admin_task = {
        let addr = args.admin_addr;
        let stop = shutdown_signal(stop_rx.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding admin address {addr}"))?;
        tracing::info!(%addr, "admin server listening");
        tokio::spawn(async move {
            axum::serve(listener, admin)
                .with_graceful_shutdown(stop)
                .await
        })
    };

    anyhow::ensure!(
        args.xds_addr.is_some() || security.is_some(),
        "nothing to serve: --no-ca turns the TLS port off; give --xds-addr for plaintext"
    );
    // Bind now (connections wait in the backlog), serve once the initial config is in, so
    // no proxy ever gets an empty config.
    let listener = match args.xds_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding xDS address {addr}"))?,
        ),
        None => None,
    };
    while !pipeline.is_ready() {
        if config_loop.is_finished() {
            anyhow::bail!("the config source stopped before the initial load finished");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let builder = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(args.keepalive_interval))
            .http2_keepalive_timeout(Some(args.keepalive_timeout))
            .tcp_nodelay(true)
    };
    // A replica's router serves what this replica owns and forwards the rest.
    let router = match &node {
        Some(node) => Some(shoal_router::Router::new(
            Some(ads.service()),
            node.ownership(),
            crate::cluster::router_config(&args, node, security.as_ref())?,
        )),
        None => None,
    };
    let xds_task = listener.map(|listener| {
        tracing::info!(addr = ?listener.local_addr().ok(), "plaintext xDS server listening");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let stop = shutdown_signal(stop_rx.clone());
        match &router {
            Some(router) => tokio::spawn(
                builder()
                    .add_service(router.clone())
                    .serve_with_incoming_shutdown(incoming, stop),
            ),
            None => tokio::spawn(
                builder()
                    .add_service(ads.service())
                    .serve_with_incoming_shutdown(incoming, stop),
            ),
        }
    });
    // The TLS port: the same ADS service (authenticated) and Istio's CSR API.
    let tls_task = match &security {
        Some(sec) => {
            let listener = tokio::net::TcpListener::bind(args.security.xds_tls_addr)
                .await
                .with_context(|| {
                    format!("binding xDS TLS address {}", args.security.xds_tls_addr)
                })?;
            tracing::info!(addr = %listener.local_addr()?, "xDS TLS server listening");
            let incoming = crate::tls::incoming(listener, sec.tls.clone());
            let stop = shutdown_signal(stop_rx.clone());
            let mut b = builder();
            let routes = match &router {
                Some(router) => b.add_service(router.clone()),
                None => b.add_service(ads.service()),
            }
            .add_service(sec.csr.clone());
            Some(tokio::spawn(
                routes.serve_with_incoming_shutdown(incoming, stop),
            ))
        }
        None => None,
    };

    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
        _ = terminate() => tracing::info!("terminated, shutting down"),
    }
    // A replica hands its shards over before it goes.
    if let Some(node) = &node {
        node.leave().await;
    }
    let _ = stop_tx.send(true);
    source_task.abort();
    upkeep.abort();
    jwks.abort();
    if let Some(w) = mesh_watch {
        w.abort();
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        if let Some(t) = xds_task {
            let _ = t.await;
        }
        if let Some(t) = tls_task {
            let _ = t.await;
        }
        let _ = admin_task.await;
    })
    .await;
    Ok(())
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
