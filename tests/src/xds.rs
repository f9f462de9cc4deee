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

async fn client(
    addr: SocketAddr,
) -> anyhow::Result<AggregatedDiscoveryServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20))
}

pub struct DeltaStream {
    pub tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl DeltaStream {
    /// Opens a stream and sends `first`.
    pub async fn open(
        addr: SocketAddr,
        first: DeltaDiscoveryRequest,
    ) -> anyhow::Result<DeltaStream> {
        DeltaStream::open_with_token(addr, first, None).await
    }

    /// Opens a stream authenticated with a bearer token.
    pub async fn open_with_token(
        addr: SocketAddr,
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
        addr: SocketAddr,
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
