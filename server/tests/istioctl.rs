//! What Istio's tools ask of the control plane, over the wire, in-process: `istioctl
//! proxy-status --xds-address` (the `istio.io/debug/syncz` type on the TLS ADS port, as an
//! allowed identity), `proxy-config` against the control plane (`istio.io/debug/config_dump`),
//! who is refused, and the metric names Istio's dashboards read.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::get;
use prost::Message;
use shoal::app::App;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::admin::v3::ClustersConfigDump;
use shoal_api::pb::envoy::config::cluster::v3::Cluster;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use shoal_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use shoal_api::pb::envoy::service::status::v3::{ClientConfig, ConfigStatus};
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind};
use shoal_api::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(10);
const NODE: &str = "sidecar~10.1.0.7~web-0.shop~shop.svc.cluster.local";
const CART: &str = "outbound|8080||cart.shop.svc.cluster.local";
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The node istioctl's xDS client (Istio's `adsc`) sends in place of the request's own.
const ISTIOCTL_NODE: &str = "sidecar~10.0.0.9~test-1.default~default.svc.cluster.local";

fn strings(pairs: &[(&str, &str)]) -> Struct {
    Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                let value = Value {
                    kind: Some(Kind::StringValue(v.to_string())),
                };
                (k.to_string(), value)
            })
            .collect(),
    }
}

/// Signs service-account tokens that the app trusts (`--jwt-issuer`).
struct Issuer {
    key: rcgen::KeyPair,
    file: tempfile::NamedTempFile,
}

impl Issuer {
    fn new() -> anyhow::Result<Issuer> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), key.public_key_pem())?;
        Ok(Issuer { key, file })
    }

    fn token(&self, ns: &str, sa: &str) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": ["istio-ca"], "iat": now, "exp": now + 3600,
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
            "kubernetes.io": { "namespace": ns, "serviceaccount": { "name": sa } },
        });
        let key = jsonwebtoken::EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes())?;
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    }
}

/// An app on ephemeral ports serving one Service, trusting `issuer`'s tokens.
async fn start(dir: &Path, issuer: &Issuer) -> anyhow::Result<App> {
    let jwt = format!("{ISSUER}={}", issuer.file.path().display());
    common::start_with(dir, &[("cart", 8080)], &["--jwt-issuer", &jwt]).await
}

/// A gRPC channel to the app's TLS port, trusting its CA (no client certificate).
fn tls_channel(app: &App, dir: &Path) -> anyhow::Result<Channel> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let addr = app.xds_tls_addr.context("a TLS port")?;
    let root = std::fs::read(dir.join("data/ca/shoal-root/root-cert.pem"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&root)?)?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .build();
    Ok(
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
            .connect_with_connector_lazy(https),
    )
}

fn plaintext_channel(app: &App) -> anyhow::Result<Channel> {
    let addr = app.xds_addr.context("a plaintext port")?;
    Ok(tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy())
}

/// A sidecar on the plaintext port subscribed to clusters, with Istio's node metadata.
struct Proxy {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: tonic::Streaming<DeltaDiscoveryResponse>,
}

impl Proxy {
    async fn connect(app: &App) -> anyhow::Result<Proxy> {
        let (tx, rx) = mpsc::channel(8);
        tx.send(DeltaDiscoveryRequest {
            node: Some(Node {
                id: NODE.into(),
                metadata: Some(strings(&[
                    ("CLUSTER_ID", "Kubernetes"),
                    ("ISTIO_VERSION", "1.24.0"),
                ])),
                ..Default::default()
            }),
            type_url: ResourceType::Cluster.type_url().into(),
            ..Default::default()
        })
        .await?;
        let rx = AggregatedDiscoveryServiceClient::new(plaintext_channel(app)?)
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Proxy { tx, rx })
    }

    async fn next(&mut self) -> anyhow::Result<DeltaDiscoveryResponse> {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .context("no response in time")??
            .context("stream ended")
    }

    /// Answers a response: ACK, or NACK with `error`.
    async fn answer(&self, r: &DeltaDiscoveryResponse, error: Option<&str>) -> anyhow::Result<()> {
        let error_detail = error.map(|message| RpcStatus {
            code: 3,
            message: message.into(),
            ..Default::default()
        });
        self.tx
            .send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                error_detail,
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

/// Asks one debug question over SotW ADS as istioctl does: its node, `token` if any.
async fn ask(
    channel: Channel,
    node: Node,
    token: Option<&str>,
    type_url: &str,
    names: &[&str],
) -> Result<DiscoveryResponse, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let first = DiscoveryRequest {
        node: Some(node),
        type_url: type_url.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        // adsc sends a timestamp as the first request's nonce.
        response_nonce: "2026-12-05 18:00:00.0 +0000 UTC".into(),
        ..Default::default()
    };
    tx.send(first)
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::internal("token"))?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut stream = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(request)
        .await?
        .into_inner();
    let response = tokio::time::timeout(WAIT, stream.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no debug response in time"))??;
    drop(tx);
    response.ok_or_else(|| tonic::Status::cancelled("the stream ended without a response"))
}

