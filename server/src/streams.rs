//! What an xDS stream is given: admission first (identity: who the caller is, whether it
//! may claim the node it describes, which secrets it may read), then the view of that
//! node (the pipeline). The ADS service asks again whenever the epoch moves.
//!
//! A debug client (`istioctl`: node type `debug`, or metadata `GENERATOR: event`) is not a
//! proxy: admission decides whether it may ask, and it gets no view. A federation relay
//! reader (another replica of this group, `shoal_api::relay`) gets this replica's imports
//! from the peer group it names.

use std::sync::Arc;

use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_cache::{Admitted, Resolved, StreamContext, ViewSource};
use shoal_translate::Proxy;
use tokio::sync::watch;
use tonic::Status;

use crate::epoch::Epoch;
use crate::federation::Relays;
use crate::identity::Identity;
use crate::pipeline::Pipeline;

pub struct Streams {
    pipeline: Arc<Pipeline>,
    /// `None` without a CA: every stream is anonymous.
    identity: Option<Arc<Identity>>,
    epoch: Arc<Epoch>,
    /// What this replica imported from each peer group, for its group's other replicas.
    relays: Relays,
}

impl Streams {
    pub fn new(
        pipeline: Arc<Pipeline>,
        identity: Option<Arc<Identity>>,
        epoch: Arc<Epoch>,
        relays: Relays,
    ) -> Arc<Streams> {
        Arc::new(Streams {
            pipeline,
            identity,
            epoch,
            relays,
        })
    }
}

impl ViewSource for Streams {
    fn resolve(&self, node: Option<&Node>, caller: &StreamContext) -> Result<Admitted, Status> {
        if node.is_some_and(shoal_api::debug::is_debug_client) {
            return match &self.identity {
                Some(identity) => identity.admit_debug(caller).map(|()| Admitted::Debug),
                None => Err(Status::unauthenticated(
                    "debug requests (istioctl) need an authenticated caller, and this server \
                     runs without a CA (--no-ca)",
                )),
            };
        }
        if let Some(peer) = node.and_then(shoal_api::relay::relay_of) {
            let Some(identity) = &self.identity else {
                return Err(Status::unauthenticated(
                    "federation needs an authenticated peer, and this server runs without a \
                     CA (--no-ca)",
                ));
            };
            identity.admit_relay(caller)?;
            let view = self.relays.view(peer).ok_or_else(|| {
                Status::not_found(format!("this replica does not import from {peer:?}"))
            })?;
            return Ok(Admitted::Proxy(Resolved {
                view,
                secrets: None,
            }));
        }
        let proxy = Proxy::from_node(node).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if proxy.proxy_type == shoal_translate::ProxyType::Federation {
            return match &self.identity {
                Some(identity) => identity.admit_federation(caller).map(|()| {
                    let view = self.pipeline.view_for(&proxy, false);
                    Admitted::Proxy(Resolved {
                        view,
                        secrets: None,
                    })
                }),
                None => Err(Status::unauthenticated(
                    "federation needs an authenticated peer, and this server runs without a \
                     CA (--no-ca)",
                )),
            };
        }
        let secrets = match &self.identity {
            Some(identity) => identity.admit(&proxy, caller)?,
            None => None,
        };
        let view = self.pipeline.view_for(&proxy, secrets.is_some());
        Ok(Admitted::Proxy(Resolved { view, secrets }))
    }

    fn epoch(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }
}
