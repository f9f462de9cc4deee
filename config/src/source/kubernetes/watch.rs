//! The watchers: one kube-rs watcher per kind, the MeshConfig ConfigMap's, the stale probe.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use metrics::{counter, gauge};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use super::cluster::RemoteCluster;
use super::kinds::{self, Served, WATCHED, Watched};
use super::mesh;
use super::remote::{self, RemoteSecrets};
use super::status::{KindState, KindStatus, KubernetesStatus, StatusWatch};
use super::tracker::{KindId, Tracker};
use crate::source::{ConfigSource, SourceError, SourceUpdate};

/// How to reach the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// A kubeconfig file; `None`: in-cluster service-account config when running in a pod,
    /// else `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (its current context when `None`).
    pub context: Option<String>,
}

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes config: not in a cluster and no kubeconfig ({0})")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Timing of the source's background checks.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often kinds whose CRD is not installed are looked up again.
    pub rediscover: Duration,
    /// How often the API server is asked whether it answers (for the stale status).
    pub probe: Duration,
    /// The ConfigMap to read the MeshConfig from (`None`: not read from the cluster).
    pub mesh_config: Option<mesh::MeshConfigMap>,
    /// Where to find remote secrets, and this cluster's id (`None`: none are read).
    pub remote_secrets: Option<RemoteSecrets>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rediscover: Duration::from_secs(10),
            probe: Duration::from_secs(5),
            mesh_config: None,
            remote_secrets: None,
        }
    }
}

/// Builds a client from `connection` (in-cluster, kubeconfig, context); returns it with the
/// API server's URL.
pub async fn connect(connection: &Connection) -> Result<(Client, String), ConnectError> {
    let options = kube::config::KubeConfigOptions {
        context: connection.context.clone(),
        ..Default::default()
    };
    let config = match &connection.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ConnectError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|source| ConnectError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None if connection.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|source| ConnectError::Kubeconfig {
                path: "KUBECONFIG".into(),
                source,
            })?,
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => kube::Config::infer().await?,
        },
    };
    let server = config.cluster_url.to_string();
    Ok((Client::try_from(config)?, server))
}

pub struct KubernetesSource {
    client: Client,
    options: Options,
    status: watch::Sender<KubernetesStatus>,
}

impl KubernetesSource {
    /// A source reading from `client`, which talks to `server` (its URL, for reports).
    pub fn new(client: Client, server: String, options: Options) -> Self {
        let mut initial = KubernetesStatus::new(server);
        for w in &WATCHED {
            initial
                .kinds
                .insert(w.id.qualified(), KindStatus::default());
        }
        if let Some(map) = &options.mesh_config {
            initial.kinds.insert(map.id(), KindStatus::default());
        }
        KubernetesSource {
            client,
            options,
            status: watch::Sender::new(initial),
        }
    }

    /// The source's status, live.
    pub fn status(&self) -> StatusWatch {
        self.status.subscribe()
    }
}

impl ConfigSource for KubernetesSource {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<SourceUpdate>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        Box::pin(async move {
            let KubernetesSource {
                client,
                options,
                status,
            } = *self;
            let mut tasks = tokio::task::JoinSet::new();
            let local = Scope::local(status.clone());
            for watched in WATCHED {
                let (client, options, tx, scope) =
                    (client.clone(), options.clone(), tx.clone(), local.clone());
                tasks.spawn(async move {
                    watch_kind(client, watched, options, tx, scope, &mut None).await;
                });
            }
            if let Some(map) = options.mesh_config.clone() {
                tasks.spawn(mesh::watch_mesh_config(
                    client.clone(),
                    map,
                    tx.clone(),
                    status.clone(),
                ));
            }
            tasks.spawn(probe(client.clone(), options.probe, local.clone()));
            // Remote clusters: not awaited by the initial sync (one that is down must not
            // keep this cluster's config from being served).
            if let Some(remote) = options.remote_secrets.clone() {
                tasks.spawn(remote::watch_secrets(
                    client.clone(),
                    remote,
                    options.clone(),
                    tx.clone(),
                    status.clone(),
                ));
            }
            // The initial sync: once every kind settled.
            let mut rx = status.subscribe();
            let settled = rx
                .wait_for(|s| s.kinds.values().all(|k| k.state.settled()))
                .await
                .is_ok();
            if settled {
                status.send_modify(|s| s.synced = true);
                tracing::info!("kubernetes: every kind listed");
                if tx
                    .send(SourceUpdate::Synced {
                        source_kind: "kubernetes",
                    })
                    .await
                    .is_err()
                {
                    return Err(SourceError::Closed);
                }
            }
            // Kind watchers end only when the pipeline has gone away.
            while tasks.join_next().await.is_some() {
                if tx.is_closed() {
                    return Err(SourceError::Closed);
                }
            }
            Err(SourceError::Closed)
        })
    }
}

/// Which cluster a watcher reads, for its status, its trackers and its reports.
#[derive(Clone)]
pub(super) struct Scope {
    pub(super) status: watch::Sender<KubernetesStatus>,
    /// `None`: the local cluster.
    pub(super) cluster: Option<RemoteCluster>,
}

