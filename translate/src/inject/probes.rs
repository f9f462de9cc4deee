//! App probes through the agent (Istio's `rewriteAppHTTPProbe`, `pkg/kube/inject/app_probe.go`).
//!
//! With mTLS the kubelet cannot reach the app's ports directly, so the injector points each
//! HTTP, TCP and gRPC probe of an app container at the agent's status port, under
//! `/app-health/CONTAINER/readyz|livez|startupz`, and hands the agent the original probes in
//! `ISTIO_KUBE_APP_PROBERS` (a JSON object by path); the agent runs them from inside the pod.
//! A TCP or gRPC probe becomes an HTTP GET the agent answers by checking the port or calling
//! the gRPC health service.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use shoal_config::k8s::IntOrString;

use super::pod::{ContainerView, HttpGet, Probe, parse_go_bool};
use super::{Context, InjectError, PROXY_CONTAINER, STATUS_PORT, annotations as ann};

/// The agent's environment variable holding the app probes.
pub(crate) const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";

/// The probe fields of a container, with the path suffix the agent serves each under.
const KINDS: [(&str, &str); 3] = [
    ("readinessProbe", "readyz"),
    ("livenessProbe", "livez"),
    ("startupProbe", "startupz"),
];

/// Whether the pod's probes are rewritten: its `sidecar.istio.io/rewriteAppHTTPProbers`
/// annotation when it is a boolean, else the install's setting.
pub(crate) fn enabled(ctx: &Context<'_>) -> bool {
    ctx.annotations
        .get(ann::REWRITE_PROBERS)
        .and_then(parse_go_bool)
        .unwrap_or(ctx.settings.rewrite_app_probes)
}

/// The probe of `kind` of a container, as read.
fn probe_of<'a>(c: &'a ContainerView, kind: &str) -> Option<&'a Probe> {
    match kind {
        "readinessProbe" => c.readiness_probe.as_ref(),
        "livenessProbe" => c.liveness_probe.as_ref(),
        _ => c.startup_probe.as_ref(),
    }
}

/// The probe as the agent runs it, with a named port resolved against the container's
/// ports; `None` for a probe the agent cannot run (an exec probe, an unknown port name).
fn for_agent(c: &ContainerView, probe: &Probe) -> Option<Probe> {
    let resolve = |port: &Option<IntOrString>| -> Option<IntOrString> {
        match port.as_ref()? {
            IntOrString::Int(p) => Some(IntOrString::Int(*p)),
            IntOrString::String(name) => match name.parse::<i64>() {
                Ok(p) => Some(IntOrString::Int(p)),
                Err(_) => c
                    .ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(name))
                    .and_then(|p| p.container_port)
                    .map(IntOrString::Int),
            },
        }
    };
    let timeout_seconds = probe.timeout_seconds;
    if let Some(h) = &probe.http_get {
        let http_get = HttpGet {
            port: Some(resolve(&h.port)?),
            ..h.clone()
        };
        return Some(Probe {
            http_get: Some(http_get),
            timeout_seconds,
            ..Probe::default()
        });
    }
    if let Some(t) = &probe.tcp_socket {
        let mut tcp = t.clone();
        tcp.port = Some(resolve(&t.port)?);
        return Some(Probe {
            tcp_socket: Some(tcp),
            timeout_seconds,
            ..Probe::default()
        });
    }
    probe.grpc.as_ref().map(|g| Probe {
        grpc: Some(g.clone()),
        timeout_seconds,
        ..Probe::default()
    })
}

/// Rewrites the probes of the app containers and init containers in `spec` (the pod's spec
/// as JSON, read as `containers` of `ctx.pod`) and returns the value of
/// `ISTIO_KUBE_APP_PROBERS`, `None` when no probe was rewritten.
pub(crate) fn rewrite(
    ctx: &Context<'_>,
    spec: &mut Map<String, Value>,
) -> Result<Option<String>, InjectError> {
    let mut probers: BTreeMap<String, Probe> = BTreeMap::new();
    let lists = [
        ("initContainers", &ctx.pod.spec.init_containers),
        ("containers", &ctx.pod.spec.containers),
    ];
    for (list, views) in lists {
        let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for (view, item) in views.iter().zip(items.iter_mut()) {
            if view.name == PROXY_CONTAINER {
                continue;
            }
            for (kind, suffix) in KINDS {
                let Some(agent) = probe_of(view, kind).and_then(|p| for_agent(view, p)) else {
                    continue;
                };
                let path = format!("/app-health/{}/{suffix}", view.name);
                rewrite_probe(item, kind, &path)?;
                probers.insert(path, agent);
            }
        }
    }
    if probers.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&probers)
        .map(Some)
        .map_err(|e| InjectError::Internal(e.to_string()))
}

/// Points the container's probe of `kind` at the agent: an HTTP GET of `path` on the status
/// port, keeping its timings, and its host, headers and scheme if it was an HTTP probe
/// (HTTPS becomes HTTP: the agent makes the HTTPS call).
fn rewrite_probe(container: &mut Value, kind: &str, path: &str) -> Result<(), InjectError> {
    let probe = container
        .get_mut(kind)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| InjectError::Internal(format!("{kind} is not an object")))?;
    let mut http_get = match probe.remove("httpGet") {
        Some(Value::Object(h)) => h,
        _ => Map::new(),
    };
    probe.remove("tcpSocket");
    probe.remove("grpc");
    http_get.insert("path".into(), path.into());
    http_get.insert("port".into(), STATUS_PORT.into());
    if http_get.get("scheme").and_then(Value::as_str) == Some("HTTPS") {
        http_get.insert("scheme".into(), "HTTP".into());
    }
    probe.insert("httpGet".into(), Value::Object(http_get));
    Ok(())
}
