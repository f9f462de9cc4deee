//! Federation between two shoal groups with CAs sharing a root (Istio's plug-in CA): east
//! exports its services over delta xDS on its TLS port, west imports them with
//! `--federate` and serves east's endpoints beside its own; east gone, west keeps them
//! until `--federation-stale-after`, then withdraws them; east back, they return. A
//! reconnect that changes nothing pushes nothing, and a caller east does not list is
//! refused.

mod ambient;

use std::time::Duration;

use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use shoal_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use shoal_api::type_url::{ENDPOINT, FEDERATION};
use shoal_tests::identity::{Issuer, SharedRoot};
use shoal_tests::xds::{DeltaStream, Target, node, refusal};
use shoal_tests::xds::{endpoint_addresses as endpoints, wait_for_endpoints as wait_for};
use shoal_tests::{Shoal, free_port, start_shoal};

const CLUSTER: &str = "outbound|80||echo.shop.svc.cluster.local";

fn service(endpoint: Option<&str>) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  selector: {app: echo}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\n",
    );
    if let Some(ip) = endpoint {
        y.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: echo-1, namespace: shop, labels: {{app: echo}}}}\nspec: {{serviceAccountName: echo}}\nstatus: {{phase: Running, podIP: {ip}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: echo-1, namespace: shop, labels: {{kubernetes.io/service-name: echo}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [{ip}]}}]\n---\n"
        ));
    }
    y
}

/// Each group's plug-in CA (intermediates of one root) and config directory.
struct Dirs {
    east_ca: tempfile::TempDir,
    west_ca: tempfile::TempDir,
    east_cfg: tempfile::TempDir,
    west_cfg: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let root = SharedRoot::new("shared root").unwrap();
        let dir = || tempfile::tempdir().unwrap();
        let d = Dirs {
            east_ca: dir(),
            west_ca: dir(),
            east_cfg: dir(),
            west_cfg: dir(),
        };
        root.plug_in(d.east_ca.path(), "east").unwrap();
        root.plug_in(d.west_ca.path(), "west").unwrap();
        d
    }

    /// With `east` and `west` as the groups' configs.
    fn with_configs(east: &str, west: &str) -> Dirs {
        let d = Dirs::new();
        std::fs::write(d.east_cfg.path().join("mesh.yaml"), east).unwrap();
        std::fs::write(d.west_cfg.path().join("mesh.yaml"), west).unwrap();
        d
    }

    /// `echo` served by east at 10.2.0.1 and by west at 10.1.0.1.
    fn echo_on_both() -> Dirs {
        Dirs::with_configs(&service(Some("10.2.0.1")), &service(Some("10.1.0.1")))
    }
}

/// Starts a group of one replica with the plug-in CA in `ca` as cluster `id`.
async fn group(
    config: &std::path::Path,
    ca: &std::path::Path,
    id: &str,
    tls_port: u16,
    extra: &[&str],
) -> Shoal {
    let ca = ca.display().to_string();
    let tls = format!("127.0.0.1:{tls_port}");
    let plain = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let mut args = vec![
        "--ca-dir",
        &ca,
        "--cluster-id",
        id,
        "--xds-tls-addr",
        &tls,
        "--xds-addr",
        &plain,
    ];
    args.extend_from_slice(extra);
    start_shoal(config, &args).await.unwrap()
}

/// Starts east (one replica, plug-in CA in `ca`) exporting to the replicas of groups under
/// the shared root, with `extra` flags; with the port of its TLS xDS port on 127.0.0.1.
async fn east_of(config: &std::path::Path, ca: &std::path::Path, extra: &[&str]) -> (Shoal, u16) {
    let port = free_port("127.0.0.1");
    let mut args = vec!["--federation-peers", "istio-system/shoal"];
    args.extend_from_slice(extra);
    (group(config, ca, "east", port, &args).await, port)
}

