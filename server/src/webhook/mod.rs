//! The admission webhooks the API server calls (Istio's 15017, HTTPS with a serving
//! certificate from shoal's own CA):
//!
//! - `/inject`: sidecar injection. Whether a pod gets a sidecar and what it looks like are
//!   decided by [`shoal_translate::inject`] from the pod, its namespace's labels, the
//!   ProxyConfigs and the live MeshConfig; the answer is a JSON patch. A pod shoal cannot
//!   inject is admitted unchanged, with a warning and a metric: a broken injector must not
//!   stop a cluster's workloads.
//! - `/validate`: Istio and Gateway API objects checked with shoal's own parser and
//!   validator, refused with its issue text.
//!
//! A body that is not an `AdmissionReview` gets a 400 naming what is wrong; bodies over
//! [`review::MAX_BODY`] a 413. A body declared over the limit is read and dropped (up to
//! [`DRAIN_MAX`], for at most [`DRAIN_TIME`]) before the 413 goes out: a caller still
//! writing it would otherwise see its connection reset rather than the answer. Nothing
//! here panics on input.

mod ca_bundle;
pub mod review;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use metrics::counter;
use shoal_config::k8s::namespace_labels;
use shoal_config::parse::{Outcome, parse_value};
use shoal_config::{ConfigSnapshot, Kind, Object, ObjectKey, Origin};
use shoal_translate::MeshOptions;
use shoal_translate::inject::{self, Decision, ProxyConfigLayers, Settings};

pub use ca_bundle::{WebhookNames, keep_ca_bundles};
use review::{Request, Verdict};

use crate::pipeline::Pipeline;

/// What the webhook handlers share.
#[derive(Clone)]
pub struct Webhooks {
    pipeline: Arc<Pipeline>,
    /// Injection settings from the flags; the live MeshConfig is laid over them per request.
    settings: Arc<Settings>,
}

impl Webhooks {
    pub fn new(pipeline: Arc<Pipeline>, settings: Settings) -> Self {
        Webhooks {
            pipeline,
            settings: Arc::new(settings),
        }
    }

    /// The routes, with the body limit.
    pub fn router(self) -> Router {
        Router::new()
            .route("/inject", post(inject_handler))
            .route("/validate", post(validate_handler))
            .layer(DefaultBodyLimit::max(review::MAX_BODY))
            .layer(axum::middleware::from_fn(refuse_oversized))
            .with_state(self)
    }
}

/// How much of a body declared over [`review::MAX_BODY`] is read before its 413; a longer
/// one has its connection closed once that much has been read.
pub const DRAIN_MAX: usize = 4 * review::MAX_BODY;
/// How long reading such a body may take.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// A body whose `Content-Length` is over the limit: read and dropped (bounded), then a 413.
/// Others go on to the handlers (a chunked body over the limit is refused there).
async fn refuse_oversized(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_none_or(|n| n <= review::MAX_BODY as u64) {
        return next.run(req).await;
    }
    let mut body = req.into_body().into_data_stream();
    let drain = async {
        use futures::StreamExt;
        let mut read = 0;
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len();
            if read > DRAIN_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over {} bytes", review::MAX_BODY),
    )
        .into_response()
}

/// The flags' settings with what the running MeshConfig and flags say (a `defaultConfig`
/// removed from the MeshConfig is gone here too).
fn settings_now(base: &Settings, options: &MeshOptions) -> Settings {
    let mut s = base.clone();
    s.trust_domain = options.trust_domain.clone();
    s.root_namespace = options.root_namespace.clone();
    s.domain_suffix = options.domain_suffix.clone();
    s.default_proxy_config = options.proxy_defaults.clone();
    s
}

