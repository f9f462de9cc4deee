//! Admission webhooks, called as kube-apiserver calls them on create, update (also of the status
//! subresource) and delete: the MutatingWebhookConfigurations' webhooks first, in configuration
//! name order and then list order, each seeing the previous ones' JSON patches; then the
//! ValidatingWebhookConfigurations' (one after the other here; in parallel in kube-apiserver).
//! A denial, a failed call under `failurePolicy: Fail` and a patch that does not apply fail the
//! request with kube-apiserver's `Status`; webhook warnings become `Warning` headers.

mod client;
mod matching;
mod review;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};

use crate::api::Shared;
use crate::error::ApiError;
use crate::present;
use crate::resources::ResourceDef;
use client::{Connect, Target};
use matching::{NamespaceSource, Webhook};

const GROUP: &str = "admissionregistration.k8s.io";
const MUTATING: &str = "mutatingwebhookconfigurations";
const VALIDATING: &str = "validatingwebhookconfigurations";

impl crate::Emulator {
    /// Where a webhook's `clientConfig.service` (`namespace`/`name`, `port`) is served, as
    /// kube-proxy would route it: the call goes to `addr`, and the certificate must still be
    /// valid for `NAME.NAMESPACE.svc`. Calls to a service without an endpoint fail with `no
    /// endpoints available for service "NAME"`.
    pub fn set_service_endpoint(&self, namespace: &str, name: &str, port: u16, addr: SocketAddr) {
        self.shared()
            .service_endpoints
            .lock()
            .insert((namespace.to_string(), name.to_string(), port), addr);
    }

    /// Calls made so far to the admission webhook named `webhook` (a `webhooks[].name`),
    /// whatever their outcome (refused connections and timeouts count too).
    pub fn admission_calls(&self, webhook: &str) -> u64 {
        self.shared()
            .admission_calls
            .lock()
            .get(webhook)
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// One write, as admission sees it.
pub(crate) struct Attributes<'a> {
    pub def: &'a ResourceDef,
    /// The version the client asked for.
    pub version: &'a str,
    /// `Some("status")` for the status subresource.
    pub sub: Option<&'a str>,
    /// The namespace of the URL (`None` for cluster-scoped resources).
    pub ns: Option<&'a str>,
    /// The object's name (empty for a create with `generateName`).
    pub name: &'a str,
    pub op: Operation,
    pub dry_run: bool,
    /// The `CreateOptions`, `UpdateOptions` or `DeleteOptions` of the request.
    pub options: Value,
}

/// One webhook called for one write, at the version its rules matched.
struct Invocation<'a> {
    hook: &'a Webhook,
    version: String,
    mutating: bool,
}

/// Why a call did not produce a verdict.
enum CallError {
    /// kube-apiserver's `ErrCallingWebhook`: the `failurePolicy` decides.
    Failed(String),
    /// A failure of the request itself, whatever the policy.
    Status(ApiError),
}