/// Starts west (one replica, plug-in CA in `ca`) importing east from `east` (`HOST:PORT`
/// of its TLS xDS port), with `extra` flags.
async fn west_of(
    config: &std::path::Path,
    ca: &std::path::Path,
    east: &str,
    extra: &[&str],
) -> Shoal {
    let federate = format!("east={east}");
    let mut args = vec!["--federate", federate.as_str()];
    args.extend_from_slice(extra);
    group(config, ca, "west", free_port("127.0.0.1"), &args).await
}

/// East (one replica exporting to shoal replicas, with `east_extra`) serving `echo` at
/// 10.2.0.1, and west (one replica importing east) serving it at 10.1.0.1.
struct EastWest {
    dirs: Dirs,
    east: Shoal,
    west: Shoal,
}

impl EastWest {
    async fn start(east_extra: &[&str]) -> EastWest {
        let dirs = Dirs::echo_on_both();
        let (east, east_port) =
            east_of(dirs.east_cfg.path(), dirs.east_ca.path(), east_extra).await;
        let east_addr = format!("127.0.0.1:{east_port}");
        let west = west_of(dirs.west_cfg.path(), dirs.west_ca.path(), &east_addr, &[]).await;
        EastWest { dirs, east, west }
    }

    fn logs(&self) -> String {
        format!("west:\n{}\neast:\n{}", self.west.log(), self.east.log())
    }
}

