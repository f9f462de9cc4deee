//! Per-stream sync status: what was sent, what was acknowledged, what was rejected. Read by
//! `/debug/syncz` and `shoal status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::google::protobuf::value::Kind;

use crate::view::View;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Where a type stands on a stream, as `istioctl proxy-status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// The last response sent was acknowledged.
    Synced,
    /// Nothing sent yet.
    NotSent,
    /// Sent, not (yet) acknowledged.
    Stale,
    /// The client rejected the last response.
    Error,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "SYNCED",
            SyncState::NotSent => "NOT SENT",
            SyncState::Stale => "STALE",
            SyncState::Error => "ERROR",
        }
    }
}

/// Status of one type on one stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStatus {
    pub subscribed: bool,
    /// View version last sent (delta and SotW) and its SotW `version_info`.
    pub sent_version: Option<u64>,
    pub sent_version_info: Option<String>,
    pub sent_at_ms: Option<u64>,
    pub acked_version: Option<u64>,
    pub acked_at_ms: Option<u64>,
    /// Resources the client holds (as far as the server knows).
    pub resources: usize,
    pub nacks: u64,
    pub last_nack: Option<String>,
    pub last_nack_at_ms: Option<u64>,
}

/// What a stream's node says about itself that status reports repeat: Istio's
/// `CLUSTER_ID` and `ISTIO_VERSION` metadata (`istioctl proxy-status` prints the first, and
/// Istio's `pilot_xds` gauge is labelled by the second). Values longer than
/// [`ClientMeta::MAX_LEN`] are dropped rather than kept per stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMeta {
    pub cluster_id: Option<Box<str>>,
    pub istio_version: Option<Box<str>>,
}

impl ClientMeta {
    pub const MAX_LEN: usize = 128;

    pub fn of(node: Option<&Node>) -> ClientMeta {
        let field = |key: &str| -> Option<Box<str>> {
            let fields = &node?.metadata.as_ref()?.fields;
            match &fields.get(key)?.kind {
                Some(Kind::StringValue(v)) if !v.is_empty() && v.len() <= Self::MAX_LEN => {
                    Some(v.as_str().into())
                }
                _ => None,
            }
        };
        ClientMeta {
            cluster_id: field("CLUSTER_ID"),
            istio_version: field("ISTIO_VERSION"),
        }
    }
}

impl TypeStatus {
    pub fn state(&self) -> SyncState {
        if self.last_nack.is_some() {
            SyncState::Error
        } else if self.sent_version.is_none() {
            SyncState::NotSent
        } else if self.acked_version == self.sent_version {
            SyncState::Synced
        } else {
            SyncState::Stale
        }
    }
}

/// One connected stream.
#[derive(Debug)]
pub struct StreamStatus {
    pub stream: u64,
    pub node_id: String,
    pub protocol: &'static str,
    pub connected_at_ms: u64,
    pub meta: ClientMeta,
    view: Mutex<Option<Arc<View>>>,
    /// Only the types the stream subscribed to.
    types: Mutex<Vec<(ResourceType, TypeStatus)>>,
}

/// What `/debug/syncz` reports per stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub stream: u64,
    pub node_id: String,
    pub protocol: &'static str,
    pub connected_at_ms: u64,
    pub view: Option<String>,
    pub view_version: Option<u64>,
    pub types: Vec<TypeReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeReport {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub type_url: &'static str,
    /// `SYNCED`, `STALE` (sent, not yet acknowledged), `NOT SENT` or `ERROR` (last response
    /// rejected), as `istioctl proxy-status` says.
    pub state: &'static str,
    #[serde(flatten)]
    pub status: TypeStatus,
}

impl StreamStatus {
    /// The view the stream is served from (once its session started).
    pub fn view(&self) -> Option<Arc<View>> {
        self.view.lock().clone()
    }

    /// Status of every type the stream subscribed to, in push order.
    pub fn types(&self) -> Vec<(ResourceType, TypeStatus)> {
        let types = self.types.lock();
        types
            .iter()
            .filter(|(_, t)| t.subscribed)
            .cloned()
            .collect()
    }

    pub fn set_view(&self, view: &Arc<View>) {
        *self.view.lock() = Some(view.clone());
    }

    pub fn update(&self, ty: ResourceType, f: impl FnOnce(&mut TypeStatus)) {
        let mut types = self.types.lock();
        match types.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, status)) => f(status),
            None => {
                let mut status = TypeStatus::default();
                f(&mut status);
                types.push((ty, status));
                types.sort_by_key(|(t, _)| *t);
            }
        }
    }

    pub fn sent(
        &self,
        ty: ResourceType,
        version: u64,
        version_info: Option<String>,
        resources: usize,
    ) {
        self.update(ty, |t| {
            t.subscribed = true;
            t.sent_version = Some(version);
            t.sent_version_info = version_info;
            t.sent_at_ms = Some(now_ms());
            t.resources = resources;
        });
    }

    pub fn acked(&self, ty: ResourceType, version: u64) {
        self.update(ty, |t| {
            t.acked_version = Some(version);
            t.acked_at_ms = Some(now_ms());
            t.last_nack = None;
        });
    }

    pub fn nacked(&self, ty: ResourceType, error: String) {
        self.update(ty, |t| {
            t.nacks += 1;
            t.last_nack = Some(error);
            t.last_nack_at_ms = Some(now_ms());
        });
    }

    pub fn report(&self) -> StreamReport {
        let view = self.view.lock().clone();
        let view_version = view.as_ref().map(|v| v.current().version);
        let types = self
            .types()
            .into_iter()
            .map(|(ty, t)| TypeReport {
                ty: ty.short_name(),
                type_url: ty.type_url(),
                state: t.state().as_str(),
                status: t,
            })
            .collect();
        StreamReport {
            stream: self.stream,
            node_id: self.node_id.clone(),
            protocol: self.protocol,
            connected_at_ms: self.connected_at_ms,
            view: view.map(|v| v.id.to_string()),
            view_version,
            types,
        }
    }
}

/// Every connected stream.
#[derive(Debug, Default)]
pub struct StatusRegistry {
    next: AtomicU64,
    streams: DashMap<u64, Arc<StreamStatus>>,
}

impl StatusRegistry {
    pub fn register(
        &self,
        node_id: &str,
        meta: ClientMeta,
        protocol: &'static str,
    ) -> Arc<StreamStatus> {
        let stream = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let status = Arc::new(StreamStatus {
            stream,
            node_id: node_id.to_string(),
            meta,
            protocol,
            connected_at_ms: now_ms(),
            view: Mutex::new(None),
            types: Mutex::new(Vec::new()),
        });
        self.streams.insert(stream, status.clone());
        status
    }

    pub fn unregister(&self, stream: u64) {
        self.streams.remove(&stream);
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Reports of every stream, by node id.
    pub fn reports(&self) -> Vec<StreamReport> {
        let mut out: Vec<StreamReport> = self.streams.iter().map(|s| s.report()).collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id).then(a.stream.cmp(&b.stream)));
        out
    }

    /// Every stream, by node id then stream.
    pub fn streams(&self) -> Vec<Arc<StreamStatus>> {
        let mut out: Vec<Arc<StreamStatus>> = self.streams.iter().map(|s| s.clone()).collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id).then(a.stream.cmp(&b.stream)));
        out
    }

    /// The oldest stream of a proxy named as Istio's debug requests name it: its whole node
    /// id, or Istio's proxy id (`POD.NAMESPACE`, the node id's third field).
    pub fn find_proxy(&self, name: &str) -> Option<Arc<StreamStatus>> {
        self.streams
            .iter()
            .filter(|s| s.node_id == name || s.node_id.split('~').nth(2) == Some(name))
            .min_by_key(|s| s.stream)
            .map(|s| s.clone())
    }

    pub fn find(&self, node_id: &str) -> Vec<Arc<StreamStatus>> {
        self.streams
            .iter()
            .filter(|s| s.node_id == node_id)
            .map(|s| s.clone())
            .collect()
    }
}
