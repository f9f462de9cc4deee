//! The MeshConfig of a cluster: the `mesh` key of the `istio` ConfigMap (`istio-REVISION`
//! for a revision) in the root namespace, as istiod reads it. Watched like a kind (its
//! state is in the status, and the initial sync waits for it), and delivered as
//! [`SourceUpdate::MeshConfig`]: the text as it is, checked by whoever applies it, so that
//! a broken edit is refused there and the last good MeshConfig stays.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, watch};

use super::status::{KindState, KubernetesStatus};
use super::watch::{Failure, classify, set_kind};
use crate::source::SourceUpdate;

/// Which ConfigMap holds the MeshConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfigMap {
    pub namespace: String,
    pub name: String,
}

impl MeshConfigMap {
    /// Istio's: `istio` in the root namespace, `istio-REVISION` for a revision.
    pub fn istio(root_namespace: &str, revision: Option<&str>) -> Self {
        MeshConfigMap {
            namespace: root_namespace.to_string(),
            name: match revision {
                Some(r) if r != "default" => format!("istio-{r}"),
                _ => "istio".to_string(),
            },
        }
    }

    /// Its entry in the status and its origin in reports.
    pub fn id(&self) -> String {
        format!("ConfigMap {}/{}", self.namespace, self.name)
    }
}

fn mesh_text(cm: &ConfigMap) -> Option<String> {
    cm.data.as_ref().and_then(|d| d.get("mesh")).cloned()
}

/// Follows the ConfigMap for as long as the pipeline runs, sending its `mesh` text when it
/// changes (`None`: the ConfigMap or its key is gone, and the defaults apply).
pub(super) async fn watch_mesh_config(
    client: Client,
    map: MeshConfigMap,
    tx: mpsc::Sender<SourceUpdate>,
    status: watch::Sender<KubernetesStatus>,
) {
    let id = map.id();
    let api: Api<ConfigMap> = Api::namespaced(client, &map.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", map.name));
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    set_kind(&status, &id, |k| {
        k.api_version = Some("v1".into());
        k.state = KindState::Syncing;
    });
    // What was last sent; `Some(None)`: "no MeshConfig" was sent.
    let mut sent: Option<Option<String>> = None;
    let mut listing: Option<Option<String>> = None;
    let mut denied_reported = false;
    while let Some(event) = stream.next().await {
        let text = match event {
            Ok(Event::Init) => {
                listing = Some(None);
                continue;
            }
            Ok(Event::InitApply(cm)) => {
                listing = Some(mesh_text(&cm));
                continue;
            }
            Ok(Event::InitDone) => {
                denied_reported = false;
                set_kind(&status, &id, |k| {
                    k.state = KindState::Synced;
                    k.last_error = None;
                });
                listing.take().unwrap_or_default()
            }
            Ok(Event::Apply(cm)) => mesh_text(&cm),
            Ok(Event::Delete(_)) => None,
            Err(e) => {
                let message = match classify(&e) {
                    Failure::Denied { verb, message } => {
                        if !denied_reported {
                            tracing::error!(configmap = %id, verb, "RBAC: shoal may not {verb} configmaps in {}; MeshConfig from flags only: {message}", map.namespace);
                            denied_reported = true;
                        }
                        let m = message.clone();
                        set_kind(&status, &id, |k| {
                            if !k.state.settled() {
                                k.state = KindState::Denied {
                                    verb: verb.into(),
                                    message: m,
                                };
                            }
                        });
                        message
                    }
                    Failure::NotServed => "configmaps not served".to_string(),
                    Failure::Other(message) => message,
                };
                set_kind(&status, &id, |k| k.last_error = Some(message));
                continue;
            }
        };
        set_kind(&status, &id, |k| k.objects = usize::from(text.is_some()));
        if sent.as_ref() == Some(&text) {
            continue;
        }
        sent = Some(text.clone());
        let update = SourceUpdate::MeshConfig {
            origin: format!("kubernetes:{id}"),
            text,
        };
        if tx.send(update).await.is_err() {
            return;
        }
    }
}