impl Scope {
    pub(super) fn local(status: watch::Sender<KubernetesStatus>) -> Self {
        Scope {
            status,
            cluster: None,
        }
    }

    /// The kind's name in logs (`CLUSTER/KIND` for a remote cluster's).
    fn label(&self, kind: &str) -> String {
        match &self.cluster {
            None => kind.to_string(),
            Some(c) => format!("{}/{kind}", c.id),
        }
    }

    /// The labels of the kind's metrics: `kind`, and a remote cluster's id as `cluster`
    /// (the local cluster's series have none).
    fn metric_labels(&self, kind: &str) -> Vec<metrics::Label> {
        let mut labels = vec![metrics::Label::new("kind", kind.to_string())];
        if let Some(c) = &self.cluster {
            labels.push(metrics::Label::new("cluster", c.id.to_string()));
        }
        labels
    }

    fn tracker(&self, id: KindId, api_version: &str) -> Tracker {
        match &self.cluster {
            None => Tracker::new(id, api_version),
            Some(c) => Tracker::remote(id, api_version, c.clone()),
        }
    }

    fn set_kind(&self, kind: &str, f: impl FnOnce(&mut KindStatus)) {
        let Some(cluster) = &self.cluster else {
            return set_kind(&self.status, kind, f);
        };
        self.status.send_if_modified(|s| {
            let Some(remote) = s.remote_clusters.get_mut(&*cluster.id) else {
                return false;
            };
            let k = remote.kinds.entry(kind.to_string()).or_default();
            let before = k.clone();
            f(k);
            *k != before
        });
    }

    /// Records whether the API server answers; whether that changed.
    fn set_connected(&self, connected: bool) -> bool {
        self.status.send_if_modified(|s| {
            let (now, since) = match &self.cluster {
                None => (&mut s.connected, &mut s.unreachable_since),
                Some(c) => match s.remote_clusters.get_mut(&*c.id) {
                    Some(r) => (&mut r.connected, &mut r.unreachable_since),
                    None => return false,
                },
            };
            if *now == connected {
                return false;
            }
            *now = connected;
            *since = (!connected).then(SystemTime::now);
            true
        })
    }
}

pub(super) fn set_kind(
    status: &watch::Sender<KubernetesStatus>,
    kind: &str,
    f: impl FnOnce(&mut KindStatus),
) {
    status.send_if_modified(|s| {
        let Some(k) = s.kinds.get_mut(kind) else {
            return false;
        };
        let before = k.clone();
        f(k);
        *k != before
    });
}

/// Why a watch failed, for the status: RBAC denial (with the verb), the kind gone, or
/// anything else (unreachable, timeouts), which the watcher retries with backoff.
pub(super) enum Failure {
    Denied { verb: &'static str, message: String },
    NotServed,
    Other(String),
}

pub(super) fn classify(e: &watcher::Error) -> Failure {
    let (verb, inner) = match e {
        watcher::Error::InitialListFailed(inner) => ("list", Some(inner)),
        watcher::Error::WatchStartFailed(inner) | watcher::Error::WatchFailed(inner) => {
            ("watch", Some(inner))
        }
        watcher::Error::WatchError(status) if status.code == 403 => {
            return Failure::Denied {
                verb: "watch",
                message: status.message.clone(),
            };
        }
        watcher::Error::WatchError(status) if status.code == 404 => return Failure::NotServed,
        _ => ("", None),
    };
    match inner {
        Some(kube::Error::Api(status)) if status.code == 403 => Failure::Denied {
            verb,
            message: status.message.clone(),
        },
        Some(kube::Error::Api(status)) if status.code == 404 => Failure::NotServed,
        _ => Failure::Other(e.to_string()),
    }
}

/// Watches one kind for as long as the pipeline runs: finds where it is served, lists and
/// watches it, and looks again when it is not (or no longer) served.
///
/// `tracker` keeps what was delivered; it outlives the watcher (a remote cluster's
/// watchers restart with a new kubeconfig and diff against it).
pub(super) async fn watch_kind(
    client: Client,
    watched: Watched,
    options: Options,
    tx: mpsc::Sender<SourceUpdate>,
    scope: Scope,
    tracker: &mut Option<Tracker>,
) {
    let name = watched.id.qualified();
    let label = scope.label(&name);
    let mut reported_absent = false;
    loop {
        let served = match kinds::resolve(&client, &watched).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                if !reported_absent {
                    tracing::warn!(kind = %label, "not served by the API server (CRD not installed?); looking again every {:?}", options.rediscover);
                    reported_absent = true;
                }
                if let Some(t) = tracker {
                    for update in t.clear() {
                        if tx.send(update).await.is_err() {
                            return;
                        }
                    }
                }
                scope.set_kind(&name, |k| {
                    k.state = KindState::NotInstalled;
                    k.objects = 0;
                });
                tokio::time::sleep(options.rediscover).await;
                continue;
            }
            Err(e) => {
                scope.set_kind(&name, |k| k.last_error = Some(e.to_string()));
                tracing::debug!(kind = %label, error = %e, "discovery failed; retrying");
                tokio::time::sleep(options.rediscover.min(Duration::from_secs(2))).await;
                continue;
            }
        };
        if reported_absent {
            tracing::info!(kind = %label, api_version = %served.resource.api_version, "now served; watching");
            reported_absent = false;
        }
        let t =
            tracker.get_or_insert_with(|| scope.tracker(watched.id, &served.resource.api_version));
        t.set_api_version(&served.resource.api_version);
        t.set_cluster(scope.cluster.clone());
        scope.set_kind(&name, |k| {
            k.api_version = Some(served.resource.api_version.clone());
            if !k.state.settled() {
                k.state = KindState::Syncing;
            }
        });
        if !follow(&client, &served, &name, t, &tx, &scope).await {
            return;
        }
        // The kind stopped being served: look it up again.
    }
}

