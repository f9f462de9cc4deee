//! Bad input never takes shoal down: malformed and hostile xDS requests get a clear error
//! or a clean stream close, broken config files are rejected alone, and everyone else keeps
//! being served throughout.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use shoal_api::codec::RawCodec;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use shoal_api::type_url;
use shoal_tests::eventually;
use shoal_tests::start_shoal;
use shoal_tests::xds::{DeltaStream, SotwStream, node};

const GOOD: &str = "sidecar~10.0.0.1~good-1.shop~shop.svc.cluster.local";

const MESH: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  ports: [{name: http, port: 80}]\n";

fn cds(node_id: Option<&str>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: node_id.map(node),
        type_url: type_url::CLUSTER.into(),
        ..Default::default()
    }
}

/// A well-behaved client gets its clusters.
async fn good_client_is_served(addr: SocketAddr) {
    let mut s = DeltaStream::open(addr, cds(Some(GOOD))).await.unwrap();
    let r = s
        .recv(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("clusters");
    assert!(
        r.resources
            .iter()
            .any(|c| c.name == "outbound|80||cart.shop.svc.cluster.local"),
        "{:?}",
        r.resources.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
}

async fn expect_error(mut s: DeltaStream, code: tonic::Code, contains: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match s.recv(Duration::from_secs(10)).await {
            Err(status) => {
                assert_eq!(status.code(), code, "{status:?}");
                assert!(status.message().contains(contains), "{status:?}");
                return;
            }
            Ok(Some(_)) if tokio::time::Instant::now() < deadline => continue,
            other => panic!("expected {code:?}, got {other:?}"),
        }
    }
}

/// Sends raw bytes as one message on the delta stream.
async fn raw_delta(addr: SocketAddr, payload: Bytes) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
    );
    let outbound = tokio_stream::iter(vec![payload]);
    match client
        .streaming(tonic::Request::new(outbound), path, RawCodec)
        .await
    {
        Err(status) => status,
        Ok(resp) => {
            let mut stream = resp.into_inner();
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
                Ok(Err(status)) => status,
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    let shoal = start_shoal(
        dir.path(),
        &["--max-names", "1000", "--max-message-size", "65536"],
    )
    .await
    .unwrap();
    let addr = shoal.xds;
    good_client_is_served(addr).await;

    // Garbage instead of a protobuf message.
    let status = raw_delta(addr, Bytes::from_static(&[0xff, 0xff, 0xff, 0x01, 0x02])).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // No node, a malformed node id, a node type shoal does not serve.
    expect_error(
        DeltaStream::open(addr, cds(None)).await.unwrap(),
        tonic::Code::InvalidArgument,
        "must carry a node",
    )
    .await;
    expect_error(
        DeltaStream::open(addr, cds(Some("not-an-istio-id")))
            .await
            .unwrap(),
        tonic::Code::InvalidArgument,
        "node id",
    )
    .await;
    let huge = Node {
        id: GOOD.into(),
        metadata: None,
        ..Default::default()
    };
    let _ = huge;

    // Unknown type URLs are ignored, a flood of them closes the stream.
    let s = DeltaStream::open(
        addr,
        DeltaDiscoveryRequest {
            node: Some(node(GOOD)),
            type_url: "type.googleapis.com/not.a.Type".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.send(cds(None)).await.unwrap();
    let mut s2 = s;
    let r = s2
        .recv(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("clusters after an unknown type");
    assert_eq!(r.type_url, type_url::CLUSTER);
    for _ in 0..150 {
        if s2
            .send(DeltaDiscoveryRequest {
                type_url: "bogus".into(),
                ..Default::default()
            })
            .await
            .is_err()
        {
            break;
        }
    }
    expect_error(s2, tonic::Code::InvalidArgument, "unknown resource types").await;

    // Stale and garbage nonces change nothing and get no reply.
    let mut s = DeltaStream::open(addr, cds(Some(GOOD))).await.unwrap();
    let r = s.recv(Duration::from_secs(10)).await.unwrap().unwrap();
    for nonce in ["", "garbage", "999999", &"x".repeat(10_000)] {
        s.send(DeltaDiscoveryRequest {
            type_url: type_url::CLUSTER.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    s.send(DeltaDiscoveryRequest {
        type_url: type_url::CLUSTER.into(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(s.recv(Duration::from_millis(500)).await.unwrap().is_none());
    let mut sotw = SotwStream::open(
        addr,
        DiscoveryRequest {
            node: Some(node(GOOD)),
            type_url: type_url::CLUSTER.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let first = sotw.recv(Duration::from_secs(10)).await.unwrap().unwrap();
    sotw.send(DiscoveryRequest {
        type_url: type_url::CLUSTER.into(),
        response_nonce: "stale".into(),
        version_info: "bogus".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        sotw.recv(Duration::from_millis(500))
            .await
            .unwrap()
            .is_none(),
        "a stale nonce is ignored"
    );
    assert!(!first.resources.is_empty());

    // A subscription larger than the limit.
    let names: Vec<String> = (0..2000).map(|i| format!("n{i}")).collect();
    let s = DeltaStream::open(
        addr,
        DeltaDiscoveryRequest {
            node: Some(node(GOOD)),
            type_url: type_url::ENDPOINT.into(),
            resource_names_subscribe: names,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    expect_error(s, tonic::Code::ResourceExhausted, "limit").await;
    // A message larger than the limit.
    let names: Vec<String> = (0..3000)
        .map(|i| format!("a-rather-long-resource-name-{i:08}"))
        .collect();
    let s = DeltaStream::open(
        addr,
        DeltaDiscoveryRequest {
            node: Some(node(GOOD)),
            type_url: type_url::ENDPOINT.into(),
            resource_names_subscribe: names,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut s = s;
    let err = loop {
        match s.recv(Duration::from_secs(10)).await {
            Err(e) => break e,
            Ok(None) => panic!("oversized message accepted"),
            Ok(Some(_)) => continue,
        }
    };
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");

    // Hundreds of clients that vanish right after asking.
    let mut tasks = Vec::new();
    for i in 0..300 {
        tasks.push(tokio::spawn(async move {
            let id = format!(
                "sidecar~10.9.{}.{}~ghost-{i}.shop~shop.svc.cluster.local",
                i / 250,
                i % 250
            );
            let s = DeltaStream::open(addr, cds(Some(&id))).await;
            drop(s);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // Still alive, still serving, nobody else affected.
    assert!(shoal.is_running());
    good_client_is_served(addr).await;
    assert_eq!(shoal.get("/ready").await.unwrap(), "ready\n");
    let metrics = shoal.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("shoal_xds_rejected_requests_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_is_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesh.yaml");
    std::fs::write(&file, MESH).unwrap();
    std::fs::write(dir.path().join("other.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: pay, namespace: shop}\nspec:\n  ports: [{name: http, port: 81}]\n").unwrap();
    let shoal = start_shoal(dir.path(), &["--debounce", "10ms"])
        .await
        .unwrap();
    let addr = shoal.xds;
    let mut s = DeltaStream::open(addr, cds(Some(GOOD))).await.unwrap();
    let r = s.recv(Duration::from_secs(10)).await.unwrap().unwrap();
    s.send(DeltaDiscoveryRequest {
        type_url: type_url::CLUSTER.into(),
        response_nonce: r.nonce,
        ..Default::default()
    })
    .await
    .unwrap();

    // Malformed YAML, then an invalid object: the last good version stays in force.
    let rev = shoal.revision().await.unwrap();
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("other.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: pay, namespace: shop}\nspec:\n  ports: [{name: http, port: 99999}]\n").unwrap();
    let configz = eventually(
        Duration::from_secs(10),
        "the errors to be reported",
        || async {
            let c = shoal.json("/debug/configz").await.ok()?;
            (c["issues"].as_array()?.len() >= 2).then_some(c)
        },
    )
    .await
    .unwrap();
    let text = configz["issues"].to_string();
    assert!(
        text.contains("mesh.yaml:1 (document 1)") && text.contains("malformed YAML"),
        "{text}"
    );
    assert!(
        text.contains("Service shop/pay: spec.ports[0].port: port 99999 is out of range"),
        "{text}"
    );
    assert_eq!(shoal.revision().await.unwrap(), rev, "nothing changed");
    // The stream gets nothing new: both services are still served as before.
    assert!(s.recv(Duration::from_millis(500)).await.unwrap().is_none());
    good_client_is_served(addr).await;

    // Fixing the file applies the change.
    std::fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  ports: [{name: http, port: 8080}]\n").unwrap();
    let r = s
        .recv(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the fix is pushed");
    assert!(
        r.resources
            .iter()
            .any(|c| c.name == "outbound|8080||cart.shop.svc.cluster.local")
    );
    assert!(
        r.removed_resources
            .contains(&"outbound|80||cart.shop.svc.cluster.local".to_string())
    );
}
