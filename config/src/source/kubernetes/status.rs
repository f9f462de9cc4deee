//! What the Kubernetes source reports about itself: each kind's state (syncing, synced, not
//! installed, denied by RBAC), whether the API server answers, and since when it does not.
//! Readiness, `/debug/configz` and the `shoal_kubernetes_*` metrics read it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

/// One watched kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KindState {
    /// Looking up where the API server serves it.
    Discovering,
    /// Listing (first list or a re-list).
    Syncing,
    /// Listed; watching.
    Synced,
    /// Its CRD is not installed: looked up again periodically.
    NotInstalled,
    /// The API server refused: shoal's service account lacks `verb` on the resource.
    Denied { verb: String, message: String },
}

impl KindState {
    /// Whether the kind no longer holds back the source's initial sync.
    pub fn settled(&self) -> bool {
        matches!(
            self,
            KindState::Synced | KindState::NotInstalled | KindState::Denied { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            KindState::Discovering => "discovering",
            KindState::Syncing => "syncing",
            KindState::Synced => "synced",
            KindState::NotInstalled => "not_installed",
            KindState::Denied { .. } => "denied",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindStatus {
    #[serde(flatten)]
    pub state: KindState,
    /// `apiVersion` it is read at, once known.
    pub api_version: Option<String>,
    /// Objects kept.
    pub objects: usize,
    /// Lists after the first one (410 Gone, broken watches, restarts).
    pub relists: u64,
    /// The last watch error, cleared by the next event.
    pub last_error: Option<String>,
}

impl Default for KindStatus {
    fn default() -> Self {
        KindStatus {
            state: KindState::Discovering,
            api_version: None,
            objects: 0,
            relists: 0,
            last_error: None,
        }
    }
}

/// The source's status.
#[derive(Debug, Clone, Serialize)]
pub struct KubernetesStatus {
    /// The API server's address.
    pub server: String,
    /// Per kind (`VirtualService.networking.istio.io`).
    pub kinds: BTreeMap<String, KindStatus>,
    /// Whether the last check of the API server got an answer.
    pub connected: bool,
    /// Since when it has not answered (the config served is the last good one).
    pub unreachable_since: Option<SystemTime>,
    /// Every kind has listed once (or is not installed, or denied).
    pub synced: bool,
}

impl KubernetesStatus {
    pub fn new(server: String) -> Self {
        KubernetesStatus {
            server,
            kinds: BTreeMap::new(),
            connected: true,
            unreachable_since: None,
            synced: false,
        }
    }

    /// Kinds that have not listed yet.
    pub fn syncing(&self) -> Vec<&str> {
        self.kinds
            .iter()
            .filter(|(_, k)| !k.state.settled())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The config from this source may be out of date: the API server does not answer.
    pub fn stale(&self) -> bool {
        !self.connected
    }
}

/// Shared, observable status.
pub type StatusWatch = watch::Receiver<KubernetesStatus>;
