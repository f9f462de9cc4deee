//! The pod annotations the injector reads, and their checks.
//!
//! Istio checks a set of them before rendering its template (`pkg/kube/inject` `inject.go`,
//! `AnnotationValidation`) and fails the injection when one is wrong; shoal checks the same
//! ones the same way, and also the resource quantities, which Istio's template would turn
//! into a pod the API server rejects.

use std::collections::BTreeMap;

use serde_json::Value;

use super::InjectError;
use super::pod::parse_go_bool;

pub(crate) const INJECT: &str = "sidecar.istio.io/inject";
pub(crate) const STATUS: &str = "sidecar.istio.io/status";
pub(crate) const PROXY_CONFIG: &str = "proxy.istio.io/config";
pub(crate) const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
pub(crate) const PROXY_IMAGE_TYPE: &str = "sidecar.istio.io/proxyImageType";
pub(crate) const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
pub(crate) const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
pub(crate) const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
pub(crate) const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
pub(crate) const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
pub(crate) const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
pub(crate) const REWRITE_PROBERS: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
pub(crate) const LOG_LEVEL: &str = "sidecar.istio.io/logLevel";
pub(crate) const COMPONENT_LOG_LEVEL: &str = "sidecar.istio.io/componentLogLevel";
pub(crate) const AGENT_LOG_LEVEL: &str = "sidecar.istio.io/agentLogLevel";
pub(crate) const INCLUDE_OUTBOUND_IP_RANGES: &str =
    "traffic.sidecar.istio.io/includeOutboundIPRanges";
pub(crate) const EXCLUDE_OUTBOUND_IP_RANGES: &str =
    "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub(crate) const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
pub(crate) const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
pub(crate) const INCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeOutboundPorts";
pub(crate) const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub(crate) const KUBEVIRT_INTERFACES: &str = "traffic.sidecar.istio.io/kubevirtInterfaces";
pub(crate) const REROUTE_VIRTUAL_INTERFACES: &str = "istio.io/reroute-virtual-interfaces";
pub(crate) const EXCLUDE_INTERFACES: &str = "traffic.sidecar.istio.io/excludeInterfaces";
pub(crate) const READINESS_INITIAL_DELAY: &str =
    "readiness.status.sidecar.istio.io/initialDelaySeconds";
pub(crate) const READINESS_PERIOD: &str = "readiness.status.sidecar.istio.io/periodSeconds";
pub(crate) const READINESS_FAILURE_THRESHOLD: &str =
    "readiness.status.sidecar.istio.io/failureThreshold";
pub(crate) const MERGE_METRICS: &str = "prometheus.istio.io/merge-metrics";
pub(crate) const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
pub(crate) const DEFAULT_LOGS_CONTAINER: &str = "kubectl.kubernetes.io/default-logs-container";
pub(crate) const REVISION: &str = "istio.io/rev";

/// A pod's annotations, checked, with the structured ones parsed.
#[derive(Debug)]
pub(crate) struct Annotations<'a> {
    raw: &'a BTreeMap<String, String>,
    /// `proxy.istio.io/config`, as a JSON object.
    pub proxy_config: Option<Value>,
    pub readiness_initial_delay: Option<u32>,
    pub readiness_period: Option<u32>,
    pub readiness_failure_threshold: Option<u32>,
}

impl<'a> Annotations<'a> {
    pub fn read(raw: &'a BTreeMap<String, String>) -> Result<Annotations<'a>, InjectError> {
        let check = |name: &str, f: fn(&str) -> Result<(), String>| match raw.get(name) {
            Some(v) => f(v).map_err(|reason| bad(name, v, reason)),
            None => Ok(()),
        };
        check(INTERCEPTION_MODE, interception_mode)?;
        check(INCLUDE_OUTBOUND_IP_RANGES, |v| cidrs(v, true))?;
        check(EXCLUDE_OUTBOUND_IP_RANGES, |v| cidrs(v, false))?;
        check(INCLUDE_INBOUND_PORTS, |v| ports(v, true))?;
        check(EXCLUDE_INBOUND_PORTS, |v| ports(v, false))?;
        check(INCLUDE_OUTBOUND_PORTS, |v| ports(v, false))?;
        check(EXCLUDE_OUTBOUND_PORTS, |v| ports(v, false))?;
        check(MERGE_METRICS, |v| {
            parse_go_bool(v).map(drop).ok_or("not a boolean".into())
        })?;
        for name in [PROXY_CPU, PROXY_CPU_LIMIT, PROXY_MEMORY, PROXY_MEMORY_LIMIT] {
            check(name, quantity)?;
        }
        let seconds = |name: &str| -> Result<Option<u32>, InjectError> {
            raw.get(name)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|_| bad(name, v, "not a whole number of 0 or more".into()))
                })
                .transpose()
        };
        Ok(Annotations {
            raw,
            proxy_config: raw
                .get(PROXY_CONFIG)
                .map(|v| proxy_config(v).map_err(|reason| bad(PROXY_CONFIG, v, reason)))
                .transpose()?,
            readiness_initial_delay: seconds(READINESS_INITIAL_DELAY)?,
            readiness_period: seconds(READINESS_PERIOD)?,
            readiness_failure_threshold: seconds(READINESS_FAILURE_THRESHOLD)?,
        })
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.raw.get(name).map(String::as_str)
    }

    /// The annotation's value when set, else `default` (the template's `annotation` function).
    pub fn or<'b>(&self, name: &str, default: &'b str) -> &'b str
    where
        'a: 'b,
    {
        self.get(name).unwrap_or(default)
    }
}

