//! The control plane built in-process from a `Config` (`app::build`), as a test harness
//! can: it serves its config over delta ADS, follows edits, keeps two instances apart in
//! one process, and stops when asked.

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

const WAIT: Duration = Duration::from_secs(10);
const NODE: &str = "sidecar~10.1.0.7~web-0.shop~shop.svc.cluster.local";

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec:\n  clusterIP: 10.96.0.{port_low}\n  ports:\n  - {{name: http, port: {port}}}\n",
        port_low = port % 250
    )
}

/// A replica on ephemeral ports, its state in `dir`, its config in `dir/config`.
async fn start(dir: &Path, services: &[(&str, u16)]) -> anyhow::Result<App> {
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
    let parsed = parse_from([
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
    ])?;
    let Command::Serve(args) = parsed.command else {
        anyhow::bail!("not serve");
    };
    app::build(Arc::new(Config::resolve(&args, &parsed.explicit)?)).await
}

struct Stream {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: tonic::Streaming<DeltaDiscoveryResponse>,
}

impl Stream {
    async fn clusters(app: &App) -> anyhow::Result<Stream> {
        let addr = app.xds_addr.context("a plaintext port")?;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let (tx, rx) = mpsc::channel(8);
        tx.send(DeltaDiscoveryRequest {
            node: Some(Node {
                id: NODE.into(),
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
    async fn next(&mut self) -> anyhow::Result<Vec<String>> {
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

async fn get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: shoal\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    conn.read_to_string(&mut out).await?;
    Ok(out)
}

fn has(names: &[String], host: &str, port: u16) -> bool {
    let want = format!("outbound|{port}||{host}.shop.svc.cluster.local");
    names.contains(&want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_serves_follows_edits_and_stops() -> anyhow::Result<()> {
    let a_dir = tempfile::tempdir()?;
    let b_dir = tempfile::tempdir()?;
    let a = start(a_dir.path(), &[("cart", 8080)]).await?;
    // A second app in the same process keeps its own config, ports and CA.
    let b = start(b_dir.path(), &[("search", 9090)]).await?;

    let ready = get(a.admin_addr, "/ready").await?;
    assert!(ready.starts_with("HTTP/1.0 200"), "{ready}");

    let mut on_a = Stream::clusters(&a).await?;
    let first = on_a.next().await?;
    assert!(has(&first, "cart", 8080), "{first:?}");
    assert!(!has(&first, "search", 9090), "{first:?}");
    let mut on_b = Stream::clusters(&b).await?;
    let first = on_b.next().await?;
    assert!(
        has(&first, "search", 9090) && !has(&first, "cart", 8080),
        "{first:?}"
    );

    // An edit of a's directory reaches a's stream as a delta, and only it.
    std::fs::write(
        a_dir.path().join("config/orders.yaml"),
        service("orders", 8081),
    )?;
    let delta = on_a.next().await?;
    assert!(has(&delta, "orders", 8081), "{delta:?}");
    assert!(!has(&delta, "cart", 8080), "only what changed: {delta:?}");

    // `shoal status`, as an operator runs it, sees the stream and its state (SYNCED once
    // the server has read the ACK just sent).
    let mut table = String::new();
    for _ in 0..50 {
        let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["status", "--admin-addr", &a.admin_addr.to_string()])
            .output()
            .await?;
        table = String::from_utf8_lossy(&status.stdout).into_owned();
        assert!(status.status.success(), "{table}");
        if table.contains("SYNCED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(
        rows[0][..4],
        ["NAME", "REPLICA", "PROTOCOL", "CDS"],
        "{table}"
    );
    assert_eq!(rows[1][..4], [NODE, "-", "delta", "SYNCED"], "{table}");
    assert_eq!(rows[1].len(), 9, "every column filled: {table}");

    let (a_xds, a_admin) = (a.xds_addr.context("port")?, a.admin_addr);
    a.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(a_xds).await.is_err(),
        "the xDS port is closed"
    );
    assert!(
        tokio::net::TcpStream::connect(a_admin).await.is_err(),
        "the admin port is closed"
    );
    // b is untouched by a's shutdown.
    let views = get(b.admin_addr, "/debug/views").await?;
    assert!(views.contains("\"streams\":1"), "{views}");
    b.shutdown().await;
    Ok(())
}
