//! One peer group's link on this replica: the stream it reads the peer's exports from (the
//! peer itself, or the link's owner in this group), what it holds, and its relay view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_api::istio::federation::ExportedService;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use shoal_api::type_url::FEDERATION;
use shoal_api::{Resource, ResourceType};
use shoal_cache::{Resources, Trigger, View};
use shoal_config::source::backoff::{Backoff, jitter};
use shoal_config::source::{SourceError, SourceUpdate};
use tokio::sync::{mpsc, watch};

use super::link::{Placement, Upstream};
use super::{FederationStatus, Peer, PeerStatus, objects::objects};

pub(super) struct Follower {
    pub(super) peer: Peer,
    pub(super) cluster_id: String,
    pub(super) stale_after: Duration,
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) tx: mpsc::Sender<SourceUpdate>,
    /// What this replica serves to the group's other replicas reading the link from it.
    pub(super) relay: Arc<View>,
    pub(super) status: watch::Sender<FederationStatus>,
    /// Resource name → (version, content) of what the peer exports now.
    pub(super) held: BTreeMap<String, (String, ExportedService)>,
}

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{0}")]
    Grpc(#[from] tonic::Status),
    #[error("the config pipeline has stopped")]
    Closed,
}

impl Follower {
    fn source(&self, name: &str) -> String {
        format!("federation/{}/{name}", self.peer.name)
    }

    fn report(&self, upstream: &Upstream, connected: bool) {
        let status = PeerStatus {
            upstream: upstream.as_str(),
            address: match upstream {
                Upstream::Peer => self.peer.addr.clone(),
                Upstream::Relay(addr) => addr.clone(),
                Upstream::Wait => String::new(),
            },
            connected,
            services: self.held.len(),
        };
        self.status.send_modify(|s| {
            s.insert(self.peer.name.clone(), status);
        });
    }

    pub(super) async fn run(mut self, mut placement: Placement) -> Result<(), SourceError> {
        let mut last_contact = Instant::now();
        // Short enough to notice staleness on time.
        let cap = (self.stale_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        let mut backoff = Backoff::new(Duration::from_millis(200), cap);
        loop {
            let upstream = placement.current(&self.peer.name);
            self.report(&upstream, false);
            let ended = match &upstream {
                Upstream::Wait => {
                    tokio::select! {
                        () = placement.moved(&self.peer.name, &upstream) => Ok(true),
                        () = tokio::time::sleep(cap) => Ok(false),
                    }
                }
                Upstream::Peer | Upstream::Relay(_) => {
                    let addr = match &upstream {
                        Upstream::Relay(addr) => addr.clone(),
                        _ => self.peer.addr.clone(),
                    };
                    let channel =
                        shoal_router::peer_channel(&format!("https://{addr}"), Some(&self.tls));
                    let peer = self.peer.name.clone();
                    tokio::select! {
                        r = self.stream(channel, &upstream, &mut last_contact) => r.map(|()| false),
                        () = placement.moved(&peer, &upstream) => Ok(true),
                    }
                }
            };
            let moved = match ended {
                Err(StreamError::Closed) => return Err(SourceError::Closed),
                Err(StreamError::Grpc(status)) => {
                    tracing::warn!(peer = %self.peer.name, upstream = upstream.as_str(), code = ?status.code(), message = status.message(), "federation stream ended");
                    false
                }
                Ok(moved) => moved,
            };
            if moved {
                tracing::info!(peer = %self.peer.name, from = upstream.as_str(), to = placement.current(&self.peer.name).as_str(), "federation link moved");
            }
            if !self.held.is_empty() && last_contact.elapsed() >= self.stale_after {
                tracing::warn!(peer = %self.peer.name, services = self.held.len(), "peer unreachable past --federation-stale-after: its endpoints are withdrawn");
                for name in std::mem::take(&mut self.held).into_keys() {
                    let source = self.source(&name);
                    self.tx
                        .send(SourceUpdate::Remove { source })
                        .await
                        .map_err(|_| SourceError::Closed)?;
                }
                self.publish();
            }
            if moved {
                // Read from the new place at once: what is held resumes there.
                backoff.reset();
                continue;
            }
            if last_contact.elapsed() < Duration::from_secs(1) {
                // The stream was up until now: start over from the shortest wait.
                backoff.reset();
            }
            tokio::time::sleep(backoff.next(jitter())).await;
        }
    }

    fn request(&self, upstream: &Upstream, initial: bool) -> DeltaDiscoveryRequest {
        let mut req = DeltaDiscoveryRequest {
            type_url: FEDERATION.into(),
            ..Default::default()
        };
        if initial {
            req.node = Some(Node {
                id: format!(
                    "federation~0.0.0.0~{}.istio-system~istio-system.svc.cluster.local",
                    self.cluster_id
                ),
                cluster: self.cluster_id.clone(),
                metadata: matches!(upstream, Upstream::Relay(_))
                    .then(|| shoal_api::relay::relay_metadata(&self.peer.name)),
                ..Default::default()
            });
            req.initial_resource_versions = self
                .held
                .iter()
                .map(|(name, (version, _))| (name.clone(), version.clone()))
                .collect();
        }
        req
    }

    async fn stream(
        &mut self,
        channel: tonic::transport::Channel,
        upstream: &Upstream,
        last_contact: &mut Instant,
    ) -> Result<(), StreamError> {
        let mut client =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let (req_tx, req_rx) = mpsc::channel(4);
        let _ = req_tx.send(self.request(upstream, true)).await;
        let mut responses = client
            .delta_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(req_rx))
            .await?
            .into_inner();
        match upstream {
            Upstream::Relay(addr) => {
                tracing::info!(peer = %self.peer.name, %addr, "federation relay open: reading the peer's exports from the link's owner");
            }
            _ => {
                tracing::info!(peer = %self.peer.name, addr = %self.peer.addr, "federation stream open");
            }
        }
        self.report(upstream, true);
        loop {
            // The peer counts as reachable for as long as its stream is up (HTTP/2
            // keepalive notices a link that went silent).
            let next = responses.message().await;
            *last_contact = Instant::now();
            let Some(resp) = next? else {
                return Ok(());
            };
            let ack = self.apply(&resp).await?;
            self.report(upstream, true);
            let _ = req_tx.send(ack).await;
        }
    }

