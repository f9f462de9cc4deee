//! Services from Kubernetes `Service`s and Istio `ServiceEntry`s.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use shoal_config::istio::{self, Location, WorkloadEntrySpec};
use shoal_config::k8s::{self, IntOrString};
use shoal_config::{ConfigSnapshot, Kind, Labels, Object, ObjectKey};

use super::{Endpoint, Protocol};

/// Which namespaces may see an object (`exportTo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Visibility {
    Public,
    Namespaces(BTreeSet<Arc<str>>),
}

impl Visibility {
    /// Istio's `exportTo`: empty or `*` is public, `.` is the object's own namespace, `~` is
    /// nobody, anything else names a namespace.
    pub fn from_export_to(list: &[String], own: &str) -> Visibility {
        if list.is_empty() || list.iter().any(|e| e == "*") {
            return Visibility::Public;
        }
        let set = list
            .iter()
            .filter(|e| e.as_str() != "~")
            .map(|e| {
                if e == "." {
                    Arc::from(own)
                } else {
                    Arc::from(e.as_str())
                }
            })
            .collect();
        Visibility::Namespaces(set)
    }

    pub fn visible_from(&self, namespace: &str) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::Namespaces(set) => set.contains(namespace),
        }
    }
}

/// Kubernetes annotation carrying a Service's `exportTo`.
pub const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ServiceOrigin {
    Kubernetes,
    ServiceEntry,
}

/// How a client finds the service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Resolution {
    /// Endpoints pushed by shoal (EDS).
    ClientSideLb,
    /// Envoy resolves the endpoints' host names (STRICT_DNS).
    Dns,
    /// Envoy resolves one name and uses one address at a time (LOGICAL_DNS).
    DnsRoundRobin,
    /// Traffic goes where the client sent it (ORIGINAL_DST).
    Passthrough,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortModel {
    pub name: String,
    pub port: u16,
    pub target_port: Option<TargetPort>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub host: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub key: ObjectKey,
    pub origin: ServiceOrigin,
    /// Virtual IPs (cluster IPs, ServiceEntry addresses).
    pub addresses: Vec<String>,
    pub ports: Vec<PortModel>,
    pub resolution: Resolution,
    pub mesh_external: bool,
    pub visibility: Visibility,
    /// Selects the workloads (pods, WorkloadEntries) behind the service.
    pub selector: Option<Labels>,
    /// A ServiceEntry's inline endpoints.
    #[serde(skip)]
    pub inline_endpoints: Vec<WorkloadEntrySpec>,
    /// An ExternalName service's target.
    pub external_name: Option<String>,
    /// Identities a client accepts from the service's endpoints besides their service
    /// accounts (a ServiceEntry's `subjectAltNames`).
    pub subject_alt_names: Vec<String>,
    pub endpoints: Arc<Vec<Endpoint>>,
    /// Changes whenever the endpoints are recomputed; keys memoized translations.
    pub generation: u64,
}

impl Service {
    pub fn with_endpoints(mut self, endpoints: Vec<Endpoint>, generation: u64) -> Self {
        self.endpoints = Arc::new(endpoints);
        self.generation = generation;
        self
    }

    pub fn port(&self, number: u16) -> Option<&PortModel> {
        self.ports.iter().find(|p| p.port == number)
    }
}

fn port_u16(p: i64) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

