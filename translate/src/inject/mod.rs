//! Istio-compatible sidecar injection, without the server: whether a pod gets a sidecar
//! ([`decide`]), the pod with it ([`inject`]) and the admission patch between the two
//! ([`patch`]).
//!
//! The injected pod is what Istio's injector makes of the same pod with the same settings
//! at [`ISTIO_VERSION`]: its injection template
//! (`manifests/charts/istio-control/istio-discovery/files/injection-template.yaml`) with the
//! chart's default values, then the injector's own steps (`pkg/kube/inject/webhook.go`:
//! Prometheus merge, app probe rewrite, status annotation, container order). Where shoal
//! writes something differently the module says so; `tests/golden/inject/` shows whole pods.
//!
//! Pure: no IO, and no panics on any input; a pod the injector cannot handle is an
//! [`InjectError`] naming the field or annotation.

mod annotations;
mod decide;
mod metadata;
mod patch;
mod pod;
mod probes;
mod proxy_config;
mod settings;
mod template;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use decide::{Decision, IGNORED_NAMESPACES, NAMESPACE_INJECTION_LABEL, SkipReason, decide};
pub use metadata::{CANONICAL_NAME_LABEL, CANONICAL_REVISION_LABEL, NETWORK_LABEL, TLS_MODE_LABEL};
pub use patch::patch;
pub use proxy_config::ProxyConfigLayers;
pub use settings::{
    DEFAULT_CLUSTER_ID, DEFAULT_HUB, DEFAULT_IMAGE, DEFAULT_ISTIOD_ADDRESS, InjectionPolicy,
    ProxyResources, Settings, UnknownPolicy,
};

use annotations::Annotations;
use pod::{PodView, WorkloadMeta, object_at};

/// The Istio release whose injection template shoal follows, and the default proxy tag.
pub const ISTIO_VERSION: &str = "1.28.1";
/// The injected proxy container.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The init container that sets up traffic capture.
pub const INIT_CONTAINER: &str = "istio-init";
/// With Istio CNI, the init container that checks the node plugin set up the capture.
pub const VALIDATION_CONTAINER: &str = "istio-validation";
/// The agent's status port: health, app probes, merged metrics.
const STATUS_PORT: u16 = 15020;

/// Why a pod cannot be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("not a pod: not a JSON object")]
    NotAnObject,
    #[error("not a pod: {path}: {message}")]
    Malformed { path: String, message: String },
    #[error("the pod has no containers")]
    NoContainers,
    #[error("the pod already has a sidecar ({PROXY_CONTAINER} or sidecar.istio.io/status)")]
    AlreadyInjected,
    #[error("the pod already has a {kind} named {name:?}, which injection adds")]
    Conflict { kind: &'static str, name: String },
    #[error("annotation {name}={value:?}: {reason}")]
    Annotation {
        name: String,
        value: String,
        reason: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the template and the injector's steps read, worked out once per pod.
pub(crate) struct Context<'a> {
    settings: &'a Settings,
    pod: &'a PodView,
    annotations: Annotations<'a>,
    /// The pod's namespace (`default` when nothing names one).
    namespace: &'a str,
    /// The effective ProxyConfig, as `PROXY_CONFIG` carries it.
    proxy_config: Value,
    workload: WorkloadMeta,
    /// `REDIRECT`, `TPROXY` or `NONE`.
    mode: String,
    native: bool,
    /// `holdApplicationUntilProxyStarts`, which a native sidecar makes moot.
    hold: bool,
    image: String,
    network: Option<String>,
}

impl<'a> Context<'a> {
    fn new(
        pod: &'a PodView,
        annotations: Annotations<'a>,
        namespace: &'a str,
        layers: &ProxyConfigLayers,
        settings: &'a Settings,
    ) -> Context<'a> {
        let proxy_config = layers.effective(
            &settings.discovery_address,
            annotations.proxy_config.as_ref(),
        );
        let pc_str = |key: &str| proxy_config.get(key).and_then(Value::as_str);
        let mode = annotations
            .get(annotations::INTERCEPTION_MODE)
            .or(pc_str("interceptionMode"))
            .unwrap_or("REDIRECT")
            .to_string();
        // The template: any value of the annotation but `false` asks for a native sidecar.
        let native = match annotations.get(annotations::NATIVE_SIDECAR) {
            Some(v) if !v.is_empty() => v != "false",
            _ => settings.native_sidecars,
        };
        let hold = !native
            && proxy_config.get("holdApplicationUntilProxyStarts") == Some(&Value::Bool(true));
        let image_type = annotations
            .get(annotations::PROXY_IMAGE_TYPE)
            .or(proxy_config
                .pointer("/image/imageType")
                .and_then(Value::as_str));
        let image = proxy_image(
            settings,
            annotations.get(annotations::PROXY_IMAGE),
            image_type,
        );
        let network = pod
            .metadata
            .labels
            .get(NETWORK_LABEL)
            .or(settings.network.as_ref())
            .filter(|n| !n.is_empty())
            .cloned();
        Context {
            settings,
            pod,
            annotations,
            namespace,
            workload: WorkloadMeta::of(&pod.metadata),
            proxy_config,
            mode,
            native,
            hold,
            image,
            network,
        }
    }

    /// The pod's containers but the proxy, by name.
    fn app_containers(&self) -> Vec<&'a str> {
        self.pod.app_containers().map(|c| c.name.as_str()).collect()
    }

    fn agent_log_level(&self) -> &'a str {
        self.annotations
            .or(annotations::AGENT_LOG_LEVEL, "default:info")
    }
}

