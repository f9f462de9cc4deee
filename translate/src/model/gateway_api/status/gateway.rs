//! A Gateway's status: the addresses of the Service in front of its proxies, `Accepted` and
//! `Programmed`, and per listener the route kinds it takes, the routes attached to it and
//! its `Accepted`, `Programmed`, `ResolvedRefs` and `Conflicted` conditions (the four Istio
//! sets).
//!
//! shoal deploys no proxies: the Service is the one the gateway's deployment comes with,
//! found as Istio's automated deployment names it (`NAME-istio`) or by the label it carries
//! (`gateway.networking.k8s.io/gateway-name: NAME`), or (a manual deployment) named by the
//! Gateway's `Hostname` addresses. Its load balancer's addresses are reported if it has
//! some, else its hostname, as Istio does for class `istio`.
//!
//! A waypoint (class `istio-waypoint`) is reached by ztunnels at its Service's cluster IP:
//! the Service is named as the Gateway (Istio's waypoint deployment) or labelled, its
//! addresses are its cluster IPs, and its listeners speak HBONE only.

use std::net::IpAddr;

use serde_json::{Value, json};
use shoal_config::gateway_api::{GROUP, KubeGatewaySpec, Listener, SecretObjectReference, TlsMode};
use shoal_config::k8s::Service;
use shoal_config::{ConfigSnapshot, Kind, Object, ObjectKey};

use super::super::refs::granted;
use super::super::{
    GATEWAY_NAME_LABEL, RouteKind, allows_kind, listener_gateway, served_certificate,
};
use super::{Condition, ListenerRoutes, ObjectStatus, conditions, resolved_refs};

/// The suffix of the Service Istio's automated deployment creates for a Gateway.
const SERVICE_SUFFIX: &str = "-istio";

/// The classes whose Gateways get status, and what differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::model::gateway_api) enum Class {
    /// `istio`: ingress and egress gateways.
    Gateway,
    /// `istio-waypoint`.
    Waypoint,
}

impl Class {
    fn service_suffix(self) -> &'static str {
        match self {
            Class::Gateway => SERVICE_SUFFIX,
            Class::Waypoint => "",
        }
    }

    fn supports(self, protocol: &str) -> bool {
        match self {
            Class::Gateway => matches!(protocol, "HTTP" | "HTTPS" | "TLS" | "TCP"),
            Class::Waypoint => protocol == "HBONE",
        }
    }
}

pub(super) fn status(
    cfg: &ConfigSnapshot,
    suffix: &str,
    key: &ObjectKey,
    spec: &KubeGatewaySpec,
    routes: Option<&ListenerRoutes>,
    class: Class,
) -> ObjectStatus {
    let (addresses, accepted, programmed) = addressing(cfg, suffix, key, spec, class);
    let listeners: Vec<Value> = spec
        .listeners
        .iter()
        .map(|l| {
            let attached = routes.and_then(|r| r.get(&l.name)).map_or(0, |r| r.len());
            listener(cfg, key, l, attached, class)
        })
        .collect();
    ObjectStatus {
        key: key.clone(),
        status: json!({
            "addresses": addresses,
            "conditions": conditions([accepted, programmed]),
            "listeners": listeners,
        }),
    }
}

