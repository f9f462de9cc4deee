//! Federation: importing what peer shoal groups export (`--federate NAME=HOST:PORT`).
//!
//! Each peer group is followed over delta ADS on its TLS xDS port, authenticated both ways
//! with this replica's serving certificate (peers trust each other through a shared root:
//! Istio's plug-in CA with a common root and per-cluster intermediates). The stream asks
//! for `shoal.federation.v1.ExportedService` by wildcard, as node
//! `federation~…~CLUSTER.istio-system~…`, and resumes with `initial_resource_versions`.
//!
//! One stream per peer group and importing group: the link to a peer is placed like a
//! proxy stream, on the replica serving its key's shard ([`link`]). That replica follows
//! the peer; the group's other replicas read what it imported from it over a relay stream
//! (`shoal_api::relay`: same resources, same versions), and whoever takes the shard over
//! resumes with the peer from what it already holds, so a failover re-sends nothing.
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

mod follower;
mod link;
mod objects;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use shoal_cache::{Snapshot, View};
use shoal_config::source::{ConfigSource, SourceError, SourceUpdate};
use shoal_shard::Ownership;
use tokio::sync::{mpsc, oneshot, watch};

use follower::Follower;
use link::Placement;
#[cfg(test)]
use objects::objects;

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

/// What a replica needs before it follows anyone, known once its CA and group are up.
pub struct Links {
    /// This replica's client TLS (its serving certificate).
    pub tls: Arc<rustls::ClientConfig>,
    /// Its group's ownership view (`None`: a replica on its own).
    pub ownership: Option<watch::Receiver<Arc<Ownership>>>,
}

/// How one peer's link fares on this replica (`/debug/configz`, `sources.federation`).
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    /// `peer`: this replica owns the link and follows the peer; `relay`: it reads the
    /// owner's imports; `waiting`: nobody owns the link right now.
    pub upstream: &'static str,
    /// The address read from (the peer's, or the owner's TLS xDS address).
    pub address: String,
    pub connected: bool,
    /// Services held from the peer.
    pub services: usize,
}

/// Every peer's link, by peer name.
pub type FederationStatus = BTreeMap<String, PeerStatus>;

/// Per peer, what this replica serves to the group's replicas reading the link from it.
#[derive(Clone, Default)]
pub struct Relays(Arc<BTreeMap<String, Arc<View>>>);

impl Relays {
    pub fn view(&self, peer: &str) -> Option<Arc<View>> {
        self.0.get(peer).cloned()
    }
}

/// The source of every peer's exports.
pub struct FederationSource {
    cfg: FederationConfig,
    cluster_id: String,
    links: oneshot::Receiver<Links>,
    relays: Relays,
    status: watch::Sender<FederationStatus>,
}

impl FederationSource {
    pub fn new(
        cfg: FederationConfig,
        cluster_id: String,
        links: oneshot::Receiver<Links>,
    ) -> FederationSource {
        let relays = cfg
            .peers
            .iter()
            .map(|p| {
                let view = View::new(format!("federation-relay/{}", p.name), Snapshot::default());
                (p.name.clone(), view)
            })
            .collect();
        FederationSource {
            cfg,
            cluster_id,
            links,
            relays: Relays(Arc::new(relays)),
            status: watch::Sender::new(FederationStatus::new()),
        }
    }

    pub fn relays(&self) -> Relays {
        self.relays.clone()
    }

    pub fn status(&self) -> watch::Receiver<FederationStatus> {
        self.status.subscribe()
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
            let Ok(links) = self.links.await else {
                tracing::warn!("federation: no client certificate (the CA did not start)");
                return Ok(());
            };
            let mut peers = tokio::task::JoinSet::new();
            for peer in self.cfg.peers.clone() {
                let Some(relay) = self.relays.view(&peer.name) else {
                    continue;
                };
                let follower = Follower {
                    peer,
                    cluster_id: self.cluster_id.clone(),
                    stale_after: self.cfg.stale_after,
                    tls: links.tls.clone(),
                    tx: tx.clone(),
                    relay,
                    status: self.status.clone(),
                    held: BTreeMap::new(),
                };
                let placement = Placement {
                    view: links.ownership.clone(),
                };
                peers.spawn(follower.run(placement));
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

#[cfg(test)]
mod tests;
