//! What the Kubernetes source reports about itself: each kind's state (syncing, synced, not
//! installed, denied by RBAC), whether the API server answers, and since when it does not;
//! the same for each remote cluster read through a remote secret, and what of the remote
//! secrets was refused. Readiness, `/debug/configz` and the `shoal_kubernetes_*` metrics
//! read it (readiness the local cluster's only: a remote cluster never holds it back).

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
    /// The remote clusters read (multi-primary remote secrets), by cluster id.
    pub remote_clusters: BTreeMap<String, RemoteStatus>,
    /// What of the remote secrets is not used, by secret name, with the reason.
    pub remote_secrets_refused: BTreeMap<String, Vec<String>>,
}

/// One remote cluster: where it is, through which secret, and its kinds' states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteStatus {
    /// The remote secret its kubeconfig comes from.
    pub secret: String,
    /// Its API server's address, once a client is built.
    pub server: Option<String>,
    /// The network its pods are on unless labelled otherwise (its system namespace's
    /// `topology.istio.io/network`), when known.
    pub network: Option<String>,
    /// Per kind (Service, Pod, EndpointSlice).
    pub kinds: BTreeMap<String, KindStatus>,
    /// Whether the last check of its API server got an answer.
    pub connected: bool,
    /// Since when it has not answered (its last good objects are served meanwhile).
    pub unreachable_since: Option<SystemTime>,
    /// Why no client could be built from its kubeconfig, if so.
    pub error: Option<String>,
    /// Restarts with a new kubeconfig (the secret changed).
    pub restarts: u64,
}

impl RemoteStatus {
    pub fn new(secret: String) -> Self {
        RemoteStatus {
            secret,
            server: None,
            network: None,
            kinds: BTreeMap::new(),
            connected: false,
            unreachable_since: None,
            error: None,
            restarts: 0,
        }
    }
}

impl KubernetesStatus {
    pub fn new(server: String) -> Self {
        KubernetesStatus {
            server,
            kinds: BTreeMap::new(),
            connected: true,
            unreachable_since: None,
            synced: false,
            remote_clusters: BTreeMap::new(),
            remote_secrets_refused: BTreeMap::new(),
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
