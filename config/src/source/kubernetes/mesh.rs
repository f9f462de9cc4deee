//! The MeshConfig of a cluster: the `mesh` key of the `istio` ConfigMap (`istio-REVISION`
//! for a revision) in the root namespace, as istiod reads it. Watched like a kind (its
//! state is in the status, and the initial sync waits for it), and delivered as
//! [`SourceUpdate::MeshConfig`]: the text as it is, checked by whoever applies it, so that
//! a broken edit is refused there and the last good MeshConfig stays. Its `meshNetworks`
//! key likewise, as [`SourceUpdate::MeshNetworks`].

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

/// The ConfigMap's `mesh` and `meshNetworks` texts.
fn texts(cm: &ConfigMap) -> Texts {
    let key = |k: &str| cm.data.as_ref().and_then(|d| d.get(k)).cloned();
    Texts {
        mesh: key("mesh"),
        networks: key("meshNetworks"),
    }
}

/// What the ConfigMap holds (`None`: that key, or the ConfigMap, is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Texts {
    mesh: Option<String>,
    networks: Option<String>,
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
    // What was last sent; `None`: nothing yet.
    let mut sent: Option<Texts> = None;
    let mut listing: Option<Texts> = None;
    let mut denied_reported = false;
    while let Some(event) = stream.next().await {
        let text = match event {
            Ok(Event::Init) => {
                listing = Some(Texts::default());
                continue;
            }
            Ok(Event::InitApply(cm)) => {
                listing = Some(texts(&cm));
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
            Ok(Event::Apply(cm)) => texts(&cm),
            Ok(Event::Delete(_)) => Texts::default(),
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
        set_kind(&status, &id, |k| {
            k.objects = usize::from(text.mesh.is_some())
        });
        let origin = format!("kubernetes:{id}");
        let before = sent.replace(text.clone());
        let mut updates = Vec::new();
        if before.as_ref().map(|t| &t.mesh) != Some(&text.mesh) {
            updates.push(SourceUpdate::MeshConfig {
                origin: origin.clone(),
                text: text.mesh,
            });
        }
        // Sent the first time only when there is one: no key means no MeshNetworks.
        if before
            .as_ref()
            .map_or(text.networks.is_some(), |t| t.networks != text.networks)
        {
            updates.push(SourceUpdate::MeshNetworks {
                origin: format!("{origin} meshNetworks"),
                text: text.networks,
            });
        }
        for update in updates {
            if tx.send(update).await.is_err() {
                return;
            }
        }
    }
}
