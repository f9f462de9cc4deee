//! ztunnel's workload discovery over the wire, as ztunnel asks for it: delta ADS on the TLS
//! port with its service account token, `Address` and `Authorization` by wildcard, then on
//! demand by address, and resumed with `initial_resource_versions`. Resources are decoded
//! with shoal's own ztunnel protos.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use shoal_api::istio::security::Authorization;
use shoal_api::istio::workload::{Address, TunnelProtocol, address};
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use shoal_api::type_url::{ADDRESS, AUTHORIZATION};
use shoal_tests::identity::Issuer;
use shoal_tests::xds::{DeltaStream, Target, node};
use shoal_tests::{Shoal, start_shoal};

const NODE: &str = "ztunnel~10.0.0.5~ztunnel-abcde.istio-system~istio-system.svc.cluster.local";

fn pod(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: cart}}}}\nspec: {{nodeName: node-a, serviceAccountName: cart}}\nstatus: {{phase: Running, podIP: {ip}}}\n---\n"
    )
}

const MESH: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  clusterIP: 10.96.5.10\n  selector: {app: cart}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {matchLabels: {app: cart}}\n  rules: [{from: [{source: {namespaces: [shop]}}]}]\n---\n";

pub(crate) fn request(type_url: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(node(NODE)),
        type_url: type_url.into(),
        ..Default::default()
    }
}

pub(crate) async fn recv(s: &mut DeltaStream) -> DeltaDiscoveryResponse {
    s.recv(Duration::from_secs(20))
        .await
        .expect("the stream stays open")
        .expect("a response")
}

/// A ztunnel's stream on the TLS port with its token.
async fn open(shoal: &Shoal, token: &str, first: DeltaDiscoveryRequest) -> DeltaStream {
    let root = shoal.data_dir().join("ca/shoal-root/root-cert.pem");
    open_trusting(shoal, &root, token, first).await
}

/// A ztunnel's stream on the TLS port with its token, trusting the root at `root`.
pub(crate) async fn open_trusting(
    shoal: &Shoal,
    root: &std::path::Path,
    token: &str,
    first: DeltaDiscoveryRequest,
) -> DeltaStream {
    let target = Target::tls(shoal.xds_tls(), root).unwrap();
    let bearer = format!("Bearer {token}");
    DeltaStream::open_with_metadata(
        target,
        first,
        &[("authorization", &bearer), ("clusterid", "Kubernetes")],
    )
    .await
    .unwrap()
}

/// The workload uids and service names a response holds.
fn names(r: &DeltaDiscoveryResponse) -> Vec<String> {
    r.resources.iter().map(|x| x.name.clone()).collect()
}

