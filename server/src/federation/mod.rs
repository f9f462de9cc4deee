//! Federation: importing what peer shoal groups export (`--federate NAME=HOST:PORT`).
//!
//! Each peer group is followed over delta ADS on its TLS xDS port, authenticated both ways
//! with this replica's serving certificate (peers trust each other through a shared root:
//! Istio's plug-in CA with a common root and per-cluster intermediates). The stream asks
//! for `shoal.federation.v1.ExportedService` by wildcard, as node
//! `federation~…~CLUSTER.istio-system~…`, and resumes with `initial_resource_versions`.
//!
//! What a peer exports becomes config of a source of its own (`federation/PEER/NS/HOST`,
//! one unit per service), so that translation treats remote endpoints as it treats local
//! ones: an `EndpointSlice` of the local Service of the same name (Istio's namespace
//! sameness: the Service must exist here) and a `Pod` per endpoint carrying the remote
//! workload's labels, identity and place (`topology.istio.io/cluster`, `…/network`,
//! `istio-locality`). Those labels keep remote endpoints out of this group's own exports.
//!
//! Failure semantics (eventually consistent): while a peer is unreachable its last exports
//! stay; once it has been unreachable for `--federation-stale-after` they are withdrawn,
//! and come back with the next successful stream. An export that claims this group's own
//! cluster id is refused (a peer never overrides a cluster's own endpoints). Units are
//! replaced only when their content changed, so a flapping link pushes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_api::istio::federation::{ExportedEndpoint, ExportedService};
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use shoal_api::type_url::FEDERATION;
use shoal_config::k8s::topology;
use shoal_config::source::backoff::{Backoff, jitter};
use shoal_config::source::{ConfigSource, SourceError, SourceUpdate};
use tokio::sync::{mpsc, oneshot};

/// One peer group to import from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// A DNS label naming the peer in source names and logs.
    pub name: String,
    /// `HOST:PORT` of its TLS xDS port (any replica of the group, or a Service in front).
    pub addr: String,
}

