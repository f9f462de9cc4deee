//! What injection changes outside the containers: the pod's labels and annotations (the
//! template's `metadata` and the injector's post-processing in `pkg/kube/inject/webhook.go`:
//! Prometheus merge, the status annotation) and where the new containers go.

use serde::Serialize;
use serde_json::{Map, Value};

use super::annotations::{self as ann};
use super::pod::{array_at, parse_go_bool};
use super::template::exclude_inbound_ports;
use super::{Context, InjectError, PROXY_CONTAINER, STATUS_PORT, VALIDATION_CONTAINER};

/// Labels Istio puts on every injected pod.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
pub const CANONICAL_NAME_LABEL: &str = "service.istio.io/canonical-name";
pub const CANONICAL_REVISION_LABEL: &str = "service.istio.io/canonical-revision";
pub const NETWORK_LABEL: &str = shoal_config::k8s::topology::NETWORK;

/// The agent's environment variable with the app's own scrape settings.
const PROMETHEUS_ENV: &str = "ISTIO_PROMETHEUS_ANNOTATIONS";

/// `sidecar.istio.io/status`, with the fields in the order Istio writes them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status<'a> {
    pub init_containers: Option<Vec<&'a str>>,
    pub containers: Option<Vec<&'a str>>,
    pub volumes: Option<Vec<&'a str>>,
    pub image_pull_secrets: Option<Vec<&'a str>>,
    pub revision: &'a str,
}

/// The agent's copy of the app's scrape settings (`PrometheusScrapeConfiguration`).
#[derive(Serialize, Default, PartialEq)]
struct Scrape {
    scrape: String,
    path: String,
    port: String,
}

/// Prometheus' reading of an annotation name: anything but letters, digits and `_` is `_`,
/// so `prometheus.io/port` and `prometheus-io/port` are the same setting.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The first annotation Prometheus reads as `key` (sanitised), with its value.
fn scrape_setting<'m>(annotations: &'m Map<String, Value>, key: &str) -> Option<&'m str> {
    annotations
        .iter()
        .find(|(k, _)| sanitize(k) == key)
        .and_then(|(_, v)| v.as_str())
}

/// Istio's metrics merge: unless the pod turns scraping off (or the merge), Prometheus is
/// pointed at the agent's status port, which serves Envoy's metrics merged with the app's;
/// the app's own settings move to the agent's environment. Returns that environment value.
pub(crate) fn prometheus_merge(
    ctx: &Context<'_>,
    annotations: &mut Map<String, Value>,
) -> Option<String> {
    let scrape = annotations
        .iter()
        .filter(|(k, _)| sanitize(k) == "prometheus_io_scrape")
        .find_map(|(_, v)| v.as_str().and_then(parse_go_bool))
        .unwrap_or(true);
    let merge = ctx
        .annotations
        .get(ann::MERGE_METRICS)
        .and_then(parse_go_bool)
        .unwrap_or(ctx.settings.prometheus_merge);
    let target = STATUS_PORT.to_string();
    if !scrape || !merge || scrape_setting(annotations, "prometheus_io_port") == Some(&target) {
        return None;
    }
    let setting = |key| {
        scrape_setting(annotations, key)
            .unwrap_or_default()
            .to_string()
    };
    let app = Scrape {
        scrape: setting("prometheus_io_scrape"),
        path: setting("prometheus_io_path"),
        port: setting("prometheus_io_port"),
    };
    let keys = [
        "prometheus_io_scrape",
        "prometheus_io_path",
        "prometheus_io_port",
    ];
    annotations.retain(|k, _| !keys.contains(&sanitize(k).as_str()));
    annotations.insert("prometheus.io/port".into(), target.into());
    annotations.insert("prometheus.io/path".into(), "/stats/prometheus".into());
    annotations.insert("prometheus.io/scrape".into(), "true".into());
    (app != Scrape::default())
        .then(|| serde_json::to_string(&app).ok())
        .flatten()
}

/// The agent's environment variable for [`prometheus_merge`]'s result.
pub(crate) fn prometheus_env(value: String) -> Value {
    serde_json::json!({ "name": PROMETHEUS_ENV, "value": value })
}

