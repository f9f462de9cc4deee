//! Incremental (delta) xDS: the client names what it subscribes to and unsubscribes from,
//! says on reconnect which versions it holds, and gets only what changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use shoal_api::codec::Encoded;
use shoal_api::pb::envoy::config::core::v3::ControlPlane as CoreControlPlane;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DiscoveryResource,
};
use shoal_api::{ResourceType, Version, wire};

use super::{Limits, Outgoing, Reply, Session, SessionError, legacy_wildcard};
use crate::debug::{ControlPlane, DebugRequest, DebugResources};
use crate::diff::{self, Known};
use crate::snapshot::{Snapshot, TYPES};
use crate::status::StreamStatus;
use crate::subscription::{Interner, Subscription};
use crate::view::{Attachment, CachedResponse, Origin, ResponseKey, View};

#[derive(Debug)]
struct Pending {
    nonce: String,
    /// The response (shared with other streams), for what it carried.
    response: Arc<CachedResponse>,
    before: Known,
    version: u64,
    since: Instant,
}

#[derive(Debug)]
struct DeltaState {
    sub: Subscription,
    known: Known,
    responded: bool,
    pending: Option<Pending>,
    /// After a NACK: do not resend until the view moves past this version.
    hold: Option<u64>,
    dirty: bool,
}