impl Peer {
    /// Parses `NAME=HOST:PORT`.
    pub fn parse(s: &str) -> Result<Peer, String> {
        let (name, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("--federate {s:?} is not NAME=HOST:PORT"))?;
        // It names objects (Pods, EndpointSlices): a lower-case DNS label.
        if !shoal_config::host::is_dns_label(name) || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "--federate {s:?}: {name:?} is not a lower-case DNS label"
            ));
        }
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("--federate {s:?}: {addr:?} is not HOST:PORT"));
        }
        Ok(Peer {
            name: name.into(),
            addr: addr.into(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct FederationConfig {
    pub peers: Vec<Peer>,
    /// How long a peer may be unreachable before its exports are withdrawn.
    pub stale_after: Duration,
}

/// The source of every peer's exports.
pub struct FederationSource {
    cfg: FederationConfig,
    cluster_id: String,
    /// This replica's client TLS, once the CA has issued its certificate.
    tls: oneshot::Receiver<Arc<rustls::ClientConfig>>,
}

impl FederationSource {
    pub fn new(
        cfg: FederationConfig,
        cluster_id: String,
        tls: oneshot::Receiver<Arc<rustls::ClientConfig>>,
    ) -> FederationSource {
        FederationSource {
            cfg,
            cluster_id,
            tls,
        }
    }
}

impl ConfigSource for FederationSource {
    fn kind(&self) -> &'static str {
        "federation"
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<SourceUpdate>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        Box::pin(async move {
            // Peers are not awaited: this group serves its own config whatever they do.
            tx.send(SourceUpdate::Synced {
                source_kind: "federation",
            })
            .await
            .map_err(|_| SourceError::Closed)?;
            let Ok(tls) = self.tls.await else {
                tracing::warn!("federation: no client certificate (the CA did not start)");
                return Ok(());
            };
            let mut peers = tokio::task::JoinSet::new();
            for peer in self.cfg.peers.clone() {
                let follower = Follower {
                    peer,
                    cluster_id: self.cluster_id.clone(),
                    stale_after: self.cfg.stale_after,
                    tls: tls.clone(),
                    tx: tx.clone(),
                    held: BTreeMap::new(),
                };
                peers.spawn(follower.run());
            }
            while let Some(done) = peers.join_next().await {
                if let Ok(Err(e)) = done {
                    return Err(e);
                }
            }
            Ok(())
        })
    }
}

/// One peer's stream and what it exported.
struct Follower {
    peer: Peer,
    cluster_id: String,
    stale_after: Duration,
    tls: Arc<rustls::ClientConfig>,
    tx: mpsc::Sender<SourceUpdate>,
    /// Resource name → (version, content) of what the peer exports now.
    held: BTreeMap<String, (String, ExportedService)>,
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

    async fn run(mut self) -> Result<(), SourceError> {
        let url = format!("https://{}", self.peer.addr);
        let mut last_contact = Instant::now();
        // Short enough to notice staleness on time.
        let cap = (self.stale_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        let mut backoff = Backoff::new(Duration::from_millis(200), cap);
        loop {
            let channel = shoal_router::peer_channel(&url, Some(&self.tls));
            match self.stream(channel, &mut last_contact).await {
                Err(StreamError::Closed) => return Err(SourceError::Closed),
                Err(StreamError::Grpc(status)) => {
                    tracing::warn!(peer = %self.peer.name, addr = %self.peer.addr, code = ?status.code(), message = status.message(), "federation stream ended");
                }
                Ok(()) => {}
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
            }
            if last_contact.elapsed() < Duration::from_secs(1) {
                // The stream was up until now: start over from the shortest wait.
                backoff.reset();
            }
            tokio::time::sleep(backoff.next(jitter())).await;
        }
    }

    fn request(&self, initial: bool) -> DeltaDiscoveryRequest {
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
        last_contact: &mut Instant,
    ) -> Result<(), StreamError> {
        let mut client =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let (req_tx, req_rx) = mpsc::channel(4);
        let _ = req_tx.send(self.request(true)).await;
        let mut responses = client
            .delta_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(req_rx))
            .await?
            .into_inner();
        tracing::info!(peer = %self.peer.name, addr = %self.peer.addr, "federation stream open");
        loop {
            // The peer counts as reachable for as long as its stream is up (HTTP/2
            // keepalive notices a link that went silent).
            let next = responses.message().await;
            *last_contact = Instant::now();
            let Some(resp) = next? else {
                return Ok(());
            };
            let ack = self.apply(&resp).await?;
            let _ = req_tx.send(ack).await;
        }
    }

    /// Takes a response into the store; returns its ACK (or NACK).
    async fn apply(
        &mut self,
        resp: &DeltaDiscoveryResponse,
    ) -> Result<DeltaDiscoveryRequest, StreamError> {
        let mut ack = self.request(false);
        ack.response_nonce = resp.nonce.clone();
        let mut refused = Vec::new();
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
            let docs = shoal_config::parse::parse_yaml(
                &self.source(&r.name),
                &objects(&self.peer.name, &export),
            );
            let source = self.source(&r.name);
            self.tx
                .send(SourceUpdate::Apply { source, docs })
                .await
                .map_err(|_| StreamError::Closed)?;
            self.held
                .insert(r.name.clone(), (r.version.clone(), export));
        }
        for name in &resp.removed_resources {
            if self.held.remove(name).is_some() {
                let source = self.source(name);
                self.tx
                    .send(SourceUpdate::Remove { source })
                    .await
                    .map_err(|_| StreamError::Closed)?;
            }
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
}

/// A name part made of an address: `10.1.0.1` → `10-1-0-1`.
fn dashed(address: &str) -> String {
    address
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

/// The Pod standing for a remote endpoint: its labels, identity and place.
fn pod(peer: &str, export: &ExportedService, e: &ExportedEndpoint) -> Value {
    let mut labels: serde_json::Map<String, Value> = e
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.insert(topology::CLUSTER.into(), json!(export.cluster_id));
    if !e.network.is_empty() {
        labels.insert(topology::NETWORK.into(), json!(e.network));
    }
    if !e.locality.is_empty() {
        let locality = e.locality.trim_end_matches('/').replace('/', ".");
        labels.insert(topology::ISTIO_LOCALITY.into(), json!(locality));
    }
    if e.istio_tls {
        labels.insert(
            shoal_translate::inject::TLS_MODE_LABEL.into(),
            json!("istio"),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{peer}-{}", dashed(&e.address)),
            "namespace": export.namespace,
            "labels": labels,
        },
        "spec": { "serviceAccountName": e.service_account },
        "status": { "phase": "Running", "podIP": e.address },
    })
}

/// The objects a peer's export of one service stands for: an EndpointSlice per set of
/// endpoints serving the same ports, and a Pod per endpoint.
fn objects(peer: &str, export: &ExportedService) -> String {
    let mut by_ports: BTreeMap<Vec<(String, u32)>, Vec<&ExportedEndpoint>> = BTreeMap::new();
    for e in &export.endpoints {
        let ports: Vec<(String, u32)> = e.ports.iter().map(|(n, p)| (n.clone(), *p)).collect();
        by_ports.entry(ports).or_default().push(e);
    }
    let mut docs = Vec::new();
    for (i, (ports, endpoints)) in by_ports.into_iter().enumerate() {
        let ipv6 = endpoints.iter().any(|e| e.address.contains(':'));
        docs.push(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-{peer}-{i}", export.name),
                "namespace": export.namespace,
                "labels": {
                    "kubernetes.io/service-name": export.name,
                    "shoal.io/federated-from": peer,
                },
            },
            "addressType": if ipv6 { "IPv6" } else { "IPv4" },
            "ports": ports.iter().map(|(n, p)| json!({"name": n, "port": p})).collect::<Vec<_>>(),
            "endpoints": endpoints.iter().map(|e| json!({
                "addresses": [e.address],
                "conditions": { "ready": e.healthy },
                "targetRef": { "kind": "Pod", "namespace": export.namespace, "name": format!("{peer}-{}", dashed(&e.address)) },
            })).collect::<Vec<_>>(),
        }));
        for e in endpoints {
            docs.push(pod(peer, export, e));
        }
    }
    docs.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[cfg(test)]
mod tests;
