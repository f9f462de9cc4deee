use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Validator;
use crate::host;
use crate::istio::{
    DestinationRuleSpec, HttpMatchRequest, HttpRoute, Resolution, ServiceEntrySpec, SidecarSpec,
    StringMatch, VirtualServiceSpec, WorkloadEntrySpec,
};

const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Protocols Istio knows, as written in port names and `protocol` fields.
pub(crate) const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "MYSQL", "REDIS",
];

fn export_to(v: &mut Validator, field: &str, list: &[String]) {
    for (i, e) in list.iter().enumerate() {
        if !(e == "." || e == "*" || e == "~" || host::is_dns_label(e)) {
            v.error(
                format!("{field}[{i}]"),
                format!("{e:?} is not \".\", \"*\" or a namespace"),
            );
        }
    }
}

fn string_match(v: &mut Validator, field: &str, m: &StringMatch, allow_empty: bool) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        v.error(field, "only one of exact, prefix or regex may be set");
    } else if set == 0 && !allow_empty {
        v.error(field, "one of exact, prefix or regex is required");
    }
    if let Some(r) = &m.regex {
        v.regex(format!("{field}.regex"), r);
    }
}

fn header_map(
    v: &mut Validator,
    field: &str,
    map: &BTreeMap<String, StringMatch>,
    lowercase: bool,
) {
    for (name, m) in map {
        let f = format!("{field}.{name}");
        if name.is_empty() {
            v.error(field, "header name must not be empty");
        } else if lowercase && name.bytes().any(|b| b.is_ascii_uppercase()) {
            v.error(&f, "header names must be lowercase");
        }
        string_match(v, &f, m, true);
    }
}

fn http_match(v: &mut Validator, f: &str, m: &HttpMatchRequest) {
    for (name, sm) in [
        ("uri", &m.uri),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(v, &format!("{f}.{name}"), sm, false);
        }
    }
    header_map(v, &format!("{f}.headers"), &m.headers, true);
    header_map(v, &format!("{f}.withoutHeaders"), &m.without_headers, true);
    header_map(v, &format!("{f}.queryParams"), &m.query_params, false);
    if let Some(p) = m.port {
        v.port(format!("{f}.port"), i64::from(p));
    }
}

fn retry_on(v: &mut Validator, field: &str, s: &str) {
    const POLICIES: &[&str] = &[
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ];
    for p in s.split(',').map(str::trim) {
        let status = p.parse::<u16>().is_ok_and(|c| (100..600).contains(&c));
        if !POLICIES.contains(&p) && !status {
            v.error(field, format!("unknown retry policy {p:?}"));
        }
    }
}

fn http_route(v: &mut Validator, f: &str, r: &HttpRoute) {
    for (j, m) in r.matches.iter().enumerate() {
        http_match(v, &format!("{f}.match[{j}]"), m);
    }
    super::virtual_service::http_route_features(v, f, r);
    let mut total: i64 = 0;
    for (k, d) in r.route.iter().enumerate() {
        let df = format!("{f}.route[{k}]");
        super::virtual_service::destination(v, &format!("{df}.destination"), &d.destination);
        match d.weight {
            Some(w) if !(0..=i64::from(u32::MAX)).contains(&w) => v.error(
                format!("{df}.weight"),
                format!("weight {w} must be between 0 and {}", u32::MAX),
            ),
            Some(w) => total += w,
            None => {}
        }
    }
    if r.route.len() > 1 && total == 0 {
        v.error(
            format!("{f}.route"),
            "destination weights sum to 0: no destination would get traffic",
        );
    }
    if let Some(t) = &r.timeout {
        v.duration(format!("{f}.timeout"), t, Duration::ZERO);
    }
    if let Some(retries) = &r.retries {
        if retries.attempts < 0 {
            v.error(format!("{f}.retries.attempts"), "must not be negative");
        }
        if let Some(t) = &retries.per_try_timeout {
            v.duration(format!("{f}.retries.perTryTimeout"), t, MIN_TIMEOUT);
        }
        if let Some(on) = &retries.retry_on {
            retry_on(v, &format!("{f}.retries.retryOn"), on);
        }
        if let Some(b) = &retries.backoff {
            v.duration(format!("{f}.retries.backoff"), b, MIN_TIMEOUT);
        }
    }
}

