//! The service model: every service the mesh knows (Kubernetes Services and ServiceEntries)
//! with its ports and endpoints, and the Istio rules indexed for translation. Derived from a
//! [`ConfigSnapshot`]; rebuilt in full when services or rules change, and patched in place
//! when only endpoints move (EndpointSlices, Pods, Nodes, WorkloadEntries).

mod delegate;
mod endpoints;
mod gateway_api;
mod jwks;
mod networks;
mod protocol;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shoal_config::istio::{Attached, AttachedPolicy, PolicyTarget};
use shoal_config::{ChangeSet, ConfigSnapshot, Kind, Object};

pub use endpoints::{Endpoint, Locality, TLS_MODE_LABEL};
pub use gateway_api::{
    CONTROLLER_NAME, GATEWAY_CLASS, GATEWAY_NAME_LABEL, GatewayRule, GatewaySelection, Gateways,
    ISTIO_GATEWAY_NAME_LABEL, ObjectStatus, gateway_api_status,
};
pub(crate) use jwks::KeySource;
pub use jwks::{FetchedJwks, JwksFetch, JwksRef, UNUSABLE_JWKS};
pub use networks::{NetworkGateway, network_of};
pub use protocol::Protocol;
pub use service::{PortModel, Resolution, Service, ServiceOrigin, TargetPort, Visibility};

use crate::MeshOptions;

/// An Istio rule (VirtualService, DestinationRule, Sidecar) with its resolved hosts.
#[derive(Debug, Clone)]
pub struct Rule<T> {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub spec: Arc<T>,
    /// The object's hosts, resolved to FQDNs in its namespace.
    pub hosts: Vec<String>,
    pub visibility: Visibility,
}

/// A security policy (PeerAuthentication, AuthorizationPolicy, RequestAuthentication):
/// selected by workload labels (see [`shoal_config::istio::applicable`]),
/// not by host, and visible to every namespace.
#[derive(Debug, Clone)]
pub struct Policy<T> {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub spec: Arc<T>,
}

impl<T: Attached> AttachedPolicy for Policy<T> {
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn target(&self) -> PolicyTarget<'_> {
        self.spec.target()
    }
}

pub type PeerAuthenticationPolicy = Policy<shoal_config::istio::PeerAuthenticationSpec>;
pub type AuthorizationPolicyRule = Policy<shoal_config::istio::AuthorizationPolicySpec>;
pub type RequestAuthenticationPolicy = Policy<shoal_config::istio::RequestAuthenticationSpec>;

pub type VirtualServiceRule = Rule<shoal_config::istio::VirtualServiceSpec>;
pub type DestinationRuleRule = Rule<shoal_config::istio::DestinationRuleSpec>;
pub type SidecarRule = Rule<shoal_config::istio::SidecarSpec>;

/// What a change to the config means for translation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDelta {
    /// Everything may have changed: rebuild every view.
    pub full: bool,
    /// Only the endpoints of these hosts changed.
    pub endpoint_hosts: BTreeSet<Arc<str>>,
    /// Workloads changed (pods, WorkloadEntries, endpoints, nodes): ztunnel's view, which
    /// is made of them, is rebuilt even where no service's endpoints changed.
    pub workloads: bool,
}

