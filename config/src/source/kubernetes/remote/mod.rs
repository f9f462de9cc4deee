//! Istio's multi-primary "remote secrets": the service discovery of other clusters, read
//! through kubeconfigs held in Secrets of this cluster.
//!
//! As istiod does, the source watches the Secrets of the root namespace labelled
//! `istio/multiCluster=true` (what `istioctl create-remote-secret --name=cluster2` makes:
//! `istio-remote-secret-cluster2`, each `data` key a cluster id, its value a kubeconfig).
//! [`secret`] reads one Secret into clusters (pure), [`registry`] decides which clusters to
//! read with which kubeconfig (pure); this module does the IO: per remote cluster a kube
//! client and one watcher per kind of [`super::kinds::REMOTE_WATCHED`] (Services,
//! EndpointSlices, Pods, Nodes — Istio config comes from this cluster only), the same
//! watchers and trackers as the local cluster's, their objects named and rewritten per
//! cluster ([`super::cluster`]) and ranked below local definitions in the store.
//!
//! Lifecycle: a new key starts its cluster; a changed kubeconfig restarts its watchers,
//! which re-list and send only the difference (the trackers outlive them); a deleted
//! Secret or key stops the cluster and removes all its objects. A remote API server that
//! does not answer keeps its last good objects (as the local one does) and is reported
//! stale in the status. The source's initial sync never waits for a remote cluster.
//!
//! A pod's network: its own `topology.istio.io/network` label, else the label of the
//! remote cluster's root namespace (Istio's convention for a cluster's network: followed,
//! a change has the cluster's watchers start again with it, and their re-list re-sends
//! only the pods it changed), else this control plane's network.

pub mod registry;
pub mod secret;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::registry::{Action, Registry};
use self::secret::ClusterConfig;
use super::cluster::RemoteCluster;
use super::kinds::REMOTE_WATCHED;
use super::status::{KubernetesStatus, RemoteStatus};
use super::tracker::Tracker;
use super::watch::{ConnectError, Failure, Options, Scope, classify, probe, watch_kind};
use crate::k8s::topology;
use crate::source::SourceUpdate;

/// Where remote secrets are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSecrets {
    /// The namespace of the secrets (the root namespace, `istio-system` by default).
    pub namespace: String,
    /// This control plane's own cluster id: a secret naming it is refused.
    pub cluster_id: String,
}

/// A running remote cluster: its kubeconfig's channel (dropped: stop) and its task.
struct Running {
    config: watch::Sender<ClusterConfig>,
    task: JoinHandle<()>,
}

