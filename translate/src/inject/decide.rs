//! Whether a pod gets a sidecar: Istio's rules, in one function.
//!
//! Istio splits the decision in two. Its MutatingWebhookConfiguration sends a pod to a
//! revision's injector only when the namespace or pod labels select that revision
//! (`istio-injection=enabled` or `sidecar.istio.io/inject=true` for the default revision,
//! `istio.io/rev=REV` otherwise); the injector then applies `injectRequired`
//! (`pkg/kube/inject/inject.go`): never with host networking nor in `kube-system` or
//! `kube-public`, the pod's own `sidecar.istio.io/inject` label (or the deprecated
//! annotation) first, the injection policy otherwise. The rules are listed in Istio's
//! "Installing the sidecar" guide, "Controlling the injection policy". shoal applies both
//! parts here, so that a server receiving every pod decides as Istio's webhooks would.

use std::fmt;

use serde_json::Value;
use shoal_config::Labels;
use shoal_config::k8s::NAMESPACE_NAME_LABEL;

use super::annotations::{INJECT, REVISION, STATUS};
use super::{InjectionPolicy, PROXY_CONTAINER, Settings};

/// The namespace label that opts a namespace in (`enabled`) or out (any other value).
pub const NAMESPACE_INJECTION_LABEL: &str = "istio-injection";
/// Namespaces Istio never injects into.
pub const IGNORED_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];

/// The injector's verdict on a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Inject,
    Skip(SkipReason),
}

impl Decision {
    pub fn is_inject(&self) -> bool {
        matches!(self, Decision::Inject)
    }
}

/// Why a pod is left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `hostNetwork: true`: capture rules would change the node's network.
    HostNetwork,
    /// The pod already has a sidecar (`sidecar.istio.io/status`, or an `istio-proxy`
    /// container).
    AlreadyInjected,
    /// `kube-system` or `kube-public`.
    SystemNamespace,
    /// The pod's `sidecar.istio.io/inject` label (or annotation) is not true.
    PodOptOut,
    /// The namespace's `istio-injection` label is not `enabled`.
    NamespaceOptOut,
    /// The pod or namespace selects another control plane revision (named here).
    OtherRevision(String),
    /// Neither the namespace nor the pod asks for injection.
    NotSelected,
    /// The injection policy is `disabled` and the pod does not opt in.
    PolicyDisabled,
}

impl SkipReason {
    /// A short, fixed name for metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::HostNetwork => "host_network",
            SkipReason::AlreadyInjected => "already_injected",
            SkipReason::SystemNamespace => "system_namespace",
            SkipReason::PodOptOut => "pod_opt_out",
            SkipReason::NamespaceOptOut => "namespace_opt_out",
            SkipReason::OtherRevision(_) => "other_revision",
            SkipReason::NotSelected => "not_selected",
            SkipReason::PolicyDisabled => "policy_disabled",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::HostNetwork => f.write_str("the pod uses the host's network"),
            SkipReason::AlreadyInjected => f.write_str("the pod already has a sidecar"),
            SkipReason::SystemNamespace => f.write_str("Istio never injects in this namespace"),
            SkipReason::PodOptOut => write!(f, "the pod's {INJECT} is not true"),
            SkipReason::NamespaceOptOut => {
                write!(
                    f,
                    "the namespace's {NAMESPACE_INJECTION_LABEL} is not enabled"
                )
            }
            SkipReason::OtherRevision(r) => write!(f, "the pod belongs to revision {r:?}"),
            SkipReason::NotSelected => f.write_str("neither the namespace nor the pod asks"),
            SkipReason::PolicyDisabled => {
                f.write_str("the injection policy is disabled and the pod does not opt in")
            }
        }
    }
}