impl ModelDelta {
    pub fn is_empty(&self) -> bool {
        !self.full && self.endpoint_hosts.is_empty() && !self.workloads
    }
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub options: MeshOptions,
    pub config: ConfigSnapshot,
    /// Services by host; one host may be defined in several namespaces (ServiceEntries).
    pub services: BTreeMap<Arc<str>, Vec<Arc<Service>>>,
    pub virtual_services: Vec<Arc<VirtualServiceRule>>,
    pub destination_rules: Vec<Arc<DestinationRuleRule>>,
    /// `Some` when a DestinationRule balances by locality (outlier detection, which turns
    /// on Istio's default locality failover, or `distribute`): clients' localities then
    /// shape their endpoints. Holds the label keys `failoverPriority` compares, sorted.
    pub locality_labels: Option<Vec<String>>,
    /// `Some` when a VirtualService match has `sourceLabels` or a DestinationRule a
    /// `workloadSelector`: the label keys they compare, sorted. Client proxies' values for
    /// these keys then shape their routes and clusters.
    pub source_label_keys: Option<Vec<String>>,
    pub sidecars: BTreeMap<Arc<str>, Vec<Arc<SidecarRule>>>,
    /// Sorted by namespace and name.
    pub peer_authentications: Vec<Arc<PeerAuthenticationPolicy>>,
    /// Sorted by namespace and name.
    pub authorization_policies: Vec<Arc<AuthorizationPolicyRule>>,
    /// Sorted by namespace and name.
    pub request_authentications: Vec<Arc<RequestAuthenticationPolicy>>,
    /// Istio Gateways and the Gateways converted from Kubernetes Gateway API listeners, by
    /// (namespace, name): what gateway proxies are selected by and built from.
    pub gateways: Gateways,
    /// Key sets the control plane fetched for RequestAuthentications (`jwks.rs`).
    pub jwks: Arc<FetchedJwks>,
    /// The east-west gateways of other networks, by network (see [`networks`]).
    pub network_gateways: BTreeMap<String, NetworkGateway>,
    index: endpoints::EndpointIndex,
    /// Monotonic counter stamped on every service whose endpoints were (re)computed.
    generation: u64,
}

impl Model {
    /// Builds the whole model from a config snapshot.
    pub fn build(config: ConfigSnapshot, options: MeshOptions) -> Model {
        let mut model = Model {
            options,
            config,
            ..Model::default()
        };
        model.rebuild();
        model
    }

