//! The containers and volumes Istio's sidecar injection template adds
//! (`manifests/charts/istio-control/istio-discovery/files/injection-template.yaml`), field
//! by field, with the template's defaults from the chart's `values.yaml`.

use serde_json::{Value, json};

use super::annotations::{self as ann, list};
use super::{
    Context, INIT_CONTAINER, InjectError, PROXY_CONTAINER, STATUS_PORT, VALIDATION_CONTAINER,
};

/// UID and GID the proxy runs as; the capture rules let its own traffic out unchanged.
const PROXY_UID: i64 = 1337;
/// Envoy's outbound and inbound capture listeners (MeshConfig `proxyListenPort`,
/// `proxyInboundListenPort`).
const OUTBOUND_PORT: &str = "15001";
const INBOUND_PORT: &str = "15006";
/// Never captured inbound: Envoy's Prometheus port and the agent's readiness port (the
/// agent's status port is added by [`exclude_inbound_ports`]).
const ALWAYS_EXCLUDED_INBOUND: &str = "15090,15021";

fn env(name: &str, value: impl Into<Value>) -> Value {
    json!({ "name": name, "value": value.into() })
}

fn field_env(name: &str, path: &str) -> Value {
    json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } })
}

fn resource_env(name: &str, resource: &str) -> Value {
    json!({ "name": name, "valueFrom": { "resourceFieldRef": { "resource": resource } } })
}

/// The template's `excludeInboundPort`: the status port joins the excluded ports unless it
/// is one already.
pub(crate) fn exclude_inbound_ports(annotated: &str) -> String {
    let status = STATUS_PORT.to_string();
    let ports: Vec<&str> = list(annotated).collect();
    if ports.contains(&status.as_str()) {
        return annotated.to_string();
    }
    ports
        .into_iter()
        .chain([status.as_str()])
        .collect::<Vec<_>>()
        .join(",")
}

/// The proxy's `resources`: from the `sidecar.istio.io/proxyCPU` family of annotations when
/// any is set (the others then stay unset), else the install's defaults.
fn resources(ctx: &Context<'_>) -> Value {
    let a = &ctx.annotations;
    let annotated = [
        ann::PROXY_CPU,
        ann::PROXY_MEMORY,
        ann::PROXY_CPU_LIMIT,
        ann::PROXY_MEMORY_LIMIT,
    ]
    .iter()
    .any(|n| a.get(n).is_some());
    let d = &ctx.settings.proxy_resources;
    let (rc, rm, lc, lm) = if annotated {
        let get = |n| a.get(n).map(str::to_string);
        let r = (get(ann::PROXY_CPU), get(ann::PROXY_MEMORY));
        (
            r.0,
            r.1,
            get(ann::PROXY_CPU_LIMIT),
            get(ann::PROXY_MEMORY_LIMIT),
        )
    } else {
        let (rc, rm) = (d.requests_cpu.clone(), d.requests_memory.clone());
        (rc, rm, d.limits_cpu.clone(), d.limits_memory.clone())
    };
    let pair = |cpu: Option<String>, memory: Option<String>| {
        let mut m = serde_json::Map::new();
        if let Some(c) = cpu {
            m.insert("cpu".into(), c.into());
        }
        if let Some(mem) = memory {
            m.insert("memory".into(), mem.into());
        }
        (!m.is_empty()).then_some(Value::Object(m))
    };
    let mut out = serde_json::Map::new();
    if let Some(r) = pair(rc, rm) {
        out.insert("requests".into(), r);
    }
    if let Some(l) = pair(lc, lm) {
        out.insert("limits".into(), l);
    }
    Value::Object(out)
}

/// `proxyMetadata` of the effective ProxyConfig, as environment variables sorted by name.
fn metadata_env(ctx: &Context<'_>) -> Vec<Value> {
    let metadata = ctx
        .proxy_config
        .get("proxyMetadata")
        .and_then(Value::as_object);
    metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| env(k, v.as_str().unwrap_or_default()))
        .collect()
}