/// Runs the write through the matching webhooks; returns the object to store (mutated by the
/// mutating webhooks' patches), or the error the request fails with. Warnings collect in
/// `warnings`.
pub(crate) async fn admit(
    shared: &Shared,
    attrs: &Attributes<'_>,
    mut object: Option<Value>,
    old: Option<&Value>,
    warnings: &Mutex<Vec<String>>,
) -> Result<Option<Value>, ApiError> {
    // kube-apiserver never sends webhook configurations to webhooks (a broken webhook could
    // otherwise lock its own configuration); TokenReviews are not stored.
    if attrs.def.group == GROUP || attrs.def.create_only {
        return Ok(object);
    }
    let mutating = configured(shared, MUTATING)?;
    let validating = configured(shared, VALIDATING)?;
    if mutating.is_empty() && validating.is_empty() {
        return Ok(object);
    }
    // The NamespaceLifecycle plugin runs before the webhooks.
    if attrs.op == Operation::Create && attrs.def.namespaced {
        let ns = attrs.ns.unwrap_or("default");
        namespace_labels(shared, ns)?;
    }
    let user = review::user_info(&shared.opts.user);
    for (hooks, mutate) in [(&mutating, true), (&validating, false)] {
        for hook in hooks {
            let Some(version) = invocation(shared, hook, attrs, object.as_ref(), old)? else {
                continue;
            };
            let inv = Invocation {
                hook,
                version,
                mutating: mutate,
            };
            let verdict = match call(shared, &inv, attrs, &user, object.as_ref(), old).await {
                Ok(v) => v,
                Err(e) => {
                    failed(hook, e)?;
                    continue;
                }
            };
            warnings.lock().extend(verdict.warnings);
            if !verdict.allowed {
                return Err(denied(&hook.name, verdict.status.as_ref()));
            }
            let Some(patch) = verdict.patch else {
                continue;
            };
            match patched(&inv, attrs, object.as_ref(), &patch) {
                Ok(Some(o)) => object = Some(o),
                Ok(None) => {}
                Err(e) => failed(hook, e)?,
            }
        }
    }
    Ok(object)
}

/// A failed call: fine under `failurePolicy: Ignore`, else the request's error.
fn failed(hook: &Webhook, e: CallError) -> Result<(), ApiError> {
    match e {
        CallError::Failed(reason) if hook.ignores_failures() => {
            tracing::warn!(
                "kube-emulator: failed calling webhook {:?}, failing open: {reason}",
                hook.name
            );
            Ok(())
        }
        CallError::Failed(reason) => Err(internal_error(&format!(
            "failed calling webhook {:?}: {reason}",
            hook.name
        ))),
        CallError::Status(e) => Err(e),
    }
}

/// The webhooks of every configuration of one kind, in name order.
fn configured(shared: &Shared, plural: &str) -> Result<Vec<Webhook>, ApiError> {
    let store = shared.store.lock();
    let Some(def) = store.registry.find_storage(GROUP, plural).cloned() else {
        return Ok(Vec::new());
    };
    let items = store
        .snapshot(&def, None, None)
        .map(|(items, _)| items)
        .unwrap_or_default();
    drop(store);
    let mut hooks = Vec::new();
    for (key, config) in items {
        let parsed = matching::parse_configuration(&config)
            .map_err(|e| internal_error(&format!("{} {:?} is not valid: {e}", def.kind, key.1)))?;
        hooks.extend(parsed);
    }
    Ok(hooks)
}

/// The labels of a namespace; 404 when it does not exist, as kube-apiserver answers.
fn namespace_labels(shared: &Shared, name: &str) -> Result<Value, ApiError> {
    let store = shared.store.lock();
    let def = store
        .registry
        .find_storage("", "namespaces")
        .cloned()
        .ok_or_else(|| ApiError::internal("no namespaces resource"))?;
    let ns = store
        .get(&def, None, name)
        .ok_or_else(|| ApiError::not_found("", "namespaces", name))?;
    Ok(ns
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({})))
}

