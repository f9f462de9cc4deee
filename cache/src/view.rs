//! Views: the proxies that see the same config share one view, one current snapshot and
//! the responses computed from it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use shoal_api::ResourceType;
use tokio::sync::watch;

use crate::snapshot::Snapshot;
use crate::subscription::Subscription;

/// How many recent snapshots a view keeps to answer "what changed since version N".
const HISTORY: usize = 32;
/// Cached response bodies per view before the cache is reset.
const MAX_CACHED: usize = 512;

/// Names changed per type by one version.
type Changes = [Arc<BTreeSet<Arc<str>>>; crate::snapshot::TYPES];

/// Identifies a response body that every stream in the same state can share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ResponseKey {
    /// Delta response from one snapshot version (`None`: from nothing, a fresh client) to
    /// another for a subscription.
    Delta {
        ty: ResourceType,
        from: Option<u64>,
        to: u64,
        sub: Subscription,
        /// Names re-sent on purpose (endpoints of updated clusters), hashed; 0 for none.
        forced: u64,
    },
    /// SotW response at a snapshot version for a subscription.
    Sotw {
        ty: ResourceType,
        at: u64,
        sub: Subscription,
    },
}

impl ResponseKey {
    /// The snapshot version the response brings a stream to.
    fn target(&self) -> u64 {
        match self {
            ResponseKey::Delta { to, .. } => *to,
            ResponseKey::Sotw { at, .. } => *at,
        }
    }
}

/// A response body being built or built, shared by every stream that asks for its key.
type Slot = Arc<OnceLock<Arc<CachedResponse>>>;

/// Whether a stream built the response it sends or took one another stream built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Encoded,
    Shared,
}

impl Origin {
    /// Counts a response sent with this origin (`shoal_xds_responses_{encoded,shared}_total`).
    pub(crate) fn count(self, ty: ResourceType, protocol: &'static str) {
        let name = match self {
            Origin::Encoded => crate::metrics_names::RESPONSES_ENCODED,
            Origin::Shared => crate::metrics_names::RESPONSES_SHARED,
        };
        metrics::counter!(name, "type" => ty.short_name(), "protocol" => protocol).increment(1);
    }
}

/// A shared response body and what it carries.
#[derive(Debug)]
pub(crate) struct CachedResponse {
    pub body: Bytes,
    /// Names of the resources in the response (for NACK bookkeeping and status).
    pub names: Vec<Arc<str>>,
    pub removed: usize,
    pub removed_names: Vec<Arc<str>>,
    /// SotW `version_info` (empty for delta).
    pub version_info: String,
}

#[derive(Debug)]
pub struct View {
    pub id: Arc<str>,
    tx: watch::Sender<Arc<Snapshot>>,
    /// What changed in each recent version (only names: old snapshots are not kept alive
    /// here, only by the streams whose clients still hold them).
    history: Mutex<VecDeque<(u64, Changes)>>,
    /// Shared response bodies with when each was last used. A slot is inserted before its
    /// body is built, so streams asking for the same key at once wait for one build.
    responses: Mutex<HashMap<ResponseKey, (Slot, Instant)>>,
    streams: AtomicUsize,
    idle_since: Mutex<Option<Instant>>,
}