fn answer(body: &Bytes, decide: impl FnOnce(&Request) -> Verdict) -> Response {
    let request = match review::parse(body) {
        Ok(r) => r,
        Err(e) => {
            counter!("shoal_webhook_bad_requests_total").increment(1);
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let verdict = decide(&request);
    axum::Json(review::respond(&request, &verdict)).into_response()
}

async fn inject_handler(State(w): State<Webhooks>, body: Bytes) -> Response {
    let config = w.pipeline.config();
    let settings = settings_now(&w.settings, &w.pipeline.options());
    answer(&body, |r| {
        let (verdict, result) = injection(r, &config, &settings);
        counter!("shoal_injections_total", "result" => result).increment(1);
        verdict
    })
}

/// The injection verdict for a review, with the metric's result label.
pub fn injection(
    request: &Request,
    config: &ConfigSnapshot,
    settings: &Settings,
) -> (Verdict, &'static str) {
    if request.operation != "CREATE" {
        return (Verdict::allow(), "not_create");
    }
    let namespace_object = config.get(&ObjectKey::new(Kind::Namespace, "", &request.namespace));
    let namespace = namespace_object.and_then(|e| match e.object.as_ref() {
        Object::Namespace(n) => Some(n),
        _ => None,
    });
    let ns_labels = namespace_labels(&request.namespace, namespace);
    if let Decision::Skip(reason) = inject::decide(&ns_labels, &request.object, settings) {
        tracing::debug!(namespace = %request.namespace, %reason, "not injected");
        return (Verdict::allow(), reason.as_str());
    }
    let pod_labels = request
        .object
        .pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    let layers = ProxyConfigLayers::for_pod(config, settings, &request.namespace, &pod_labels);
    match inject::inject(&request.object, &request.namespace, &layers, settings) {
        Ok(injected) => {
            let ops = inject::patch(&request.object, &injected);
            match serde_json::to_value(ops) {
                Ok(patch) => (
                    Verdict {
                        patch: Some(patch),
                        ..Verdict::allow()
                    },
                    "injected",
                ),
                Err(e) => not_injected(request, &e.to_string()),
            }
        }
        Err(e) => not_injected(request, &e.to_string()),
    }
}

fn not_injected(request: &Request, why: &str) -> (Verdict, &'static str) {
    tracing::warn!(namespace = %request.namespace, name = %request.name, error = why, "pod admitted without a sidecar");
    (
        Verdict {
            warnings: vec![format!(
                "shoal could not inject the istio-proxy sidecar: {why}; the pod runs without it"
            )],
            ..Verdict::allow()
        },
        "error",
    )
}

async fn validate_handler(body: Bytes) -> Response {
    answer(&body, |r| {
        let verdict = validation(r);
        let result = if verdict.allowed { "allowed" } else { "denied" };
        counter!("shoal_validations_total", "result" => result).increment(1);
        verdict
    })
}

/// The validation verdict: the object parsed and checked as the config sources do.
pub fn validation(request: &Request) -> Verdict {
    if !matches!(request.operation.as_str(), "CREATE" | "UPDATE") {
        return Verdict::allow();
    }
    let mut object = request.object.clone();
    // The API server sends the object with its namespace only in the request on create.
    if let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut())
        && !request.namespace.is_empty()
    {
        meta.entry("namespace")
            .or_insert_with(|| request.namespace.clone().into());
    }
    let origin = Origin {
        source: "admission".into(),
        doc: 1,
        line: 0,
        item: None,
    };
    let mut warnings = Vec::new();
    for doc in parse_value(origin, object) {
        match doc.outcome {
            Outcome::Rejected { issues, .. } => {
                let text: Vec<String> = issues
                    .iter()
                    .filter(|i| i.is_error())
                    .map(|i| format!("{}: {}", i.field, i.message))
                    .collect();
                return Verdict::deny(format!("configuration is invalid: {}", text.join("; ")));
            }
            Outcome::Accepted { warnings: w, .. } => {
                warnings.extend(w.iter().map(|i| format!("{}: {}", i.field, i.message)));
            }
            Outcome::Skipped { .. } => {}
        }
    }
    Verdict {
        warnings,
        ..Verdict::allow()
    }
}

#[cfg(test)]
mod tests;
