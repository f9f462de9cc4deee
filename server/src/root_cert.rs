//! The `istio-ca-root-cert` ConfigMap (key `root-cert.pem`: the trust bundle) in every
//! namespace of the mesh, as istiod writes it: injected pods mount it to verify the control
//! plane and their peers. Kept current through root rotation; an edited or deleted copy is
//! restored. Namespaces of the mesh are those the discovery selectors include (every
//! namespace without selectors).
//!
//! State-based: a watch on the ConfigMaps of that name tells what the cluster holds, the
//! config and the CA tell what it should hold, and only the difference is written — by
//! the Raft leader only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use shoal_config::{ConfigSnapshot, Kind};

use crate::cluster::Leadership;
use crate::pipeline::Pipeline;
use crate::tls::ServingTls;

/// The ConfigMap's name and key, as Istio's agents read them.
pub const NAME: &str = "istio-ca-root-cert";
pub const KEY: &str = "root-cert.pem";
/// How often the trust bundle is looked at for a rotation.
const BUNDLE_CHECK: Duration = Duration::from_secs(5);

/// The namespaces that should hold the ConfigMap.
fn wanted(pipeline: &Pipeline, config: &ConfigSnapshot) -> BTreeSet<String> {
    match pipeline.selected_namespaces() {
        Some(selected) => selected
            .into_iter()
            .filter(|ns| {
                config
                    .get(&shoal_config::ObjectKey::new(Kind::Namespace, "", ns))
                    .is_some()
            })
            .collect(),
        None => config
            .of_kind(Kind::Namespace)
            .map(|(k, _)| k.name.to_string())
            .collect(),
    }
}

/// Namespaces whose copy differs from `bundle` (or that have none).
fn stale(
    wanted: &BTreeSet<String>,
    seen: &BTreeMap<String, Option<String>>,
    bundle: &str,
) -> Vec<String> {
    wanted
        .iter()
        .filter(|ns| seen.get(*ns).and_then(Option::as_deref) != Some(bundle))
        .cloned()
        .collect()
}

fn body(namespace: &str, bundle: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(NAME.into());
    cm.metadata.namespace = Some(namespace.into());
    cm.metadata.labels = Some([("istio.io/config".to_string(), "true".to_string())].into());
    cm.data = Some([(KEY.to_string(), bundle.to_string())].into());
    cm
}

async fn write(
    client: &Client,
    namespace: &str,
    exists: bool,
    bundle: &str,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    if !exists {
        match api
            .create(&PostParams::default(), &body(namespace, bundle))
            .await
        {
            Ok(_) => return Ok(()),
            // Created meanwhile (by us before a restart, or an earlier leader): patch it.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let patch = json!({
        "metadata": {"labels": {"istio.io/config": "true"}},
        "data": {KEY: bundle},
    });
    api.patch(NAME, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

/// Runs until the task is dropped.
pub async fn distribute(
    client: Client,
    pipeline: Arc<Pipeline>,
    tls: Arc<ServingTls>,
    mut leadership: Leadership,
) {
    let api: Api<ConfigMap> = Api::all(client.clone());
    let stream = watcher::watcher(
        api,
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
    )
    .default_backoff();
    futures::pin_mut!(stream);
    let mut config = pipeline.config_watch();
    // What the cluster holds: namespace → the key's value (`None`: the ConfigMap has none).
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, Option<String>>> = None;
    let mut synced = false;
    let mut tick = tokio::time::interval(BUNDLE_CHECK);
    let data = |cm: &ConfigMap| cm.data.as_ref().and_then(|d| d.get(KEY)).cloned();
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(Event::Init)) => listing = Some(BTreeMap::new()),
                Some(Ok(Event::InitApply(cm))) => {
                    if let (Some(l), Some(ns)) = (listing.as_mut(), cm.metadata.namespace.clone()) {
                        l.insert(ns, data(&cm));
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    seen = listing.take().unwrap_or_default();
                    synced = true;
                }
                Some(Ok(Event::Apply(cm))) => {
                    if let Some(ns) = cm.metadata.namespace.clone() {
                        seen.insert(ns, data(&cm));
                    }
                }
                Some(Ok(Event::Delete(cm))) => {
                    if let Some(ns) = &cm.metadata.namespace {
                        seen.remove(ns);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "watching {NAME} ConfigMaps; retrying");
                    continue;
                }
                None => return,
            },
            r = config.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
            () = leadership.changed() => {}
        }
        if !synced || !leadership.is_leader() {
            continue;
        }
        let cfg = config.borrow_and_update().clone();
        let bundle = tls.trust_bundle_pem();
        for ns in stale(&wanted(&pipeline, &cfg), &seen, &bundle) {
            let exists = seen.contains_key(&ns);
            match write(&client, &ns, exists, &bundle).await {
                Ok(()) => {
                    // The watch will say so too; until then, do not write it again.
                    seen.insert(ns.clone(), Some(bundle.clone()));
                    metrics::counter!("shoal_root_cert_writes_total").increment(1);
                    tracing::info!(namespace = %ns, "{NAME} written");
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // The namespace is going away.
                    tracing::debug!(namespace = %ns, "no namespace for {NAME}");
                }
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "could not write {NAME}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_and_outdated_copies_are_written() {
        let wanted: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
        let seen: BTreeMap<String, Option<String>> = [
            ("a".to_string(), Some("ROOT".to_string())),
            ("b".to_string(), Some("OLD".to_string())),
            ("c".to_string(), None),
            ("elsewhere".to_string(), Some("OLD".to_string())),
        ]
        .into();
        assert_eq!(stale(&wanted, &seen, "ROOT"), ["b", "c", "d"]);
    }
}
