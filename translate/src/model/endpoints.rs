//! Endpoints of a service: from EndpointSlices (with Pod labels and Node topology), from
//! selected Pods when a service has no slices, and from a ServiceEntry's inline endpoints or
//! the WorkloadEntries and Pods its workloadSelector selects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use shoal_config::istio::WorkloadEntrySpec;
use shoal_config::k8s::{self, EndpointSlice, topology};
use shoal_config::{ChangeSet, ConfigSnapshot, Kind, Labels, Object, ObjectKey, selects};

use super::service::{ServiceOrigin, TargetPort};
use super::{Model, Service};

/// Where an endpoint runs: `region/zone/subzone`, each possibly empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// Parses `region/zone/subzone` (Istio's format); `.` is accepted as the separator too,
    /// as in the `istio-locality` pod label where `/` is not allowed.
    pub fn parse(s: &str) -> Locality {
        let sep = if s.contains('/') { '/' } else { '.' };
        let mut parts = s.splitn(3, sep).map(str::to_string);
        Locality {
            region: parts.next().unwrap_or_default(),
            zone: parts.next().unwrap_or_default(),
            subzone: parts.next().unwrap_or_default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub address: Arc<str>,
    /// Port per service port name ("" for an unnamed port).
    pub ports: BTreeMap<String, u16>,
    /// The ports above are all the endpoint serves (EndpointSlices); otherwise a port not
    /// listed is reached on the service's target port.
    pub exact_ports: bool,
    pub labels: Labels,
    pub locality: Locality,
    pub weight: u32,
    pub service_account: Option<String>,
    /// The workload terminates Istio mTLS (runs a sidecar): the target of auto mTLS.
    pub istio_tls: bool,
    /// The workload's name (pod or WorkloadEntry) for metadata and debugging.
    pub workload: Option<String>,
}

/// The label Istio's injector puts on pods with a sidecar (`istio`), also honoured on
/// WorkloadEntries; `disabled` opts a workload out of auto mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
/// The annotation Istio's injector puts on pods it injected.
const SIDECAR_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

/// Whether a workload with these labels (and, for pods, annotations) terminates Istio mTLS:
/// its `security.istio.io/tlsMode` label says so, or, without the label, it is a pod the
/// injector marked as injected.
fn istio_tls(labels: &Labels, annotations: Option<&Labels>) -> bool {
    match labels.get(TLS_MODE_LABEL) {
        Some(mode) => mode == "istio",
        None => annotations.is_some_and(|a| a.contains_key(SIDECAR_STATUS_ANNOTATION)),
    }
}

impl Endpoint {
    /// The port to reach `port` of the service on this endpoint.
    pub fn port_for(&self, port: &super::PortModel) -> Option<u16> {
        if let Some(p) = self.ports.get(&port.name) {
            return Some(*p);
        }
        if self.exact_ports {
            return None;
        }
        match &port.target_port {
            Some(TargetPort::Number(n)) => Some(*n),
            Some(TargetPort::Name(_)) => None,
            None => Some(port.port),
        }
    }
}

/// Lookups that endpoint computation needs, kept current as objects change.
#[derive(Debug, Clone, Default)]
pub struct EndpointIndex {
    /// EndpointSlices per (namespace, service name).
    slices: HashMap<(Arc<str>, String), BTreeSet<ObjectKey>>,
    /// Pods by IP.
    pods_by_ip: HashMap<String, ObjectKey>,
}

impl EndpointIndex {
    pub fn new(cfg: &ConfigSnapshot) -> Self {
        let mut index = EndpointIndex::default();
        for (key, e) in cfg
            .of_kind(Kind::EndpointSlice)
            .chain(cfg.of_kind(Kind::Pod))
        {
            index.add(key, &e.object);
        }
        index
    }

    fn add(&mut self, key: &ObjectKey, obj: &Object) {
        match obj {
            Object::EndpointSlice(s) => {
                if let Some(svc) = s.service_name() {
                    self.slices
                        .entry((key.namespace.clone(), svc.to_string()))
                        .or_default()
                        .insert(key.clone());
                }
            }
            // An ended pod's IPs may be a running pod's already.
            Object::Pod(p) if !p.is_terminal() => {
                for ip in p.ips() {
                    self.pods_by_ip.insert(ip.to_string(), key.clone());
                }
            }
            _ => {}
        }
    }

    fn remove(&mut self, key: &ObjectKey, obj: &Object) {
        match obj {
            Object::EndpointSlice(s) => {
                if let Some(svc) = s.service_name() {
                    let k = (key.namespace.clone(), svc.to_string());
                    if let Some(set) = self.slices.get_mut(&k) {
                        set.remove(key);
                        if set.is_empty() {
                            self.slices.remove(&k);
                        }
                    }
                }
            }
            Object::Pod(p) => {
                for ip in p.ips() {
                    if self.pods_by_ip.get(ip) == Some(key) {
                        self.pods_by_ip.remove(ip);
                    }
                }
            }
            _ => {}
        }
    }

    /// Applies the changed keys, given the snapshots before and after.
    pub fn update(&mut self, old: &ConfigSnapshot, new: &ConfigSnapshot, changes: &ChangeSet) {
        for key in &changes.keys {
            if let Some(e) = old.get(key) {
                self.remove(key, &e.object);
            }
            if let Some(e) = new.get(key) {
                self.add(key, &e.object);
            }
        }
    }

    fn slices_of(&self, namespace: &str, service: &str) -> impl Iterator<Item = &ObjectKey> {
        self.slices
            .get(&(Arc::from(namespace), service.to_string()))
            .into_iter()
            .flatten()
    }
}

fn pod<'a>(cfg: &'a ConfigSnapshot, key: &ObjectKey) -> Option<&'a k8s::Pod> {
    match cfg.get(key).map(|e| e.object.as_ref()) {
        Some(Object::Pod(p)) => Some(p),
        _ => None,
    }
}

