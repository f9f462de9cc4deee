//! Errors: [`ApiError`] is a Kubernetes `Status` failure as the API server sends it; [`Error`]
//! is what the in-process library API returns.

use serde_json::{Value, json};

/// A failed request, rendered as a `Status` object (`kind: Status, status: Failure`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`, `Conflict`, `Expired`.
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when the real server sends one.
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `pods` for the core group, `virtualservices.networking.istio.io` otherwise: how the real
/// server names a resource in its messages.
pub(crate) fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(group: &str, resource: &str, name: &str) -> Value {
    let mut d = json!({ "kind": resource });
    if !name.is_empty() {
        d["name"] = json!(name);
    }
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// `pods "web" is forbidden: User "u" cannot get resource "pods" in API group "" in the
    /// namespace "default"`, the shape kubectl and client libraries print.
    pub(crate) fn forbidden(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Self {
        let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let what = if name.is_empty() {
            qualified(group, res)
        } else {
            format!("{} \"{name}\"", qualified(group, res))
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let resource_words = if sub.is_empty() {
            format!("resource \"{res}\"")
        } else {
            format!("resource \"{res}/{sub}\"")
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{what} is forbidden: User \"{user}\" cannot {verb} {resource_words} in API group \"{group}\" {scope}"
            ),
        )
        .with_details(details(group, res, name))
    }

    pub(crate) fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .with_details(details(group, resource, name))
    }

    pub(crate) fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    pub(crate) fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .with_details(details(group, resource, name))
    }

    pub(crate) fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
        )
        .with_details(details(group, resource, name))
    }

    pub(crate) fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// 422: `Pod "x" is invalid: metadata.name: Required value`.
    pub(crate) fn invalid(group: &str, kind: &str, name: &str, field: &str, why: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: {why}"),
        )
        .with_details({
            let mut d = details(group, kind, name);
            d["causes"] =
                json!([{ "reason": "FieldValueInvalid", "message": why, "field": field }]);
            d
        })
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object the server sends for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        // Go omits an empty reason (a webhook's denial may have none).
        if self.reason.is_empty()
            && let Some(m) = s.as_object_mut()
        {
            m.remove("reason");
        }
        s
    }
}

/// What the in-process [`crate::Emulator`] methods return on failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request failed as it would over HTTP (conflict, not found, invalid, ...).
    #[error("API error: {0}")]
    Api(#[from] ApiError),
    /// No served resource has this name (plural, singular, kind or short name).
    #[error("unknown resource {0:?}")]
    UnknownResource(String),
    /// The name matches resources in several groups: qualify it (`gateways.networking.istio.io`).
    #[error("resource {0:?} is ambiguous: {1:?}")]
    AmbiguousResource(String, Vec<String>),
    /// An object or document could not be parsed.
    #[error("bad object: {0}")]
    BadObject(String),
    /// Certificate generation or TLS setup failed.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Binding the port, writing the kubeconfig, ...
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// `wait_for` ran out of time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, String),
}