/// The labels of the template: mTLS mode and canonical service, kept where the pod sets
/// them, and the network when there is one.
pub(crate) fn labels(ctx: &Context<'_>, labels: &mut Map<String, Value>) {
    let own = &ctx.pod.metadata.labels;
    let first = |keys: &[&str]| {
        keys.iter()
            .filter_map(|k| own.get(*k))
            .find(|v| !v.is_empty())
            .cloned()
    };
    let tls = first(&[TLS_MODE_LABEL]).unwrap_or_else(|| "istio".into());
    let name = first(&[CANONICAL_NAME_LABEL, "app.kubernetes.io/name", "app"])
        .unwrap_or_else(|| ctx.workload.name.clone());
    let revision = first(&[
        CANONICAL_REVISION_LABEL,
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".into());
    labels.insert(TLS_MODE_LABEL.into(), tls.into());
    labels.insert(CANONICAL_NAME_LABEL.into(), label_value(&name).into());
    labels.insert(CANONICAL_REVISION_LABEL.into(), revision.into());
    if let Some(network) = &ctx.network {
        labels.insert(NETWORK_LABEL.into(), network.clone().into());
    }
}

/// A name cut to a label value's 63 characters, without a trailing `-` left by the cut.
fn label_value(name: &str) -> &str {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &name[..end];
    cut.strip_suffix('-').unwrap_or(cut)
}

/// The annotations of the template: revision, default container and, with Istio CNI, the
/// capture settings the node plugin reads from the pod.
pub(crate) fn annotations(ctx: &Context<'_>, annotations: &mut Map<String, Value>) {
    let mut set = |k: &str, v: &str| {
        annotations.insert(k.to_string(), Value::String(v.to_string()));
    };
    set(ann::REVISION, ctx.settings.revision_name());
    let a = &ctx.annotations;
    if let Some(first) = ctx.app_containers().first() {
        for key in [ann::DEFAULT_LOGS_CONTAINER, ann::DEFAULT_CONTAINER] {
            if a.get(key).is_none() {
                set(key, first);
            }
        }
    }
    if !ctx.settings.cni {
        return;
    }
    set(ann::INTERCEPTION_MODE, &ctx.mode);
    let include_ranges = a.or(ann::INCLUDE_OUTBOUND_IP_RANGES, "*");
    let exclude_ranges = a.or(ann::EXCLUDE_OUTBOUND_IP_RANGES, "");
    for (key, value) in [
        (ann::INCLUDE_OUTBOUND_IP_RANGES, include_ranges),
        (ann::EXCLUDE_OUTBOUND_IP_RANGES, exclude_ranges),
    ] {
        if !value.is_empty() {
            set(key, value);
        }
    }
    set(
        ann::INCLUDE_INBOUND_PORTS,
        a.or(ann::INCLUDE_INBOUND_PORTS, "*"),
    );
    let excluded = exclude_inbound_ports(a.or(ann::EXCLUDE_INBOUND_PORTS, ""));
    set(ann::EXCLUDE_INBOUND_PORTS, &excluded);
    for key in [
        ann::INCLUDE_OUTBOUND_PORTS,
        ann::EXCLUDE_OUTBOUND_PORTS,
        ann::KUBEVIRT_INTERFACES,
        ann::REROUTE_VIRTUAL_INTERFACES,
        ann::EXCLUDE_INTERFACES,
    ] {
        // Ports are set whenever annotated; interfaces only when not empty.
        let keep_empty = key.ends_with("Ports");
        if let Some(v) = a.get(key).filter(|v| keep_empty || !v.is_empty()) {
            set(key, v);
        }
    }
}

/// Puts the new containers where Istio's injector leaves them: the proxy last among the
/// containers (first when the app waits for it), `istio-validation` before every init
/// container and `istio-init` after them (so that init containers have the network); with
/// a native sidecar, the capture init container, then the proxy, then the pod's own.
pub(crate) fn place(
    ctx: &Context<'_>,
    spec: &mut Map<String, Value>,
    init: Option<Value>,
    proxy: Value,
) -> Result<(), InjectError> {
    if ctx.native {
        let inits = array_at(spec, "initContainers", "spec.initContainers")?;
        let front: Vec<Value> = init.into_iter().chain([proxy]).collect();
        inits.splice(0..0, front);
        return Ok(());
    }
    let containers = array_at(spec, "containers", "spec.containers")?;
    if ctx.hold {
        containers.insert(0, proxy);
    } else {
        containers.push(proxy);
    }
    if let Some(init) = init {
        let first = init.get("name").and_then(Value::as_str) == Some(VALIDATION_CONTAINER);
        let inits = array_at(spec, "initContainers", "spec.initContainers")?;
        if first {
            inits.insert(0, init);
        } else {
            inits.push(init);
        }
    }
    Ok(())
}

/// The names the template added, for `sidecar.istio.io/status` (Go's `null` for none).
pub(crate) fn status(
    ctx: &Context<'_>,
    init: Option<&Value>,
    volumes: &[Value],
) -> Result<String, InjectError> {
    fn name(v: &Value) -> &str {
        v.get("name").and_then(Value::as_str).unwrap_or_default()
    }
    let mut inits: Vec<&str> = init.iter().map(|v| name(v)).collect();
    let mut containers = Vec::new();
    if ctx.native {
        inits.push(PROXY_CONTAINER);
    } else {
        containers.push(PROXY_CONTAINER);
    }
    let some = |v: Vec<&'static str>| (!v.is_empty()).then_some(v);
    let status = Status {
        init_containers: (!inits.is_empty()).then_some(inits),
        containers: some(containers),
        volumes: Some(volumes.iter().map(name).collect()),
        image_pull_secrets: None,
        revision: ctx.settings.revision_name(),
    };
    serde_json::to_string(&status).map_err(|e| InjectError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_are_sanitised() {
        assert_eq!(sanitize("prometheus.io/scrape"), "prometheus_io_scrape");
        assert_eq!(sanitize("prometheus-io/port"), "prometheus_io_port");
    }

    #[test]
    fn canonical_names_fit_a_label() {
        assert_eq!(label_value("web"), "web");
        let long = format!("{}-tail", "a".repeat(62));
        assert_eq!(label_value(&long), "a".repeat(62));
    }
}
