//! A small run of every scenario and proxy kind against a real shoal process, checking
//! correctness (every proxy converges and holds exactly the server's view), not speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use shoal_loadtest::mesh::MeshSpec;
use shoal_loadtest::proxy::Kind;
use shoal_loadtest::scenario::{Options, Scenario, Target, run};

fn shoal_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join("shoal");
    assert!(
        bin.exists(),
        "{} not found: cargo build -p shoal first (scripts/test does)",
        bin.display()
    );
    bin
}

fn options(scenario: Scenario, kind: Kind) -> Options {
    Options {
        scenario,
        proxies: 50,
        kind,
        connections: 0,
        ramp: 0.0,
        mesh: MeshSpec {
            services: 20,
            endpoints: 3,
            namespaces: 2,
            dr_fraction: 0.2,
            vs_fraction: 0.2,
            sidecar_fraction: 0.0,
            global_services: 1,
            pods: matches!(kind, Kind::Ztunnel | Kind::Mixed),
            waypoints: kind == Kind::Mixed,
        },
        target: Target::Spawn {
            replicas: 1,
            bin: shoal_bin(),
            args: vec!["--debounce".into(), "20ms".into()],
        },
        changes: 6,
        change_interval: Duration::from_millis(300),
        endpoint_churn: false,
        timeout: Duration::from_secs(60),
        baseline: false,
        settle: Duration::ZERO,
        verify: true,
        progress: false,
    }
}

fn assert_clean(r: &shoal_loadtest::scenario::Results) {
    let c = r.connect.as_ref().unwrap();
    assert_eq!(
        c.converged,
        c.proxies,
        "{}",
        shoal_loadtest::report::table(r)
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.mismatches.is_empty(),
        "{:#?}",
        &r.mismatches[..r.mismatches.len().min(10)]
    );
    assert_eq!(r.nacks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_every_kind() {
    for kind in [Kind::Sidecar, Kind::SidecarSotw, Kind::Grpc] {
        let r = run(&options(Scenario::Connect, kind)).await.unwrap();
        assert_clean(&r);
        assert!(r.connect.as_ref().unwrap().bytes > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_reaches_every_proxy() {
    for kind in [Kind::Sidecar, Kind::Grpc] {
        let r = run(&options(Scenario::Churn, kind)).await.unwrap();
        assert_clean(&r);
        let churn = r.churn.as_ref().unwrap();
        assert_eq!(churn.changes.len(), 6);
        for c in &churn.changes {
            assert!(c.expected > 0, "{} watched by nobody", c.change);
            assert_eq!(
                c.receivers, c.expected,
                "{}: {}/{} proxies updated",
                c.change, c.receivers, c.expected
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_reconverges_and_resumes_cheaply() {
    let mut opts = options(Scenario::Storm, Kind::Sidecar);
    opts.baseline = true;
    let r = run(&opts).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.storms.len(), 2);
    for s in &r.storms {
        assert_eq!(s.converged, 50, "{s:?}");
    }
    let resume = r.storms.iter().find(|s| s.resume).unwrap();
    let full = r.storms.iter().find(|s| !s.resume).unwrap();
    assert!(
        resume.resent_ratio < 0.05,
        "resuming resent {:.1} %",
        resume.resent_ratio * 100.0
    );
    assert!(
        full.resent_ratio > 0.9,
        "a fresh reconnect resends everything: {:.1} %",
        full.resent_ratio * 100.0
    );
    let b = r.baseline.as_ref().unwrap();
    assert_eq!(b.converged, 50);
    // The run's plot: the connect CDF, one step per proxy (storms are not plotted).
    let svg = shoal_loadtest::report::plot(&r);
    common::assert_cdf_plot(&svg, &[("connect: proxy converged", 50)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ztunnels_converge_on_workload_discovery() {
    let mut opts = options(Scenario::Connect, Kind::Ztunnel);
    opts.proxies = 5;
    opts.timeout = Duration::from_secs(20);
    let r = run(&opts).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.connect.as_ref().unwrap().converged, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_converges_and_holds_the_servers_views() {
    // 40 proxies: two ztunnels, two waypoints (one per namespace), the rest sidecars.
    let mut opts = options(Scenario::Connect, Kind::Mixed);
    opts.proxies = 40;
    let r = run(&opts).await.unwrap();
    assert_clean(&r);
    let c = r.connect.as_ref().unwrap();
    let counts: Vec<(&str, usize)> = c
        .by_kind
        .iter()
        .map(|(k, p)| (k.as_str(), p.count))
        .collect();
    assert_eq!(counts, [("sidecar", 36), ("waypoint", 2), ("ztunnel", 2)]);
}
