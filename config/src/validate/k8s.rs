use std::collections::BTreeSet;

use super::Validator;
use crate::k8s::{EndpointSlice, IntOrString, Service, ServicePort};

pub(super) fn service(v: &mut Validator, s: &Service) {
    let mut numbers = BTreeSet::new();
    let mut names = BTreeSet::new();
    let multi = s.spec.ports.len() > 1;
    for (i, p) in s.spec.ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        v.port(format!("{f}.port"), p.port);
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        if !numbers.insert((p.port, proto.to_string())) {
            v.error(
                format!("{f}.port"),
                format!("duplicate port {} ({proto})", p.port),
            );
        }
        match &p.name {
            Some(n) if !names.insert(n.clone()) => {
                v.error(format!("{f}.name"), format!("duplicate port name {n:?}"))
            }
            None if multi => v.error(
                format!("{f}.name"),
                "required when a service has several ports",
            ),
            _ => {}
        }
        if let Some(IntOrString::Int(t)) = &p.target_port {
            v.port(format!("{f}.targetPort"), *t);
        }
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            v.error(
                format!("{f}.protocol"),
                format!("unknown protocol {proto:?}"),
            );
        }
    }
    if let Some(ip) = &s.spec.cluster_ip
        && ip != "None"
        && !ip.is_empty()
    {
        v.ip("spec.clusterIP", ip);
    }
    wildcard_only_ports(v, s);
}

/// A Service written without a `clusterIP` (the API server would have given it one; a file
/// or etcd does not) and not headless: a captured sidecar reaches its TCP ports only
/// through `0.0.0.0_PORT`, where — as in Istio — the service takes every connection to that
/// port that no other listener matches. HTTP ports are told apart by host and TLS ones by
/// SNI, so only the others are worth a warning.
fn wildcard_only_ports(v: &mut Validator, s: &Service) {
    let addressed = s
        .spec
        .cluster_ip
        .as_deref()
        .is_some_and(|ip| !ip.is_empty())
        || s.spec.cluster_ips.iter().any(|ip| !ip.is_empty());
    if addressed || s.spec.type_.as_deref() == Some("ExternalName") {
        return;
    }
    for (i, p) in s.spec.ports.iter().enumerate() {
        if p.protocol.as_deref().unwrap_or("TCP") != "TCP" || told_apart(p) {
            continue;
        }
        v.warning(
            format!("spec.ports[{i}]"),
            format!(
                "no clusterIP: port {n} is reached only through the listener 0.0.0.0_{n}, \
                 where this service takes every connection to port {n} that no other \
                 listener matches; give the Service a clusterIP (or clusterIP: None for a \
                 headless Service)",
                n = p.port
            ),
        );
    }
}

/// Whether a port's protocol (`appProtocol`, else the name's prefix) is HTTP or TLS.
fn told_apart(p: &ServicePort) -> bool {
    let declared = p
        .app_protocol
        .as_deref()
        .or(p.name.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let prefix = declared.split('-').next().unwrap_or_default();
    matches!(
        prefix,
        "http" | "http2" | "grpc" | "https" | "tls" | "kubernetes.io/h2c"
    )
}

pub(super) fn endpoint_slice(v: &mut Validator, s: &EndpointSlice) {
    let address_type = s.address_type.as_deref().unwrap_or("IPv4");
    if !matches!(address_type, "IPv4" | "IPv6" | "FQDN") {
        v.error(
            "addressType",
            format!("unknown address type {address_type:?}"),
        );
    }
    if s.service_name().is_none() {
        v.warning(
            "metadata.labels",
            "no kubernetes.io/service-name label: the slice belongs to no service",
        );
    }
    for (i, p) in s.ports.iter().enumerate() {
        if let Some(port) = p.port {
            v.port(format!("ports[{i}].port"), port);
        }
    }
    for (i, e) in s.endpoints.iter().enumerate() {
        if e.addresses.is_empty() {
            v.error(
                format!("endpoints[{i}].addresses"),
                "at least one address is required",
            );
        }
        for (j, a) in e.addresses.iter().enumerate() {
            let f = format!("endpoints[{i}].addresses[{j}]");
            match address_type {
                "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => {
                    v.error(f, format!("{a:?} is not an IPv4 address"))
                }
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    v.error(f, format!("{a:?} is not an IPv6 address"))
                }
                "FQDN" => v.host(f, a),
                _ => {}
            }
        }
    }
}
