//! `istio.workload.Address`: a `Service` per service host and a `Workload` per pod,
//! WorkloadEntry and ServiceEntry endpoint with an address.

use std::collections::BTreeMap;
use std::sync::Arc;

use shoal_api::istio::workload::{
    Address, GatewayAddress, Locality as PbLocality, NamespacedHostname, NetworkAddress,
    NetworkMode, Port, PortList, Service as PbService, TunnelProtocol, Workload, WorkloadStatus,
    WorkloadType, address, gateway_address,
};
use shoal_config::k8s::{Pod, namespace_labels};
use shoal_config::{Kind, Labels, Object, ObjectKey, selects};

use super::{
    DATAPLANE_MODE_LABEL, HBONE_PORT, USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL,
    WAYPOINT_CLASS, ip_bytes,
};
use crate::model::{Locality, Model, Service, TLS_MODE_LABEL, TargetPort};

/// An Address resource: its name, the `NETWORK/IP` aliases it is found under on demand.
pub(super) struct Named {
    pub name: String,
    pub aliases: Vec<String>,
    pub address: Address,
}

/// What a waypoint takes traffic for (`service`, the default, `workload`, `all`, `none`).
const WAYPOINT_FOR_LABEL: &str = "istio.io/waypoint-for";
const SIDECAR_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

struct Ctx<'a> {
    model: &'a Model,
    namespaces: BTreeMap<String, Labels>,
}

impl Ctx<'_> {
    fn ns_labels(&self, ns: &str) -> Labels {
        self.namespaces
            .get(ns)
            .cloned()
            .unwrap_or_else(|| namespace_labels(ns, None))
    }

    /// Whether a pod is enrolled in ambient (its traffic is HBONE): it or its namespace is
    /// labelled, it runs no sidecar, and it is not on its node's network (such a pod's IP
    /// is not its own, and it is never captured).
    fn pod_ambient(&self, ns: &str, p: &Pod) -> bool {
        let labels = &p.metadata.labels;
        let sidecar = labels.get(TLS_MODE_LABEL).is_some_and(|m| m == "istio")
            || p.metadata
                .annotations
                .contains_key(SIDECAR_STATUS_ANNOTATION);
        let enrolled = match labels.get(DATAPLANE_MODE_LABEL) {
            Some("ambient") => true,
            Some(_) => false,
            None => self
                .ns_labels(ns)
                .get(DATAPLANE_MODE_LABEL)
                .is_some_and(|m| m == "ambient"),
        };
        enrolled && !sidecar && !p.spec.host_network
    }

    fn network(&self) -> &str {
        self.model.options.own_network()
    }

    /// The waypoint (namespace, name) an object's labels (else its namespace's) name, when
    /// that waypoint exists and takes traffic for `kind` (`service` or `workload`).
    fn waypoint_ref(&self, ns: &str, own: &Labels, kind: &str) -> Option<(String, String)> {
        let ns_labels = self.ns_labels(ns);
        let (labels, name) = match own.get(USE_WAYPOINT_LABEL) {
            Some(name) => (own, name),
            None => (&ns_labels, ns_labels.get(USE_WAYPOINT_LABEL)?),
        };
        if name == "none" {
            return None;
        }
        let wp_ns = labels.get(USE_WAYPOINT_NAMESPACE_LABEL).unwrap_or(ns);
        let gw = match self
            .model
            .config
            .get(&ObjectKey::new(Kind::KubeGateway, wp_ns, name))
            .map(|e| e.object.as_ref())
        {
            Some(Object::KubeGateway(gw)) if gw.spec.gateway_class_name == WAYPOINT_CLASS => gw,
            _ => return None,
        };
        let takes = gw
            .metadata
            .labels
            .get(WAYPOINT_FOR_LABEL)
            .unwrap_or("service");
        if !(takes == kind || takes == "all") {
            return None;
        }
        Some((wp_ns.to_string(), name.to_string()))
    }

    /// The address ztunnel sends a waypoint's traffic to (see [`Ctx::waypoint_ref`]).
    fn waypoint(&self, ns: &str, own: &Labels, kind: &str) -> Option<GatewayAddress> {
        let (wp_ns, name) = self.waypoint_ref(ns, own, kind)?;
        let wp_ns = wp_ns.as_str();
        let host = format!("{name}.{wp_ns}.svc.{}", self.model.options.domain_suffix);
        // Its Service's virtual IP where it has one, else its name.
        let vip = self
            .model
            .service_for(&host, wp_ns)
            .and_then(|s| s.addresses.iter().find_map(|a| ip_bytes(a)));
        let destination = match vip {
            Some(address) => gateway_address::Destination::Address(NetworkAddress {
                network: self.network().to_string(),
                address,
            }),
            None => gateway_address::Destination::Hostname(NamespacedHostname {
                namespace: wp_ns.to_string(),
                hostname: host,
            }),
        };
        Some(GatewayAddress {
            destination: Some(destination),
            hbone_mtls_port: HBONE_PORT,
        })
    }

    /// How ztunnels reach a workload on `network` (Istio's `network_gateway`): that
    /// network's east-west gateway, with HBONE, when it is another network than this
    /// cluster's and its gateway takes HBONE at an IP address. A ztunnel on the
    /// workload's own network ignores it and connects directly.
    fn network_gateway(&self, network: &str) -> Option<GatewayAddress> {
        let (address, port) = self.model.network_gateways.get(network)?.hbone.as_ref()?;
        Some(GatewayAddress {
            destination: Some(gateway_address::Destination::Address(NetworkAddress {
                network: network.to_string(),
                address: ip_bytes(address)?,
            })),
            hbone_mtls_port: u32::from(*port),
        })
    }
}