/// Lists and watches one served kind. Returns `false` when the pipeline has gone away,
/// `true` when the kind is no longer served.
async fn follow(
    client: &Client,
    served: &Served,
    name: &str,
    tracker: &mut Tracker,
    tx: &mpsc::Sender<SourceUpdate>,
    scope: &Scope,
) -> bool {
    let label = scope.label(name);
    let labels = scope.metric_labels(name);
    let with = |extra: (&'static str, &'static str)| {
        let mut l = labels.clone();
        l.push(metrics::Label::new(extra.0, extra.1));
        l
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &served.resource);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut listed_once = false;
    let mut denied_reported = false;
    while let Some(event) = stream.next().await {
        let updates = match event {
            Ok(Event::Init) => {
                tracker.init();
                if listed_once {
                    counter!("shoal_kubernetes_relists_total", labels.clone()).increment(1);
                    scope.set_kind(name, |k| k.relists += 1);
                }
                Vec::new()
            }
            Ok(Event::InitApply(o) | Event::Apply(o)) => {
                counter!("shoal_kubernetes_events_total", with(("event", "apply"))).increment(1);
                tracker.apply(object_json(o)).into_iter().collect()
            }
            Ok(Event::Delete(o)) => {
                counter!("shoal_kubernetes_events_total", with(("event", "delete"))).increment(1);
                tracker.delete(&object_json(o)).into_iter().collect()
            }
            Ok(Event::InitDone) => {
                listed_once = true;
                denied_reported = false;
                let gone = tracker.init_done();
                scope.set_kind(name, |k| k.state = KindState::Synced);
                gone
            }
            Err(e) => {
                counter!("shoal_kubernetes_watch_errors_total", labels.clone()).increment(1);
                match classify(&e) {
                    Failure::NotServed => return true,
                    Failure::Denied { verb, message } => {
                        if !denied_reported {
                            tracing::error!(
                                kind = %label,
                                verb,
                                resource = %served.resource.plural,
                                group = %served.resource.group,
                                "RBAC: shoal may not {verb} {}; the other kinds keep working: {message}",
                                served.resource.plural
                            );
                            denied_reported = true;
                        }
                        scope.set_kind(name, |k| {
                            k.last_error = Some(message.clone());
                            if !listed_once {
                                k.state = KindState::Denied {
                                    verb: verb.into(),
                                    message,
                                };
                            }
                        });
                    }
                    Failure::Other(message) => {
                        tracing::debug!(kind = %label, error = %message, "watch failed; retrying with backoff");
                        scope.set_kind(name, |k| k.last_error = Some(message));
                    }
                }
                continue;
            }
        };
        let objects = tracker.len();
        scope.set_kind(name, |k| {
            k.objects = objects;
            k.last_error = None;
        });
        for update in updates {
            if tx.send(update).await.is_err() {
                return false;
            }
        }
    }
    // The watcher stream never ends by itself; if it does, start over.
    true
}

fn object_json(object: DynamicObject) -> serde_json::Value {
    serde_json::to_value(object).unwrap_or(serde_json::Value::Null)
}

/// Asks the API server whether it answers, for the stale status and its metrics.
pub(super) async fn probe(client: Client, every: Duration, scope: Scope) {
    let cluster = scope.cluster.as_ref().map(|c| c.id.to_string());
    loop {
        let connected = client.apiserver_version().await.is_ok();
        if scope.set_connected(connected) {
            match (&cluster, connected) {
                (None, true) => tracing::info!("kubernetes: the API server answers again"),
                (None, false) => tracing::warn!(
                    "kubernetes: the API server does not answer; serving the last good config"
                ),
                (Some(c), true) => {
                    tracing::info!(cluster = %c, "remote cluster: the API server answers")
                }
                (Some(c), false) => tracing::warn!(
                    cluster = %c,
                    "remote cluster: the API server does not answer; serving its last good objects"
                ),
            }
        }
        if cluster.is_none() {
            gauge!("shoal_kubernetes_connected").set(if connected { 1.0 } else { 0.0 });
            let synced = scope
                .status
                .borrow()
                .kinds
                .values()
                .filter(|k| k.state == KindState::Synced)
                .count();
            gauge!("shoal_kubernetes_synced_kinds").set(synced as f64);
        }
        tokio::time::sleep(every).await;
    }
}
