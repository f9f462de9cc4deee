//! "Proxies in the same state share one encoded response", proved from the server's own
//! counters: for a change seen by N streams of one view, one response body is encoded
//! and N − 1 streams take it ready-made. Its own test binary: the Prometheus recorder is
//! process-wide, and no other test may push meanwhile.

mod common;

use common::{Stream, get, service, start};

const STREAMS: usize = 6;

/// The value of `name{…}` whose labels include every one of `labels`, or 0.
fn counter(metrics: &str, name: &str, labels: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_in_the_same_state_share_one_encoded_response() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path(), &[("cart", 8080)]).await?;
    // Six pods of one workload class: one view, one state.
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let node = format!(
            "sidecar~10.1.0.{}~web-{i}.shop~shop.svc.cluster.local",
            10 + i
        );
        let mut s = Stream::clusters_as(&app, &node).await?;
        s.next().await?;
        streams.push(s);
    }
    let labels = ["type=\"CDS\"", "protocol=\"delta\""];
    let before = get(app.admin_addr, "/metrics").await?;
    let encoded_before = counter(&before, "shoal_xds_responses_encoded_total", &labels);
    let shared_before = counter(&before, "shoal_xds_responses_shared_total", &labels);
    assert_eq!(
        encoded_before + shared_before,
        STREAMS as u64,
        "one first response per stream:\n{before}"
    );
    assert_eq!(encoded_before, 1, "fresh clients share too:\n{before}");

    std::fs::write(
        dir.path().join("config/orders.yaml"),
        service("orders", 8081),
    )?;
    for s in &mut streams {
        let names = s.next().await?;
        assert!(names.iter().any(|n| n.contains("orders")), "{names:?}");
    }
    let after = get(app.admin_addr, "/metrics").await?;
    let encoded = counter(&after, "shoal_xds_responses_encoded_total", &labels) - encoded_before;
    let shared = counter(&after, "shoal_xds_responses_shared_total", &labels) - shared_before;
    assert_eq!(
        (encoded, shared),
        (1, STREAMS as u64 - 1),
        "one encode for the change, shared by the others"
    );
    app.shutdown().await;
    Ok(())
}
