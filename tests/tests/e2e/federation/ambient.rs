//! Ambient across networks: a peer's workloads reach west's ztunnels with their network
//! and the way there — that network's east-west gateway, with HBONE — as Istio's
//! `network_gateway`, named by an `istio-remote` Gateway in west's config.

use std::time::{Duration, Instant};

use shoal_api::istio::workload::{
    GatewayAddress, NetworkAddress, Workload, address, gateway_address,
};
use shoal_api::type_url::ADDRESS;
use shoal_tests::identity::Issuer;

use super::{Dirs, east_of, service, west_of};
use crate::ztunnel::{decode, open_trusting, recv, request};

const AMBIENT: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}\n---\n";

/// west's way to net-east: the `istio-remote` Gateway Istio's multi-network ambient uses.
const REMOTE_GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: east-network\n  namespace: istio-system\n  labels: {topology.istio.io/network: net-east}\nspec:\n  gatewayClassName: istio-remote\n  addresses: [{type: IPAddress, value: 192.0.2.10}]\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n---\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_s_workloads_reach_ztunnels_with_their_network_s_hbone_gateway() {
    let dirs = Dirs::with_configs(
        &format!("{AMBIENT}{}", service(Some("10.2.0.1"))),
        &format!("{AMBIENT}{}{REMOTE_GATEWAY}", service(None)),
    );
    let (_east, east_port) = east_of(
        dirs.east_cfg.path(),
        dirs.east_ca.path(),
        &["--network", "net-east"],
    )
    .await;
    let issuer = Issuer::new().unwrap();
    let west = west_of(
        dirs.west_cfg.path(),
        dirs.west_ca.path(),
        &format!("127.0.0.1:{east_port}"),
        &["--network", "net-west", "--jwt-issuer", &issuer.arg()],
    )
    .await;

    let token = issuer.token("istio-system", "ztunnel").unwrap();
    let root = dirs.west_ca.path().join("root-cert.pem");
    let mut s = open_trusting(&west, &root, &token, request(ADDRESS)).await;
    // The ztunnel holds what it was sent; east's workload arrives once west imported it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let east_workload: Workload = loop {
        let r = recv(&mut s).await;
        s.ack(&r).await.unwrap();
        let found = decode(&r).into_values().find_map(|a| match a.r#type {
            Some(address::Type::Workload(w)) if w.addresses == vec![vec![10, 2, 0, 1]] => Some(w),
            _ => None,
        });
        if let Some(w) = found {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "east's workload never reached west's ztunnel\nwest:\n{}",
            west.log()
        );
    };
    assert_eq!(east_workload.network, "net-east");
    assert_eq!(east_workload.cluster_id, "east");
    assert_eq!(
        east_workload.network_gateway,
        Some(GatewayAddress {
            destination: Some(gateway_address::Destination::Address(NetworkAddress {
                network: "net-east".into(),
                address: vec![192, 0, 2, 10],
            })),
            hbone_mtls_port: 15008,
        })
    );
}