pub(crate) fn decode(r: &DeltaDiscoveryResponse) -> BTreeMap<String, Address> {
    r.resources
        .iter()
        .map(|x| {
            let any = x.resource.as_ref().unwrap();
            assert_eq!(any.type_url, ADDRESS);
            (
                x.name.clone(),
                Address::decode(any.value.as_slice()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ztunnel_gets_workloads_services_and_policies_as_deltas() {
    let issuer = Issuer::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, format!("{MESH}{}", pod("cart-1", "10.1.0.10"))).unwrap();
    let shoal = start_shoal(dir.path(), &["--jwt-issuer", &issuer.arg()])
        .await
        .unwrap();
    let token = issuer.token("istio-system", "ztunnel").unwrap();

    let mut s = open(&shoal, &token, request(ADDRESS)).await;
    let first = recv(&mut s).await;
    let got = decode(&first);
    let uid = "Kubernetes//Pod/shop/cart-1";
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        vec![uid, "shop/cart.shop.svc.cluster.local"],
        "{:?}",
        names(&first)
    );
    let Some(address::Type::Workload(w)) = &got[uid].r#type else {
        panic!("{:?}", got[uid]);
    };
    assert_eq!(w.tunnel_protocol(), TunnelProtocol::Hbone);
    assert_eq!(w.addresses, vec![vec![10, 1, 0, 10]]);
    assert_eq!(w.service_account, "cart");
    assert_eq!(w.authorization_policies, vec!["shop/cart".to_string()]);
    assert_eq!(
        w.services["shop/cart.shop.svc.cluster.local"].ports[0].target_port,
        8080
    );
    s.ack(&first).await.unwrap();
    s.send(request(AUTHORIZATION)).await.unwrap();
    let authz = recv(&mut s).await;
    assert_eq!(names(&authz), vec!["shop/cart".to_string()]);
    let a = Authorization::decode(
        authz.resources[0]
            .resource
            .as_ref()
            .unwrap()
            .value
            .as_slice(),
    )
    .unwrap();
    assert_eq!((a.name.as_str(), a.namespace.as_str()), ("cart", "shop"));
    s.ack(&authz).await.unwrap();

    // A new pod: exactly its workload arrives.
    std::fs::write(
        &mesh,
        format!(
            "{MESH}{}{}",
            pod("cart-1", "10.1.0.10"),
            pod("cart-2", "10.1.0.11")
        ),
    )
    .unwrap();
    let added = recv(&mut s).await;
    assert_eq!(
        names(&added),
        vec!["Kubernetes//Pod/shop/cart-2".to_string()]
    );
    assert!(added.removed_resources.is_empty());
    s.ack(&added).await.unwrap();
    // The first pod goes: its removal, nothing else.
    std::fs::write(&mesh, format!("{MESH}{}", pod("cart-2", "10.1.0.11"))).unwrap();
    let removed = recv(&mut s).await;
    assert!(removed.resources.is_empty(), "{:?}", names(&removed));
    assert_eq!(removed.removed_resources, vec![uid.to_string()]);
    s.ack(&removed).await.unwrap();

    // On demand: a ztunnel asking for one address gets that workload only.
    let mut on_demand = open(
        &shoal,
        &token,
        DeltaDiscoveryRequest {
            resource_names_subscribe: vec!["/10.1.0.11".into()],
            ..request(ADDRESS)
        },
    )
    .await;
    let one = recv(&mut on_demand).await;
    let got = decode(&one);
    assert_eq!(got.len(), 1, "{:?}", names(&one));
    let Some(address::Type::Workload(w)) = &got["/10.1.0.11"].r#type else {
        panic!("{got:?}");
    };
    assert_eq!(w.uid, "Kubernetes//Pod/shop/cart-2");

    // Resumed (at another replica, say) with what it holds: nothing is sent again.
    let held: std::collections::HashMap<String, String> = added
        .resources
        .iter()
        .chain(first.resources.iter().filter(|r| r.name != uid))
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    let mut resumed = open(
        &shoal,
        &token,
        DeltaDiscoveryRequest {
            initial_resource_versions: held,
            ..request(ADDRESS)
        },
    )
    .await;
    if let Some(r) = resumed.recv(Duration::from_secs(3)).await.unwrap() {
        assert!(r.resources.is_empty(), "resent: {:?}", names(&r));
    }

    // Without a valid token there is nothing to see.
    let forged = Issuer::new()
        .unwrap()
        .token("istio-system", "ztunnel")
        .unwrap();
    let mut refused = open(&shoal, &forged, request(ADDRESS)).await;
    assert!(refused.recv(Duration::from_secs(5)).await.is_err());
}

/// ztunnel asks for the certificates of the workloads on its node (`ImpersonatedIdentity`):
/// granted where a pod of that service account runs on the node its token names, and to
/// ztunnel's own identity only; the chain ends with the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ztunnel_gets_certificates_for_its_node_s_workloads_only() {
    use shoal_tests::identity::{create_certificate_for, csr_for, pem_uris, tls_channel};
    let issuer = Issuer::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = "apiVersion: v1\nkind: Pod\nmetadata: {name: ledger-0, namespace: shop}\nspec: {nodeName: node-b, serviceAccountName: ledger}\nstatus: {phase: Running, podIP: 10.1.0.20}\n---\n";
    std::fs::write(
        dir.path().join("mesh.yaml"),
        format!("{MESH}{}{elsewhere}", pod("cart-1", "10.1.0.10")),
    )
    .unwrap();
    let shoal = start_shoal(dir.path(), &["--jwt-issuer", &issuer.arg()])
        .await
        .unwrap();
    let root =
        std::fs::read_to_string(shoal.data_dir().join("ca/shoal-root/root-cert.pem")).unwrap();
    let channel = tls_channel(shoal.xds_tls().port(), &root).unwrap();
    let ztunnel = issuer
        .token_on_node("istio-system", "ztunnel", "node-a")
        .unwrap();
    let cart = "spiffe://cluster.local/ns/shop/sa/cart";
    let ask = |token: String, uri: &'static str| {
        let channel = channel.clone();
        async move { create_certificate_for(&channel, &token, csr_for(uri).unwrap(), Some(uri)).await }
    };

    // cart runs on node-a: granted, for cart, with the chain up to the root.
    let chain = ask(ztunnel.clone(), cart).await.unwrap().cert_chain;
    assert_eq!(pem_uris(chain[0].as_bytes()), vec![cart.to_string()]);
    assert_eq!(chain.last().unwrap().trim(), root.trim());

    // ledger runs on node-b only; a workload (not ztunnel) may not impersonate; a ztunnel
    // token without a node cannot either.
    let ledger = "spiffe://cluster.local/ns/shop/sa/ledger";
    let refused = ask(ztunnel.clone(), ledger).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let workload = issuer.token_on_node("shop", "ledger", "node-a").unwrap();
    let refused = ask(workload, cart).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let no_node = issuer.token("istio-system", "ztunnel").unwrap();
    assert!(ask(no_node, cart).await.is_err());
}