impl<'a> Ctx<'a> {
    fn new(model: &'a Model) -> Ctx<'a> {
        let namespaces = model
            .config
            .of_kind(Kind::Namespace)
            .filter_map(|(k, e)| match e.object.as_ref() {
                Object::Namespace(n) => {
                    Some((k.name.to_string(), namespace_labels(&k.name, Some(n))))
                }
                _ => None,
            })
            .collect();
        Ctx { model, namespaces }
    }
}

/// What waypoints need of the ambient model, computed once per model (the translator keeps
/// it until the next change) rather than once per waypoint view: which services and which
/// workload addresses go through each waypoint, and which addresses are reached over HBONE.
#[derive(Debug, Default)]
pub(crate) struct Enrolment {
    /// The services each waypoint (namespace, name) takes traffic for, in the model's order.
    services: BTreeMap<(String, String), Vec<Arc<Service>>>,
    /// The addresses of the ambient workloads whose workload-addressed traffic goes through
    /// each waypoint (`istio.io/waypoint-for: workload` or `all`), sorted.
    workloads: BTreeMap<(String, String), Vec<String>>,
    /// The addresses of every ambient workload (running pods and WorkloadEntries).
    hbone: std::collections::HashSet<String>,
}

impl Enrolment {
    pub(crate) fn new(model: &Model) -> Enrolment {
        let ctx = Ctx::new(model);
        let mut ambient: Vec<(&str, &Labels, Vec<&str>)> = Vec::new();
        for (key, e) in model.config.of_kind(Kind::Pod) {
            if let Object::Pod(p) = e.object.as_ref()
                && !p.is_terminal()
                && ctx.pod_ambient(&key.namespace, p)
            {
                ambient.push((&*key.namespace, &p.metadata.labels, p.ips()));
            }
        }
        for (key, e) in model.config.of_kind(Kind::WorkloadEntry) {
            if let Object::WorkloadEntry(we) = e.object.as_ref()
                && we
                    .spec
                    .labels
                    .get(DATAPLANE_MODE_LABEL)
                    .is_some_and(|m| m == "ambient")
            {
                ambient.push((
                    &*key.namespace,
                    &we.spec.labels,
                    vec![we.spec.address.as_str()],
                ));
            }
        }
        let mut out = Enrolment::default();
        for (ns, labels, ips) in &ambient {
            out.hbone.extend(ips.iter().map(|ip| ip.to_string()));
            if let Some(waypoint) = ctx.waypoint_ref(ns, labels, "workload") {
                let at = out.workloads.entry(waypoint).or_default();
                at.extend(ips.iter().map(|ip| ip.to_string()));
            }
        }
        for ips in out.workloads.values_mut() {
            ips.sort();
            ips.dedup();
        }
        // A waypoint's own Service goes through none.
        for svc in model.services.values().flatten() {
            if is_waypoint(model, svc) {
                continue;
            }
            let labels = service_labels(model, svc);
            if let Some(waypoint) = ctx.waypoint_ref(&svc.namespace, &labels, "service") {
                out.services.entry(waypoint).or_default().push(svc.clone());
            }
        }
        out
    }

