//! Federation between two shoal groups with CAs sharing a root (Istio's plug-in CA): east
//! exports its services over delta xDS on its TLS port, west imports them with
//! `--federate` and serves east's endpoints beside its own; east gone, west keeps them
//! until `--federation-stale-after`, then withdraws them; east back, they return. A
//! reconnect that changes nothing pushes nothing, and a caller east does not list is
//! refused.

use std::time::Duration;

use prost::Message;
use shoal_api::pb::envoy::config::core::v3::address;
use shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use shoal_api::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use shoal_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use shoal_api::type_url::{ENDPOINT, FEDERATION};
use shoal_tests::identity::{Issuer, SharedRoot};
use shoal_tests::xds::{DeltaStream, Target, node, refusal};
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

/// The endpoint addresses of `CLUSTER` a sidecar of west holds once its stream is quiet.
async fn endpoints(s: &mut DeltaStream) -> Option<Vec<String>> {
    let mut latest = None;
    for r in s.drain(Duration::from_millis(700), 20).await {
        s.ack(&r).await.ok()?;
        for res in &r.resources {
            let cla =
                ClusterLoadAssignment::decode(res.resource.as_ref()?.value.as_slice()).ok()?;
            let mut ips: Vec<String> = cla
                .endpoints
                .iter()
                .flat_map(|l| &l.lb_endpoints)
                .filter_map(|e| match &e.host_identifier {
                    Some(HostIdentifier::Endpoint(ep)) => {
                        match ep.address.as_ref()?.address.as_ref()? {
                            address::Address::SocketAddress(sa) => Some(sa.address.clone()),
                            _ => None,
                        }
                    }
                    _ => None,
                })
                .collect();
            ips.sort();
            latest = Some(ips);
        }
    }
    latest
}

/// Waits until west's sidecar holds exactly `want`; the last addresses seen otherwise.
async fn wait_for(
    s: &mut DeltaStream,
    want: &[&str],
    within: Duration,
) -> Result<(), Option<Vec<String>>> {
    let deadline = std::time::Instant::now() + within;
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        if let Some(ips) = endpoints(s).await {
            if ips == want {
                return Ok(());
            }
            seen = Some(ips);
        }
    }
    Err(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_federate_endpoints_and_withdraw_them_when_a_peer_goes_stale() {
    let root = SharedRoot::new("shared root").unwrap();
    let (east_ca, west_ca, east_cfg, west_cfg) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    root.plug_in(east_ca.path(), "east").unwrap();
    root.plug_in(west_ca.path(), "west").unwrap();
    std::fs::write(east_cfg.path().join("mesh.yaml"), service(Some("10.2.0.1"))).unwrap();
    std::fs::write(west_cfg.path().join("mesh.yaml"), service(Some("10.1.0.1"))).unwrap();
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
    let federate = format!("east=127.0.0.1:{east_port}");
    let west = group(
        west_cfg.path(),
        west_ca.path(),
        "west",
        free_port("127.0.0.1"),
        &["--federate", &federate, "--federation-stale-after", "3s"],
    )
    .await;

    // A sidecar of west gets west's endpoint and east's.
    let sidecar = "sidecar~10.1.0.9~sleep-1.shop~shop.svc.cluster.local";
    let mut s = DeltaStream::open(
        west.xds,
        DeltaDiscoveryRequest {
            node: Some(node(sidecar)),
            type_url: ENDPOINT.into(),
            resource_names_subscribe: vec![CLUSTER.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
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