/// The version to call `hook` at, or `None` when its rules or selectors leave the write out.
fn invocation(
    shared: &Shared,
    hook: &Webhook,
    attrs: &Attributes<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<Option<String>, ApiError> {
    let Some(version) = matching::rule_version(hook, attrs) else {
        return Ok(None);
    };
    let bad_selector = |e: String| internal_error(&format!("webhook {:?}: {e}", hook.name));
    let ns_sel = crate::selectors::Selector::structured(hook.namespace_selector.as_ref())
        .map_err(|e| bad_selector(format!("namespaceSelector: {e}")))?;
    if !ns_sel.is_empty() {
        let labels = match matching::namespace_source(attrs) {
            NamespaceSource::Unscoped => None,
            NamespaceSource::Object => {
                // Defaulting (before admission) gives every Namespace this label.
                let mut l = object
                    .and_then(|o| o.pointer("/metadata/labels"))
                    .cloned()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                l["kubernetes.io/metadata.name"] = json!(attrs.name);
                Some(l)
            }
            NamespaceSource::Named(ns) => Some(namespace_labels(shared, ns)?),
        };
        if labels.is_some_and(|l| !ns_sel.matches_label_map(Some(&l))) {
            return Ok(None);
        }
    }
    if !matching::object_selected(hook, object, old).map_err(bad_selector)? {
        return Ok(None);
    }
    Ok(Some(version))
}

async fn call(
    shared: &Shared,
    inv: &Invocation<'_>,
    attrs: &Attributes<'_>,
    user: &Value,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<review::Verdict, CallError> {
    let hook = inv.hook;
    if attrs.dry_run {
        match hook.side_effects.as_deref() {
            Some("None" | "NoneOnDryRun") => {}
            None => return Err(CallError::Failed("Webhook SideEffects is nil".into())),
            Some(_) => {
                return Err(CallError::Status(ApiError::bad_request(format!(
                    "admission webhook {:?} does not support dry run",
                    hook.name
                ))));
            }
        }
    }
    if !hook.admission_review_versions.is_empty()
        && !hook.admission_review_versions.iter().any(|v| v == "v1")
    {
        return Err(CallError::Failed(
            "could not create admission objects: webhook does not accept known AdmissionReview versions (the emulator sends v1 only)".into(),
        ));
    }
    let (target, tls) = target(shared, hook).map_err(CallError::Failed)?;
    let uid = crate::util::uuid();
    let body = review::request(&uid, attrs, &inv.version, user, object, old);
    let body = serde_json::to_vec(&body)
        .map_err(|e| CallError::Status(ApiError::internal(e.to_string())))?;
    *shared
        .admission_calls
        .lock()
        .entry(hook.name.clone())
        .or_insert(0) += 1;
    let answer = client::post(&target, tls, body, hook.timeout())
        .await
        .map_err(|e| CallError::Failed(format!("failed to call webhook: {e}")))?;
    review::verify(&uid, inv.mutating, &answer).map_err(CallError::Failed)
}

/// Where `clientConfig` points, and a TLS client trusting its `caBundle`.
fn target(shared: &Shared, hook: &Webhook) -> Result<(Target, Arc<rustls::ClientConfig>), String> {
    let no_client = |e: String| format!("could not get REST client: {e}");
    let cc = &hook.client_config;
    let ca = match cc.ca_bundle.as_deref() {
        None | Some("") => Vec::new(),
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| no_client(format!("caBundle: {e}")))?,
    };
    let tls = client::tls_config(&ca).map_err(no_client)?;
    let query = format!("timeout={}s", hook.timeout().as_secs());
    let target = match (&cc.service, &cc.url) {
        (Some(svc), None) => {
            let port = svc.port.unwrap_or(443);
            let host = format!("{}.{}.svc", svc.name, svc.namespace);
            let path = svc.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
            let endpoint = shared
                .service_endpoints
                .lock()
                .get(&(svc.namespace.clone(), svc.name.clone(), port))
                .copied();
            Target {
                connect: endpoint
                    .map_or_else(|| Connect::Unresolved(svc.name.clone()), Connect::Addr),
                server_name: ServerName::try_from(host.clone())
                    .map_err(|e| no_client(e.to_string()))?,
                authority: format!("{host}:{port}"),
                path_and_query: format!("{path}?{query}"),
                url: format!("https://{host}:{port}{path}?{query}"),
            }
        }
        (None, Some(raw)) => {
            let mut url = url::Url::parse(raw).map_err(|e| no_client(e.to_string()))?;
            if url.scheme() != "https" {
                return Err(no_client(format!("webhook URL {raw:?} is not https")));
            }
            let port = url.port().unwrap_or(443);
            let (server_name, connect) = match url.host() {
                Some(url::Host::Domain(d)) => (
                    ServerName::try_from(d.to_string()).map_err(|e| no_client(e.to_string()))?,
                    Connect::Host(d.to_string(), port),
                ),
                Some(url::Host::Ipv4(ip)) => (
                    ServerName::IpAddress(IpAddr::V4(ip).into()),
                    Connect::Addr((ip, port).into()),
                ),
                Some(url::Host::Ipv6(ip)) => (
                    ServerName::IpAddress(IpAddr::V6(ip).into()),
                    Connect::Addr((ip, port).into()),
                ),
                None => return Err(no_client(format!("webhook URL {raw:?} has no host"))),
            };
            let authority = url[url::Position::BeforeHost..url::Position::AfterPort].to_string();
            url.set_query(Some(&query));
            Target {
                connect,
                server_name,
                authority,
                path_and_query: url[url::Position::BeforePath..url::Position::AfterQuery]
                    .to_string(),
                url: url.to_string(),
            }
        }
        _ => {
            return Err(no_client(
                "exactly one of clientConfig.url and clientConfig.service must be set".into(),
            ));
        }
    };
    Ok((target, tls))
}

/// The object after a mutating webhook's JSON patch (applied at the version the webhook saw,
/// then read back at the requested one: no conversion). `None` when the patch is empty.
fn patched(
    inv: &Invocation<'_>,
    attrs: &Attributes<'_>,
    object: Option<&Value>,
    patch: &[u8],
) -> Result<Option<Value>, CallError> {
    let ops: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| {
        CallError::Failed(format!(
            "received undecodable patch in webhook response: {e}"
        ))
    })?;
    if ops.0.is_empty() {
        return Ok(None);
    }
    let Some(object) = object else {
        return Err(CallError::Status(internal_error(&format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            inv.hook.name
        ))));
    };
    let mut doc = present::object(attrs.def, &inv.version, object);
    json_patch::patch(&mut doc, &ops.0)
        .map_err(|e| CallError::Status(internal_error(&e.to_string())))?;
    if !doc.is_object() {
        return Err(CallError::Status(internal_error(
            "the patched object is not a JSON object",
        )));
    }
    Ok(Some(present::object(attrs.def, attrs.version, &doc)))
}

