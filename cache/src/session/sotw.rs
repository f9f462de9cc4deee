//! State-of-the-world xDS: every request names the whole subscription and every response
//! carries every resource of it; `version_info` says what the client holds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use shoal_api::codec::Encoded;
use shoal_api::pb::envoy::config::core::v3::ControlPlane as CoreControlPlane;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use shoal_api::{ResourceType, wire};

use super::{Limits, Outgoing, Reply, Session, SessionError, legacy_wildcard};
use crate::debug::{ControlPlane, DebugRequest, DebugResources};
use crate::diff;
use crate::snapshot::TYPES;
use crate::status::StreamStatus;
use crate::subscription::{Interner, Subscription};
use crate::view::{Attachment, CachedResponse, ResponseKey, View};

#[derive(Debug)]
struct SotwState {
    sub: Subscription,
    /// (nonce, version_info, view version, since) of the last response.
    sent: Option<(String, String, u64, Instant)>,
    /// The version the client said it holds on its first request (a reconnect).
    client_version: String,
    hold: Option<u64>,
    dirty: bool,
    force: bool,
}

/// State-of-the-world xDS on one stream.
#[derive(Debug)]
pub struct SotwSession {
    attachment: Attachment,
    types: [Option<SotwState>; TYPES],
    nonce: u64,
    interner: Arc<Interner>,
    limits: Limits,
    status: Arc<StreamStatus>,
}

impl Session for SotwSession {
    type Req = DiscoveryRequest;
    const PROTOCOL: &'static str = "sotw";

    fn node(req: &Self::Req) -> Option<&Node> {
        req.node.as_ref()
    }

    fn type_url(req: &Self::Req) -> &str {
        &req.type_url
    }

    fn debug_request(req: &Self::Req) -> DebugRequest<'_> {
        DebugRequest {
            type_url: &req.type_url,
            names: &req.resource_names,
            nonce: &req.response_nonce,
        }
    }

    fn debug_response(
        type_url: &str,
        resources: DebugResources,
        nonce: String,
        control_plane: &ControlPlane,
    ) -> Vec<u8> {
        DiscoveryResponse {
            type_url: type_url.to_string(),
            resources: resources.into_iter().map(|(_, any)| any).collect(),
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
        SotwSession {
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

    fn switch_view(&mut self, view: &Arc<View>) {
        for s in self.types.iter_mut().flatten() {
            s.dirty = true;
            s.hold = None;
        }
        self.status.set_view(view);
        self.attachment = view.attach();
    }

    fn on_request(&mut self, req: DiscoveryRequest) -> Result<Option<Reply>, SessionError> {
        let ty = ResourceType::from_type_url(&req.type_url)
            .ok_or_else(|| SessionError::UnknownType(req.type_url.clone()))?;
        let first = self.types[ty.index()].is_none();
        let state = self.types[ty.index()].get_or_insert_with(|| SotwState {
            sub: Subscription::new(false, self.interner.intern(BTreeSet::new())),
            sent: None,
            client_version: req.version_info.clone(),
            hold: None,
            dirty: true,
            force: false,
        });
        // A reply to anything but the latest response is stale: ignore it whole.
        let latest = state.sent.as_ref().map(|s| s.0.as_str());
        if !first && !req.response_nonce.is_empty() && latest != Some(req.response_nonce.as_str()) {
            return Ok(None);
        }
        // SotW names the whole subscription each time.
        let mut names: Vec<String> = req.resource_names.clone();
        let wildcard = names.iter().any(|n| n == "*")
            || (names.is_empty() && legacy_wildcard(ty) && (first || state.sub.wildcard));
        names.retain(|n| n != "*");
        if names.len() > self.limits.max_names {
            return Err(SessionError::TooManyNames {
                ty,
                count: names.len(),
                limit: self.limits.max_names,
            });
        }
        let set: BTreeSet<Arc<str>> = names.iter().map(|n| Arc::from(n.as_str())).collect();
        let sub = if wildcard == state.sub.wildcard && &set == state.sub.names.names() {
            state.sub.clone()
        } else {
            Subscription::new(wildcard, self.interner.intern(set))
        };
        if sub != state.sub {
            state.sub = sub;
            state.dirty = true;
        }
        self.status.update(ty, |t| t.subscribed = true);
        let mut reply = None;
        if let Some((nonce, _, version, since)) = state.sent.clone()
            && req.response_nonce == nonce
        {
            match &req.error_detail {
                Some(err) => {
                    state.hold = Some(version);
                    self.status.nacked(ty, err.message.clone());
                    reply = Some(Reply::Nack {
                        ty,
                        error: err.message.clone(),
                    });
                }
                None => {
                    self.status.acked(ty, version);
                    reply = Some(Reply::Ack { ty, since });
                }
            }
        }
        Ok(reply)
    }

    fn poll(&mut self) -> Vec<Outgoing> {
        let target = self.view().current();
        let view = self.view().clone();
        let mut out = Vec::new();
        for ty in ResourceType::ALL {
            let Some(state) = self.types[ty.index()].as_mut() else {
                continue;
            };
            if let Some(h) = state.hold {
                if target.version <= h && !state.dirty {
                    continue;
                }
                state.hold = None;
            }
            let sent_at = state.sent.as_ref().map(|s| s.2);
            if !state.dirty && !state.force && sent_at == Some(target.version) {
                continue;
            }
            let key = ResponseKey::Sotw {
                ty,
                at: target.version,
                sub: state.sub.clone(),
            };
            let (response, origin) = view.response(key, || {
                let (resources, version_info) = diff::sotw(&target, ty, &state.sub);
                CachedResponse {
                    body: wire::sotw_response(ty.type_url(), &version_info, resources.iter()),
                    names: resources.iter().map(|r| r.name.clone()).collect(),
                    removed: 0,
                    removed_names: Vec::new(),
                    version_info,
                }
            });
            origin.count(ty, "sotw");
            let last_version = state
                .sent
                .as_ref()
                .map_or(state.client_version.as_str(), |s| s.1.as_str());
            if last_version == response.version_info && !state.force {
                match state.sent.as_mut() {
                    // A reconnecting client that already holds this version needs nothing.
                    None => {
                        state.dirty = false;
                        state.sent = Some((
                            String::new(),
                            response.version_info.clone(),
                            target.version,
                            target.trigger.since,
                        ));
                        self.status.sent(
                            ty,
                            target.version,
                            Some(response.version_info.clone()),
                            response.names.len(),
                        );
                        self.status.acked(ty, target.version);
                        continue;
                    }
                    // Same content at a newer view version: nothing to send.
                    Some(sent) if !state.dirty => {
                        sent.2 = target.version;
                        continue;
                    }
                    // The subscription changed: the client waits for an answer.
                    Some(_) => {}
                }
            }
            self.nonce += 1;
            let nonce = self.nonce.to_string();
            state.sent = Some((
                nonce.clone(),
                response.version_info.clone(),
                target.version,
                target.trigger.since,
            ));
            state.dirty = false;
            state.force = false;
            self.status.sent(
                ty,
                target.version,
                Some(response.version_info.clone()),
                response.names.len(),
            );
            out.push(Outgoing {
                ty,
                message: Encoded {
                    body: response.body.clone(),
                    nonce: Some(nonce),
                },
                resources: response.names.len(),
                removed: 0,
                since: target.trigger.since,
                trigger: target.trigger.reason,
            });
            // Updated clusters wait for their endpoints: send them again after clusters.
            if ty == ResourceType::Cluster
                && let Some(eds) = self.types[ResourceType::Endpoint.index()].as_mut()
            {
                eds.force = true;
            }
        }
        out
    }
}