/// The node istioctl's xDS client sends: Istio's `event` generator, its own namespace.
fn istioctl_node() -> Node {
    Node {
        id: ISTIOCTL_NODE.into(),
        metadata: Some(strings(&[
            ("GENERATOR", "event"),
            ("NAMESPACE", "istio-system"),
            ("SERVICE_ACCOUNT", "default"),
            ("ISTIO_VERSION", "65536.65536.65536"),
        ])),
        ..Default::default()
    }
}

fn debug_node() -> Node {
    Node {
        id: shoal_api::debug::ISTIOCTL_NODE_ID.into(),
        ..Default::default()
    }
}

fn client_configs(r: &DiscoveryResponse) -> anyhow::Result<Vec<ClientConfig>> {
    r.resources
        .iter()
        .map(|any| {
            anyhow::ensure!(
                any.type_url == "type.googleapis.com/envoy.service.status.v3.ClientConfig",
                "{}",
                any.type_url
            );
            Ok(ClientConfig::decode(any.value.as_slice())?)
        })
        .collect()
}

/// The config status syncz reports for `NODE` and `type_url`.
fn status_of(configs: &[ClientConfig], type_url: &str) -> Option<ConfigStatus> {
    let proxy = configs
        .iter()
        .find(|c| c.node.as_ref().is_some_and(|n| n.id == NODE))?;
    let generic = proxy
        .generic_xds_configs
        .iter()
        .find(|g| g.type_url == type_url)?;
    ConfigStatus::try_from(generic.config_status).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istioctl_reads_sync_status_and_config_dumps_over_xds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new()?;
    let app = start(dir.path(), &issuer).await?;
    let mut proxy = Proxy::connect(&app).await?;
    let first = proxy.next().await?;
    proxy.answer(&first, None).await?;

    // proxy-status: istioctl's token (istio-system/default), its node; the proxy is SYNCED
    // for clusters once the ACK is read, and NOT_SENT for what it never asked.
    let token = issuer.token("istio-system", "default")?;
    let channel = tls_channel(&app, dir.path())?;
    let mut configs = Vec::new();
    for _ in 0..50 {
        let r = ask(
            channel.clone(),
            istioctl_node(),
            Some(&token),
            "istio.io/debug/syncz",
            &[],
        )
        .await?;
        assert_eq!(r.type_url, "istio.io/debug/syncz");
        let cp: serde_json::Value = serde_json::from_str(
            &r.control_plane
                .as_ref()
                .context("a control plane identifier")?
                .identifier,
        )?;
        assert_eq!(cp["ID"], "shoal", "{cp}");
        assert!(cp["Info"]["version"].is_string(), "{cp}");
        configs = client_configs(&r)?;
        if status_of(&configs, ResourceType::Cluster.type_url()) == Some(ConfigStatus::Synced) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status_of(&configs, ResourceType::Cluster.type_url()),
        Some(ConfigStatus::Synced),
        "{configs:?}"
    );
    assert_eq!(
        status_of(&configs, ResourceType::Listener.type_url()),
        Some(ConfigStatus::NotSent)
    );
    assert_eq!(
        configs.len(),
        1,
        "the debug client is no proxy: {configs:?}"
    );
    let meta = configs[0]
        .node
        .as_ref()
        .and_then(|n| n.metadata.as_ref())
        .context("node metadata")?;
    assert!(
        matches!(&meta.fields["CLUSTER_ID"].kind, Some(Kind::StringValue(c)) if c == "Kubernetes"),
        "{meta:?}"
    );

    // The same question over delta ADS: resources named by the proxies' node ids.
    let (tx, rx) = mpsc::channel(4);
    tx.send(DeltaDiscoveryRequest {
        node: Some(debug_node()),
        type_url: "istio.io/debug/syncz".into(),
        ..Default::default()
    })
    .await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut delta = AggregatedDiscoveryServiceClient::new(channel.clone())
        .delta_aggregated_resources(request)
        .await?
        .into_inner();
    let r = tokio::time::timeout(WAIT, delta.message())
        .await
        .context("no delta debug response in time")??
        .context("the delta stream ended")?;
    let names: Vec<&str> = r.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [NODE], "{r:?}");
    drop(tx);

    // proxy-config: the dump of the proxy named as Istio names it (POD.NAMESPACE), over the
    // node id istioctl writes itself.
    let r = ask(
        channel.clone(),
        debug_node(),
        Some(&token),
        "istio.io/debug/config_dump",
        &["web-0.shop"],
    )
    .await?;
    let clusters = r
        .resources
        .iter()
        .find(|a| a.type_url == "type.googleapis.com/envoy.admin.v3.ClustersConfigDump")
        .context("a clusters section")?;
    let clusters = ClustersConfigDump::decode(clusters.value.as_slice())?;
    let names: Vec<String> = clusters
        .dynamic_active_clusters
        .iter()
        .filter_map(|c| c.cluster.as_ref())
        .map(|any| Cluster::decode(any.value.as_slice()).map(|c| c.name))
        .collect::<Result<_, _>>()?;
    assert!(names.iter().any(|n| n == CART), "{names:?}");

    // A proxy this replica does not serve: an empty answer, as istiod's.
    let r = ask(
        channel.clone(),
        debug_node(),
        Some(&token),
        "istio.io/debug/config_dump",
        &["nobody.shop"],
    )
    .await?;
    assert!(r.resources.is_empty(), "{r:?}");

    // An unknown debug type is the client's error, and says what is served.
    let err = ask(
        channel,
        debug_node(),
        Some(&token),
        "istio.io/debug/nonsense",
        &[],
    )
    .await
    .err()
    .context("an unknown debug type refused")?;
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("istio.io/debug/syncz"), "{err:?}");

    app.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_types_are_refused_to_other_identities_and_anonymous_callers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new()?;
    let app = start(dir.path(), &issuer).await?;
    let syncz = "istio.io/debug/syncz";

    // A workload of another namespace, authenticated: not allowed to read the mesh's status.
    let token = issuer.token("shop", "web")?;
    let err = ask(
        tls_channel(&app, dir.path())?,
        debug_node(),
        Some(&token),
        syncz,
        &[],
    )
    .await
    .err()
    .context("a workload identity refused")?;
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("--debug-readers"), "{err:?}");

    // Anonymous on the plaintext port, with either node istioctl may send.
    for node in [debug_node(), istioctl_node()] {
        let err = ask(plaintext_channel(&app)?, node, None, syncz, &[])
            .await
            .err()
            .context("an anonymous caller refused")?;
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        assert!(err.message().contains("authenticated"), "{err:?}");
    }
    app.shutdown().await;
    Ok(())
}