fn bad(name: &str, value: &str, reason: String) -> InjectError {
    InjectError::Annotation {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// The items of a comma-separated list, trimmed, empty ones left out.
pub(crate) fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

fn interception_mode(v: &str) -> Result<(), String> {
    match v {
        "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
        _ => Err("expected REDIRECT, TPROXY or NONE".into()),
    }
}

/// A list of CIDRs; `*` (every address) where `star` allows it.
fn cidrs(v: &str, star: bool) -> Result<(), String> {
    if star && v.trim() == "*" {
        return Ok(());
    }
    for item in list(v) {
        shoal_config::mesh_networks::Cidr::parse(item)?;
    }
    Ok(())
}

/// A list of ports (1 to 65535); `*` (every port) where `star` allows it.
fn ports(v: &str, star: bool) -> Result<(), String> {
    if star && v.trim() == "*" {
        return Ok(());
    }
    for item in list(v) {
        match item.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("{item:?} is not a port (1 to 65535)")),
        }
    }
    Ok(())
}

/// A Kubernetes resource quantity that is not negative: a decimal number with an SI
/// (`m`, `k`, `M`...), binary (`Ki`, `Mi`...) or exponent (`e3`) suffix.
fn quantity(v: &str) -> Result<(), String> {
    let err = || "not a Kubernetes quantity (such as 100m, 0.5 or 128Mi)".to_string();
    let s = v.strip_prefix('+').unwrap_or(v);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return Err(err());
    }
    let exponent = |e: &str| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    };
    let ok = match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        s => s.strip_prefix(['e', 'E']).is_some_and(exponent),
    };
    if ok { Ok(()) } else { Err(err()) }
}

/// `proxy.istio.io/config`: a ProxyConfig in YAML (or JSON). Istio decodes it into its
/// ProxyConfig message; shoal has no schema of every field, so it checks the ones the
/// injection reads and passes the rest to the agent as written.
fn proxy_config(v: &str) -> Result<Value, String> {
    if v.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let doc: Value = serde_saphyr::from_str(v).map_err(|e| format!("not YAML: {e}"))?;
    let Value::Object(fields) = &doc else {
        return Err("not a ProxyConfig (a mapping of its fields)".into());
    };
    for (field, value) in fields {
        let ok = match field.as_str() {
            "concurrency" => {
                value.is_null() || value.as_u64().is_some_and(|c| c <= i32::MAX as u64)
            }
            "holdApplicationUntilProxyStarts" => value.is_null() || value.is_boolean(),
            "interceptionMode" => value.as_str().is_some_and(|m| interception_mode(m).is_ok()),
            "proxyMetadata" => value
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string)),
            "image" => value
                .as_object()
                .is_some_and(|i| i.get("imageType").is_none_or(Value::is_string)),
            _ => true,
        };
        if !ok {
            return Err(format!("field {field:?} has a value of the wrong type"));
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<(), InjectError> {
        let raw: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Annotations::read(&raw).map(drop)
    }

    #[test]
    fn good_values_pass() {
        read(&[
            (INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/8, fd00::/8"),
            (EXCLUDE_OUTBOUND_IP_RANGES, ""),
            (INCLUDE_INBOUND_PORTS, "*"),
            (EXCLUDE_INBOUND_PORTS, "8081,8082"),
            (EXCLUDE_OUTBOUND_PORTS, "3306"),
            (PROXY_CPU, "250m"),
            (PROXY_MEMORY_LIMIT, "1.5Gi"),
            (PROXY_CPU_LIMIT, "2e3"),
            (INTERCEPTION_MODE, "TPROXY"),
            (MERGE_METRICS, "false"),
            (READINESS_PERIOD, "10"),
            (
                PROXY_CONFIG,
                "concurrency: 2\nholdApplicationUntilProxyStarts: true\nproxyMetadata: {A: b}",
            ),
        ])
        .unwrap();
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (name, value) in [
            (INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0"),
            (INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/33"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "*"),
            (EXCLUDE_INBOUND_PORTS, "0"),
            (INCLUDE_INBOUND_PORTS, "http"),
            (EXCLUDE_OUTBOUND_PORTS, "70000"),
            (PROXY_CPU, "lots"),
            (PROXY_MEMORY, "-1Gi"),
            (PROXY_MEMORY, "1.2.3"),
            (PROXY_CPU, "1x"),
            (INTERCEPTION_MODE, "redirect"),
            (MERGE_METRICS, "maybe"),
            (READINESS_FAILURE_THRESHOLD, "-3"),
            (PROXY_CONFIG, "[1, 2]"),
            (PROXY_CONFIG, "concurrency: two"),
            (PROXY_CONFIG, "holdApplicationUntilProxyStarts: yes please"),
            (PROXY_CONFIG, "{{"),
        ] {
            match read(&[(name, value)]) {
                Err(InjectError::Annotation {
                    name: n, value: v, ..
                }) => {
                    assert_eq!((n.as_str(), v.as_str()), (name, value))
                }
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }
}