pub(crate) fn from_kubernetes(svc: &k8s::Service, key: &ObjectKey, suffix: &str) -> Service {
    let host: Arc<str> = format!("{}.{}.svc.{suffix}", key.name, key.namespace).into();
    let addresses = svc.spec.virtual_ips();
    let ports = svc
        .spec
        .ports
        .iter()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let name = p.name.clone().unwrap_or_default();
            Some(PortModel {
                protocol: Protocol::select(p.app_protocol.as_deref(), p.protocol.as_deref(), &name),
                name,
                port: port_u16(p.port)?,
                target_port: match &p.target_port {
                    Some(IntOrString::Int(n)) => port_u16(*n).map(TargetPort::Number),
                    Some(IntOrString::String(s)) => Some(TargetPort::Name(s.clone())),
                    None => None,
                },
            })
        })
        .collect();
    let external_name = (svc.spec.type_.as_deref() == Some("ExternalName"))
        .then(|| svc.spec.external_name.clone())
        .flatten();
    let export_to: Vec<String> = svc
        .metadata
        .annotations
        .get(EXPORT_TO_ANNOTATION)
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    Service {
        host,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        key: key.clone(),
        origin: ServiceOrigin::Kubernetes,
        addresses,
        ports,
        // A headless Service (`clusterIP: None`) is reached at its pods' own addresses:
        // the client's original destination, as in Istio.
        resolution: if external_name.is_some() {
            Resolution::Dns
        } else if svc.spec.cluster_ip.as_deref() == Some("None") {
            Resolution::Passthrough
        } else {
            Resolution::ClientSideLb
        },
        mesh_external: external_name.is_some(),
        visibility: Visibility::from_export_to(&export_to, &key.namespace),
        selector: svc.spec.selector.clone().filter(|s| !s.is_empty()),
        inline_endpoints: Vec::new(),
        external_name,
        subject_alt_names: Vec::new(),
        endpoints: Arc::default(),
        generation: 0,
    }
}

pub(crate) fn from_service_entry(
    se: &istio::ServiceEntrySpec,
    key: &ObjectKey,
    suffix: &str,
) -> Vec<Service> {
    let ports: Vec<PortModel> = se
        .ports
        .iter()
        .filter_map(|p| {
            let name = p.name.clone().unwrap_or_else(|| p.number.to_string());
            let protocol = match p.protocol.as_deref() {
                Some(proto) => Protocol::parse(proto),
                None => Protocol::select(None, None, &name),
            };
            Some(PortModel {
                name,
                port: port_u16(p.number)?,
                target_port: p.target_port.and_then(port_u16).map(TargetPort::Number),
                protocol,
            })
        })
        .collect();
    let resolution = match se.resolution.unwrap_or(istio::Resolution::None) {
        istio::Resolution::None => Resolution::Passthrough,
        istio::Resolution::Static => Resolution::ClientSideLb,
        istio::Resolution::Dns => Resolution::Dns,
        istio::Resolution::DnsRoundRobin => Resolution::DnsRoundRobin,
    };
    let visibility = Visibility::from_export_to(&se.export_to, &key.namespace);
    se.hosts
        .iter()
        .map(|h| Service {
            host: shoal_config::host::resolve(h, &key.namespace, suffix).into(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            key: key.clone(),
            origin: ServiceOrigin::ServiceEntry,
            addresses: se.addresses.clone(),
            ports: ports.clone(),
            resolution,
            mesh_external: se.location.unwrap_or(Location::MeshExternal) == Location::MeshExternal,
            visibility: visibility.clone(),
            selector: se.workload_selector.as_ref().map(|s| s.labels.clone()),
            inline_endpoints: se.endpoints.clone(),
            external_name: None,
            subject_alt_names: se.subject_alt_names.clone(),
            endpoints: Arc::default(),
            generation: 0,
        })
        .collect()
}

/// Every service in the config, without endpoints.
pub(crate) fn all_services(cfg: &ConfigSnapshot, suffix: &str) -> Vec<Service> {
    let mut out = Vec::new();
    for (key, e) in cfg.of_kind(Kind::Service) {
        if let Object::Service(s) = e.object.as_ref() {
            out.push(from_kubernetes(s, key, suffix));
        }
    }
    for (key, e) in cfg.of_kind(Kind::ServiceEntry) {
        if let Object::ServiceEntry(se) = e.object.as_ref() {
            out.extend(from_service_entry(&se.spec, key, suffix));
        }
    }
    out
}