/// The Gateway's addresses, `Accepted` and `Programmed`.
fn addressing(
    cfg: &ConfigSnapshot,
    suffix: &str,
    key: &ObjectKey,
    spec: &KubeGatewaySpec,
    class: Class,
) -> (Vec<Value>, Condition, Condition) {
    let ns = key.namespace.as_ref();
    // No address, or one IP (the load balancer's, to ask for): the deployment's own Service.
    // Otherwise the Services its Hostname addresses name; other types are not supported.
    let managed = match spec.addresses.as_slice() {
        [] => true,
        [a] => a.address_type.as_deref().is_none_or(|t| t == "IPAddress"),
        _ => false,
    };
    let mut services: Vec<(String, &Service)> = Vec::new();
    let mut unusable = Vec::new();
    let mut skipped = Vec::new();
    if managed {
        services = deployment_services(cfg, key, suffix, class);
    } else {
        for a in &spec.addresses {
            if a.address_type.as_deref() != Some("Hostname") {
                skipped.push(a.value.as_str());
                continue;
            }
            let host = if a.value.contains('.') {
                a.value.clone()
            } else {
                format!("{}.{ns}.svc.{suffix}", a.value)
            };
            match service_of_host(cfg, ns, &host, suffix) {
                Some(svc) => services.push((host, svc)),
                None => unusable.push(format!(
                    "no Service of namespace {ns:?} has hostname {host:?}"
                )),
            }
        }
    }
    let accepted = if skipped.is_empty() {
        Condition::ok("Accepted", "Accepted", "Gateway accepted".into())
    } else {
        Condition::failed(
            "Accepted",
            "UnsupportedAddress",
            format!(
                "only Hostname addresses are supported; ignoring {}",
                skipped.join(", ")
            ),
        )
    };

    let mut external = Vec::new();
    let mut internal = Vec::new();
    let mut pending = Vec::new();
    for (host, svc) in &services {
        if class == Class::Waypoint {
            let ips = svc.spec.virtual_ips();
            if ips.is_empty() {
                internal.push(host.clone());
            }
            internal.extend(ips);
            continue;
        }
        let ingress = &svc.status.load_balancer.ingress;
        external.extend(
            ingress
                .iter()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())),
        );
        if ingress.is_empty() && svc.spec.type_.as_deref() == Some("LoadBalancer") {
            pending.push(format!(
                "the load balancer of Service {host} has no address yet"
            ));
        } else {
            internal.push(host.clone());
        }
    }
    let mut reported = if external.is_empty() {
        internal
    } else {
        external
    };
    reported.sort();
    reported.dedup();
    let addresses = reported
        .iter()
        .map(|a| {
            let kind = if a.parse::<IpAddr>().is_ok() {
                "IPAddress"
            } else {
                "Hostname"
            };
            json!({"type": kind, "value": a})
        })
        .collect();

    let served_by = services
        .iter()
        .map(|(h, _)| h.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let programmed = if services.is_empty() && managed {
        Condition::failed(
            "Programmed",
            "AddressNotAssigned",
            format!(
                "no Service for the Gateway in namespace {ns:?}: looked for {}{} and for Services labelled {GATEWAY_NAME_LABEL}: {}",
                key.name,
                class.service_suffix(),
                key.name
            ),
        )
    } else if services.is_empty() && unusable.is_empty() {
        Condition::failed(
            "Programmed",
            "AddressNotUsable",
            "no Hostname address names the Service of the Gateway".into(),
        )
    } else if !unusable.is_empty() || !pending.is_empty() {
        let reason = if unusable.is_empty() {
            "AddressNotAssigned"
        } else {
            "AddressNotUsable"
        };
        let problems = [unusable, pending].concat().join("; ");
        let message = if served_by.is_empty() {
            problems
        } else {
            format!("served by {served_by}, but {problems}")
        };
        Condition::failed("Programmed", reason, message)
    } else {
        Condition::ok("Programmed", "Programmed", format!("served by {served_by}"))
    };
    (addresses, accepted, programmed)
}

/// The Services of a Gateway's own deployment, with their hostnames: `NAME-istio` if there
/// is one, else those labelled with the Gateway's name.
fn deployment_services<'a>(
    cfg: &'a ConfigSnapshot,
    key: &ObjectKey,
    suffix: &str,
    class: Class,
) -> Vec<(String, &'a Service)> {
    let ns = key.namespace.as_ref();
    let all = cfg
        .of_kind_in(Kind::Service, ns)
        .filter_map(|(k, e)| match e.object.as_ref() {
            Object::Service(s) => Some((k.name.as_ref(), s)),
            _ => None,
        });
    let host = |name: &str| format!("{name}.{ns}.svc.{suffix}");
    let named = format!("{}{}", key.name, class.service_suffix());
    let mut labelled = Vec::new();
    for (name, svc) in all {
        if name == named {
            return vec![(host(name), svc)];
        }
        if svc.metadata.labels.get(GATEWAY_NAME_LABEL) == Some(key.name.as_ref()) {
            labelled.push((host(name), svc));
        }
    }
    labelled
}

/// The Service of namespace `ns` whose hostname is `host` (`NAME.NS.svc.SUFFIX`).
fn service_of_host<'a>(
    cfg: &'a ConfigSnapshot,
    ns: &str,
    host: &str,
    suffix: &str,
) -> Option<&'a Service> {
    let name = host
        .strip_suffix(suffix)?
        .strip_suffix(".svc.")?
        .strip_suffix(ns)?
        .strip_suffix('.')?;
    match cfg
        .get(&ObjectKey::new(Kind::Service, ns, name))?
        .object
        .as_ref()
    {
        Object::Service(s) => Some(s),
        _ => None,
    }
}