    /// Takes a response into the store; returns its ACK (or NACK).
    async fn apply(
        &mut self,
        resp: &DeltaDiscoveryResponse,
    ) -> Result<DeltaDiscoveryRequest, StreamError> {
        let mut ack = self.request(&Upstream::Peer, false);
        ack.response_nonce = resp.nonce.clone();
        let mut refused = Vec::new();
        let mut changed = false;
        for r in &resp.resources {
            let Some(any) = &r.resource else { continue };
            let export = match <ExportedService as prost::Message>::decode(any.value.as_slice()) {
                Ok(e) => e,
                Err(e) => {
                    refused.push(format!("{}: {e}", r.name));
                    continue;
                }
            };
            if export.cluster_id == self.cluster_id {
                refused.push(format!(
                    "{}: exported by cluster {:?}, this group's own: a peer never overrides a cluster's own endpoints",
                    r.name, export.cluster_id
                ));
                continue;
            }
            if self.held.get(&r.name).is_some_and(|(_, e)| *e == export) {
                continue;
            }
            let source = self.source(&r.name);
            let docs = shoal_config::parse::parse_yaml(&source, &objects(&self.peer.name, &export));
            // The peer's Service yields (quietly) to this cluster's own of that name.
            let precedence = shoal_config::Precedence::Fallback;
            self.tx
                .send(SourceUpdate::ApplyAt {
                    source,
                    docs,
                    precedence,
                })
                .await
                .map_err(|_| StreamError::Closed)?;
            self.held
                .insert(r.name.clone(), (r.version.clone(), export));
            changed = true;
        }
        for name in &resp.removed_resources {
            if self.held.remove(name).is_some() {
                let source = self.source(name);
                self.tx
                    .send(SourceUpdate::Remove { source })
                    .await
                    .map_err(|_| StreamError::Closed)?;
                changed = true;
            }
        }
        if changed {
            self.publish();
        }
        if !refused.is_empty() {
            tracing::warn!(peer = %self.peer.name, refused = ?refused, "federation: exports refused");
            ack.error_detail = Some(shoal_api::pb::google::rpc::Status {
                code: 3,
                message: refused.join("; "),
                ..Default::default()
            });
        }
        Ok(ack)
    }

    /// Serves what is held to the group's replicas reading the link from this one: the
    /// peer's exports as it sent them, so their versions (content hashes) are the peer's,
    /// and a replica that takes the link over resumes with the peer where the last owner
    /// left off.
    fn publish(&self) {
        let exports = self
            .held
            .iter()
            .map(|(name, (_, export))| Resource::encode(name.as_str(), export))
            .collect();
        let resources = Resources {
            wildcard: vec![(ResourceType::Federation, exports)],
            on_demand: Vec::new(),
        };
        let trigger = Trigger {
            since: tokio::time::Instant::now().into_std(),
            reason: "federation",
        };
        self.relay
            .publish(self.relay.current().replaced(&resources, trigger));
    }
}
