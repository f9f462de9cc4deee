//! What the in-process tests share: an `App` on ephemeral ports built from a directory
//! of Services, a bare delta ADS client, and a bare HTTP GET for the admin server.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal::app::{self, App};
use shoal::cli::{Command, parse_from};
use shoal::config::Config;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub const WAIT: Duration = Duration::from_secs(10);
pub const NODE: &str = "sidecar~10.1.0.7~web-0.shop~shop.svc.cluster.local";

pub fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec:\n  clusterIP: 10.96.0.{port_low}\n  ports:\n  - {{name: http, port: {port}}}\n",
        port_low = port % 250
    )
}

/// A replica on ephemeral ports, its state in `dir`, its config in `dir/config`.
pub async fn start(dir: &Path, services: &[(&str, u16)]) -> anyhow::Result<App> {
    start_with(dir, services, &[]).await
}

/// As [`start`], with more `serve` flags.
pub async fn start_with(
    dir: &Path,
    services: &[(&str, u16)],
    extra: &[&str],
) -> anyhow::Result<App> {
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir)?;
    for (name, port) in services {
        std::fs::write(
            config_dir.join(format!("{name}.yaml")),
            service(name, *port),
        )?;
    }
    let data = dir.join("data").display().to_string();
    let config_dir = config_dir.display().to_string();
    let mut argv = vec![
        "shoal",
        "serve",
        "--config-dir",
        &config_dir,
        "--data-dir",
        &data,
        "--xds-addr",
        "127.0.0.1:0",
        "--xds-tls-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--debounce",
        "20ms",
    ];
    argv.extend(extra);
    let parsed = parse_from(argv)?;
    let Command::Serve(args) = parsed.command else {
        anyhow::bail!("not serve");
    };
    app::build(Arc::new(Config::resolve(&args, &parsed.explicit)?)).await
}

pub struct Stream {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: tonic::Streaming<DeltaDiscoveryResponse>,
}

impl Stream {
    pub async fn clusters(app: &App) -> anyhow::Result<Stream> {
        Stream::clusters_as(app, NODE).await
    }

    /// A stream for clusters with the node id `node`.
    pub async fn clusters_as(app: &App, node: &str) -> anyhow::Result<Stream> {
        let addr = app.xds_addr.context("a plaintext port")?;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let (tx, rx) = mpsc::channel(8);
        tx.send(DeltaDiscoveryRequest {
            node: Some(Node {
                id: node.into(),
                ..Default::default()
            }),
            type_url: ResourceType::Cluster.type_url().into(),
            ..Default::default()
        })
        .await?;
        let rx = AggregatedDiscoveryServiceClient::new(channel)
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Stream { tx, rx })
    }

    /// The cluster names of the next response, which is ACKed.
    pub async fn next(&mut self) -> anyhow::Result<Vec<String>> {
        let r = tokio::time::timeout(WAIT, self.rx.message())
            .await
            .context("no response in time")??
            .context("stream ended")?;
        self.tx
            .send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                ..Default::default()
            })
            .await?;
        Ok(r.resources.into_iter().map(|r| r.name).collect())
    }
}

pub async fn get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: shoal\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    conn.read_to_string(&mut out).await?;
    Ok(out)
}
