//! A bare ADS client for driving shoal directly (delta and SotW).

use std::net::SocketAddr;
use std::time::Duration;

use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use shoal_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

pub fn node(id: &str) -> Node {
    Node {
        id: id.to_string(),
        ..Default::default()
    }
}

/// Where a stream goes: a plaintext xDS port, or the TLS port with the mesh's root to
/// verify it by (shoal's serving certificate names `localhost`).
#[derive(Debug, Clone)]
pub enum Target {
    Plain(SocketAddr),
    Tls { addr: SocketAddr, root_pem: String },
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target::Plain(addr)
    }
}

impl Target {
    /// The TLS port `addr` of a server whose CA root is the PEM file `root`.
    pub fn tls(addr: SocketAddr, root: &std::path::Path) -> anyhow::Result<Target> {
        Ok(Target::Tls {
            addr,
            root_pem: std::fs::read_to_string(root)?,
        })
    }
}

/// A channel to shoal's TLS port at `addr` (any address; the server is verified as
/// `localhost`, the name its serving certificate carries), trusting `root_pem`.
pub async fn tls_channel(
    addr: SocketAddr,
    root_pem: &str,
) -> anyhow::Result<tonic::transport::Channel> {
    let https = crate::https::connector(root_pem, "localhost", true)?;
    Ok(
        tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(https)
            .await?,
    )
}

async fn client(
    target: impl Into<Target>,
) -> anyhow::Result<AggregatedDiscoveryServiceClient<tonic::transport::Channel>> {
    let channel = match target.into() {
        Target::Plain(addr) => {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await?
        }
        Target::Tls { addr, root_pem } => tls_channel(addr, &root_pem).await?,
    };
    Ok(AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20))
}

pub struct DeltaStream {
    pub tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl DeltaStream {
    /// Opens a stream and sends `first`.
    pub async fn open(
        addr: impl Into<Target>,
        first: DeltaDiscoveryRequest,
    ) -> anyhow::Result<DeltaStream> {
        DeltaStream::open_with_token(addr, first, None).await
    }

    /// Opens a stream authenticated with a bearer token.
    pub async fn open_with_token(
        addr: impl Into<Target>,
        first: DeltaDiscoveryRequest,
        token: Option<&str>,
    ) -> anyhow::Result<DeltaStream> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let md: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| ("authorization", b))
            .into_iter()
            .collect();
        DeltaStream::open_with_metadata(addr, first, &md).await
    }

    /// Opens a stream with request metadata of the caller's choice.
    pub async fn open_with_metadata(
        addr: impl Into<Target>,
        first: DeltaDiscoveryRequest,
        metadata: &[(&str, &str)],
    ) -> anyhow::Result<DeltaStream> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(first).await?;
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        for (k, v) in metadata {
            req.metadata_mut().insert(
                tonic::metadata::MetadataKey::from_bytes(k.as_bytes())?,
                v.parse()?,
            );
        }
        let rx = client(addr)
            .await?
            .delta_aggregated_resources(req)
            .await?
            .into_inner();
        Ok(DeltaStream { tx, rx })
    }

    pub async fn send(&self, req: DeltaDiscoveryRequest) -> anyhow::Result<()> {
        self.tx
            .send(req)
            .await
            .map_err(|_| anyhow::anyhow!("stream closed"))
    }

    /// ACKs response `r` (its type and nonce).
    pub async fn ack(&self, r: &DeltaDiscoveryResponse) -> anyhow::Result<()> {
        self.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        })
        .await
    }

    /// Responses, each ACKed, until none comes for `quiet` or `max` have come (panics if
    /// an ACK cannot be sent).
    pub async fn drain(&mut self, quiet: Duration, max: usize) -> Vec<DeltaDiscoveryResponse> {
        let mut got = Vec::new();
        while got.len() < max {
            let Ok(Some(r)) = self.recv(quiet).await else {
                break;
            };
            // A stream that takes responses but not ACKs is a failure of the test.
            self.ack(&r).await.expect("ack");
            got.push(r);
        }
        got
    }

    /// The next response, `Ok(None)` if none comes within `wait`.
    pub async fn recv(
        &mut self,
        wait: Duration,
    ) -> Result<Option<DeltaDiscoveryResponse>, tonic::Status> {
        match tokio::time::timeout(wait, self.rx.message()).await {
            Ok(r) => r,
            Err(_) => Ok(None),
        }
    }
}

/// The IP address of an endpoint at a socket address (`None` for other kinds of endpoint).
pub fn endpoint_ip(e: &shoal_api::pb::envoy::config::endpoint::v3::LbEndpoint) -> Option<&str> {
    use shoal_api::pb::envoy::config::core::v3::address;
    use shoal_api::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
        return None;
    };
    match ep.address.as_ref()?.address.as_ref()? {
        address::Address::SocketAddress(sa) => Some(&sa.address),
        _ => None,
    }
}

/// The endpoint addresses of the last assignment a delta stream got before it went quiet
/// (each response ACKed), sorted; `None` if none came.
pub async fn endpoint_addresses(s: &mut DeltaStream) -> Option<Vec<String>> {
    use prost::Message;
    use shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    let mut latest = None;
    for r in s.drain(Duration::from_millis(700), 20).await {
        for res in &r.resources {
            let cla =
                ClusterLoadAssignment::decode(res.resource.as_ref()?.value.as_slice()).ok()?;
            let mut ips: Vec<String> = cla
                .endpoints
                .iter()
                .flat_map(|l| &l.lb_endpoints)
                .filter_map(endpoint_ip)
                .map(String::from)
                .collect();
            ips.sort();
            latest = Some(ips);
        }
    }
    latest
}

/// Waits until the stream's assignment holds exactly `want` (sorted); the last addresses
/// seen otherwise.
pub async fn wait_for_endpoints(
    s: &mut DeltaStream,
    want: &[&str],
    within: Duration,
) -> Result<(), Option<Vec<String>>> {
    let deadline = std::time::Instant::now() + within;
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        if let Some(ips) = endpoint_addresses(s).await {
            if ips == want {
                return Ok(());
            }
            seen = Some(ips);
        }
    }
    Err(seen)
}

/// The status a refused delta stream ends with, whether the server refuses it when it
/// opens or with its first response; `None` if it is served instead.
pub async fn refusal(
    target: impl Into<Target>,
    first: DeltaDiscoveryRequest,
    token: Option<&str>,
) -> Option<tonic::Status> {
    match DeltaStream::open_with_token(target, first, token).await {
        Err(e) => Some(
            e.downcast_ref::<tonic::Status>()
                .cloned()
                .unwrap_or_else(|| tonic::Status::unavailable(e.to_string())),
        ),
        Ok(mut s) => s.recv(Duration::from_secs(15)).await.err(),
    }
}

pub struct SotwStream {
    pub tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl SotwStream {
    pub async fn open(addr: SocketAddr, first: DiscoveryRequest) -> anyhow::Result<SotwStream> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(first).await?;
        let rx = client(addr)
            .await?
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(SotwStream { tx, rx })
    }

    pub async fn send(&self, req: DiscoveryRequest) -> anyhow::Result<()> {
        self.tx
            .send(req)
            .await
            .map_err(|_| anyhow::anyhow!("stream closed"))
    }

    pub async fn recv(
        &mut self,
        wait: Duration,
    ) -> Result<Option<DiscoveryResponse>, tonic::Status> {
        match tokio::time::timeout(wait, self.rx.message()).await {
            Ok(r) => r,
            Err(_) => Ok(None),
        }
    }
}