fn csr(uri: &str) -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into()?)];
    Ok(params.serialize_request(&key)?.pem()?)
}

/// `value` of the first sample of `name` with exactly these labels, if exported.
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_metric_names_are_exported_beside_shoal_s() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new()?;
    let app = start(dir.path(), &issuer).await?;
    let mut proxy = Proxy::connect(&app).await?;
    let first = proxy.next().await?;
    // A rejected response, then the same response again (the server resends what it has).
    proxy.answer(&first, Some("bad cluster")).await?;

    // A certificate request on the TLS port.
    let token = issuer.token("shop", "web")?;
    let mut grpc = tonic::client::Grpc::new(tls_channel(&app, dir.path())?);
    grpc.ready().await?;
    let mut req = tonic::Request::new(shoal_ca::grpc::IstioCertificateRequest {
        csr: csr("spiffe://cluster.local/ns/shop/sa/web")?,
        validity_duration: 3600,
        metadata: None,
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    grpc.unary(
        req,
        http::uri::PathAndQuery::from_static(shoal_ca::grpc::CREATE_CERTIFICATE_PATH),
        tonic_prost::ProstCodec::<_, shoal_ca::grpc::IstioCertificateResponse>::default(),
    )
    .await?;

    let mut text = String::new();
    for _ in 0..50 {
        text = get(app.admin_addr, "/metrics").await?;
        if sample(&text, "pilot_total_xds_rejects", "type=\"cds\"").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The recorder is shared by every app of this process: at least ours.
    let at_least = |name: &str, labels: &str, n: f64| {
        let v = sample(&text, name, labels);
        assert!(
            v.is_some_and(|v| v >= n),
            "{name}{{{labels}}} = {v:?} in\n{text}"
        );
    };
    at_least("pilot_xds", "version=\"1.24.0\"", 1.0);
    at_least("pilot_xds_pushes", "type=\"cds\"", 1.0);
    at_least("pilot_total_xds_rejects", "type=\"cds\"", 1.0);
    at_least("pilot_xds_push_time_count", "type=\"cds\"", 1.0);
    at_least("pilot_xds_config_size_bytes_count", "type=\"cds\"", 1.0);
    at_least(
        "pilot_xds_config_size_bytes_bucket",
        "type=\"cds\",le=\"10000\"",
        1.0,
    );
    at_least("pilot_proxy_convergence_time_count", "", 1.0);
    at_least("citadel_server_csr_count", "", 1.0);
    at_least("citadel_server_success_cert_issuance_count", "", 1.0);
    // shoal's own names stay.
    at_least("shoal_xds_nacks_total", "type=\"CDS\"", 1.0);
    assert!(text.contains("# TYPE pilot_xds_pushes counter"), "{text}");
    assert!(text.contains("# TYPE pilot_xds gauge"), "{text}");

    app.shutdown().await;
    Ok(())
}
