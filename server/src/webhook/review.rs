//! `AdmissionReview` in and out (`admission.k8s.io/v1`, and `v1beta1` answered in kind, as
//! Istio's webhooks do): the request's parts the webhooks read, and the responses they send.
//! Pure; a review that cannot be read is a [`ReviewError`] naming what is wrong.

use base64::Engine;
use serde_json::{Value, json};

/// The largest review body read (Kubernetes caps objects at ~1.5 MiB; reviews carry the
/// object, and the old object on updates).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not an AdmissionReview (apiVersion {api_version:?}, kind {kind:?})")]
    NotAReview { api_version: String, kind: String },
    #[error("the AdmissionReview has no {0}")]
    Missing(&'static str),
}

/// What the webhooks read of a review's request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `admission.k8s.io/v1` or `admission.k8s.io/v1beta1`: answered with the same.
    pub api_version: String,
    pub uid: String,
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT`.
    pub operation: String,
    pub namespace: String,
    pub name: String,
    /// The object as it would be stored (`Null` for a DELETE).
    pub object: Value,
    /// Whether the request is a dry run (nothing is stored; side effects must not happen).
    pub dry_run: bool,
}

const VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Reads a review body.
pub fn parse(body: &[u8]) -> Result<Request, ReviewError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    let api_version = text(&review, "apiVersion");
    let kind = text(&review, "kind");
    if !VERSIONS.contains(&api_version.as_str()) || kind != "AdmissionReview" {
        return Err(ReviewError::NotAReview { api_version, kind });
    }
    let request = review
        .get("request")
        .filter(|r| r.is_object())
        .ok_or(ReviewError::Missing("request"))?;
    let uid = text(request, "uid");
    if uid.is_empty() {
        return Err(ReviewError::Missing("request.uid"));
    }
    Ok(Request {
        api_version,
        uid,
        operation: text(request, "operation"),
        namespace: text(request, "namespace"),
        name: text(request, "name"),
        object: request.get("object").cloned().unwrap_or(Value::Null),
        dry_run: request
            .get("dryRun")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// What a webhook answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub allowed: bool,
    /// Why not (shown by kubectl as `admission webhook "…" denied the request: MESSAGE`).
    pub message: Option<String>,
    /// An RFC 6902 patch of the object.
    pub patch: Option<Value>,
    /// Shown to the client (kubectl prints them).
    pub warnings: Vec<String>,
}

impl Verdict {
    pub fn allow() -> Self {
        Verdict {
            allowed: true,
            ..Default::default()
        }
    }

    pub fn deny(message: impl Into<String>) -> Self {
        Verdict {
            allowed: false,
            message: Some(message.into()),
            ..Default::default()
        }
    }
}

/// The review answering `request` with `verdict`.
pub fn respond(request: &Request, verdict: &Verdict) -> Value {
    let mut response = json!({ "uid": request.uid, "allowed": verdict.allowed });
    if let Some(message) = &verdict.message {
        response["status"] = json!({ "message": message, "code": 400, "reason": "BadRequest" });
    }
    if let Some(patch) = &verdict.patch {
        let bytes = serde_json::to_vec(patch).unwrap_or_default();
        response["patchType"] = "JSONPatch".into();
        response["patch"] = base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into();
    }
    if !verdict.warnings.is_empty() {
        response["warnings"] = json!(verdict.warnings);
    }
    json!({
        "apiVersion": request.api_version,
        "kind": "AdmissionReview",
        "response": response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(api_version: &str, request: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"apiVersion": api_version, "kind": "AdmissionReview", "request": request}),
        )
        .unwrap_or_default()
    }

    #[test]
    fn a_review_is_read_and_answered_in_its_version() {
        let body = review(
            "admission.k8s.io/v1beta1",
            json!({"uid": "u-1", "operation": "CREATE", "namespace": "shop", "object": {"kind": "Pod"}, "dryRun": true}),
        );
        let r = parse(&body).expect("a review");
        assert_eq!(
            (r.uid.as_str(), r.operation.as_str(), r.namespace.as_str()),
            ("u-1", "CREATE", "shop")
        );
        assert!(r.dry_run);
        let patch = json!([{"op": "add", "path": "/metadata/labels/a", "value": "b"}]);
        let out = respond(
            &r,
            &Verdict {
                patch: Some(patch.clone()),
                warnings: vec!["careful".into()],
                ..Verdict::allow()
            },
        );
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(out["response"]["uid"], "u-1");
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(out["response"]["patch"].as_str().unwrap_or_default())
            .expect("base64");
        assert_eq!(serde_json::from_slice::<Value>(&decoded).ok(), Some(patch));
        assert_eq!(out["response"]["warnings"], json!(["careful"]));
        let denied = respond(&r, &Verdict::deny("no"));
        assert_eq!(denied["response"]["allowed"], false);
        assert_eq!(denied["response"]["status"]["message"], "no");
    }

    #[test]
    fn what_is_not_a_review_is_named() {
        assert!(matches!(parse(b"{"), Err(ReviewError::Json(_))));
        assert_eq!(
            parse(br#"{"apiVersion": "v1", "kind": "Pod"}"#),
            Err(ReviewError::NotAReview {
                api_version: "v1".into(),
                kind: "Pod".into()
            })
        );
        assert_eq!(
            parse(&review("admission.k8s.io/v1", json!(null))),
            Err(ReviewError::Missing("request"))
        );
        assert_eq!(
            parse(&review(
                "admission.k8s.io/v1",
                json!({"operation": "CREATE"})
            )),
            Err(ReviewError::Missing("request.uid"))
        );
    }

    proptest::proptest! {
        #[test]
        fn no_body_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&body);
        }
    }
}