fn image_pull_policy(ctx: &Context<'_>, container: &mut Value) {
    if let (Some(p), Some(c)) = (&ctx.settings.image_pull_policy, container.as_object_mut()) {
        c.insert("imagePullPolicy".into(), p.clone().into());
    }
}

/// `istio-init` (or, with Istio CNI, `istio-validation`): sets up (or checks) the capture
/// rules. `None` when nothing is captured (`interceptionMode: NONE`).
pub(crate) fn init_container(ctx: &Context<'_>) -> Option<Value> {
    if ctx.mode == "NONE" {
        return None;
    }
    let a = &ctx.annotations;
    let excluded = exclude_inbound_ports(a.or(ann::EXCLUDE_INBOUND_PORTS, ""));
    let mut args: Vec<String> = [
        "istio-iptables",
        "-p",
        OUTBOUND_PORT,
        "-z",
        INBOUND_PORT,
        "-u",
        "1337",
        "-m",
        ctx.mode.as_str(),
        "-i",
        a.or(ann::INCLUDE_OUTBOUND_IP_RANGES, "*"),
        "-x",
        a.or(ann::EXCLUDE_OUTBOUND_IP_RANGES, ""),
        "-b",
        a.or(ann::INCLUDE_INBOUND_PORTS, "*"),
        "-d",
    ]
    .map(str::to_string)
    .into();
    args.push(format!("{ALWAYS_EXCLUDED_INBOUND},{excluded}"));
    let optional = [
        ("-q", a.get(ann::INCLUDE_OUTBOUND_PORTS)),
        ("-o", a.get(ann::EXCLUDE_OUTBOUND_PORTS)),
        (
            "-k",
            a.get(ann::REROUTE_VIRTUAL_INTERFACES)
                .or(a.get(ann::KUBEVIRT_INTERFACES)),
        ),
        ("-c", a.get(ann::EXCLUDE_INTERFACES)),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            args.extend([flag.to_string(), v.to_string()]);
        }
    }
    args.push(format!("--log_output_level={}", ctx.agent_log_level()));
    let cni = ctx.settings.cni;
    if cni {
        args.extend(["--run-validation".into(), "--skip-rule-apply".into()]);
    }
    let security = if cni {
        json!({
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": { "drop": ["ALL"] },
            "readOnlyRootFilesystem": true,
            "runAsGroup": PROXY_UID,
            "runAsUser": PROXY_UID,
            "runAsNonRoot": true,
        })
    } else {
        json!({
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": { "add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"] },
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        })
    };
    let mut c = json!({
        "name": if cni { VALIDATION_CONTAINER } else { INIT_CONTAINER },
        "image": ctx.image,
        "args": args,
        "resources": resources(ctx),
        "securityContext": security,
    });
    let metadata = metadata_env(ctx);
    if let (false, Some(obj)) = (metadata.is_empty(), c.as_object_mut()) {
        obj.insert("env".into(), Value::Array(metadata));
    }
    image_pull_policy(ctx, &mut c);
    Some(c)
}