fn node_labels<'a>(cfg: &'a ConfigSnapshot, name: &str) -> Option<&'a Labels> {
    match cfg
        .get(&ObjectKey::new(Kind::Node, "", name))
        .map(|e| e.object.as_ref())
    {
        Some(Object::Node(n)) => Some(&n.metadata.labels),
        _ => None,
    }
}

/// Locality of a pod: its `istio-locality` label, else its node's topology labels, with
/// the slice's zone taking precedence for the zone.
fn pod_locality(
    cfg: &ConfigSnapshot,
    pod: Option<&k8s::Pod>,
    node: Option<&str>,
    zone: Option<&str>,
) -> Locality {
    if let Some(l) = pod.and_then(|p| p.metadata.labels.get(topology::ISTIO_LOCALITY)) {
        return Locality::parse(l);
    }
    let node = node.or_else(|| pod.and_then(|p| p.spec.node_name.as_deref()));
    let labels = node.and_then(|n| node_labels(cfg, n));
    let get = |k: &str| {
        labels
            .and_then(|l| l.get(k))
            .unwrap_or_default()
            .to_string()
    };
    Locality {
        region: get(topology::REGION),
        zone: zone
            .map(str::to_string)
            .unwrap_or_else(|| get(topology::ZONE)),
        subzone: get(topology::SUBZONE),
    }
}

fn from_slice(
    cfg: &ConfigSnapshot,
    index: &EndpointIndex,
    slice: &EndpointSlice,
    ns: &str,
    out: &mut Vec<Endpoint>,
) {
    let ports: BTreeMap<String, u16> = slice
        .ports
        .iter()
        .filter_map(|p| {
            Some((
                p.name.clone().unwrap_or_default(),
                u16::try_from(p.port?).ok()?,
            ))
        })
        .collect();
    for ep in slice.endpoints.iter().filter(|e| e.conditions.is_ready()) {
        for address in &ep.addresses {
            let pod_key = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.as_deref())
                .map(|name| {
                    ObjectKey::new(
                        Kind::Pod,
                        ep.target_ref
                            .as_ref()
                            .and_then(|r| r.namespace.as_deref())
                            .unwrap_or(ns),
                        name,
                    )
                })
                .or_else(|| index.pods_by_ip.get(address).cloned());
            let pod = pod_key.as_ref().and_then(|k| pod(cfg, k));
            out.push(Endpoint {
                address: address.as_str().into(),
                ports: ports.clone(),
                exact_ports: true,
                labels: pod.map(|p| p.metadata.labels.clone()).unwrap_or_default(),
                locality: pod_locality(cfg, pod, ep.node_name.as_deref(), ep.zone.as_deref()),
                weight: 1,
                service_account: pod.and_then(|p| p.spec.service_account_name.clone()),
                istio_tls: pod
                    .is_some_and(|p| istio_tls(&p.metadata.labels, Some(&p.metadata.annotations))),
                workload: pod.map(|p| p.metadata.name.clone()),
            });
        }
    }
}

