//! Several replicas sharing the fleet: real processes (in their own network namespaces
//! where links are cut), each test bounded in time and stopping what it started.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_loadtest::fleet::{Fleet, FleetSpec};
use shoal_loadtest::mesh::MeshSpec;
use shoal_loadtest::proxy::Kind;
use shoal_loadtest::scenario::{Options, Scenario, Target, run, verify};
use shoal_loadtest::server::Server;
use shoal_tests::cluster::{Cluster, Net, namespaces_available};
use shoal_tests::{env, eventually};

fn mesh() -> MeshSpec {
    MeshSpec {
        services: 40,
        endpoints: 2,
        namespaces: 4,
        dr_fraction: 0.25,
        vs_fraction: 0.25,
        sidecar_fraction: 0.0,
        global_services: 0,
        pods: false,
        waypoints: false,
    }
}

fn mesh_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    mesh().write(dir.path()).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_s_proxies_are_served_again() {
    // 1,000 proxies over 3 replicas; the leader is killed with SIGKILL.
    let opts = Options {
        scenario: Scenario::Failover,
        proxies: 1000,
        kind: Kind::Sidecar,
        connections: 0,
        ramp: 0.0,
        mesh: mesh(),
        target: Target::Spawn {
            bin: env::shoal_bin(),
            args: vec!["--debounce".into(), "20ms".into()],
            replicas: 3,
        },
        changes: 0,
        change_interval: Duration::from_secs(1),
        endpoint_churn: false,
        timeout: Duration::from_secs(90),
        baseline: false,
        settle: Duration::ZERO,
        verify: true,
        progress: false,
    };
    let r = run(&opts).await.unwrap();
    let table = shoal_loadtest::report::table(&r);
    eprintln!("{table}");
    assert_eq!(r.connect.as_ref().unwrap().converged, 1000, "{table}");
    let f = r.failover.as_ref().expect("failover ran");
    assert!(f.was_leader, "{table}");
    assert!(f.disconnected > 0, "{table}");
    assert_eq!(f.converged, 1000, "{table}");
    assert!(
        r.mismatches.is_empty(),
        "{:#?}",
        &r.mismatches[..r.mismatches.len().min(5)]
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.nacks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_is_replaced_and_no_shard_is_served_twice() {
    if !namespaces_available() {
        eprintln!("SKIP: cutting links needs network namespaces (root and iproute2)");
        return;
    }
    let dir = mesh_dir();
    let c = Cluster::start(3, dir.path(), Net::Namespaces, &[])
        .await
        .unwrap();
    let old = eventually(Duration::from_secs(20), "a leader", || c.leader())
        .await
        .unwrap();
    let others: Vec<u64> = (1..=3).filter(|i| *i != old).collect();
    c.link(old, false).unwrap();
    let cut = Instant::now();
    // The majority elects a new leader and takes over the shards.
    let new = eventually(Duration::from_secs(20), "a new leader", || async {
        let l = c.shardz(others[0]).await.ok()?["leader"].as_u64()?;
        (l != old && others.contains(&l)).then_some(l)
    })
    .await
    .unwrap();
    c.wait_settled_among(&others, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!(
        "leader {old} cut off; replica {new} leads; shards re-owned after {:?}",
        cut.elapsed()
    );
    for id in &others {
        let owned = c.shardz(*id).await.unwrap()["owned"].clone();
        assert!(
            owned.get(old.to_string()).is_none(),
            "replica {old} still owns shards: {owned}"
        );
    }
    // Healed, the old leader rejoins and gets a share back.
    c.link(old, true).unwrap();
    c.wait_settled(Duration::from_secs(60)).await.unwrap();
    eventually(
        Duration::from_secs(60),
        "the healed replica to serve again",
        || async { (c.shardz(old).await.ok()?["serving"].as_u64()? > 0).then_some(()) },
    )
    .await
    .unwrap();
    c.wait_settled(Duration::from_secs(60)).await.unwrap();
    let violations = c.double_serving();
    assert!(
        violations.is_empty(),
        "{:#?}",
        &violations[..violations.len().min(10)]
    );
    // The cut-off leader fenced itself: it logged that it stopped serving.
    let stopped = c
        .ownership_events()
        .iter()
        .any(|(n, _, _, on)| *n == old && !on);
    assert!(stopped);
}

async fn fleet_on(c: &Cluster, proxies: usize) -> Fleet {
    let spec = FleetSpec {
        xds: c.replicas.iter().map(|r| r.xds).collect(),
        proxies,
        kind: Kind::Sidecar,
        connections: 0,
        namespaces: (0..4).map(|n| format!("ns-{n}")).collect(),
        grpc_targets: Vec::new(),
    };
    let fleet = Fleet::new(&spec).unwrap();
    fleet.start(false, 0.0, None).await;
    fleet
        .wait_converged(Duration::from_secs(60), None)
        .await
        .expect("fleet converged");
    fleet
}

/// Waits (bounded) until every proxy holds exactly what its replica serves — each replica
/// rebuilds after its last config change on its own time, a loaded machine's later than an
/// idle one's — and returns what still differs then.
async fn matched(fleet: &Fleet, servers: &[Server]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mismatches = verify(fleet, servers).await.unwrap();
        if mismatches.is_empty() || Instant::now() > deadline {
            return mismatches;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn servers(c: &Cluster) -> Vec<Server> {
    c.replicas
        .iter()
        .map(|r| Server::attach(r.xds, r.admin, None, c.config_dir.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_no_update() {
    let dir = mesh_dir();
    let mut c = Cluster::start(3, dir.path(), Net::Loopback, &["--debounce", "20ms"])
        .await
        .unwrap();
    let fleet = fleet_on(&c, 200).await;
    let spec = mesh();
    for id in 1..=3u64 {
        c.stop(id);
        // A change lands while the replica is down.
        let svc = id as usize;
        shoal_loadtest::mesh::write_atomic(
            &spec.path(dir.path(), svc),
            &spec.service_yaml(svc, 5, (90, 10)),
        )
        .unwrap();
        c.spawn(id, None).unwrap();
        c.wait_ready(id).await.unwrap();
        // It gets its share back before the next one goes.
        c.wait_balanced(Duration::from_secs(60)).await.unwrap();
    }
    fleet
        .wait_converged(Duration::from_secs(60), None)
        .await
        .expect("every proxy converged again");
    // Config settles everywhere; then every proxy holds exactly what its replica serves.
    let mismatches = matched(&fleet, &servers(&c)).await;
    assert!(
        mismatches.is_empty(),
        "{:#?}",
        &mismatches[..mismatches.len().min(10)]
    );
    // And what they hold includes the last change (service 3 has 5 endpoints now).
    let held = fleet.proxies[0].held.lock().clone();
    assert!(
        held.get(shoal_api::ResourceType::Endpoint)
            .contains_key(format!("outbound|80||{}", spec.host(3)).as_str())
    );
    assert!(c.double_serving().is_empty());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_replica_takes_its_share_gradually() {
    let dir = mesh_dir();
    let mut c = Cluster::start(3, dir.path(), Net::Loopback, &["--migration-rate", "64"])
        .await
        .unwrap();
    let id = c.add_replica().unwrap();
    let through = c.replicas[0].raft.to_string();
    c.spawn(id, Some(&through)).unwrap();
    c.wait_ready(id).await.unwrap();
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        let owned = c.shardz(1).await.unwrap()["owned"][id.to_string()]
            .as_u64()
            .unwrap_or(0);
        samples.push(owned);
        if owned >= 256 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    assert_eq!(samples.last(), Some(&256), "{samples:?}");
    let steps: BTreeSet<u64> = samples
        .iter()
        .copied()
        .filter(|n| *n > 0 && *n < 256)
        .collect();
    assert!(steps.len() >= 3, "moved in big jumps: {samples:?}");
    let max_step = samples
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0);
    assert!(
        max_step <= 100,
        "a burst of {max_step} shards at once: {samples:?}"
    );
    assert!(
        took >= Duration::from_secs(2),
        "256 shards at 64/s took only {took:?}"
    );
    c.wait_settled(Duration::from_secs(60)).await.unwrap();
    assert!(c.double_serving().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_restarts_with_the_same_shard_map() {
    let dir = mesh_dir();
    let mut c = Cluster::start(3, dir.path(), Net::Loopback, &[])
        .await
        .unwrap();
    // A fresh group may deal shards out before every voter's first heartbeat and even
    // them out afterwards: compare against the map it settles on.
    c.wait_balanced(Duration::from_secs(60)).await.unwrap();
    let before = c.owners(1).await.unwrap();
    assert_eq!(before.len(), 1024);
    // The whole group loses power at once: nobody gets to hand anything over.
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.spawn(id, None).unwrap();
    }
    for id in 1..=3 {
        c.wait_ready(id).await.unwrap();
    }
    c.wait_settled(Duration::from_secs(60)).await.unwrap();
    for id in 1..=3 {
        assert_eq!(
            c.owners(id).await.unwrap(),
            before,
            "replica {id}'s shard map after the restart"
        );
    }
    assert!(c.double_serving().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_router_keeps_proxies_connected_through_a_crash() {
    let dir = mesh_dir();
    let mut c = Cluster::start(3, dir.path(), Net::Loopback, &["--debounce", "20ms"])
        .await
        .unwrap();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", shoal_tests::free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let admin = format!("127.0.0.1:{}", shoal_tests::free_port("127.0.0.1"));
    let peers = c
        .replicas
        .iter()
        .map(|r| r.raft.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = std::process::Command::new(env::shoal_bin());
    cmd.args([
        "router",
        "--listen",
        &listen.to_string(),
        "--admin-addr",
        &admin,
    ])
    .args(["--peers", &peers])
    .arg("--ca-dir")
    .arg(c.ca_dir())
    .env("RUST_LOG", "info");
    let _router = shoal_tests::Proc::spawn("router", &mut cmd).unwrap();
    let spec = FleetSpec {
        xds: vec![listen],
        proxies: 300,
        kind: Kind::Sidecar,
        connections: 0,
        namespaces: (0..4).map(|n| format!("ns-{n}")).collect(),
        grpc_targets: Vec::new(),
    };
    let fleet = Fleet::new(&spec).unwrap();
    eventually(Duration::from_secs(20), "the router to listen", || async {
        tokio::net::TcpStream::connect(listen).await.ok()
    })
    .await
    .unwrap();
    fleet.start(false, 0.0, None).await;
    fleet
        .wait_converged(Duration::from_secs(60), None)
        .await
        .expect("fleet converged through the router");
    let stats = &fleet.ctx.stats;
    let errors_before = stats.errors.load(std::sync::atomic::Ordering::Relaxed);
    let bytes_before = stats.bytes.load(std::sync::atomic::Ordering::Relaxed);

    // Every replica serves some of the fleet, all of it through the router.
    let victim = c.leader().await.unwrap();
    c.kill(victim);
    let survivors: Vec<u64> = c.running();
    c.wait_settled_among(&survivors, Duration::from_secs(60))
        .await
        .unwrap();
    // A change after the crash reaches every proxy: their streams were re-established
    // to the new owners.
    let m = mesh();
    let name = format!("outbound|80||{}", m.host(0));
    let version = |p: &shoal_loadtest::proxy::Proxy| {
        p.held
            .lock()
            .get(shoal_api::ResourceType::Endpoint)
            .get(name.as_str())
            .cloned()
    };
    let before = version(&fleet.proxies[0]).expect("endpoints held");
    shoal_loadtest::mesh::write_atomic(&m.path(dir.path(), 0), &m.service_yaml(0, 4, (90, 10)))
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "every proxy to hold the change",
        || async {
            fleet
                .proxies
                .iter()
                .all(|p| version(p).is_some_and(|v| v != before))
                .then_some(())
        },
    )
    .await
    .unwrap();
    fleet
        .wait_converged(Duration::from_secs(60), None)
        .await
        .expect("every proxy converged again");
    let servers: Vec<Server> = c
        .replicas
        .iter()
        .filter(|r| survivors.contains(&r.id))
        .map(|r| Server::attach(r.xds, r.admin, None, c.config_dir.clone()))
        .collect();
    let mismatches = matched(&fleet, &servers).await;
    assert!(
        mismatches.is_empty(),
        "{:#?}",
        &mismatches[..mismatches.len().min(10)]
    );
    // The router hid the crash: no proxy saw its stream break.
    let broken = stats.errors.load(std::sync::atomic::Ordering::Relaxed) - errors_before;
    let resent = stats.bytes.load(std::sync::atomic::Ordering::Relaxed) - bytes_before;
    eprintln!(
        "replica {victim} killed: {broken} proxy streams broke, {resent} bytes after the crash"
    );
    assert_eq!(broken, 0, "{:?}", fleet.errors());
    assert_eq!(stats.nacks.load(std::sync::atomic::Ordering::Relaxed), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_gets_its_secrets_through_any_replica() {
    use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use shoal_tests::xds::DeltaStream;
    let dir = mesh_dir();
    let issuer = shoal_tests::identity::Issuer::new().unwrap();
    let arg = issuer.arg();
    let c = Cluster::start(3, dir.path(), Net::Loopback, &["--jwt-issuer", &arg])
        .await
        .unwrap();
    let token = issuer.token("ns-1", "web").unwrap();
    let node = shoal_api::pb::envoy::config::core::v3::Node {
        id: "sidecar~10.9.0.1~web-0.ns-1~ns-1.svc.cluster.local".into(),
        ..Default::default()
    };
    // Every replica answers on its TLS port: the owner directly, the others by forwarding
    // the stream with the proxy's token, which the owner verifies itself.
    let root = c.ca_dir().join("shoal-root/root-cert.pem");
    for r in &c.replicas {
        let first = || DeltaDiscoveryRequest {
            node: Some(node.clone()),
            type_url: shoal_api::type_url::SECRET.into(),
            ..Default::default()
        };
        // Never on the plaintext port, not even by way of a forwarding replica.
        let err = shoal_tests::xds::refusal(r.xds, first(), Some(&token))
            .await
            .expect("refused");
        assert_eq!(
            err.code(),
            tonic::Code::Unauthenticated,
            "through replica {}",
            r.id
        );
        let tls = shoal_tests::xds::Target::tls(
            format!("{}:{}", r.ip, r.tls_port).parse().unwrap(),
            &root,
        )
        .unwrap();
        let mut s = DeltaStream::open_with_token(tls, first(), Some(&token))
            .await
            .unwrap();
        let resp = s
            .recv(Duration::from_secs(15))
            .await
            .unwrap()
            .expect("a response");
        let mut names: Vec<&str> = resp.resources.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["ROOTCA", "default"], "through replica {}", r.id);
    }
    // Raft links are mTLS between replicas: a plaintext caller gets nowhere.
    for r in &c.replicas {
        let plain = shoal_tests::http_get(r.raft, "/raft/shards", &[]).await;
        assert!(
            plain.is_err(),
            "replica {} answered plaintext: {plain:?}",
            r.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_with_a_client_certificate_is_served_through_a_tls_router() {
    let Some(bin) = env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    let dir = mesh_dir();
    let c = Cluster::start(3, dir.path(), Net::Loopback, &[])
        .await
        .unwrap();
    let tls: std::net::SocketAddr = format!("127.0.0.1:{}", shoal_tests::free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let listen = format!("127.0.0.1:{}", shoal_tests::free_port("127.0.0.1"));
    let admin = format!("127.0.0.1:{}", shoal_tests::free_port("127.0.0.1"));
    let peers: Vec<String> = c.replicas.iter().map(|r| r.raft.to_string()).collect();
    let mut cmd = std::process::Command::new(env::shoal_bin());
    cmd.args(["router", "--listen", &listen, "--admin-addr", &admin])
        .args([
            "--listen-tls",
            &tls.to_string(),
            "--peers",
            &peers.join(","),
        ])
        .arg("--ca-dir")
        .arg(c.ca_dir());
    let router = shoal_tests::Proc::spawn("router", &mut cmd).unwrap();
    eventually(
        Duration::from_secs(20),
        "the router's TLS listener",
        || async { tokio::net::TcpStream::connect(tls).await.ok() },
    )
    .await
    .unwrap();
    // The proxy holds a workload certificate from the mesh CA and no token: the router
    // verifies it and vouches for it to the owner, which pushes the proxy's own secrets.
    let ca = shoal_ca::CertificateAuthority::load_or_create(&c.ca_dir(), "cluster.local").unwrap();
    let id = shoal_ca::Identity::new("cluster.local", "ns-2", "web").unwrap();
    let kp = ca.issue_keypair(&id, Duration::from_secs(3600)).unwrap();
    let chain = kp.cert_chain[..kp.cert_chain.len() - 1].concat();
    let root = ca.trust_bundle().concat();
    let envoy_admin: std::net::SocketAddr =
        format!("127.0.0.1:{}", shoal_tests::free_port("127.0.0.1"))
            .parse()
            .unwrap();
    let envoy = shoal_tests::Envoy::start_bootstrap(
        bin,
        envoy_admin,
        shoal_tests::identity::cert_bootstrap(
            "sidecar~10.9.0.2~web-0.ns-2~ns-2.svc.cluster.local",
            serde_json::json!({ "NAMESPACE": "ns-2" }),
            tls,
            envoy_admin,
            &root,
            (&chain, &kp.key_pem),
        ),
    )
    .await
    .unwrap();
    let uris = eventually(
        Duration::from_secs(30),
        "the proxy's certificate",
        || async {
            let u = shoal_tests::identity::envoy_cert_uris(envoy_admin).await;
            (!u.is_empty()).then_some(u)
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- router ---\n{}\n--- envoy ---\n{}",
            router.log(),
            envoy.proc.log()
        )
    });
    assert_eq!(uris, [id.spiffe_uri()]);
}
