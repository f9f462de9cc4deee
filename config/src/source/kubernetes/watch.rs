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

use super::kinds::{self, Served, WATCHED, Watched};
use super::mesh;
use super::status::{KindState, KindStatus, KubernetesStatus, StatusWatch};
use super::tracker::Tracker;
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rediscover: Duration::from_secs(10),
            probe: Duration::from_secs(5),
            mesh_config: None,
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
            for watched in WATCHED {
                tasks.spawn(watch_kind(
                    client.clone(),
                    watched,
                    options.clone(),
                    tx.clone(),
                    status.clone(),
                ));
            }
            if let Some(map) = options.mesh_config.clone() {
                tasks.spawn(mesh::watch_mesh_config(
                    client.clone(),
                    map,
                    tx.clone(),
                    status.clone(),
                ));
            }
            tasks.spawn(probe(client.clone(), options.probe, status.clone()));
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
async fn watch_kind(
    client: Client,
    watched: Watched,
    options: Options,
    tx: mpsc::Sender<SourceUpdate>,
    status: watch::Sender<KubernetesStatus>,
) {
    let name = watched.id.qualified();
    let mut tracker: Option<Tracker> = None;
    let mut reported_absent = false;
    loop {
        let served = match kinds::resolve(&client, &watched).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                if !reported_absent {
                    tracing::warn!(kind = %name, "not served by the API server (CRD not installed?); looking again every {:?}", options.rediscover);
                    reported_absent = true;
                }
                if let Some(t) = &mut tracker {
                    for update in t.clear() {
                        if tx.send(update).await.is_err() {
                            return;
                        }
                    }
                }
                set_kind(&status, &name, |k| {
                    k.state = KindState::NotInstalled;
                    k.objects = 0;
                });
                tokio::time::sleep(options.rediscover).await;
                continue;
            }
            Err(e) => {
                set_kind(&status, &name, |k| k.last_error = Some(e.to_string()));
                tracing::debug!(kind = %name, error = %e, "discovery failed; retrying");
                tokio::time::sleep(options.rediscover.min(Duration::from_secs(2))).await;
                continue;
            }
        };
        if reported_absent {
            tracing::info!(kind = %name, api_version = %served.resource.api_version, "now served; watching");
            reported_absent = false;
        }
        let t =
            tracker.get_or_insert_with(|| Tracker::new(watched.id, &served.resource.api_version));
        t.set_api_version(&served.resource.api_version);
        set_kind(&status, &name, |k| {
            k.api_version = Some(served.resource.api_version.clone());
            if !k.state.settled() {
                k.state = KindState::Syncing;
            }
        });
        if !follow(&client, &served, &name, t, &tx, &status).await {
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
    status: &watch::Sender<KubernetesStatus>,
) -> bool {
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
                    counter!("shoal_kubernetes_relists_total", "kind" => name.to_string())
                        .increment(1);
                    set_kind(status, name, |k| k.relists += 1);
                }
                Vec::new()
            }
            Ok(Event::InitApply(o) | Event::Apply(o)) => {
                counter!("shoal_kubernetes_events_total", "kind" => name.to_string(), "event" => "apply").increment(1);
                tracker.apply(object_json(o)).into_iter().collect()
            }
            Ok(Event::Delete(o)) => {
                counter!("shoal_kubernetes_events_total", "kind" => name.to_string(), "event" => "delete").increment(1);
                tracker.delete(&object_json(o)).into_iter().collect()
            }
            Ok(Event::InitDone) => {
                listed_once = true;
                denied_reported = false;
                let gone = tracker.init_done();
                set_kind(status, name, |k| k.state = KindState::Synced);
                gone
            }
            Err(e) => {
                counter!("shoal_kubernetes_watch_errors_total", "kind" => name.to_string())
                    .increment(1);
                match classify(&e) {
                    Failure::NotServed => return true,
                    Failure::Denied { verb, message } => {
                        if !denied_reported {
                            tracing::error!(
                                kind = %name,
                                verb,
                                resource = %served.resource.plural,
                                group = %served.resource.group,
                                "RBAC: shoal may not {verb} {}; the other kinds keep working: {message}",
                                served.resource.plural
                            );
                            denied_reported = true;
                        }
                        set_kind(status, name, |k| {
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
                        tracing::debug!(kind = %name, error = %message, "watch failed; retrying with backoff");
                        set_kind(status, name, |k| k.last_error = Some(message));
                    }
                }
                continue;
            }
        };
        let objects = tracker.len();
        set_kind(status, name, |k| {
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
async fn probe(client: Client, every: Duration, status: watch::Sender<KubernetesStatus>) {
    loop {
        let connected = client.apiserver_version().await.is_ok();
        gauge!("shoal_kubernetes_connected").set(if connected { 1.0 } else { 0.0 });
        status.send_if_modified(|s| {
            if s.connected == connected {
                return false;
            }
            if connected {
                tracing::info!("kubernetes: the API server answers again");
                s.unreachable_since = None;
            } else {
                tracing::warn!(
                    "kubernetes: the API server does not answer; serving the last good config"
                );
                s.unreachable_since = Some(SystemTime::now());
            }
            s.connected = connected;
            true
        });
        let synced = status
            .borrow()
            .kinds
            .values()
            .filter(|k| k.state == KindState::Synced)
            .count();
        gauge!("shoal_kubernetes_synced_kinds").set(synced as f64);
        tokio::time::sleep(every).await;
    }
}