fn from_workload_entry(we: &WorkloadEntrySpec, name: Option<&str>) -> Endpoint {
    let ports = we
        .ports
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), u16::try_from(*v).ok()?)))
        .collect();
    Endpoint {
        address: we.address.as_str().into(),
        ports,
        exact_ports: false,
        labels: we.labels.clone(),
        locality: we
            .locality
            .as_deref()
            .map(Locality::parse)
            .unwrap_or_default(),
        weight: we
            .weight
            .and_then(|w| u32::try_from(w).ok())
            .filter(|w| *w > 0)
            .unwrap_or(1),
        service_account: we.service_account.clone(),
        istio_tls: istio_tls(&we.labels, None),
        workload: name.map(str::to_string),
    }
}

fn selected_workload_entries(
    cfg: &ConfigSnapshot,
    ns: &str,
    selector: &Labels,
    out: &mut Vec<Endpoint>,
) {
    for (key, e) in cfg.of_kind_in(Kind::WorkloadEntry, ns) {
        if let Object::WorkloadEntry(we) = e.object.as_ref()
            && selects(selector, &we.spec.labels)
        {
            out.push(from_workload_entry(&we.spec, Some(&key.name)));
        }
    }
}

fn selected_pods(cfg: &ConfigSnapshot, ns: &str, selector: &Labels, out: &mut Vec<Endpoint>) {
    for (_, e) in cfg.of_kind_in(Kind::Pod, ns) {
        if let Object::Pod(p) = e.object.as_ref()
            && !p.is_terminal()
            && selects(selector, &p.metadata.labels)
            && let Some(ip) = p.ips().first()
        {
            out.push(Endpoint {
                address: (*ip).into(),
                ports: BTreeMap::new(),
                exact_ports: false,
                labels: p.metadata.labels.clone(),
                locality: pod_locality(cfg, Some(p), None, None),
                weight: 1,
                service_account: p.spec.service_account_name.clone(),
                istio_tls: istio_tls(&p.metadata.labels, Some(&p.metadata.annotations)),
                workload: Some(p.metadata.name.clone()),
            });
        }
    }
}

/// Computes a service's endpoints, sorted (so equal inputs give equal outputs).
pub fn compute(svc: &Service, cfg: &ConfigSnapshot, index: &EndpointIndex) -> Vec<Endpoint> {
    let mut out = Vec::new();
    match svc.origin {
        ServiceOrigin::Kubernetes => {
            if let Some(target) = &svc.external_name {
                out.push(Endpoint {
                    address: target.as_str().into(),
                    ports: BTreeMap::new(),
                    exact_ports: false,
                    labels: Labels::new(),
                    locality: Locality::default(),
                    weight: 1,
                    service_account: None,
                    istio_tls: false,
                    workload: None,
                });
            } else {
                let mut any_slice = false;
                for key in index.slices_of(&svc.namespace, &svc.name) {
                    if let Some(Object::EndpointSlice(s)) = cfg.get(key).map(|e| e.object.as_ref())
                    {
                        any_slice = true;
                        from_slice(cfg, index, s, &svc.namespace, &mut out);
                    }
                }
                // Without slices (a hand-written mesh), the selected pods are the endpoints,
                // as Kubernetes' endpoint controller would make them.
                if !any_slice && let Some(sel) = &svc.selector {
                    selected_pods(cfg, &svc.namespace, sel, &mut out);
                }
                // WorkloadEntries (VMs) a Service's selector matches are its endpoints too,
                // as in Istio: a service can span pods and VMs.
                if let Some(sel) = &svc.selector {
                    selected_workload_entries(cfg, &svc.namespace, sel, &mut out);
                }
            }
        }
        ServiceOrigin::ServiceEntry => {
            if !svc.inline_endpoints.is_empty() {
                out.extend(
                    svc.inline_endpoints
                        .iter()
                        .map(|we| from_workload_entry(we, None)),
                );
            } else if let Some(sel) = &svc.selector {
                selected_workload_entries(cfg, &svc.namespace, sel, &mut out);
                selected_pods(cfg, &svc.namespace, sel, &mut out);
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.address, &a.ports, &a.workload).cmp(&(&b.address, &b.ports, &b.workload))
    });
    out.dedup();
    out
}

