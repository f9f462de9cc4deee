use std::collections::BTreeSet;

use super::Validator;
use crate::k8s::{EndpointSlice, IntOrString, Service};

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