    /// Moves to new mesh-wide options: everything derived from them is rebuilt. `false`
    /// when they are the current ones.
    pub fn set_options(&mut self, options: MeshOptions) -> bool {
        if self.options == options {
            return false;
        }
        self.options = options;
        self.rebuild();
        true
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    fn rebuild(&mut self) {
        let suffix = self.options.domain_suffix.clone();
        self.index = endpoints::EndpointIndex::new(&self.config);
        let mut services: BTreeMap<Arc<str>, Vec<Arc<Service>>> = BTreeMap::new();
        let mut generation = self.generation;
        for svc in service::all_services(&self.config, &suffix) {
            generation += 1;
            let eps = endpoints::compute(&svc, &self.config, &self.index);
            let svc = svc.with_endpoints(eps, generation);
            services
                .entry(svc.host.clone())
                .or_default()
                .push(Arc::new(svc));
        }
        self.generation = generation;
        self.services = services;
        self.network_gateways = networks::gateways(&self.config, &self.options);

        let cfg = &self.config;
        let rule = |key: &shoal_config::ObjectKey, hosts: Vec<String>, export_to: &[String]| {
            (
                key.namespace.clone(),
                key.name.clone(),
                hosts,
                Visibility::from_export_to(export_to, &key.namespace),
            )
        };
        self.virtual_services = cfg
            .of_kind(Kind::VirtualService)
            .filter_map(|(key, e)| match e.object.as_ref() {
                Object::VirtualService(vs) => {
                    let hosts = vs
                        .spec
                        .hosts
                        .iter()
                        .map(|h| shoal_config::host::resolve(h, &key.namespace, &suffix))
                        .collect();
                    let (namespace, name, hosts, visibility) = rule(key, hosts, &vs.spec.export_to);
                    Some(Arc::new(Rule {
                        namespace,
                        name,
                        spec: Arc::new(vs.spec.clone()),
                        hosts,
                        visibility,
                    }))
                }
                _ => None,
            })
            .collect();
        self.source_label_keys = source_label_keys(&self.virtual_services);
        self.virtual_services =
            delegate::merge(std::mem::take(&mut self.virtual_services), &suffix);
        // Kubernetes Gateway API objects join as Istio Gateways and VirtualServices.
        let (gateways, converted) = gateway_api::build(cfg, &suffix);
        self.gateways = gateways;
        self.virtual_services.extend(converted);
        self.destination_rules = cfg
            .of_kind(Kind::DestinationRule)
            .filter_map(|(key, e)| match e.object.as_ref() {
                Object::DestinationRule(dr) => {
                    let hosts = vec![shoal_config::host::resolve(
                        &dr.spec.host,
                        &key.namespace,
                        &suffix,
                    )];
                    let (namespace, name, hosts, visibility) = rule(key, hosts, &dr.spec.export_to);
                    Some(Arc::new(Rule {
                        namespace,
                        name,
                        spec: Arc::new(dr.spec.clone()),
                        hosts,
                        visibility,
                    }))
                }
                _ => None,
            })
            .collect();
        self.locality_labels = locality_labels(
            &self.destination_rules,
            self.options.locality_lb_setting.as_ref(),
        );
        // DestinationRules with a workloadSelector apply to the workloads they select.
        let selector_keys: BTreeSet<String> = self
            .destination_rules
            .iter()
            .filter_map(|dr| dr.spec.workload_selector.as_ref())
            .flat_map(|s| s.labels.keys().map(str::to_string))
            .collect();
        if !selector_keys.is_empty() {
            let mut keys: BTreeSet<String> = self
                .source_label_keys
                .take()
                .unwrap_or_default()
                .into_iter()
                .collect();
            keys.extend(selector_keys);
            self.source_label_keys = Some(keys.into_iter().collect());
        }
        let mut sidecars: BTreeMap<Arc<str>, Vec<Arc<SidecarRule>>> = BTreeMap::new();
        for (key, e) in cfg.of_kind(Kind::Sidecar) {
            if let Object::Sidecar(sc) = e.object.as_ref() {
                let (namespace, name, hosts, visibility) = rule(key, Vec::new(), &[]);
                sidecars
                    .entry(key.namespace.clone())
                    .or_default()
                    .push(Arc::new(Rule {
                        namespace,
                        name,
                        spec: Arc::new(sc.spec.clone()),
                        hosts,
                        visibility,
                    }));
            }
        }
        self.sidecars = sidecars;
        self.peer_authentications = cfg
            .of_kind(Kind::PeerAuthentication)
            .filter_map(|(key, e)| match e.object.as_ref() {
                Object::PeerAuthentication(pa) => Some(Arc::new(Policy {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    spec: Arc::new(pa.spec.clone()),
                })),
                _ => None,
            })
            .collect();
        self.authorization_policies = cfg
            .of_kind(Kind::AuthorizationPolicy)
            .filter_map(|(key, e)| match e.object.as_ref() {
                Object::AuthorizationPolicy(ap) => Some(Arc::new(Policy {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    spec: Arc::new(ap.spec.clone()),
                })),
                _ => None,
            })
            .collect();
        self.request_authentications = cfg
            .of_kind(Kind::RequestAuthentication)
            .filter_map(|(key, e)| match e.object.as_ref() {
                Object::RequestAuthentication(ra) => Some(Arc::new(Policy {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    spec: Arc::new(ra.spec.clone()),
                })),
                _ => None,
            })
            .collect();
    }

    /// Moves the model to a new config snapshot. Endpoint-only changes patch the affected
    /// services; anything else rebuilds.
    pub fn update(&mut self, config: ConfigSnapshot, changes: &ChangeSet) -> ModelDelta {
        let old = std::mem::replace(&mut self.config, config);
        if changes.is_empty() {
            return ModelDelta::default();
        }
        if !changes.keys.iter().all(|k| k.kind.endpoint_only()) {
            self.rebuild();
            return ModelDelta {
                full: true,
                ..ModelDelta::default()
            };
        }
        self.index.update(&old, &self.config, changes);
        let affected = endpoints::affected_hosts(self, &old, changes);
        // Clusters reached by original destination (headless Services) carry no endpoints
        // but decide auto mTLS from them: their endpoint changes rebuild everything, as
        // Istio pushes them in full.
        let passthrough = affected.iter().any(|h| {
            self.services
                .get(h)
                .is_some_and(|l| l.iter().any(|s| s.resolution == Resolution::Passthrough))
        });
        if passthrough {
            self.rebuild();
            return ModelDelta {
                full: true,
                ..ModelDelta::default()
            };
        }
        let mut delta = ModelDelta {
            workloads: true,
            ..ModelDelta::default()
        };
        for host in affected {
            let Some(list) = self.services.get(&host).cloned() else {
                continue;
            };
            let mut updated = Vec::with_capacity(list.len());
            for svc in list {
                let eps = endpoints::compute(&svc, &self.config, &self.index);
                if *svc.endpoints == eps {
                    updated.push(svc);
                } else {
                    let generation = self.next_generation();
                    updated.push(Arc::new((*svc).clone().with_endpoints(eps, generation)));
                    delta.endpoint_hosts.insert(host.clone());
                }
            }
            self.services.insert(host, updated);
        }
        delta
    }

    /// The service for `host` as seen from `namespace`: its own namespace's definition first,
    /// then a Kubernetes service, then the first by namespace.
    pub fn service_for(&self, host: &str, namespace: &str) -> Option<&Arc<Service>> {
        let list = self.services.get(host)?;
        list.iter()
            .filter(|s| s.visibility.visible_from(namespace))
            .min_by_key(|s| {
                (
                    s.namespace.as_ref() != namespace,
                    !matches!(s.origin, ServiceOrigin::Kubernetes),
                    s.namespace.clone(),
                )
            })
    }

    /// Every service visible from `namespace`, one per host.
    pub fn visible_services<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        self.services
            .keys()
            .filter_map(move |h| self.service_for(h, namespace))
    }
}

