//! Per-object validation. Errors reject the object (its last good version stays in force);
//! warnings are reported and the object is accepted.

mod gateway;
mod gateway_api;
mod istio;
mod k8s;
mod label_selector;
mod policy_target;
mod proxy_config;
mod request_authentication;
mod security;
mod sidecar;
mod traffic_policy;
mod virtual_service;

pub(crate) use label_selector::label_selector;
pub(crate) use traffic_policy::locality_lb as locality_lb_setting;

use crate::host;
use crate::issue::Issue;
use crate::object::Object;

/// Validates one object on its own (no cross-object references; see [`crate::analyze`]).
pub fn validate(obj: &Object) -> Vec<Issue> {
    let mut v = Validator::default();
    v.metadata(obj);
    match obj {
        Object::Service(s) => k8s::service(&mut v, s),
        Object::EndpointSlice(s) => k8s::endpoint_slice(&mut v, s),
        // A ServiceExport is its metadata: the Service it names need not exist yet (MCS
        // reports that in its status, not as an error).
        Object::Pod(_) | Object::Node(_) | Object::ServiceExport(_) => {}
        Object::Namespace(ns) => crate::k8s::validate_namespace(&mut v, ns),
        Object::ServiceEntry(se) => istio::service_entry(&mut v, &se.spec),
        Object::WorkloadEntry(we) => istio::workload_entry(&mut v, "spec", &we.spec),
        Object::VirtualService(vs) => istio::virtual_service(&mut v, &vs.spec),
        Object::DestinationRule(dr) => istio::destination_rule(&mut v, &dr.spec),
        Object::Sidecar(sc) => istio::sidecar(&mut v, &sc.spec),
        Object::PeerAuthentication(pa) => security::peer_authentication(&mut v, &pa.spec),
        Object::AuthorizationPolicy(ap) => security::authorization_policy(&mut v, &ap.spec),
        Object::RequestAuthentication(ra) => {
            request_authentication::request_authentication(&mut v, &ra.spec)
        }
        Object::Gateway(gw) => gateway::gateway(&mut v, &gw.spec),
        Object::Secret(s) => crate::k8s::validate_secret(&mut v, s),
        Object::ProxyConfig(pc) => proxy_config::proxy_config(&mut v, &pc.spec),
        Object::KubeGateway(gw) => gateway_api::gateway(&mut v, &gw.spec),
        Object::HttpRoute(r) => gateway_api::http_route(&mut v, &r.spec),
        Object::ReferenceGrant(g) => gateway_api::reference_grant(&mut v, &g.spec),
        Object::TlsRoute(r) => gateway_api::l4_route(&mut v, &r.spec, true),
        Object::TcpRoute(r) => gateway_api::l4_route(&mut v, &r.spec, false),
        Object::GrpcRoute(r) => gateway_api::grpc_route(&mut v, &r.spec),
    }
    v.issues
}

#[derive(Default)]
pub(crate) struct Validator {
    pub issues: Vec<Issue>,
}

impl Validator {
    /// Kubernetes label keys and values.
    pub fn labels(&mut self, field: &str, labels: &crate::meta::Labels) {
        for (k, val) in labels {
            if !virtual_service::is_label_key(k) {
                self.error(
                    format!("{field}.{k}"),
                    format!("{k:?} is not a valid label key"),
                );
            }
            if !virtual_service::is_label_value(val) {
                self.error(
                    format!("{field}.{k}"),
                    format!("{val:?} is not a valid label value"),
                );
            }
        }
    }

    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::error(field, message));
    }

    pub fn warning(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::warning(field, message));
    }

    fn metadata(&mut self, obj: &Object) {
        let meta = obj.meta();
        if meta.name.is_empty() {
            self.error("metadata.name", "required");
        } else if !host::is_dns1123_subdomain(&meta.name) {
            self.error(
                "metadata.name",
                format!("{:?} is not a valid DNS-1123 name", meta.name),
            );
        }
        if let Some(ns) = &meta.namespace
            && !(host::is_dns_label(ns) && ns.bytes().all(|b| !b.is_ascii_uppercase()))
        {
            self.error(
                "metadata.namespace",
                format!("{ns:?} is not a valid namespace name"),
            );
        }
    }

    /// A port number in 1..=65535.
    pub fn port(&mut self, field: impl Into<String>, port: i64) -> bool {
        if (1..=65535).contains(&port) {
            true
        } else {
            self.error(field, format!("port {port} is out of range 1-65535"));
            false
        }
    }

    pub fn host(&mut self, field: impl Into<String>, h: &str) {
        if let Err(e) = host::validate_host(h) {
            self.error(field, e);
        }
    }

    pub fn duration(&mut self, field: impl Into<String>, d: &str, min: std::time::Duration) {
        match crate::duration::parse(d) {
            Ok(v) if v < min => self.error(
                field,
                format!("duration {d:?} is shorter than the minimum {min:?}"),
            ),
            Ok(_) => {}
            Err(e) => self.error(field, e),
        }
    }

    /// An RE2-compatible regular expression (Envoy's engine). Rust's `regex` accepts the
    /// same syntax for everything Envoy's safe_regex supports.
    pub fn regex(&mut self, field: impl Into<String>, r: &str) {
        if let Err(e) = regex::Regex::new(r) {
            let msg = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .to_string();
            self.error(field, format!("invalid regex {r:?}: {msg}"));
        }
    }

    pub fn ip(&mut self, field: impl Into<String>, ip: &str) -> bool {
        if ip.parse::<std::net::IpAddr>().is_ok() {
            true
        } else {
            self.error(field, format!("{ip:?} is not an IP address"));
            false
        }
    }

    /// An IP address or CIDR block.
    pub fn ip_or_cidr(&mut self, field: impl Into<String>, s: &str) {
        let ok = match s.split_once('/') {
            Some((ip, len)) => match (ip.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
                (Ok(std::net::IpAddr::V4(_)), Ok(l)) => l <= 32,
                (Ok(std::net::IpAddr::V6(_)), Ok(l)) => l <= 128,
                _ => false,
            },
            None => s.parse::<std::net::IpAddr>().is_ok(),
        };
        if !ok {
            self.error(field, format!("{s:?} is not an IP address or CIDR block"));
        }
    }
}

#[cfg(test)]
mod tests;