    /// The services whose traffic goes through waypoint (namespace, name).
    pub(crate) fn services_of(&self, gateway: (&str, &str)) -> &[Arc<Service>] {
        self.services
            .get(&(gateway.0.to_string(), gateway.1.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// The addresses of the ambient workloads whose workload-addressed traffic goes
    /// through waypoint (namespace, name), sorted.
    pub(crate) fn workloads_of(&self, gateway: (&str, &str)) -> &[String] {
        self.workloads
            .get(&(gateway.0.to_string(), gateway.1.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the workload at `address` is ambient: it is reached over HBONE.
    pub(crate) fn hbone(&self, address: &str) -> bool {
        self.hbone.contains(address)
    }
}

/// Every Address of the mesh: services first, then workloads.
pub(super) fn addresses(model: &Model) -> Vec<Named> {
    let ctx = Ctx::new(model);
    let mut out = Vec::new();
    let services: Vec<&Arc<Service>> = model.services.values().flatten().collect();
    for svc in &services {
        out.push(service(&ctx, svc));
    }
    for (key, e) in model.config.of_kind(Kind::Pod) {
        if let Object::Pod(p) = e.object.as_ref()
            && let Some(w) = pod(&ctx, key, p, &services)
        {
            out.push(w);
        }
    }
    for (key, e) in model.config.of_kind(Kind::WorkloadEntry) {
        if let Object::WorkloadEntry(we) = e.object.as_ref()
            && let Some(w) = entry(
                &ctx,
                &format!(
                    "networking.istio.io/WorkloadEntry/{}/{}",
                    key.namespace, key.name
                ),
                &key.name,
                &key.namespace,
                &we.spec,
                Backs::Selected(&services),
            )
        {
            out.push(w);
        }
    }
    for svc in &services {
        for (i, we) in svc.inline_endpoints.iter().enumerate() {
            let name = format!("{}-{i}", svc.name);
            let uid = format!(
                "networking.istio.io/ServiceEntry/{}/{}/{}",
                svc.namespace, svc.name, we.address
            );
            // An inline endpoint backs its own ServiceEntry only.
            if let Some(w) = entry(&ctx, &uid, &name, &svc.namespace, we, Backs::Own(svc)) {
                out.push(w);
            }
        }
    }
    out
}

fn service(ctx: &Ctx<'_>, svc: &Service) -> Named {
    let network = ctx.network();
    let addresses: Vec<NetworkAddress> = svc
        .addresses
        .iter()
        .filter_map(|a| ip_bytes(a))
        .map(|address| NetworkAddress {
            network: network.to_string(),
            address,
        })
        .collect();
    let aliases = svc
        .addresses
        .iter()
        .filter(|a| ip_bytes(a).is_some())
        .map(|a| format!("{network}/{a}"))
        .collect();
    let labels = service_labels(ctx.model, svc);
    let pb = PbService {
        name: svc.name.to_string(),
        namespace: svc.namespace.to_string(),
        hostname: svc.host.to_string(),
        addresses,
        ports: svc
            .ports
            .iter()
            .map(|p| Port {
                service_port: u32::from(p.port),
                // A named target port is resolved per workload (their `services`).
                target_port: match p.target_port {
                    Some(TargetPort::Number(n)) => u32::from(n),
                    Some(TargetPort::Name(_)) => 0,
                    None => u32::from(p.port),
                },
            })
            .collect(),
        subject_alt_names: svc.subject_alt_names.clone(),
        // A waypoint's own Service is not sent through a waypoint.
        waypoint: ctx
            .waypoint(&svc.namespace, &labels, "service")
            .filter(|_| !is_waypoint(ctx.model, svc)),
        ..Default::default()
    };
    Named {
        name: format!("{}/{}", svc.namespace, svc.host),
        aliases,
        address: Address {
            r#type: Some(address::Type::Service(pb)),
        },
    }
}

/// Whether a service fronts a waypoint: it selects the pods of a Gateway of the waypoint
/// class (`gateway.networking.k8s.io/gateway-name`).
fn is_waypoint(model: &Model, svc: &Service) -> bool {
    svc.selector
        .as_ref()
        .and_then(|s| s.get("gateway.networking.k8s.io/gateway-name"))
        .is_some_and(|gw| {
            matches!(
                model
                    .config
                    .get(&ObjectKey::new(Kind::KubeGateway, &svc.namespace, gw))
                    .map(|e| e.object.as_ref()),
                Some(Object::KubeGateway(g)) if g.spec.gateway_class_name == WAYPOINT_CLASS
            )
        })
}

/// The labels of the object a service comes from (a Kubernetes Service or ServiceEntry).
fn service_labels(model: &Model, svc: &Service) -> Labels {
    model
        .config
        .get(&svc.key)
        .map(|e| e.object.meta().labels.clone())
        .unwrap_or_default()
}

/// The `namespace/hostname` → ports of each service a workload with `labels` in `ns` at
/// `ip` backs: the services whose selector picks it, with the port it serves each on.
fn backed(
    services: &[&Arc<Service>],
    ns: &str,
    labels: &Labels,
    ip: &str,
) -> BTreeMap<String, PortList> {
    let mut out = BTreeMap::new();
    for svc in services {
        let picks =
            &*svc.namespace == ns && svc.selector.as_ref().is_some_and(|s| selects(s, labels));
        if !picks {
            continue;
        }
        let endpoint = svc.endpoints.iter().find(|e| &*e.address == ip);
        let ports = svc
            .ports
            .iter()
            .map(|p| Port {
                service_port: u32::from(p.port),
                target_port: endpoint
                    .and_then(|e| e.port_for(p))
                    .or(match p.target_port {
                        Some(TargetPort::Number(n)) => Some(n),
                        _ => None,
                    })
                    .map_or(u32::from(p.port), u32::from),
            })
            .collect();
        out.insert(
            format!("{}/{}", svc.namespace, svc.host),
            PortList { ports },
        );
    }
    out
}

/// Istio's canonical service name and revision labels, with their fallbacks.
fn canonical(labels: &Labels, workload: &str) -> (String, String) {
    let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(k)).map(str::to_string);
    (
        first(&[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ])
        .unwrap_or_else(|| workload.to_string()),
        first(&[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ])
        .unwrap_or_else(|| "latest".to_string()),
    )
}

/// The pod's workload: a Deployment's pods carry `pod-template-hash` and are named
/// `DEPLOYMENT-HASH-SUFFIX`; any other pod is its own workload.
fn workload_of(p: &Pod, name: &str) -> (WorkloadType, String) {
    if let Some(hash) = p.metadata.labels.get("pod-template-hash")
        && let Some((deployment, _)) = name.rsplit_once('-').and_then(|(rs, _)| {
            rs.strip_suffix(hash)
                .and_then(|d| d.strip_suffix('-'))
                .map(|d| (d, ()))
        })
    {
        return (WorkloadType::Deployment, deployment.to_string());
    }
    (WorkloadType::Pod, name.to_string())
}

fn locality(l: &Locality) -> Option<PbLocality> {
    (l != &Locality::default()).then(|| PbLocality {
        region: l.region.clone(),
        zone: l.zone.clone(),
        subzone: l.subzone.clone(),
    })
}

fn pod(ctx: &Ctx<'_>, key: &ObjectKey, p: &Pod, services: &[&Arc<Service>]) -> Option<Named> {
    if p.is_terminal() {
        return None;
    }
    let ips: Vec<&str> = p
        .ips()
        .into_iter()
        .filter(|ip| ip_bytes(ip).is_some())
        .collect();
    let primary = *ips.first()?;
    let labels = &p.metadata.labels;
    let host_network = p.spec.host_network;
    let ambient = ctx.pod_ambient(&key.namespace, p);
    let (workload_type, workload_name) = workload_of(p, &key.name);
    let (canonical_name, canonical_revision) = canonical(labels, &workload_name);
    // A workload a federated peer exported carries its own cluster and network.
    let network = crate::model::network_of(labels, primary, &ctx.model.options);
    let cluster = shoal_config::k8s::topology::cluster_of(labels, &ctx.model.options.cluster_id);
    let uid = format!("{cluster}//Pod/{}/{}", key.namespace, key.name);
    let endpoint_locality = services
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .find(|e| &*e.address == primary)
        .map(|e| e.locality.clone());
    let w = Workload {
        uid: uid.clone(),
        name: key.name.to_string(),
        namespace: key.namespace.to_string(),
        addresses: ips.iter().filter_map(|ip| ip_bytes(ip)).collect(),
        network: network.to_string(),
        network_gateway: ctx.network_gateway(network),
        tunnel_protocol: if ambient {
            TunnelProtocol::Hbone as i32
        } else {
            TunnelProtocol::None as i32
        },
        trust_domain: ctx.model.options.trust_domain.clone(),
        service_account: p
            .spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        waypoint: ctx.waypoint(&key.namespace, labels, "workload"),
        node: p.spec.node_name.clone().unwrap_or_default(),
        canonical_name,
        canonical_revision,
        workload_type: workload_type as i32,
        workload_name,
        services: backed(services, &key.namespace, labels, primary),
        authorization_policies: super::authorization::selecting(ctx.model, &key.namespace, labels),
        status: if p.status.phase.as_deref() == Some("Running") {
            WorkloadStatus::Healthy as i32
        } else {
            WorkloadStatus::Unhealthy as i32
        },
        cluster_id: cluster.to_string(),
        locality: endpoint_locality.as_ref().and_then(locality),
        network_mode: if host_network {
            NetworkMode::HostNetwork as i32
        } else {
            NetworkMode::Standard as i32
        },
        ..Default::default()
    };
    Some(Named {
        name: uid,
        aliases: if host_network {
            Vec::new()
        } else {
            ips.iter().map(|ip| format!("{network}/{ip}")).collect()
        },
        address: Address {
            r#type: Some(address::Type::Workload(w)),
        },
    })
}

/// Which services an entry backs.
enum Backs<'a> {
    /// Those whose selector picks it (a WorkloadEntry).
    Selected(&'a [&'a Arc<Service>]),
    /// Its own ServiceEntry (an inline endpoint), on the ports it names.
    Own(&'a Service),
}

/// A WorkloadEntry (or a ServiceEntry's inline endpoint) with an IP address.
fn entry(
    ctx: &Ctx<'_>,
    uid_tail: &str,
    name: &str,
    ns: &str,
    we: &shoal_config::istio::WorkloadEntrySpec,
    backs: Backs<'_>,
) -> Option<Named> {
    let address = ip_bytes(&we.address)?;
    // Its own `network`, else where its labels and address place it.
    let network = match &we.network {
        Some(n) => n.clone(),
        None => crate::model::network_of(&we.labels, &we.address, &ctx.model.options).to_string(),
    };
    let uid = format!("{}/{uid_tail}", ctx.model.options.cluster_id);
    let (canonical_name, canonical_revision) = canonical(&we.labels, name);
    let ambient = we
        .labels
        .get(DATAPLANE_MODE_LABEL)
        .is_some_and(|m| m == "ambient");
    let w = Workload {
        uid: uid.clone(),
        name: name.to_string(),
        namespace: ns.to_string(),
        addresses: vec![address],
        network_gateway: ctx.network_gateway(&network),
        network: network.clone(),
        tunnel_protocol: if ambient {
            TunnelProtocol::Hbone as i32
        } else {
            TunnelProtocol::None as i32
        },
        trust_domain: ctx.model.options.trust_domain.clone(),
        service_account: we
            .service_account
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        waypoint: ctx.waypoint(ns, &we.labels, "workload"),
        canonical_name,
        canonical_revision,
        workload_type: WorkloadType::Pod as i32,
        workload_name: name.to_string(),
        services: match backs {
            Backs::Selected(services) => backed(services, ns, &we.labels, &we.address),
            Backs::Own(svc) => {
                let ports = svc
                    .ports
                    .iter()
                    .map(|p| Port {
                        service_port: u32::from(p.port),
                        target_port: we
                            .ports
                            .get(&p.name)
                            .and_then(|t| u32::try_from(*t).ok())
                            .unwrap_or(u32::from(p.port)),
                    })
                    .collect();
                [(
                    format!("{}/{}", svc.namespace, svc.host),
                    PortList { ports },
                )]
                .into()
            }
        },
        authorization_policies: super::authorization::selecting(ctx.model, ns, &we.labels),
        cluster_id: ctx.model.options.cluster_id.clone(),
        locality: we
            .locality
            .as_deref()
            .map(Locality::parse)
            .as_ref()
            .and_then(locality),
        ..Default::default()
    };
    Some(Named {
        name: uid,
        aliases: vec![format!("{network}/{}", we.address)],
        address: Address {
            r#type: Some(address::Type::Workload(w)),
        },
    })
}
