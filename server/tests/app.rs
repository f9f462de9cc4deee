//! The control plane built in-process from a `Config` (`app::build`), as a test harness
//! can: it serves its config over delta ADS, follows edits, keeps two instances apart in
//! one process, and stops when asked.

mod common;

use std::time::Duration;

use anyhow::Context;
use common::{NODE, Stream, get, service, start};

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