/// Watches the remote secrets for as long as the pipeline runs, and runs a task per remote
/// cluster they name.
pub(super) async fn watch_secrets(
    client: Client,
    remote: RemoteSecrets,
    options: Options,
    tx: mpsc::Sender<SourceUpdate>,
    status: watch::Sender<KubernetesStatus>,
) {
    let resource = ApiResource::erase::<Secret>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, &remote.namespace, &resource);
    let config = watcher::Config::default().labels(secret::SELECTOR);
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    tracing::info!(namespace = %remote.namespace, selector = secret::SELECTOR, "watching remote secrets");
    let mut registry = Registry::new();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut stopping: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut reported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut denied_reported = false;
    while let Some(event) = stream.next().await {
        if tx.is_closed() {
            break;
        }
        let actions = match event {
            Ok(Event::Init) => {
                registry.init();
                Vec::new()
            }
            Ok(Event::InitApply(o) | Event::Apply(o)) => {
                let name = o.metadata.name.clone().unwrap_or_default();
                let value = serde_json::to_value(&o).unwrap_or_default();
                registry.apply(&name, secret::parse(&value, &remote.cluster_id))
            }
            Ok(Event::Delete(o)) => registry.delete(o.metadata.name.as_deref().unwrap_or("")),
            Ok(Event::InitDone) => {
                denied_reported = false;
                registry.init_done()
            }
            Err(e) => {
                match classify(&e) {
                    Failure::Denied { verb, message } if !denied_reported => {
                        tracing::error!(namespace = %remote.namespace, verb, "RBAC: shoal may not {verb} secrets; no remote cluster is read: {message}");
                        denied_reported = true;
                    }
                    Failure::Denied { .. } => {}
                    Failure::NotServed | Failure::Other(_) => {
                        tracing::debug!(error = %e, "remote secrets: watch failed; retrying with backoff");
                    }
                }
                continue;
            }
        };
        report_refusals(&registry, &mut reported, &status);
        for action in actions {
            match action {
                Action::Start { cluster, config } => {
                    // A cluster stopped a moment ago: its removals go first.
                    if let Some(task) = stopping.remove(&cluster) {
                        let _ = task.await;
                    }
                    status.send_modify(|s| {
                        s.remote_clusters
                            .insert(cluster.clone(), RemoteStatus::new(String::new()));
                    });
                    tracing::info!(%cluster, "remote cluster: reading its service discovery");
                    let (config_tx, config_rx) = watch::channel(config);
                    let task = tokio::spawn(run_cluster(
                        cluster.clone(),
                        config_rx,
                        remote.namespace.clone(),
                        options.clone(),
                        tx.clone(),
                        status.clone(),
                    ));
                    running.insert(
                        cluster,
                        Running {
                            config: config_tx,
                            task,
                        },
                    );
                }
                Action::Restart { cluster, config } => {
                    if let Some(r) = running.get(&cluster) {
                        tracing::info!(%cluster, "remote cluster: its kubeconfig changed; watching again");
                        let _ = r.config.send(config);
                        status.send_modify(|s| {
                            if let Some(r) = s.remote_clusters.get_mut(&cluster) {
                                r.restarts += 1;
                            }
                        });
                    }
                }
                Action::Stop { cluster } => {
                    if let Some(r) = running.remove(&cluster) {
                        tracing::info!(%cluster, "remote cluster: no secret names it any more; removing its objects");
                        drop(r.config);
                        stopping.insert(cluster, r.task);
                    }
                }
            }
        }
        metrics::gauge!("shoal_kubernetes_remote_clusters").set(running.len() as f64);
        let owners = registry.clusters();
        status.send_if_modified(|s| {
            let mut changed = false;
            for (cluster, r) in s.remote_clusters.iter_mut() {
                if let Some(owner) = owners.get(cluster.as_str())
                    && r.secret != *owner
                {
                    r.secret = owner.to_string();
                    changed = true;
                }
            }
            changed
        });
    }
    for (_, r) in running {
        r.task.abort();
    }
}

/// Logs what is newly refused and puts every refusal in the status.
fn report_refusals(
    registry: &Registry,
    reported: &mut BTreeMap<String, Vec<String>>,
    status: &watch::Sender<KubernetesStatus>,
) {
    let now: BTreeMap<String, Vec<String>> = registry
        .refusals()
        .into_iter()
        .map(|(name, refused)| (name, refused.iter().map(ToString::to_string).collect()))
        .collect();
    if now == *reported {
        return;
    }
    for (name, reasons) in &now {
        for reason in reasons {
            if !reported.get(name).is_some_and(|r| r.contains(reason)) {
                tracing::warn!(secret = %name, "remote secret refused in part: {reason}");
            }
        }
    }
    *reported = now.clone();
    status.send_modify(|s| s.remote_secrets_refused = now);
}