/// The `istio-proxy` container: the agent and Envoy.
pub(crate) fn proxy_container(ctx: &Context<'_>) -> Result<Value, InjectError> {
    let a = &ctx.annotations;
    let args = [
        "proxy".to_string(),
        "sidecar".to_string(),
        "--domain".to_string(),
        format!("$(POD_NAMESPACE).svc.{}", ctx.settings.domain_suffix),
        format!("--proxyLogLevel={}", a.or(ann::LOG_LEVEL, "warning")),
        format!(
            "--proxyComponentLogLevel={}",
            a.or(ann::COMPONENT_LOG_LEVEL, "misc:error")
        ),
        format!("--log_output_level={}", ctx.agent_log_level()),
    ];
    let mut c = json!({
        "name": PROXY_CONTAINER,
        "image": ctx.image,
        "ports": [{ "containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom" }],
        "args": args,
        "env": proxy_env(ctx)?,
        "startupProbe": {
            "httpGet": { "path": "/healthz/ready", "port": 15021 },
            "periodSeconds": 1,
            "timeoutSeconds": 3,
            "failureThreshold": 600,
        },
        "readinessProbe": readiness_probe(ctx),
        "securityContext": proxy_security_context(ctx.mode == "TPROXY"),
        "resources": resources(ctx),
        "volumeMounts": volume_mounts(),
    });
    let Some(obj) = c.as_object_mut() else {
        return Ok(c);
    };
    if ctx.native {
        obj.insert("restartPolicy".into(), "Always".into());
    }
    let lifecycle = if ctx.hold {
        // The agent returns once Envoy is ready; Kubernetes starts the next container after.
        Some(json!({ "postStart": { "exec": { "command": ["pilot-agent", "wait"] } } }))
    } else if ctx.native {
        // Draining starts when the pod stops; the agent exits after the app containers.
        let port = format!("--debug-port={STATUS_PORT}");
        let command = json!(["pilot-agent", "request", port, "POST", "drain"]);
        Some(json!({ "preStop": { "exec": { "command": command } } }))
    } else {
        None
    };
    if let Some(l) = lifecycle {
        obj.insert("lifecycle".into(), l);
    }
    image_pull_policy(ctx, &mut c);
    Ok(c)
}

fn readiness_probe(ctx: &Context<'_>) -> Value {
    let a = &ctx.annotations;
    let mut probe = json!({
        "httpGet": { "path": "/healthz/ready", "port": 15021 },
        "periodSeconds": a.readiness_period.unwrap_or(15),
        "timeoutSeconds": 3,
        "failureThreshold": a.readiness_failure_threshold.unwrap_or(4),
    });
    // Kubernetes leaves out zero delays when it prints a pod.
    if let (Some(d), Some(p)) = (
        a.readiness_initial_delay.filter(|d| *d > 0),
        probe.as_object_mut(),
    ) {
        p.insert("initialDelaySeconds".into(), d.into());
    }
    probe
}

fn proxy_security_context(tproxy: bool) -> Value {
    if tproxy {
        // TPROXY needs NET_ADMIN to mark its sockets, and root to have it.
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": { "add": ["NET_ADMIN"], "drop": ["ALL"] },
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": false,
            "runAsUser": 0,
            "runAsGroup": PROXY_UID,
        })
    } else {
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": PROXY_UID,
            "runAsGroup": PROXY_UID,
        })
    }
}

/// The proxy's environment, in the template's order.
fn proxy_env(ctx: &Context<'_>) -> Result<Vec<Value>, InjectError> {
    let s = ctx.settings;
    let proxy_config = serde_json::to_string(&ctx.proxy_config)
        .map_err(|e| InjectError::Internal(e.to_string()))?;
    let mut env_vars = vec![
        env("PILOT_CERT_PROVIDER", "istiod"),
        env("CA_ADDR", s.ca_address.as_str()),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("HOST_IP", "status.hostIP"),
        resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        env("PROXY_CONFIG", proxy_config + "\n"),
        env("ISTIO_META_POD_PORTS", pod_ports(ctx)?),
        env("ISTIO_META_APP_CONTAINERS", ctx.app_containers().join(",")),
        resource_env("GOMEMLIMIT", "limits.memory"),
        resource_env("GOMAXPROCS", "limits.cpu"),
    ];
    // A configured cluster or network comes last, as Istio's injector appends the values
    // it was given for them after the template's environment.
    let cluster_configured = s.cluster_id != super::settings::DEFAULT_CLUSTER_ID;
    if !cluster_configured {
        env_vars.push(env("ISTIO_META_CLUSTER_ID", s.cluster_id.as_str()));
    }
    env_vars.extend([
        field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        env("ISTIO_META_INTERCEPTION_MODE", ctx.mode.as_str()),
    ]);
    let workload = ctx
        .pod
        .metadata
        .labels
        .get("service.istio.io/workload-name")
        .filter(|n| !n.is_empty())
        .unwrap_or(&ctx.workload.name);
    if !workload.is_empty() {
        env_vars.push(env("ISTIO_META_WORKLOAD_NAME", workload.as_str()));
    }
    let w = &ctx.workload;
    if !w.api_version.is_empty() && !w.name.is_empty() {
        let owner = format!(
            "kubernetes://apis/{}/namespaces/{}/{}s/{}",
            w.api_version,
            ctx.namespace,
            w.kind.to_lowercase(),
            w.name
        );
        env_vars.push(env("ISTIO_META_OWNER", owner));
    }
    let mesh_id = s.mesh_id.as_deref().unwrap_or(&s.trust_domain);
    if !mesh_id.is_empty() {
        env_vars.push(env("ISTIO_META_MESH_ID", mesh_id));
    }
    if !s.trust_domain.is_empty() {
        env_vars.push(env("TRUST_DOMAIN", s.trust_domain.as_str()));
    }
    env_vars.extend(metadata_env(ctx));
    if cluster_configured {
        env_vars.push(env("ISTIO_META_CLUSTER_ID", s.cluster_id.as_str()));
    }
    if let Some(network) = &ctx.network {
        env_vars.push(env("ISTIO_META_NETWORK", network.as_str()));
    }
    Ok(env_vars)
}