/// A sidecar of `west` subscribed to the endpoints of `cluster`.
async fn watch_endpoints(west: &Shoal, cluster: &str) -> DeltaStream {
    DeltaStream::open(
        west.xds,
        DeltaDiscoveryRequest {
            node: Some(node("sidecar~10.1.0.9~sleep-1.shop~shop.svc.cluster.local")),
            type_url: ENDPOINT.into(),
            resource_names_subscribe: vec![cluster.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_federate_endpoints_and_withdraw_them_when_a_peer_goes_stale() {
    let Dirs {
        east_ca,
        west_ca,
        east_cfg,
        west_cfg,
    } = Dirs::echo_on_both();
    let issuer = Issuer::new().unwrap();
    let east_port = free_port("127.0.0.1");
    let east_args = [
        "--federation-peers",
        "istio-system/shoal",
        "--jwt-issuer",
        &issuer.arg(),
    ];
    let mut east = group(
        east_cfg.path(),
        east_ca.path(),
        "east",
        east_port,
        &east_args,
    )
    .await;
    let east_addr = format!("127.0.0.1:{east_port}");
    let west = west_of(
        west_cfg.path(),
        west_ca.path(),
        &east_addr,
        &["--federation-stale-after", "3s"],
    )
    .await;

    // A sidecar of west gets west's endpoint and east's.
    let mut s = watch_endpoints(&west, CLUSTER).await;
    let both = ["10.1.0.1", "10.2.0.1"];
    if let Err(seen) = wait_for(&mut s, &both, Duration::from_secs(20)).await {
        panic!(
            "east's endpoint never reached west: {seen:?}\nwest:\n{}\neast:\n{}",
            west.log(),
            east.log()
        );
    }

    // A reconnect that changes nothing pushes nothing: east restarts, west resumes.
    let revision = west.revision().await.unwrap();
    east.kill();
    let mut east = group(
        east_cfg.path(),
        east_ca.path(),
        "east",
        east_port,
        &east_args,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        west.log().matches("federation stream open").count() >= 2,
        "west reconnected:\n{}",
        west.log()
    );
    assert_eq!(
        west.revision().await.unwrap(),
        revision,
        "no config change at west"
    );
    assert_eq!(
        endpoints(&mut s).await,
        None,
        "nothing pushed to west's proxies"
    );

    // East gone: its endpoint stays a while, then is withdrawn.
    east.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(endpoints(&mut s).await, None, "kept while fresh");
    wait_for(&mut s, &["10.1.0.1"], Duration::from_secs(15))
        .await
        .expect("east's endpoint withdrawn after --federation-stale-after");

    // A caller east does not list (any identity but a peer replica's) is refused.
    let east = group(
        east_cfg.path(),
        east_ca.path(),
        "east",
        east_port,
        &east_args,
    )
    .await;
    let target = Target::tls(east.xds_tls(), &east_ca.path().join("root-cert.pem")).unwrap();
    let token = issuer.token("shop", "sleep").unwrap();
    let status = refusal(
        target,
        DeltaDiscoveryRequest {
            node: Some(node(
                "federation~0.0.0.0~rogue.istio-system~istio-system.svc.cluster.local",
            )),
            type_url: FEDERATION.into(),
            ..Default::default()
        },
        Some(&token),
    )
    .await
    .expect("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // East back: west imports again.
    wait_for(&mut s, &both, Duration::from_secs(20))
        .await
        .expect("east's endpoint back at west");
}

/// East's network is not west's: west reaches east's endpoints through east's east-west
/// gateway (a real Envoy, AUTO_PASSTHROUGH), and a connection to where west's EDS points,
/// with the SNI west's cluster sends, reaches east's backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_network_is_reached_through_its_east_west_gateway() {
    let Some(_) = shoal_tests::env::envoy() else {
        eprintln!("skipping: no Envoy (SHOAL_ENVOY)");
        return;
    };
    let Dirs {
        east_ca,
        west_ca,
        east_cfg,
        west_cfg,
    } = Dirs::new();
    let backend = shoal_tests::free_port_on(&["127.0.0.2"]);
    let _echo = shoal_tests::backends::tcp_echo(
        format!("127.0.0.2:{backend}").parse().unwrap(),
        "east-echo",
    )
    .await
    .unwrap();
    let gateway_port = free_port("127.0.0.1");
    let echo = shoal_tests::service_with_endpoint("echo", "shop", "tls", 443, "127.0.0.2", backend);
    let gateway = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: cross-network, namespace: istio-system}}\nspec:\n  selector: {{istio: eastwestgateway}}\n  servers:\n  - port: {{number: {gateway_port}, name: tls, protocol: TLS}}\n    hosts: [\"*.local\"]\n    tls: {{mode: AUTO_PASSTHROUGH}}\n"
    );
    std::fs::write(
        east_cfg.path().join("mesh.yaml"),
        format!("{echo}{gateway}"),
    )
    .unwrap();
    // West has the Service, no endpoint of its own.
    let west_echo = echo.split("---\n").next().unwrap().to_string();
    std::fs::write(west_cfg.path().join("mesh.yaml"), west_echo).unwrap();

    let (east, east_port) =
        east_of(east_cfg.path(), east_ca.path(), &["--network", "net-east"]).await;
    let node = "router~127.0.0.1~eastwest-0.istio-system~istio-system.svc.cluster.local";
    let meta = serde_json::json!({ "LABELS": { "istio": "eastwestgateway" } });
    let Some(_gw) = shoal_tests::Envoy::start(east.xds, node, meta, true)
        .await
        .unwrap()
    else {
        return;
    };
    let east_addr = format!("127.0.0.1:{east_port}");
    let through_gateway = format!("net-east=127.0.0.1:{gateway_port}");
    let west = west_of(
        west_cfg.path(),
        west_ca.path(),
        &east_addr,
        &[
            "--network",
            "net-west",
            "--network-gateway",
            &through_gateway,
        ],
    )
    .await;

    let cluster = "outbound|443||echo.shop.svc.cluster.local";
    let mut s = watch_endpoints(&west, cluster).await;
    if let Err(seen) = wait_for(&mut s, &["127.0.0.1"], Duration::from_secs(20)).await {
        panic!(
            "west never pointed at east's gateway: {seen:?}\nwest:\n{}",
            west.log()
        );
    }
    let gateway: std::net::SocketAddr = format!("127.0.0.1:{gateway_port}").parse().unwrap();
    let sni = "outbound_.443_._.echo.shop.svc.cluster.local".to_string();
    let got = shoal_tests::eventually(
        Duration::from_secs(20),
        "east's backend through its gateway",
        || {
            let sni = sni.clone();
            async move {
                tokio::task::spawn_blocking(move || crate::east_west::through(gateway, &sni))
                    .await
                    .ok()?
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(got, "east-echo");
}

/// A peer group of three replicas (in network namespaces) exports through whichever replica
/// the importer reaches: its stream is forwarded to the replica that owns it, vouched for
/// over the group's own mTLS. A partition of that replica's link, healed before the
/// staleness limit, costs nothing: west resumes with the versions it holds, its config does
/// not move and its proxies get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_between_groups_heals_without_pushes() {
    use shoal_tests::cluster::{Cluster, Net, namespaces_available};
    if !namespaces_available() {
        eprintln!("skipping: network namespaces need root and iproute2");
        return;
    }
    let Dirs {
        east_ca,
        west_ca,
        east_cfg,
        west_cfg,
    } = Dirs::echo_on_both();
    let east = Cluster::start_with_ca(
        3,
        east_cfg.path(),
        Net::Namespaces,
        &[
            "--cluster-id",
            "east",
            "--federation-peers",
            "istio-system/shoal",
        ],
        Some(east_ca.path()),
    )
    .await
    .unwrap();
    let first = &east.replicas[0];
    let east_addr = format!("{}:{}", first.ip, first.tls_port);
    let west = west_of(
        west_cfg.path(),
        west_ca.path(),
        &east_addr,
        &["--federation-stale-after", "120s"],
    )
    .await;
    let mut s = watch_endpoints(&west, CLUSTER).await;
    if let Err(seen) = wait_for(&mut s, &["10.1.0.1", "10.2.0.1"], Duration::from_secs(30)).await {
        panic!(
            "east's endpoint never reached west: {seen:?}\nwest:\n{}",
            west.log()
        );
    }
    let revision = west.revision().await.unwrap();
    let opened = west.log().matches("federation stream open").count();

    // Long enough for HTTP/2 keepalive to give the stream up, well within staleness.
    east.link(1, false).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while west.log().matches("federation stream ended").count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "west never noticed:\n{}",
            west.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    east.link(1, true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while west.log().matches("federation stream open").count() <= opened {
        assert!(
            std::time::Instant::now() < deadline,
            "west never resumed:\n{}",
            west.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        west.revision().await.unwrap(),
        revision,
        "west's config did not move"
    );
    assert_eq!(endpoints(&mut s).await, None, "west's proxies got nothing");
}

/// Replica `admin`'s link to east: (upstream, connected, services held, config revision).
async fn link_of(admin: std::net::SocketAddr) -> Option<(String, bool, u64, u64)> {
    let (status, body) = shoal_tests::http_get(admin, "/debug/configz", &[])
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let east = &v["sources"]["federation"]["east"];
    Some((
        east["upstream"].as_str()?.to_string(),
        east["connected"].as_bool()?,
        east["services"].as_u64()?,
        v["revision"].as_u64()?,
    ))
}

/// Waits until every running replica of `west` holds east's service, exactly one reading
/// it from east and the others from that one; returns the owner and each one's revision.
async fn one_link(west: &shoal_tests::cluster::Cluster) -> anyhow::Result<(u64, Vec<u64>)> {
    shoal_tests::eventually(Duration::from_secs(40), "one link to east", || async {
        let mut owner = None;
        let mut revisions = Vec::new();
        for id in west.running() {
            let (upstream, connected, services, revision) =
                link_of(west.replicas[(id - 1) as usize].admin).await?;
            if !connected || services != 1 {
                return None;
            }
            match upstream.as_str() {
                "peer" if owner.is_none() => owner = Some(id),
                "relay" => {}
                _ => return None,
            }
            revisions.push(revision);
        }
        Some((owner?, revisions))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_follows_each_peer_with_one_stream_that_fails_over_without_resending() {
    use shoal_tests::cluster::{Cluster, Net};
    let Dirs {
        east_ca,
        west_ca,
        east_cfg,
        west_cfg,
    } = Dirs::echo_on_both();
    let (east, east_port) = east_of(east_cfg.path(), east_ca.path(), &[]).await;
    let federate = format!("east=127.0.0.1:{east_port}");
    let mut west = Cluster::start_with_ca(
        3,
        west_cfg.path(),
        Net::Loopback,
        &[
            "--cluster-id",
            "west",
            "--federate",
            &federate,
            "--federation-stale-after",
            "120s",
        ],
        Some(west_ca.path()),
    )
    .await
    .unwrap();
    let logs = |west: &Cluster| -> String {
        west.replicas
            .iter()
            .filter_map(|r| Some(format!("--- west {} ---\n{}", r.id, r.proc.as_ref()?.log())))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (owner, _) = match one_link(&west).await {
        Ok(v) => v,
        Err(e) => panic!("{e}\n{}\neast:\n{}", logs(&west), east.log()),
    };
    // East sees one stream from the whole group, however long it runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        east.log().matches("federation peer admitted").count(),
        1,
        "east:\n{}",
        east.log()
    );
    let pushed = east
        .metric("shoal_xds_pushed_resources_total")
        .await
        .unwrap();

    // The owner's imports are read by its group's replicas only: a replica of the peer
    // group carries the same identity under the shared root, but another CA issued it.
    let owner_replica = &west.replicas[(owner - 1) as usize];
    let addr = format!("https://{}:{}", owner_replica.ip, owner_replica.tls_port);
    let relay_read = |ca: std::path::PathBuf| {
        let addr = addr.clone();
        async move {
            let root = std::fs::read_to_string(ca.join("root-cert.pem")).unwrap();
            let (chain, key) = shoal_tests::identity::issued_by(
                &ca,
                "spiffe://cluster.local/ns/istio-system/sa/shoal",
            )
            .unwrap();
            let tls = shoal_tests::https::client_config_with_cert(&root, &chain, &key).unwrap();
            let https = shoal_tests::https::connector_with(tls, "localhost", true).unwrap();
            let channel = tonic::transport::Endpoint::from_shared(addr)
                .unwrap()
                .connect_with_connector(https)
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let mut client = AggregatedDiscoveryServiceClient::new(channel);
            let mut first =
                node("federation~0.0.0.0~west.istio-system~istio-system.svc.cluster.local");
            first.metadata = Some(shoal_api::relay::relay_metadata("east"));
            let req = DeltaDiscoveryRequest {
                node: Some(first),
                type_url: FEDERATION.into(),
                ..Default::default()
            };
            let mut stream = client
                .delta_aggregated_resources(tokio_stream::iter([req]))
                .await?
                .into_inner();
            let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .map_err(|_| tonic::Status::deadline_exceeded("no answer"))??;
            Ok::<_, tonic::Status>(resp.map(|r| r.resources.len()))
        }
    };
    assert_eq!(
        relay_read(west_ca.path().to_path_buf())
            .await
            .map_err(|s| s.code()),
        Ok(Some(1)),
        "a replica of west reads the import"
    );
    assert_eq!(
        relay_read(east_ca.path().to_path_buf())
            .await
            .map_err(|s| s.code()),
        Err(tonic::Code::PermissionDenied),
        "a replica of east may not"
    );

    // The owner dies: another replica takes the link over and resumes where it left off.
    west.kill(owner);
    let (next, revisions) = match one_link(&west).await {
        Ok(v) => v,
        Err(e) => panic!("{e}\n{}\neast:\n{}", logs(&west), east.log()),
    };
    assert_ne!(next, owner);
    assert_eq!(
        east.log().matches("federation peer admitted").count(),
        2,
        "one new stream:\n{}",
        east.log()
    );
    assert_eq!(
        east.metric("shoal_xds_pushed_resources_total")
            .await
            .unwrap(),
        pushed,
        "east re-sent nothing on the takeover"
    );

    // A change in east reaches every replica left, through the new owner.
    std::fs::write(east_cfg.path().join("mesh.yaml"), service(Some("10.2.0.2"))).unwrap();
    let survivors = west.running();
    let moved = shoal_tests::eventually(Duration::from_secs(20), "east's change", || async {
        for (i, id) in survivors.iter().enumerate() {
            let (_, _, _, revision) = link_of(west.replicas[(id - 1) as usize].admin).await?;
            if revision <= revisions[i] {
                return None;
            }
        }
        Some(())
    })
    .await;
    if let Err(e) = moved {
        panic!("{e}\n{}\neast:\n{}", logs(&west), east.log());
    }
    let any = &west.replicas[(survivors[0] - 1) as usize];
    let mut s = DeltaStream::open(
        any.xds,
        DeltaDiscoveryRequest {
            node: Some(node("sidecar~10.1.0.9~sleep-1.shop~shop.svc.cluster.local")),
            type_url: ENDPOINT.into(),
            resource_names_subscribe: vec![CLUSTER.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    if let Err(seen) = wait_for(&mut s, &["10.1.0.1", "10.2.0.2"], Duration::from_secs(20)).await {
        panic!("{seen:?}\n{}", logs(&west));
    }
}

/// `--federation-export service-export`: east exports a Service only while an MCS
/// `ServiceExport` names it; west's proxies follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_export_opts_a_service_in_and_out_of_the_federation() {
    let groups = EastWest::start(&["--federation-export", "service-export"]).await;
    let (west, east_cfg) = (&groups.west, &groups.dirs.east_cfg);
    let logs = || groups.logs();
    let mut s = watch_endpoints(west, CLUSTER).await;
    if let Err(seen) = wait_for(&mut s, &["10.1.0.1"], Duration::from_secs(20)).await {
        panic!("west's own endpoint only: {seen:?}\n{}", logs());
    }
    let export = east_cfg.path().join("export.yaml");
    std::fs::write(
        &export,
        "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: echo, namespace: shop}\n",
    )
    .unwrap();
    if let Err(seen) = wait_for(&mut s, &["10.1.0.1", "10.2.0.1"], Duration::from_secs(20)).await {
        panic!("exported: {seen:?}\n{}", logs());
    }
    std::fs::remove_file(&export).unwrap();
    if let Err(seen) = wait_for(&mut s, &["10.1.0.1"], Duration::from_secs(20)).await {
        panic!("withdrawn: {seen:?}\n{}", logs());
    }
}

/// A Service only east has is served in west too (with east's cluster IP and endpoints),
/// quietly beside west's own Service of a shared name; gone from east, gone from west.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_only_the_peer_has_is_served_here() {
    let far = "apiVersion: v1\nkind: Service\nmetadata: {name: far, namespace: shop}\nspec:\n  clusterIP: 10.97.0.9\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: far-1, namespace: shop, labels: {kubernetes.io/service-name: far}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints: [{addresses: [10.2.0.7]}]\n";
    let groups = EastWest::start(&[]).await;
    let (west, east_cfg) = (&groups.west, &groups.dirs.east_cfg);
    std::fs::write(east_cfg.path().join("far.yaml"), far).unwrap();
    let logs = || groups.logs();
    let far_cluster = "outbound|80||far.shop.svc.cluster.local";
    let mut s = watch_endpoints(west, far_cluster).await;
    if let Err(seen) = wait_for(&mut s, &["10.2.0.7"], Duration::from_secs(20)).await {
        panic!("east's Service here: {seen:?}\n{}", logs());
    }
    // West's own echo stands; nothing is reported about the shared name.
    let mut echo = watch_endpoints(west, CLUSTER).await;
    if let Err(seen) = wait_for(
        &mut echo,
        &["10.1.0.1", "10.2.0.1"],
        Duration::from_secs(20),
    )
    .await
    {
        panic!("{seen:?}\n{}", logs());
    }
    let (_, z) = shoal_tests::http_get(west.admin, "/debug/configz", &[])
        .await
        .unwrap();
    let z: serde_json::Value = serde_json::from_str(&z).unwrap();
    assert_eq!(z["issues"], serde_json::json!([]), "{z:#}");

    // Gone from east: its Service leaves west's proxies.
    std::fs::remove_file(east_cfg.path().join("far.yaml")).unwrap();
    let gone = shoal_tests::eventually(Duration::from_secs(20), "far withdrawn", || async {
        let (_, body) = shoal_tests::http_get(west.admin, "/debug/configz", &[])
            .await
            .ok()?;
        let z: serde_json::Value = serde_json::from_str(&body).ok()?;
        (z["objects"]["Service"] == 1).then_some(())
    })
    .await;
    assert!(gone.is_ok(), "{}", logs());
}