pub(super) fn virtual_service(v: &mut Validator, s: &VirtualServiceSpec) {
    // No hosts: a delegate VirtualService, or an error.
    super::virtual_service::hosts_or_delegate(v, s);
    let bound_to_mesh = s.gateways.is_empty() || s.gateways.iter().any(|g| g == "mesh");
    for (i, h) in s.hosts.iter().enumerate() {
        if h == "*" && bound_to_mesh {
            v.error(
                format!("spec.hosts[{i}]"),
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            );
        } else {
            v.host(format!("spec.hosts[{i}]"), h);
        }
    }
    for (i, g) in s.gateways.iter().enumerate() {
        let name = g.rsplit('/').next().unwrap_or_default();
        if g != "mesh" && !host::is_dns1123_subdomain(name) {
            v.error(
                format!("spec.gateways[{i}]"),
                format!("{g:?} is not a gateway reference"),
            );
        }
    }
    for (i, r) in s.http.iter().enumerate() {
        http_route(v, &format!("spec.http[{i}]"), r);
    }
    super::virtual_service::l4_routes(v, s);
    export_to(v, "spec.exportTo", &s.export_to);
}

pub(super) fn destination_rule(v: &mut Validator, s: &DestinationRuleSpec) {
    if s.host.is_empty() {
        v.error("spec.host", "required");
    } else {
        v.host("spec.host", &s.host);
    }
    let mut names = BTreeSet::new();
    for (i, sub) in s.subsets.iter().enumerate() {
        let f = format!("spec.subsets[{i}]");
        if sub.name.is_empty() {
            v.error(format!("{f}.name"), "required");
        } else if !host::is_dns_label(&sub.name) {
            v.error(
                format!("{f}.name"),
                format!("{:?} is not a valid subset name", sub.name),
            );
        } else if !names.insert(sub.name.as_str()) {
            v.error(
                format!("{f}.name"),
                format!("duplicate subset {:?}", sub.name),
            );
        }
        if let Some(p) = &sub.traffic_policy {
            super::security::traffic_policy_tls(v, &format!("{f}.trafficPolicy"), p);
            super::traffic_policy::traffic_policy(v, &format!("{f}.trafficPolicy"), p);
        }
    }
    if let Some(p) = &s.traffic_policy {
        super::security::traffic_policy_tls(v, "spec.trafficPolicy", p);
        super::traffic_policy::traffic_policy(v, "spec.trafficPolicy", p);
    }
    export_to(v, "spec.exportTo", &s.export_to);
}

/// Whether a protocol name (case-insensitive) is one Istio knows.
pub(crate) fn known_protocol(p: &str) -> bool {
    PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(p))
}

pub(super) fn service_entry(v: &mut Validator, s: &ServiceEntrySpec) {
    if s.hosts.is_empty() {
        v.error("spec.hosts", "at least one host is required");
    }
    for (i, h) in s.hosts.iter().enumerate() {
        if h == "*" {
            v.error(
                format!("spec.hosts[{i}]"),
                "wildcard host * is not allowed in a ServiceEntry",
            );
        } else {
            v.host(format!("spec.hosts[{i}]"), h);
        }
    }
    for (i, a) in s.addresses.iter().enumerate() {
        v.ip_or_cidr(format!("spec.addresses[{i}]"), a);
    }
    let mut numbers = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, p) in s.ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        v.port(format!("{f}.number"), p.number);
        if !numbers.insert(p.number) {
            v.error(
                format!("{f}.number"),
                format!("duplicate port {}", p.number),
            );
        }
        if let Some(n) = &p.name
            && !names.insert(n.as_str())
        {
            v.error(format!("{f}.name"), format!("duplicate port name {n:?}"));
        }
        match p.protocol.as_deref() {
            Some(proto) if proto.eq_ignore_ascii_case("UDP") => {
                v.error(format!("{f}.protocol"), "UDP is not supported")
            }
            Some(proto) if !known_protocol(proto) => v.error(
                format!("{f}.protocol"),
                format!("unknown protocol {proto:?}"),
            ),
            _ => {}
        }
        if let Some(t) = p.target_port {
            v.port(format!("{f}.targetPort"), t);
        }
    }
    let resolution = s.resolution.unwrap_or(Resolution::None);
    if !s.endpoints.is_empty() && s.workload_selector.is_some() {
        v.error(
            "spec.workloadSelector",
            "only one of endpoints or workloadSelector may be set",
        );
    }
    if matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin) && s.endpoints.is_empty() {
        for (i, h) in s.hosts.iter().enumerate() {
            if h.starts_with('*') {
                v.error(
                    format!("spec.hosts[{i}]"),
                    "DNS resolution needs endpoints when hosts are wildcards",
                );
            }
        }
    }
    if resolution == Resolution::DnsRoundRobin && s.endpoints.len() > 1 {
        v.error(
            "spec.endpoints",
            "DNS_ROUND_ROBIN allows at most one endpoint",
        );
    }
    let port_names: BTreeSet<&str> = s.ports.iter().filter_map(|p| p.name.as_deref()).collect();
    for (i, e) in s.endpoints.iter().enumerate() {
        let f = format!("spec.endpoints[{i}]");
        workload_entry(v, &f, e);
        if resolution == Resolution::Static
            && !e.address.is_empty()
            && !e.address.starts_with("unix://")
            && e.address.parse::<std::net::IpAddr>().is_err()
        {
            v.error(
                format!("{f}.address"),
                "STATIC resolution needs IP endpoint addresses",
            );
        }
        for name in e.ports.keys() {
            if !port_names.contains(name.as_str()) {
                v.error(
                    format!("{f}.ports.{name}"),
                    format!("no port named {name:?} in spec.ports"),
                );
            }
        }
    }
    export_to(v, "spec.exportTo", &s.export_to);
}