/// One remote cluster, for as long as a secret names it: watches it with the current
/// kubeconfig, again with each new one, and on stop removes everything it delivered.
async fn run_cluster(
    cluster: String,
    mut config: watch::Receiver<ClusterConfig>,
    root_namespace: String,
    options: Options,
    tx: mpsc::Sender<SourceUpdate>,
    status: watch::Sender<KubernetesStatus>,
) {
    let mut trackers: Vec<Option<Tracker>> = REMOTE_WATCHED.iter().map(|_| None).collect();
    loop {
        let current = config.borrow_and_update().clone();
        let watching = watch_cluster(
            &cluster,
            &current,
            &root_namespace,
            &options,
            &tx,
            &status,
            &mut trackers,
        );
        tokio::select! {
            ended = watching => match ended {
                Ended::PipelineGone => return,
                Ended::NetworkChanged => {
                    tracing::info!(%cluster, "remote cluster: its network changed; watching again");
                }
            },
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    for tracker in trackers.iter_mut().flatten() {
        for update in tracker.clear() {
            if tx.send(update).await.is_err() {
                return;
            }
        }
    }
    status.send_modify(|s| {
        s.remote_clusters.remove(&cluster);
    });
}

/// Why a cluster's watchers ended.
enum Ended {
    /// The pipeline has gone away.
    PipelineGone,
    /// The cluster's network changed: watch again with it.
    NetworkChanged,
}

/// Builds a client from `config` and watches the cluster's kinds and its network; returns
/// when the pipeline has gone away or the network changed (a kubeconfig no client can be
/// built from waits for the next).
async fn watch_cluster(
    cluster: &str,
    config: &ClusterConfig,
    root_namespace: &str,
    options: &Options,
    tx: &mpsc::Sender<SourceUpdate>,
    status: &watch::Sender<KubernetesStatus>,
    trackers: &mut [Option<Tracker>],
) -> Ended {
    let set = |f: &dyn Fn(&mut RemoteStatus)| {
        status.send_modify(|s| {
            if let Some(r) = s.remote_clusters.get_mut(cluster) {
                f(r);
            }
        });
    };
    let (client, server) = match connect_remote(config).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%cluster, error = %e, "remote cluster: no client from its kubeconfig; waiting for the secret to change");
            let message = e.to_string();
            set(&|r: &mut RemoteStatus| r.error = Some(message.clone()));
            return std::future::pending::<Ended>().await;
        }
    };
    let network = cluster_network(&client, root_namespace).await;
    set(&|r: &mut RemoteStatus| {
        r.server = Some(server.clone());
        r.network = network.clone();
        r.error = None;
    });
    let scope = Scope {
        status: status.clone(),
        cluster: Some(RemoteCluster::new(cluster, network.clone())),
    };
    let watchers = REMOTE_WATCHED
        .iter()
        .zip(trackers.iter_mut())
        .map(|(watched, tracker)| {
            watch_kind(
                client.clone(),
                *watched,
                options.clone(),
                tx.clone(),
                scope.clone(),
                tracker,
            )
        });
    tokio::select! {
        _ = futures::future::join_all(watchers) => Ended::PipelineGone,
        () = probe(client.clone(), options.probe, scope.clone()) => Ended::PipelineGone,
        () = network_changed(client.clone(), root_namespace, network) => Ended::NetworkChanged,
    }
}

/// A client for a remote cluster; with its API server's URL.
async fn connect_remote(config: &ClusterConfig) -> Result<(Client, String), ConnectError> {
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig((*config.kubeconfig).clone(), &options)
        .await
        .map_err(|source| ConnectError::Kubeconfig {
            path: "remote secret".into(),
            source,
        })?;
    let server = config.cluster_url.to_string();
    Ok((Client::try_from(config)?, server))
}

/// The network of a remote cluster's pods: its root namespace's `topology.istio.io/network`
/// label (Istio's convention), if it answers within a few seconds.
async fn cluster_network(client: &Client, root_namespace: &str) -> Option<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let got = tokio::time::timeout(Duration::from_secs(5), api.get_opt(root_namespace)).await;
    let namespace = got.ok()?.ok()??;
    namespace.metadata.labels?.get(topology::NETWORK).cloned()
}

/// Resolves once a remote cluster's network (its root namespace's label) is no longer
/// `known`: the namespace relabelled, deleted, or found to differ when the watch starts.
/// While the namespace cannot be watched (down, or RBAC), it never resolves: the pods keep
/// the network they have.
async fn network_changed(client: Client, root_namespace: &str, known: Option<String>) {
    let api: Api<Namespace> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={root_namespace}"));
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut listed = false;
    while let Some(event) = stream.next().await {
        let network = match event {
            Ok(Event::Init) => {
                listed = false;
                continue;
            }
            Ok(Event::InitApply(ns) | Event::Apply(ns)) => {
                listed = true;
                ns.metadata
                    .labels
                    .and_then(|mut l| l.remove(topology::NETWORK))
            }
            // A list without the namespace: it has none.
            Ok(Event::InitDone) if !listed => None,
            Ok(Event::Delete(_)) => None,
            Ok(Event::InitDone) | Err(_) => continue,
        };
        if network != known {
            return;
        }
    }
    std::future::pending::<()>().await
}
