//! Views: the proxies that see the same config share one view, one current snapshot and
//! the responses computed from it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Shared response bodies with when each was last used.
    responses: Mutex<HashMap<ResponseKey, (Arc<CachedResponse>, Instant)>>,
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

    pub(crate) fn cached(&self, key: &ResponseKey) -> Option<Arc<CachedResponse>> {
        let mut r = self.responses.lock();
        let entry = r.get_mut(key)?;
        entry.1 = Instant::now();
        Some(entry.0.clone())
    }

    /// Drops shared responses no stream used for `idle` (they are rebuilt on demand); an
    /// idle mesh then holds only its snapshots.
    pub fn trim(&self, idle: Duration) -> usize {
        let mut r = self.responses.lock();
        let before = r.len();
        r.retain(|_, (_, used)| used.elapsed() < idle);
        before - r.len()
    }

    pub(crate) fn cache(&self, key: ResponseKey, value: Arc<CachedResponse>) {
        let current = self.tx.borrow().version;
        let to = match &key {
            ResponseKey::Delta { to, .. } => *to,
            ResponseKey::Sotw { at, .. } => *at,
        };
        if to != current {
            return;
        }
        let mut r = self.responses.lock();
        if r.len() >= MAX_CACHED {
            r.clear();
        }
        r.insert(key, (value, Instant::now()));
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