impl View {
    pub fn new(id: impl Into<Arc<str>>, initial: Snapshot) -> Arc<View> {
        let initial = Arc::new(initial);
        Arc::new(View {
            id: id.into(),
            tx: watch::Sender::new(initial.clone()),
            history: Mutex::new(VecDeque::from([(initial.version, initial.changed.clone())])),
            responses: Mutex::new(HashMap::new()),
            streams: AtomicUsize::new(0),
            idle_since: Mutex::new(Some(Instant::now())),
        })
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Publishes the next snapshot (built from `current()`); a snapshot that changes
    /// nothing is dropped. Returns whether it was published.
    pub fn publish(&self, next: Snapshot) -> bool {
        if next.is_noop() {
            return false;
        }
        let next = Arc::new(next);
        {
            let mut h = self.history.lock();
            h.push_back((next.version, next.changed.clone()));
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        self.responses.lock().clear();
        self.tx.send_replace(next);
        true
    }

    /// Names of `ty` changed after version `from` up to and including `to`; `None` when the
    /// history no longer reaches back that far.
    pub fn changed_between(
        &self,
        ty: ResourceType,
        from: u64,
        to: u64,
    ) -> Option<BTreeSet<Arc<str>>> {
        if from >= to {
            return Some(BTreeSet::new());
        }
        let h = self.history.lock();
        let oldest = h.front()?.0;
        if from < oldest {
            return None;
        }
        let mut out = BTreeSet::new();
        for (_, changed) in h.iter().filter(|(v, _)| *v > from && *v <= to) {
            out.extend(changed[ty.index()].iter().cloned());
        }
        Some(out)
    }

    /// The response for `key`: taken from the cache, or built by `build` and cached while
    /// `key` targets the current snapshot. Streams asking for one key at the same time wait
    /// for a single build (it is short and never awaits), so a change seen by N streams in
    /// one state is encoded once.
    pub(crate) fn response(
        &self,
        key: ResponseKey,
        build: impl FnOnce() -> CachedResponse,
    ) -> (Arc<CachedResponse>, Origin) {
        let current = self.tx.borrow().version;
        let slot = {
            let mut r = self.responses.lock();
            match r.get_mut(&key) {
                Some((slot, used)) => {
                    *used = Instant::now();
                    slot.clone()
                }
                None if key.target() == current => {
                    if r.len() >= MAX_CACHED {
                        r.clear();
                    }
                    let slot = Slot::default();
                    r.insert(key, (slot.clone(), Instant::now()));
                    slot
                }
                // A response towards a version already replaced is built for this stream.
                None => return (Arc::new(build()), Origin::Encoded),
            }
        };
        let mut origin = Origin::Shared;
        let response = slot.get_or_init(|| {
            origin = Origin::Encoded;
            Arc::new(build())
        });
        (response.clone(), origin)
    }

    /// Drops shared responses no stream used for `idle` (they are rebuilt on demand); an
    /// idle mesh then holds only its snapshots.
    pub fn trim(&self, idle: Duration) -> usize {
        let mut r = self.responses.lock();
        let before = r.len();
        r.retain(|_, (_, used)| used.elapsed() < idle);
        before - r.len()
    }

    /// Counts a stream on this view (the returned guard uncounts it).
    pub fn attach(self: &Arc<Self>) -> Attachment {
        self.streams.fetch_add(1, Ordering::Relaxed);
        *self.idle_since.lock() = None;
        Attachment { view: self.clone() }
    }

    pub fn stream_count(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Whether no stream has used the view for at least `d`.
    pub fn is_idle_for(&self, d: Duration) -> bool {
        self.stream_count() == 0 && self.idle_for().is_some_and(|i| i >= d)
    }

    fn idle_for(&self) -> Option<Duration> {
        self.idle_since.lock().map(|t| t.elapsed())
    }
}

/// Keeps a stream counted on its view.
#[derive(Debug)]
pub struct Attachment {
    view: Arc<View>,
}

impl Attachment {
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if self.view.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            *self.view.idle_since.lock() = Some(Instant::now());
        }
    }
}

/// Every live view, by id.
#[derive(Debug, Default)]
pub struct Registry {
    views: Mutex<HashMap<Arc<str>, Arc<View>>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<View>> {
        self.views.lock().get(id).cloned()
    }

    /// The view with this id, built with `build` if it does not exist yet.
    pub fn get_or_insert_with(&self, id: &str, build: impl FnOnce() -> Snapshot) -> Arc<View> {
        if let Some(v) = self.get(id) {
            return v;
        }
        let view = View::new(id, build());
        self.views
            .lock()
            .entry(Arc::from(id))
            .or_insert(view)
            .clone()
    }

    pub fn live(&self) -> Vec<Arc<View>> {
        let mut v: Vec<Arc<View>> = self.views.lock().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Forgets views no stream has used for `idle`. Returns the ids removed.
    pub fn prune(&self, idle: Duration) -> Vec<Arc<str>> {
        let mut removed = Vec::new();
        self.views.lock().retain(|id, v| {
            let keep = v.stream_count() > 0 || v.idle_for().is_none_or(|d| d < idle);
            if !keep {
                removed.push(id.clone());
            }
            keep
        });
        removed
    }

    pub fn len(&self) -> usize {
        self.views.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::snapshot::{Resources, Trigger};
    use crate::subscription::Interner;

    fn body(text: &'static str) -> CachedResponse {
        CachedResponse {
            body: Bytes::from_static(text.as_bytes()),
            names: Vec::new(),
            removed: 0,
            removed_names: Vec::new(),
            version_info: String::new(),
        }
    }

    #[test]
    fn streams_asking_at_once_wait_for_one_build() {
        let view = View::new(
            "v",
            Snapshot::initial(&Resources::default(), Trigger::default()),
        );
        let key = ResponseKey::Sotw {
            ty: ResourceType::Cluster,
            at: view.current().version,
            sub: Subscription::new(true, Interner::default().intern(BTreeSet::new())),
        };
        const STREAMS: usize = 8;
        let builds = AtomicUsize::new(0);
        let start = Barrier::new(STREAMS);
        let origins: Vec<Origin> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..STREAMS)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        let (r, origin) = view.response(key.clone(), || {
                            builds.fetch_add(1, Ordering::SeqCst);
                            // Long enough that every other stream asks meanwhile.
                            std::thread::sleep(Duration::from_millis(50));
                            body("built")
                        });
                        assert_eq!(&r.body[..], b"built");
                        origin
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("worker"))
                .collect()
        });
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        let encoded = origins.iter().filter(|o| **o == Origin::Encoded).count();
        assert_eq!(encoded, 1, "{origins:?}");
    }

    #[test]
    fn a_response_towards_a_replaced_version_is_built_and_not_kept() {
        let view = View::new(
            "v",
            Snapshot::initial(&Resources::default(), Trigger::default()),
        );
        let key = ResponseKey::Sotw {
            ty: ResourceType::Cluster,
            at: view.current().version + 1,
            sub: Subscription::new(true, Interner::default().intern(BTreeSet::new())),
        };
        let (_, first) = view.response(key.clone(), || body("a"));
        let (r, second) = view.response(key, || body("b"));
        assert_eq!((first, second), (Origin::Encoded, Origin::Encoded));
        assert_eq!(&r.body[..], b"b");
    }
}
