//! Fetches the JSON Web Key Sets of RequestAuthentication rules, as istiod does by default:
//! the keys of a `jwksUri` (or of the `jwks_uri` an issuer's OpenID configuration names)
//! are fetched here and inlined into the proxies' `jwt_authn` filters, so proxies need no
//! route to the identity provider.
//!
//! The pipeline says which key sets its config needs (`Pipeline::jwks_wanted`); this task
//! fetches each new one at once, refreshes it every `refresh`, retries failures with a
//! backoff (keeping the last good keys meanwhile), and hands every change to the pipeline,
//! which rebuilds the views. A key set never fetched is served as one that verifies no
//! token (`shoal_translate::model::UNUSABLE_JWKS`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use shoal_translate::model::{FetchedJwks, JwksRef};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::http_client::{HttpClient, HttpError, Limits};
use crate::pipeline::Pipeline;

/// A document larger than this is refused (key sets are a few KiB).
const MAX_BODY: usize = 1 << 20;
/// Redirects followed per fetch.
const MAX_REDIRECTS: usize = 3;

/// How key sets are fetched.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// Time between refreshes of a fetched key set (Istio: 20 minutes).
    pub refresh: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// PEM files of CAs trusted for `https` besides the system's roots.
    pub extra_roots: Vec<std::path::PathBuf>,
}

/// Why a key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{uri}: {reason}")]
    Document { uri: String, reason: String },
}

/// What key sets and OpenID configurations are asked for as.
const JSON: &str = "application/json";

/// A JSON Web Key Set as served, checked to be one (a JSON object with a non-empty `keys`
/// array of objects).
fn key_set(uri: &str, body: &[u8]) -> Result<Arc<str>, FetchError> {
    let bad = |reason: &str| FetchError::Document {
        uri: uri.to_string(),
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let keys = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad("not a JSON Web Key Set (no `keys` array)"))?;
    if keys.is_empty() || !keys.iter().all(serde_json::Value::is_object) {
        return Err(bad("a JSON Web Key Set needs at least one key object"));
    }
    Ok(text.trim().into())
}

/// The `jwks_uri` of an issuer's OpenID configuration.
async fn discover(client: &HttpClient, issuer: &str) -> Result<String, FetchError> {
    let uri = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = client.get(&uri, JSON).await?;
    let doc: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| FetchError::Document {
            uri: uri.clone(),
            reason: format!("not JSON: {e}"),
        })?;
    doc.get("jwks_uri")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or(FetchError::Document {
            uri,
            reason: "no `jwks_uri`".into(),
        })
}

/// Fetches one key set.
pub async fn fetch(client: &HttpClient, r: &JwksRef) -> Result<Arc<str>, FetchError> {
    let uri = match r {
        JwksRef::Uri(uri) => uri.clone(),
        JwksRef::Discover(issuer) => discover(client, issuer).await?,
    };
    let body = client.get(&uri, JSON).await?;
    key_set(&uri, &body)
}

/// One wanted key set: what is known of it and when to fetch it next.
struct Entry {
    keys: Option<Arc<str>>,
    due: Instant,
    failures: u32,
    /// Wall-clock time of the last successful fetch, and the last error since.
    fetched_at: Option<std::time::SystemTime>,
    last_error: Option<String>,
}

/// What `/debug/jwksz` shows of the key sets.
fn status(entries: &BTreeMap<JwksRef, Entry>) -> Vec<serde_json::Value> {
    entries
        .iter()
        .map(|(r, e)| {
            let (kind, source) = match r {
                JwksRef::Uri(u) => ("jwksUri", u.as_str()),
                JwksRef::Discover(i) => ("issuer", i.as_str()),
            };
            let keys = e
                .keys
                .as_deref()
                .and_then(|k| serde_json::from_str::<serde_json::Value>(k).ok())
                .and_then(|d| d.get("keys").and_then(|k| k.as_array()).map(Vec::len));
            serde_json::json!({
                kind: source,
                "keys": keys,
                "fetched_unix": e.fetched_at
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                "failures_in_a_row": e.failures,
                "last_error": e.last_error,
                // Without keys, the rule's tokens are all rejected.
                "serving": if e.keys.is_some() { "fetched keys" } else { "a key set that verifies nothing" },
            })
        })
        .collect()
}