/// kube-apiserver's `NewInternalError`: 500, `Internal error occurred: ...`, one cause.
fn internal_error(reason: &str) -> ApiError {
    ApiError {
        details: Some(json!({"causes": [{"message": reason}]})),
        ..ApiError::internal(format!("Internal error occurred: {reason}"))
    }
}

/// A webhook's refusal as kube-apiserver words it: its `status` with the message prefixed by
/// `admission webhook "NAME" denied the request`, and a code of at least 400.
fn denied(webhook: &str, status: Option<&Value>) -> ApiError {
    let field = |k: &str| {
        status
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let by = format!("admission webhook {webhook:?} denied the request");
    let message = match (field("message"), field("reason")) {
        ("", "") => format!("{by} without explanation"),
        ("", reason) => format!("{by}: {reason}"),
        (m, _) => format!("{by}: {m}"),
    };
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400);
    ApiError {
        code,
        reason: field("reason").to_string(),
        message,
        details: status
            .and_then(|s| s.get("details"))
            .filter(|d| d.is_object())
            .cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_read_like_kube_apiserver() {
        let e = denied(
            "v.example.com",
            Some(&json!({"code": 403, "message": "no", "reason": "Forbidden"})),
        );
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "admission webhook \"v.example.com\" denied the request: no"
        );
        let e = denied("v", Some(&json!({"code": 200})));
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"v\" denied the request without explanation"
        );
        let e = denied("v", Some(&json!({"reason": "Because"})));
        assert_eq!(
            e.message,
            "admission webhook \"v\" denied the request: Because"
        );
        assert_eq!(denied("v", None).code, 400);
        let e = internal_error("failed calling webhook \"v\": x");
        assert_eq!(
            e.message,
            "Internal error occurred: failed calling webhook \"v\": x"
        );
        assert_eq!(e.code, 500);
    }
}