/// The pod's own say: its `sidecar.istio.io/inject` label, else the annotation (Istio
/// prefers the label when both are set). `None` when neither is set or it is empty.
fn pod_choice(labels: Option<&Value>, annotations: Option<&Value>) -> Option<bool> {
    let value = str_at(labels, INJECT).or_else(|| str_at(annotations, INJECT))?;
    // Istio reads YAML 1.1 truth values; anything else set is a no.
    match value.to_ascii_lowercase().as_str() {
        "" => None,
        "y" | "yes" | "true" | "on" => Some(true),
        _ => Some(false),
    }
}

fn str_at<'a>(map: Option<&'a Value>, key: &str) -> Option<&'a str> {
    map?.get(key)?.as_str()
}

/// Decides whether `pod` (a Kubernetes Pod as JSON) gets a sidecar from this control plane,
/// given its namespace's labels. Never fails: fields that are missing or of the wrong type
/// count as unset.
pub fn decide(namespace_labels: &Labels, pod: &Value, settings: &Settings) -> Decision {
    match skip_reason(namespace_labels, pod, settings) {
        Some(reason) => Decision::Skip(reason),
        None => Decision::Inject,
    }
}

fn skip_reason(ns_labels: &Labels, pod: &Value, settings: &Settings) -> Option<SkipReason> {
    let meta = pod.get("metadata");
    let labels = meta.and_then(|m| m.get("labels"));
    let annotations = meta.and_then(|m| m.get("annotations"));
    let spec = pod.get("spec");
    if spec
        .and_then(|s| s.get("hostNetwork"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Some(SkipReason::HostNetwork);
    }
    if annotations.and_then(|a| a.get(STATUS)).is_some() || has_proxy(spec) {
        return Some(SkipReason::AlreadyInjected);
    }
    let namespace = ns_labels
        .get(NAMESPACE_NAME_LABEL)
        .or_else(|| str_at(meta, "namespace"));
    if namespace.is_some_and(|ns| IGNORED_NAMESPACES.contains(&ns)) {
        return Some(SkipReason::SystemNamespace);
    }
    let choice = pod_choice(labels, annotations);
    if choice == Some(false) {
        return Some(SkipReason::PodOptOut);
    }
    if let Some(reason) = selection(ns_labels, labels, settings) {
        return Some(reason);
    }
    match (choice, settings.policy) {
        (Some(true), _) | (None, InjectionPolicy::Enabled) => None,
        (None, InjectionPolicy::Disabled) => Some(SkipReason::PolicyDisabled),
        (Some(false), _) => Some(SkipReason::PodOptOut),
    }
}

fn has_proxy(spec: Option<&Value>) -> bool {
    ["containers", "initContainers"].iter().any(|list| {
        spec.and_then(|s| s.get(list))
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.get("name").and_then(Value::as_str) == Some(PROXY_CONTAINER))
            })
    })
}

/// Whether Istio's webhook configuration sends the pod to this revision (`None`), or why not.
/// The namespace's `istio-injection` label comes first, then its `istio.io/rev`, then the
/// pod's `istio.io/rev`, then the pod's `sidecar.istio.io/inject=true` label.
fn selection(ns_labels: &Labels, labels: Option<&Value>, s: &Settings) -> Option<SkipReason> {
    let default_revision =
        || (!s.is_default_revision()).then(|| SkipReason::OtherRevision("default".into()));
    let revision = |r: &str| (r != s.revision_name()).then(|| SkipReason::OtherRevision(r.into()));
    if let Some(v) = ns_labels.get(NAMESPACE_INJECTION_LABEL) {
        return match v {
            "enabled" => default_revision(),
            _ => Some(SkipReason::NamespaceOptOut),
        };
    }
    if let Some(r) = ns_labels.get(REVISION) {
        return revision(r);
    }
    if let Some(r) = str_at(labels, REVISION) {
        return revision(r);
    }
    // The object selector of the default revision matches the label `true` exactly.
    if str_at(labels, INJECT) == Some("true") {
        return default_revision();
    }
    if s.namespaces_by_default {
        return default_revision();
    }
    Some(SkipReason::NotSelected)
}