/// The proxy image, as the template picks it: a full image reference from the
/// `sidecar.istio.io/proxyImage` annotation (or the install's image when it is one), else
/// `HUB/IMAGE:TAG`, the tag carrying the image type (`distroless`, `debug`; `default` for
/// none) as Istio's `ProxyImage` adds it.
fn proxy_image(s: &Settings, annotated: Option<&str>, image_type: Option<&str>) -> String {
    let full = annotated.unwrap_or(&s.image);
    if full.contains('/') {
        return full.to_string();
    }
    let mut tag = s.tag.as_str();
    if let Some(t) = image_type.filter(|t| !t.is_empty()) {
        // A type already in the tag is replaced (the first known one, as Istio does).
        if let Some(bare) = ["-distroless", "-debug"]
            .iter()
            .find_map(|known| tag.strip_suffix(known))
        {
            tag = bare;
        }
        if t != "default" {
            return format!("{}/{}:{tag}-{t}", s.hub, s.image);
        }
    }
    format!("{}/{}:{tag}", s.hub, s.image)
}

/// The names injection adds must be free (a pod with the proxy is [`InjectError::AlreadyInjected`]).
fn check_free(pod: &PodView) -> Result<(), InjectError> {
    if pod.metadata.annotations.contains_key(annotations::STATUS)
        || pod.has_container(PROXY_CONTAINER)
    {
        return Err(InjectError::AlreadyInjected);
    }
    for name in [INIT_CONTAINER, VALIDATION_CONTAINER] {
        if pod.has_container(name) {
            let name = name.to_string();
            return Err(InjectError::Conflict {
                kind: "container",
                name,
            });
        }
    }
    let added = template::volumes();
    let taken = pod.spec.volumes.iter().find(|v| {
        added
            .iter()
            .any(|a| a.get("name").and_then(Value::as_str) == Some(v.name.as_str()))
    });
    match taken {
        Some(v) => Err(InjectError::Conflict {
            kind: "volume",
            name: v.name.clone(),
        }),
        None => Ok(()),
    }
}

/// The pod (a Kubernetes Pod as JSON, as an admission request carries it) with Istio's
/// sidecar. `namespace` is the request's namespace (a pod being created by a controller
/// often has none of its own yet); `proxy_config` the ProxyConfigs that apply to it
/// ([`ProxyConfigLayers::for_pod`]). Whether the pod should be injected at all is
/// [`decide`]'s to say.
pub fn inject(
    pod: &Value,
    namespace: &str,
    proxy_config: &ProxyConfigLayers,
    settings: &Settings,
) -> Result<Value, InjectError> {
    let view = PodView::read(pod)?;
    if view.spec.containers.is_empty() {
        return Err(InjectError::NoContainers);
    }
    check_free(&view)?;
    let namespace = [namespace, view.metadata.namespace.as_str()]
        .into_iter()
        .find(|n| !n.is_empty())
        .unwrap_or("default");
    let annotations = Annotations::read(&view.metadata.annotations)?;
    let ctx = Context::new(&view, annotations, namespace, proxy_config, settings);

    let mut out = pod.clone();
    let root = out.as_object_mut().ok_or(InjectError::NotAnObject)?;
    let meta = object_at(root, "metadata", "metadata")?;
    let pod_annotations = object_at(meta, "annotations", "metadata.annotations")?;
    let prometheus = metadata::prometheus_merge(&ctx, pod_annotations);

    let spec = object_at(root, "spec", "spec")?;
    let probers = if probes::enabled(&ctx) {
        probes::rewrite(&ctx, spec)?
    } else {
        None
    };
    let mut proxy = template::proxy_container(&ctx)?;
    if let Some(env) = proxy.get_mut("env").and_then(Value::as_array_mut) {
        env.extend(prometheus.map(metadata::prometheus_env));
        env.extend(
            probers.map(|p| serde_json::json!({ "name": probes::APP_PROBERS_ENV, "value": p })),
        );
    }
    let init = template::init_container(&ctx);
    let volumes = template::volumes();
    let status = metadata::status(&ctx, init.as_ref(), &volumes)?;
    metadata::place(&ctx, spec, init, proxy)?;
    pod::array_at(spec, "volumes", "spec.volumes")?.extend(volumes);

    let meta = object_at(root, "metadata", "metadata")?;
    metadata::labels(&ctx, object_at(meta, "labels", "metadata.labels")?);
    let pod_annotations = object_at(meta, "annotations", "metadata.annotations")?;
    metadata::annotations(&ctx, pod_annotations);
    pod_annotations.insert(annotations::STATUS.into(), status.into());
    Ok(out)
}