/// Identifies a set of names re-sent on purpose (0: none), for sharing responses.
fn force_hash(force: &BTreeSet<Arc<str>>) -> u64 {
    if force.is_empty() {
        return 0;
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for n in force {
        h.update(n.as_bytes());
        h.update(&[0]);
    }
    h.digest() | 1
}

fn apply_names(
    interner: &Interner,
    sub: &Subscription,
    add: &[String],
    remove: &[String],
    first: bool,
    ty: ResourceType,
    limits: Limits,
) -> Result<Subscription, SessionError> {
    let mut wildcard = sub.wildcard;
    let mut names: BTreeSet<Arc<str>> = sub.names.names().clone();
    // A first request naming nothing subscribes to everything (legacy wildcard), except for
    // the types that are always asked for by name.
    if first && add.is_empty() && legacy_wildcard(ty) {
        wildcard = true;
    }
    for n in add {
        if n == "*" {
            wildcard = true;
        } else {
            names.insert(Arc::from(n.as_str()));
        }
    }
    for n in remove {
        if n == "*" {
            wildcard = false;
        } else {
            names.remove(n.as_str());
        }
    }
    if names.len() > limits.max_names {
        return Err(SessionError::TooManyNames {
            ty,
            count: names.len(),
            limit: limits.max_names,
        });
    }
    if wildcard == sub.wildcard && &names == sub.names.names() {
        return Ok(sub.clone());
    }
    Ok(Subscription::new(wildcard, interner.intern(names)))
}

/// Incremental xDS on one stream.
#[derive(Debug)]
pub struct DeltaSession {
    attachment: Attachment,
    types: [Option<DeltaState>; TYPES],
    nonce: u64,
    interner: Arc<Interner>,
    limits: Limits,
    status: Arc<StreamStatus>,
}

impl Session for DeltaSession {
    type Req = DeltaDiscoveryRequest;
    const PROTOCOL: &'static str = "delta";

    fn node(req: &Self::Req) -> Option<&Node> {
        req.node.as_ref()
    }

    fn type_url(req: &Self::Req) -> &str {
        &req.type_url
    }

    fn debug_request(req: &Self::Req) -> DebugRequest<'_> {
        DebugRequest {
            type_url: &req.type_url,
            names: &req.resource_names_subscribe,
            nonce: &req.response_nonce,
        }
    }

    fn debug_response(
        type_url: &str,
        resources: DebugResources,
        nonce: String,
        control_plane: &ControlPlane,
    ) -> Vec<u8> {
        DeltaDiscoveryResponse {
            type_url: type_url.to_string(),
            resources: resources
                .into_iter()
                .map(|(name, any)| DiscoveryResource {
                    name,
                    resource: Some(any),
                    ..Default::default()
                })
                .collect(),
            nonce,
            control_plane: Some(CoreControlPlane {
                identifier: control_plane.identifier(),
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn new(
        view: &Arc<View>,
        interner: Arc<Interner>,
        limits: Limits,
        status: Arc<StreamStatus>,
    ) -> Self {
        status.set_view(view);
        DeltaSession {
            attachment: view.attach(),
            types: Default::default(),
            nonce: 0,
            interner,
            limits,
            status,
        }
    }

    fn view(&self) -> &Arc<View> {
        self.attachment.view()
    }

    /// What the client holds is kept as explicit versions, so only real differences are sent.
    fn switch_view(&mut self, view: &Arc<View>) {
        for (ty, state) in ResourceType::ALL.into_iter().zip(self.types.iter_mut()) {
            if let Some(s) = state {
                s.known = Known::Explicit(Arc::new(s.known.materialize(ty)));
                s.dirty = true;
                s.hold = None;
            }
        }
        self.status.set_view(view);
        self.attachment = view.attach();
    }

    /// Takes one request: subscription changes, and the ACK or NACK of an earlier response.
    fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Result<Option<Reply>, SessionError> {
        let ty = ResourceType::from_type_url(&req.type_url)
            .ok_or_else(|| SessionError::UnknownType(req.type_url.clone()))?;
        let first = self.types[ty.index()].is_none();
        let state = self.types[ty.index()].get_or_insert_with(|| {
            // Resuming: what the client says it holds (an empty version means "send it").
            let known: HashMap<Arc<str>, Option<Version>> = req
                .initial_resource_versions
                .iter()
                .map(|(n, v)| (Arc::from(n.as_str()), Version::parse(v)))
                .collect();
            DeltaState {
                sub: Subscription::new(false, self.interner.intern(BTreeSet::new())),
                known: Known::Explicit(Arc::new(known)),
                responded: false,
                pending: None,
                hold: None,
                dirty: true,
            }
        });
        let sub = apply_names(
            &self.interner,
            &state.sub,
            &req.resource_names_subscribe,
            &req.resource_names_unsubscribe,
            first,
            ty,
            self.limits,
        )?;
        if sub != state.sub {
            state.sub = sub;
            state.dirty = true;
        }
        self.status.update(ty, |t| t.subscribed = true);
        let mut reply = None;
        if let Some(p) = state
            .pending
            .as_ref()
            .filter(|p| !req.response_nonce.is_empty() && p.nonce == req.response_nonce)
        {
            match &req.error_detail {
                Some(err) => {
                    // The client kept what it had, but may have applied part of the response:
                    // what the response touched is held at an unknown version (so it is sent
                    // again, or removed again). Wait for a new version before trying.
                    let mut held = p.before.materialize(ty);
                    for n in p.response.names.iter().chain(&p.response.removed_names) {
                        held.insert(n.clone(), None);
                    }
                    state.known = Known::Explicit(Arc::new(held));
                    state.hold = Some(p.version);
                    self.status.nacked(ty, err.message.clone());
                    reply = Some(Reply::Nack {
                        ty,
                        error: err.message.clone(),
                    });
                }
                None => {
                    self.status.acked(ty, p.version);
                    reply = Some(Reply::Ack { ty, since: p.since });
                }
            }
            state.pending = None;
        }
        Ok(reply)
    }

    fn poll(&mut self) -> Vec<Outgoing> {
        let target = self.view().current();
        let mut out = Vec::new();
        let mut resent_clusters: BTreeSet<Arc<str>> = BTreeSet::new();
        for ty in ResourceType::ALL {
            let force = if ty == ResourceType::Endpoint {
                std::mem::take(&mut resent_clusters)
            } else {
                BTreeSet::new()
            };
            if let Some(o) = self.poll_type(ty, &target, &force) {
                if ty == ResourceType::Cluster {
                    resent_clusters = o.1;
                }
                out.push(o.0);
            }
        }
        out
    }
}

impl DeltaSession {
    fn poll_type(
        &mut self,
        ty: ResourceType,
        target: &Arc<Snapshot>,
        force: &BTreeSet<Arc<str>>,
    ) -> Option<(Outgoing, BTreeSet<Arc<str>>)> {
        let view = self.attachment.view().clone();
        let state = self.types[ty.index()].as_mut()?;
        let at_target = state.known.snapshot_version() == Some(target.version);
        if !state.dirty && state.responded && at_target && force.is_empty() {
            return None;
        }
        if let Some(h) = state.hold {
            if target.version <= h && !state.dirty {
                return None;
            }
            state.hold = None;
        }
        // Streams in the same state share one response: moving from a version of the view,
        // or from nothing (a fresh client), for the same subscription.
        let from = match &state.known {
            Known::At { snapshot, sub } if sub == &state.sub => Some(Some(snapshot.version)),
            Known::Explicit(m) if m.is_empty() => Some(None),
            _ => None,
        };
        let forced = force_hash(force);
        let cache_key = from.map(|from| ResponseKey::Delta {
            ty,
            from,
            to: target.version,
            sub: state.sub.clone(),
            forced,
        });
        let build = || {
            let d = diff::delta(&view, ty, &state.known, target, &state.sub, force);
            CachedResponse {
                body: wire::delta_response(
                    ty.type_url(),
                    "",
                    d.upserts.iter(),
                    d.removed.iter().map(|n| n.as_ref()),
                ),
                names: d.upserts.iter().map(|r| r.name.clone()).collect(),
                removed: d.removed.len(),
                removed_names: d.removed,
                version_info: String::new(),
            }
        };
        let (response, origin) = match cache_key {
            Some(key) => view.response(key, build),
            None => (Arc::new(build()), Origin::Encoded),
        };
        if response.names.is_empty() && response.removed == 0 && state.responded {
            state.known = Known::At {
                snapshot: target.clone(),
                sub: state.sub.clone(),
            };
            state.dirty = false;
            return None;
        }
        origin.count(ty, "delta");
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let before = std::mem::replace(
            &mut state.known,
            Known::At {
                snapshot: target.clone(),
                sub: state.sub.clone(),
            },
        );
        state.pending = Some(Pending {
            nonce: nonce.clone(),
            response: response.clone(),
            before,
            version: target.version,
            since: target.trigger.since,
        });
        state.responded = true;
        state.dirty = false;
        let held = if state.sub.wildcard {
            target.get(ty).wildcard.len()
        } else {
            state.sub.names.len()
        };
        self.status.sent(ty, target.version, None, held);
        // Clusters the client already had and just received again: their endpoints follow.
        let updated: BTreeSet<Arc<str>> = if ty == ResourceType::Cluster {
            let had = |n: &Arc<str>| match state.pending.as_ref().map(|p| &p.before) {
                Some(Known::At { snapshot, .. }) => snapshot.get(ty).get(n).is_some(),
                Some(Known::Explicit(m)) => m.contains_key(n),
                None => false,
            };
            response.names.iter().filter(|n| had(n)).cloned().collect()
        } else {
            BTreeSet::new()
        };
        Some((
            Outgoing {
                ty,
                message: Encoded {
                    body: response.body.clone(),
                    nonce: Some(nonce),
                },
                resources: response.names.len(),
                removed: response.removed,
                since: target.trigger.since,
                trigger: target.trigger.reason,
            },
            updated,
        ))
    }
}