#[cfg(test)]
mod tests;

/// See [`Model::locality_labels`].
/// `mesh`: MeshConfig's `localityLbSetting`, which applies where a rule sets none — to
/// services without a DestinationRule as well.
fn locality_labels(
    rules: &[Arc<DestinationRuleRule>],
    mesh: Option<&shoal_config::istio::LocalityLbSetting>,
) -> Option<Vec<String>> {
    use shoal_config::istio::{LoadBalancerSettings, OutlierDetection, TrafficPolicy};
    let mut aware = false;
    let mut keys = BTreeSet::new();
    let mut visit = |lb: Option<&LoadBalancerSettings>, outlier: Option<&OutlierDetection>| {
        let setting = lb.and_then(|l| l.locality_lb_setting.as_ref()).or(mesh);
        if setting.is_some_and(|s| !s.enabled()) {
            return;
        }
        if outlier.is_some() || setting.is_some_and(|s| !s.distribute.is_empty()) {
            aware = true;
        }
        for k in setting.iter().flat_map(|s| &s.failover_priority) {
            keys.insert(k.split_once('=').map_or(k.as_str(), |(k, _)| k).to_string());
        }
    };
    let mut policy = |p: &TrafficPolicy| {
        visit(p.load_balancer.as_ref(), p.outlier_detection.as_ref());
        for pl in &p.port_level_settings {
            visit(pl.load_balancer.as_ref(), pl.outlier_detection.as_ref());
        }
    };
    for r in rules {
        if let Some(p) = &r.spec.traffic_policy {
            policy(p);
        }
        for s in &r.spec.subsets {
            if let Some(p) = &s.traffic_policy {
                policy(p);
            }
        }
    }
    // Services without a DestinationRule: the mesh setting alone.
    visit(None, None);
    aware.then(|| keys.into_iter().collect())
}

/// See [`Model::source_label_keys`]. Delegates count too: their matches end up in roots.
fn source_label_keys(vss: &[Arc<VirtualServiceRule>]) -> Option<Vec<String>> {
    let mut keys = BTreeSet::new();
    for vs in vss {
        let http = vs.spec.http.iter().flat_map(|r| &r.matches);
        let tcp = vs.spec.tcp.iter().flat_map(|r| &r.matches);
        let tls = vs.spec.tls.iter().flat_map(|r| &r.matches);
        keys.extend(http.flat_map(|m| m.source_labels.keys()));
        keys.extend(tcp.flat_map(|m| m.source_labels.keys()));
        keys.extend(tls.flat_map(|m| m.source_labels.keys()));
    }
    (!keys.is_empty()).then(|| keys.into_iter().map(str::to_string).collect())
}