pub(super) fn workload_entry(v: &mut Validator, f: &str, s: &WorkloadEntrySpec) {
    if s.address.is_empty() {
        v.error(format!("{f}.address"), "required");
    } else if !s.address.starts_with("unix://") && s.address.parse::<std::net::IpAddr>().is_err() {
        v.host(format!("{f}.address"), &s.address);
    }
    for (name, port) in &s.ports {
        v.port(format!("{f}.ports.{name}"), *port);
    }
    if s.network.as_deref().is_some_and(|n| !n.is_empty()) {
        v.warning(
            format!("{f}.network"),
            "not supported yet: the endpoint is reached directly (no multi-network \
             gateway), as if it were on the client's network",
        );
    }
    if let Some(w) = s.weight
        && !(0..=i64::from(u32::MAX)).contains(&w)
    {
        v.error(format!("{f}.weight"), format!("weight {w} is out of range"));
    }
    if let Some(l) = &s.locality
        && (l.split('/').count() > 3 || l.split('/').any(str::is_empty))
    {
        v.error(
            format!("{f}.locality"),
            format!("{l:?} is not region/zone/subzone"),
        );
    }
}

pub(super) fn sidecar(v: &mut Validator, s: &SidecarSpec) {
    super::sidecar::outbound_traffic_policy(v, s.outbound_traffic_policy.as_ref());
    super::sidecar::ingress(v, &s.ingress);
    if let Some(p) = &s.inbound_connection_pool {
        super::traffic_policy::connection_pool(v, "spec.inboundConnectionPool", p);
    }
    if s.egress.is_empty() {
        v.error("spec.egress", "at least one egress listener is required");
    }
    let mut seen = BTreeSet::new();
    let catch_all = s.egress.iter().filter(|e| e.port.is_none()).count();
    if catch_all > 1 {
        v.error("spec.egress", "only one egress listener may omit the port");
    }
    for (i, e) in s.egress.iter().enumerate() {
        let f = format!("spec.egress[{i}]");
        if e.port.is_none() && i + 1 != s.egress.len() {
            v.error(
                &f,
                "the egress listener without a port must be the last one",
            );
        }
        if let Some(p) = &e.port {
            v.port(format!("{f}.port.number"), p.number);
            if let Some(proto) = &p.protocol
                && !known_protocol(proto)
            {
                v.error(
                    format!("{f}.port.protocol"),
                    format!("unknown protocol {proto:?}"),
                );
            }
            let bind = e.bind.clone().unwrap_or_default();
            if !seen.insert((p.number, bind)) {
                v.error(
                    format!("{f}.port"),
                    format!("duplicate egress listener on port {}", p.number),
                );
            }
        } else if e.bind.is_some() {
            v.error(format!("{f}.bind"), "bind needs a port");
        }
        if let Some(b) = &e.bind
            && !b.starts_with("unix://")
        {
            v.ip(format!("{f}.bind"), b);
        }
        if e.hosts.is_empty() {
            v.error(format!("{f}.hosts"), "at least one host is required");
        }
        for (j, h) in e.hosts.iter().enumerate() {
            let hf = format!("{f}.hosts[{j}]");
            match h.split_once('/') {
                Some((ns, host)) => {
                    if !(ns == "*" || ns == "." || ns == "~" || host::is_dns_label(ns)) {
                        v.error(
                            &hf,
                            format!("{ns:?} is not \"*\", \".\", \"~\" or a namespace"),
                        );
                    }
                    v.host(&hf, host);
                }
                None => v.error(&hf, "hosts must be namespace/dnsName"),
            }
        }
    }
}