fn labels_of(obj: &Object) -> Option<&Labels> {
    match obj {
        Object::Pod(p) => Some(&p.metadata.labels),
        Object::WorkloadEntry(w) => Some(&w.spec.labels),
        _ => None,
    }
}

/// Hosts whose endpoints an endpoint-only change may have moved.
pub fn affected_hosts(
    model: &Model,
    old: &ConfigSnapshot,
    changes: &ChangeSet,
) -> BTreeSet<Arc<str>> {
    let suffix = &model.options.domain_suffix;
    let mut hosts = BTreeSet::new();
    for key in &changes.keys {
        let objects: Vec<&Object> = [old.get(key), model.config.get(key)]
            .into_iter()
            .flatten()
            .map(|e| e.object.as_ref())
            .collect();
        match key.kind {
            Kind::EndpointSlice => {
                for o in &objects {
                    if let Object::EndpointSlice(s) = o
                        && let Some(svc) = s.service_name()
                    {
                        hosts.insert(Arc::from(format!("{svc}.{}.svc.{suffix}", key.namespace)));
                    }
                }
            }
            Kind::Pod | Kind::WorkloadEntry => {
                // Services of the namespace selecting the workload (before or after), and
                // Kubernetes services whose slices point at it.
                for list in model.services.values() {
                    for svc in list {
                        let selected = svc.namespace == key.namespace
                            && svc.selector.as_ref().is_some_and(|sel| {
                                objects
                                    .iter()
                                    .filter_map(|o| labels_of(o))
                                    .any(|l| selects(sel, l))
                            });
                        let referenced = key.kind == Kind::Pod
                            && svc.namespace == key.namespace
                            && svc
                                .endpoints
                                .iter()
                                .any(|e| e.workload.as_deref() == Some(key.name.as_ref()));
                        if selected || referenced {
                            hosts.insert(svc.host.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality_formats() {
        assert_eq!(Locality::parse("us/us-1a/rack1").zone, "us-1a");
        assert_eq!(Locality::parse("us.us-1a").region, "us");
        assert!(Locality::parse("").is_empty());
    }

    #[test]
    fn an_ended_pod_does_not_claim_its_old_ip() {
        let pod = |name: &str, phase: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ns, labels: {{app: web}}}}\nstatus: {{podIP: 10.0.0.7, phase: {phase}}}\n---\n"
            )
        };
        // Sorted by name, the ended pod comes after the running one that has its IP now.
        for (running, ended) in [("a-new", "b-old"), ("b-new", "a-old")] {
            let mut store = shoal_config::ConfigStore::new();
            let yaml = pod(running, "Running") + &pod(ended, "Succeeded");
            store.apply(
                "pods.yaml",
                shoal_config::parse::parse_yaml("pods.yaml", &yaml),
            );
            let cfg = store.snapshot();
            let index = EndpointIndex::new(&cfg);
            assert_eq!(
                index.pods_by_ip.get("10.0.0.7").map(|k| k.name.as_ref()),
                Some(running)
            );
            let mut selected = Vec::new();
            let app: Labels = [("app".to_string(), "web".to_string())].into();
            selected_pods(&cfg, "ns", &app, &mut selected);
            let names: Vec<_> = selected.iter().filter_map(|e| e.workload.clone()).collect();
            assert_eq!(names, [running]);
        }
    }
}
