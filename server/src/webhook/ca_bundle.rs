//! Keeps the `caBundle` of shoal's webhook configurations current, as istiod patches its
//! own: the API server must trust the webhooks' serving certificate, which shoal's CA
//! issues and renews, and whose roots rotate. Checked periodically (an edited or reset
//! bundle is restored), patched only where it differs, by the Raft leader only.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::cluster::Leadership;
use crate::tls::ServingTls;

/// How often the configurations are checked.
const EVERY: Duration = Duration::from_secs(10);

/// The webhook configurations shoal owns.
#[derive(Debug, Clone)]
pub struct WebhookNames {
    /// The MutatingWebhookConfiguration of sidecar injection.
    pub mutating: String,
    /// The ValidatingWebhookConfiguration of config validation.
    pub validating: String,
}

/// The JSON patch setting `bundle` on every webhook of `configuration` whose caBundle
/// differs (none when all are current).
fn bundle_patch(configuration: &Value, bundle: &str) -> Vec<Value> {
    let webhooks = configuration
        .get("webhooks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    webhooks
        .iter()
        .enumerate()
        .filter(|(_, w)| w.pointer("/clientConfig/caBundle").and_then(Value::as_str) != Some(bundle))
        .map(|(i, _)| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
        .collect()
}

async fn patch_one<K>(api: &Api<K>, name: &str, bundle: &str) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let Some(current) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let value = serde_json::to_value(&current).unwrap_or(Value::Null);
    let ops = bundle_patch(&value, bundle);
    if ops.is_empty() {
        return Ok(false);
    }
    let patch: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
        Ok(p) => p,
        Err(_) => return Ok(false),
    };
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await?;
    Ok(true)
}

/// Runs until the task is dropped.
pub async fn keep_ca_bundles(
    client: Client,
    names: WebhookNames,
    tls: Arc<ServingTls>,
    leadership: Leadership,
) {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client);
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        if !leadership.is_leader() {
            continue;
        }
        let bundle = base64::engine::general_purpose::STANDARD.encode(tls.trust_bundle_pem());
        for (kind, result) in [
            (
                "mutating",
                patch_one(&mutating, &names.mutating, &bundle).await,
            ),
            (
                "validating",
                patch_one(&validating, &names.validating, &bundle).await,
            ),
        ] {
            match result {
                Ok(true) => {
                    metrics::counter!("shoal_webhook_ca_bundle_patches_total", "kind" => kind)
                        .increment(1);
                    tracing::info!(kind, "webhook caBundle updated");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(kind, error = %e, "could not update the webhook caBundle"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_bundles_are_patched() {
        let config = json!({"webhooks": [
            {"name": "a", "clientConfig": {"caBundle": "NEW"}},
            {"name": "b", "clientConfig": {"caBundle": "OLD"}},
            {"name": "c", "clientConfig": {"service": {"name": "istiod"}}},
        ]});
        let ops = bundle_patch(&config, "NEW");
        let paths: Vec<&str> = ops.iter().filter_map(|o| o["path"].as_str()).collect();
        assert_eq!(
            paths,
            [
                "/webhooks/1/clientConfig/caBundle",
                "/webhooks/2/clientConfig/caBundle"
            ]
        );
        assert!(bundle_patch(&json!({}), "NEW").is_empty());
    }
}