/// `ISTIO_META_POD_PORTS`: every port of the app containers as JSON, laid out as the
/// template's loop writes it.
fn pod_ports(ctx: &Context<'_>) -> Result<String, InjectError> {
    let mut out = String::from("[");
    let ports = ctx.pod.spec.containers.iter().flat_map(|c| &c.ports);
    for (i, p) in ports.enumerate() {
        let js = serde_json::to_string(p).map_err(|e| InjectError::Internal(e.to_string()))?;
        out.push_str(if i == 0 { "\n    " } else { "\n    ," });
        out.push_str(&js);
    }
    out.push_str("\n]");
    Ok(out)
}

fn volume_mounts() -> Value {
    json!([
        { "name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds" },
        { "name": "credential-socket", "mountPath": "/var/run/secrets/credential-uds" },
        { "name": "workload-certs", "mountPath": "/var/run/secrets/workload-spiffe-credentials" },
        { "name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio" },
        { "name": "istio-ca-crl", "mountPath": "/var/run/secrets/istio/crl" },
        { "name": "istio-data", "mountPath": "/var/lib/istio/data" },
        { "name": "istio-envoy", "mountPath": "/etc/istio/proxy" },
        { "name": "istio-token", "mountPath": "/var/run/secrets/tokens" },
        { "name": "istio-podinfo", "mountPath": "/etc/istio/pod" },
    ])
}

/// The volumes the proxy mounts, in the template's order.
pub(crate) fn volumes() -> Vec<Value> {
    let downward = json!({ "items": [
        { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
        { "path": "annotations", "fieldRef": { "fieldPath": "metadata.annotations" } },
    ]});
    let token = json!({ "sources": [{ "serviceAccountToken": {
        "path": "istio-token",
        "expirationSeconds": 43200,
        "audience": "istio-ca",
    }}]});
    vec![
        json!({ "name": "workload-socket", "emptyDir": {} }),
        json!({ "name": "credential-socket", "emptyDir": {} }),
        json!({ "name": "workload-certs", "emptyDir": {} }),
        json!({ "name": "istio-envoy", "emptyDir": { "medium": "Memory" } }),
        json!({ "name": "istio-data", "emptyDir": {} }),
        json!({ "name": "istio-podinfo", "downwardAPI": downward }),
        json!({ "name": "istio-token", "projected": token }),
        json!({ "name": "istiod-ca-cert", "configMap": { "name": "istio-ca-root-cert" } }),
        json!({ "name": "istio-ca-crl", "configMap": { "name": "istio-ca-crl", "optional": true } }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_port_is_always_excluded() {
        assert_eq!(exclude_inbound_ports(""), "15020");
        assert_eq!(exclude_inbound_ports("8081, 8082"), "8081,8082,15020");
        assert_eq!(exclude_inbound_ports("15020,9000"), "15020,9000");
    }
}