/// One listener's status.
fn listener(
    cfg: &ConfigSnapshot,
    key: &ObjectKey,
    l: &Listener,
    attached: usize,
    class: Class,
) -> Value {
    let ns = key.namespace.as_ref();
    let supported = class.supports(&l.protocol);
    let accepted = if supported {
        Condition::ok("Accepted", "Accepted", "Listener accepted".into())
    } else {
        Condition::failed(
            "Accepted",
            "UnsupportedProtocol",
            format!("protocol {:?} is not supported", l.protocol),
        )
    };
    let terminate = l.tls.as_ref().filter(|t| {
        matches!(l.protocol.as_str(), "HTTPS" | "TLS") && t.mode() == TlsMode::Terminate
    });

    let mut problems: Vec<(&'static str, String)> = Vec::new();
    if let Some(t) = terminate {
        if t.certificate_refs.is_empty() {
            problems.push((
                "InvalidCertificateRef",
                "a Terminate listener needs a certificateRef".into(),
            ));
        }
        problems.extend(
            t.certificate_refs
                .iter()
                .filter_map(|r| certificate_problem(cfg, ns, r)),
        );
    }
    let kinds = l.allowed_routes.iter().flat_map(|a| &a.kinds);
    let invalid: Vec<String> = kinds
        .filter(|k| {
            let group = k.group.as_deref().unwrap_or(GROUP);
            !RouteKind::ALL
                .iter()
                .any(|rk| group == GROUP && rk.name() == k.kind && rk.carried_by(l))
        })
        .map(|k| k.kind.clone())
        .collect();
    if !invalid.is_empty() {
        problems.push((
            "InvalidRouteKinds",
            format!(
                "allowedRoutes.kinds lists kinds this listener does not take: {}",
                invalid.join(", ")
            ),
        ));
    }
    let resolved = resolved_refs(&problems);

    let not_served = |why: String| Condition::failed("Programmed", "Invalid", why);
    let programmed = if listener_gateway(key, l).is_none() {
        not_served(match (supported, &l.tls, terminate) {
            (false, _, _) => format!("not served: protocol {:?} is not supported", l.protocol),
            (true, None, _) => "not served: an HTTPS or TLS listener needs tls settings".into(),
            _ => format!("not served: no certificateRef to a Secret of namespace {ns:?}"),
        })
    } else if let Some(problem) = terminate
        .and_then(|t| served_certificate(ns, t))
        .and_then(|r| certificate_problem(cfg, ns, r))
    {
        not_served(problem.1)
    } else {
        Condition::ok("Programmed", "Programmed", "Listener programmed".into())
    };

    let supported_kinds: Vec<Value> = RouteKind::ALL
        .iter()
        .filter(|k| allows_kind(l, **k))
        .map(|k| json!({"group": GROUP, "kind": k.name()}))
        .collect();
    let conflicted = Condition {
        kind: "Conflicted",
        status: false,
        reason: "NoConflicts",
        message: "No conflicts".into(),
    };
    json!({
        "name": l.name,
        "supportedKinds": supported_kinds,
        "attachedRoutes": attached,
        "conditions": conditions([accepted, conflicted, programmed, resolved]),
    })
}

/// What is wrong with a certificate reference of a Gateway of `gw_ns`, with the reason:
/// not a Secret, of another namespace (not permitted, or permitted but not served yet), not
/// found, or without a certificate and key (the keys SDS serves, `sds.rs`).
fn certificate_problem(
    cfg: &ConfigSnapshot,
    gw_ns: &str,
    r: &SecretObjectReference,
) -> Option<(&'static str, String)> {
    let ns = r.namespace.as_deref().unwrap_or(gw_ns);
    let name = format!("{ns}/{}", r.name);
    let invalid = |m: String| Some(("InvalidCertificateRef", m));
    if !r.is_secret() {
        return invalid(format!(
            "certificateRef {name} is a {} of group {:?}: only Secrets are supported",
            r.kind.as_deref().unwrap_or("Secret"),
            r.group.as_deref().unwrap_or("")
        ));
    }
    if ns != gw_ns {
        if !granted(cfg, (GROUP, "Gateway", gw_ns), ns, ("", "Secret", &r.name)) {
            return Some((
                "RefNotPermitted",
                format!(
                    "certificateRef {name}: no ReferenceGrant in namespace {ns:?} lets Gateways of namespace {gw_ns:?} refer to it"
                ),
            ));
        }
        return invalid(format!(
            "certificateRef {name} is allowed by a ReferenceGrant, but shoal serves only Secrets of the Gateway's own namespace yet"
        ));
    }
    match cfg
        .get(&ObjectKey::new(Kind::Secret, ns, &r.name))
        .map(|e| e.object.as_ref())
    {
        None => invalid(format!("certificateRef {name}: Secret not found")),
        Some(Object::Secret(s)) if s.certificate_and_key().is_some() => None,
        Some(_) => invalid(format!(
            "certificateRef {name}: the Secret holds no certificate and key"
        )),
    }
}