/// The delay before retrying after `failures` failures in a row: 1 s doubling, at most a
/// minute (and never past the next refresh).
fn backoff(failures: u32, refresh: Duration) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs(secs)
        .min(Duration::from_secs(60))
        .min(refresh)
}

/// What the fetcher knows of each key set (for `/debug/jwksz`).
#[derive(Debug, Default)]
pub struct JwksStatus(parking_lot::Mutex<Vec<serde_json::Value>>);

impl JwksStatus {
    pub fn get(&self) -> Vec<serde_json::Value> {
        self.0.lock().clone()
    }
}

/// Keeps the pipeline's key sets fetched until `wanted`'s sender is gone.
pub async fn run(
    pipeline: Arc<Pipeline>,
    mut wanted: watch::Receiver<BTreeSet<JwksRef>>,
    cfg: JwksConfig,
    report: Arc<JwksStatus>,
) {
    let limits = Limits {
        timeout: cfg.timeout,
        max_body: MAX_BODY,
        max_redirects: MAX_REDIRECTS,
    };
    let client = match HttpClient::new(&cfg.extra_roots, limits) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot fetch JWKS: every jwksUri's tokens are rejected");
            return;
        }
    };
    let mut entries: BTreeMap<JwksRef, Entry> = BTreeMap::new();
    let mut published = FetchedJwks::new();
    loop {
        let want = wanted.borrow_and_update().clone();
        let now = Instant::now();
        entries.retain(|r, _| want.contains(r));
        for r in want {
            entries.entry(r).or_insert(Entry {
                keys: None,
                due: now,
                failures: 0,
                fetched_at: None,
                last_error: None,
            });
        }
        let due: Vec<JwksRef> = entries
            .iter()
            .filter(|(_, e)| e.due <= now)
            .map(|(r, _)| r.clone())
            .collect();
        let mut fetches = tokio::task::JoinSet::new();
        for r in due {
            let client = client.clone();
            fetches.spawn(async move {
                let result = fetch(&client, &r).await;
                (r, result)
            });
        }
        while let Some(done) = fetches.join_next().await {
            let Ok((r, result)) = done else { continue };
            let Some(e) = entries.get_mut(&r) else {
                continue;
            };
            match result {
                Ok(keys) => {
                    counter!("shoal_jwks_fetches_total", "result" => "ok").increment(1);
                    if e.keys.as_ref() != Some(&keys) {
                        tracing::info!(jwks = ?r, "fetched JSON Web Key Set");
                    }
                    e.keys = Some(keys);
                    e.failures = 0;
                    e.fetched_at = Some(std::time::SystemTime::now());
                    e.last_error = None;
                    e.due = Instant::now() + cfg.refresh;
                }
                Err(err) => {
                    counter!("shoal_jwks_fetches_total", "result" => "error").increment(1);
                    e.failures += 1;
                    let retry = backoff(e.failures, cfg.refresh);
                    tracing::warn!(
                        jwks = ?r, error = %err, retry_in = ?retry, kept = e.keys.is_some(),
                        "JWKS fetch failed"
                    );
                    e.due = Instant::now() + retry;
                    e.last_error = Some(err.to_string());
                }
            }
        }
        *report.0.lock() = status(&entries);
        let current: FetchedJwks = entries
            .iter()
            .filter_map(|(r, e)| Some((r.clone(), e.keys.clone()?)))
            .collect();
        if current != published {
            published = current.clone();
            let pipeline = pipeline.clone();
            let _ = tokio::task::spawn_blocking(move || pipeline.set_jwks(current)).await;
        }
        let next = entries.values().map(|e| e.due).min();
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            _ = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_are_checked() {
        assert!(key_set("u", br#"{"keys":[{"kty":"EC"}]}"#).is_ok());
        for bad in [
            &b"\xff"[..],
            b"<html>",
            br#"{"keys":[]}"#,
            br#"{"keys":"x"}"#,
            br#"{"keys":[1]}"#,
            br#"[]"#,
        ] {
            assert!(key_set("u", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_grows_to_a_minute() {
        let day = Duration::from_secs(86_400);
        let steps: Vec<u64> = (1..=9).map(|n| backoff(n, day).as_secs()).collect();
        assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(9, Duration::from_secs(5)), Duration::from_secs(5));
    }
}
