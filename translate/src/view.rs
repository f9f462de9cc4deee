//! Assembles the resources of a view, memoizing clusters and endpoints shared by views.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use shoal_api::pb::envoy::config::route::v3::RouteConfiguration;
use shoal_api::{Resource, ResourceType};
use shoal_config::{ChangeSet, ConfigSnapshot, ObjectKey, host};

use crate::MeshOptions;
use crate::envoy::cluster::{self, OutboundCluster};
use crate::envoy::listener;
use crate::envoy::outbound_policy::Unknown;
use crate::envoy::{endpoint, outbound_cluster_name, route};
use crate::envoy::{inbound, ingress};
use crate::locality::ClientLocality;
use crate::model::{Model, ModelDelta, Protocol, Service, VirtualServiceRule};
use crate::proxy::{Generator, Interception, ProxyType};
use crate::scope::{Egress, Scope, ViewKey};

mod bound;
mod outbound;

/// The resources of one view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewOutput {
    /// What a wildcard subscription receives (and what named subscriptions resolve
    /// against), sorted by name within each type.
    pub resources: BTreeMap<ResourceType, Vec<Resource>>,
    /// Resources served only when asked for by name (gRPC's `HOST:PORT` listeners and
    /// their route configs, for proxies that are not gRPC clients).
    pub on_demand: BTreeMap<ResourceType, Vec<Resource>>,
}

type DrKey = Option<(Arc<str>, Arc<str>)>;
/// Cluster name, service, DestinationRule, and the client locality when it matters.
type AssignmentKey = (String, ObjectKey, DrKey, Option<ClientLocality>);
/// An outbound cluster: name, flavor, service, DestinationRule, workload certificates, and
/// the client locality its inline endpoints are placed for (DNS clusters only).
type ClusterKey = (
    String,
    Generator,
    ObjectKey,
    DrKey,
    bool,
    Option<ClientLocality>,
);

/// Translates views of one model; keeps translations that views share.
#[derive(Debug, Default)]
pub struct Translator {
    model: Model,
    clusters: HashMap<ClusterKey, Resource>,
    endpoints: HashMap<AssignmentKey, (u64, Resource)>,
    /// The model's ambient enrolment, for waypoint views: built by the first waypoint view
    /// after a change, shared by the others.
    enrolment: Option<crate::ambient::Enrolment>,
}

fn dr_key(c: &OutboundCluster<'_>) -> DrKey {
    c.dr.map(|d| (d.namespace.clone(), d.name.clone()))
}

#[derive(Default)]
pub(crate) struct Out {
    resources: BTreeMap<ResourceType, BTreeMap<Arc<str>, Resource>>,
    on_demand: BTreeMap<ResourceType, BTreeMap<Arc<str>, Resource>>,
}

impl Out {
    pub(crate) fn add(&mut self, ty: ResourceType, r: Resource) {
        self.resources
            .entry(ty)
            .or_default()
            .insert(r.name.clone(), r);
    }

    pub(crate) fn add_on_demand(&mut self, ty: ResourceType, r: Resource) {
        self.on_demand
            .entry(ty)
            .or_default()
            .insert(r.name.clone(), r);
    }

    pub(crate) fn finish(self) -> ViewOutput {
        let conv = |m: BTreeMap<ResourceType, BTreeMap<Arc<str>, Resource>>| {
            m.into_iter()
                .map(|(t, rs)| (t, rs.into_values().collect()))
                .collect()
        };
        ViewOutput {
            resources: conv(self.resources),
            on_demand: conv(self.on_demand),
        }
    }
}

impl Translator {
    pub fn new(config: ConfigSnapshot, options: MeshOptions) -> Self {
        Translator {
            model: Model::build(config, options),
            ..Translator::default()
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Moves to a new config. After a full change, memoized translations are dropped.
    pub fn update(&mut self, config: ConfigSnapshot, changes: &ChangeSet) -> ModelDelta {
        let delta = self.model.update(config, changes);
        self.enrolment = None;
        if delta.full {
            self.clusters.clear();
            self.endpoints.clear();
        }
        delta
    }

    /// Moves to new mesh-wide options (a changed MeshConfig): a full change when they
    /// differ from the current ones.
    pub fn set_options(&mut self, options: MeshOptions) -> ModelDelta {
        if !self.model.set_options(options) {
            return ModelDelta::default();
        }
        self.enrolment = None;
        self.clusters.clear();
        self.endpoints.clear();
        ModelDelta {
            full: true,
            ..ModelDelta::default()
        }
    }

    /// Moves to newly fetched JWKS: a full change when they differ from the current ones
    /// (they are inlined into the `jwt_authn` filters of any view).
    pub fn set_jwks(&mut self, jwks: crate::model::FetchedJwks) -> ModelDelta {
        if *self.model.jwks == jwks {
            return ModelDelta::default();
        }
        self.model.jwks = Arc::new(jwks);
        ModelDelta {
            full: true,
            ..ModelDelta::default()
        }
    }

    /// An outbound cluster, memoized. `model` is passed in because the translator's own is
    /// lent to the view being built. A DNS cluster that balances by locality carries its
    /// endpoints inline, placed for the client's locality: it is memoized per locality.
    fn cluster(
        &mut self,
        model: &Model,
        c: &OutboundCluster<'_>,
        flavor: Generator,
        certs: bool,
        client: Option<&ClientLocality>,
    ) -> Resource {
        let client = client.filter(|_| cluster::places_inline_by_locality(c, flavor));
        let key = (
            c.name.clone(),
            flavor,
            c.service.key.clone(),
            dr_key(c),
            certs,
            client.cloned(),
        );
        self.clusters
            .entry(key)
            .or_insert_with(|| {
                Resource::encode(
                    c.name.as_str(),
                    &cluster::build(c, flavor, model, certs, client),
                )
            })
            .clone()
    }

    /// An endpoint assignment, memoized: one per cluster, or per cluster and client
    /// locality when the cluster balances by locality.
    fn assignment(
        &mut self,
        c: &OutboundCluster<'_>,
        client: Option<&ClientLocality>,
        model: &Model,
    ) -> Resource {
        let client = client.filter(|_| c.locality_policy().is_some());
        let key = (
            c.name.clone(),
            c.service.key.clone(),
            dr_key(c),
            client.cloned(),
        );
        match self.endpoints.get(&key) {
            Some((generation, r)) if *generation == c.service.generation => r.clone(),
            _ => {
                let r = Resource::encode(c.name.as_str(), &endpoint::assignment(c, client, model));
                self.endpoints
                    .insert(key, (c.service.generation, r.clone()));
                r
            }
        }
    }

    /// Builds every resource of a view.
    pub fn build(&mut self, key: &ViewKey) -> ViewOutput {
        match key.proxy_type {
            ProxyType::Ztunnel => return crate::ambient::build(&self.model),
            ProxyType::Waypoint => {
                let enrolment = self
                    .enrolment
                    .get_or_insert_with(|| crate::ambient::Enrolment::new(&self.model));
                return crate::envoy::waypoint::build(&self.model, key, enrolment);
            }
            ProxyType::Federation => return crate::federation::build(&self.model),
            _ => {}
        }
        let model = std::mem::take(&mut self.model);
        let out = ViewBuilder {
            tr: self,
            scope: Scope::new(&model, key),
            out: Out::default(),
        }
        .build();
        self.model = model;
        out
    }

    /// The endpoint assignments of a view for the clusters of `hosts` (after an
    /// endpoint-only change).
    pub fn endpoints(&mut self, key: &ViewKey, hosts: &BTreeSet<Arc<str>>) -> Vec<Resource> {
        if matches!(
            key.proxy_type,
            ProxyType::Ztunnel | ProxyType::Waypoint | ProxyType::Federation
        ) {
            // Rebuilt whole on any change: a ztunnel view is the workloads themselves
            // ([`ModelDelta::workloads`]), a waypoint's clusters carry their endpoints.
            return Vec::new();
        }
        let model = std::mem::take(&mut self.model);
        let scope = Scope::new(&model, key);
        let mut out = Vec::new();
        for h in hosts {
            let Some(svc) = model.service_for(h, scope.namespace()) else {
                continue;
            };
            if !scope.sees(svc) {
                continue;
            }
            for c in cluster::outbound_clusters(&scope, svc) {
                if c.uses_eds() {
                    out.push(self.assignment(&c, key.locality.as_ref(), &model));
                }
            }
        }
        self.model = model;
        out
    }
}

struct ViewBuilder<'t, 'm> {
    tr: &'t mut Translator,
    scope: Scope<'m>,
    out: Out,
}

impl<'m> ViewBuilder<'_, 'm> {
    fn opts(&self) -> &'m MeshOptions {
        &self.scope.model.options
    }

    fn flavor(&self) -> Generator {
        self.scope.key.generator
    }

    fn build(mut self) -> ViewOutput {
        let services = self.scope.services();
        let flavor = self.flavor();
        for svc in &services {
            for c in cluster::outbound_clusters(&self.scope, svc) {
                let cr = self.tr.cluster(
                    self.scope.model,
                    &c,
                    flavor,
                    self.scope.key.workload_certs,
                    self.scope.key.locality.as_ref(),
                );
                self.out.add(ResourceType::Cluster, cr);
                if c.uses_eds() {
                    let er =
                        self.tr
                            .assignment(&c, self.scope.key.locality.as_ref(), self.scope.model);
                    self.out.add(ResourceType::Endpoint, er);
                }
            }
        }
        let vss = self.scope.virtual_services();
        match (flavor, self.scope.key.proxy_type) {
            (Generator::Grpc, _) => {
                self.grpc_listeners(&services, &vss, false);
                self.grpc_server_listeners();
            }
            (Generator::Envoy, ProxyType::Sidecar) => {
                self.sidecar_listeners(&vss);
                self.grpc_listeners(&services, &vss, true);
            }
            (Generator::Envoy, ProxyType::Router) => self.gateway_listeners(),
            // Built by `crate::ambient` and `crate::envoy::waypoint` (`Translator::build`).
            (
                Generator::Envoy,
                ProxyType::Ztunnel | ProxyType::Waypoint | ProxyType::Federation,
            ) => {}
        }
        self.out.finish()
    }

    /// A gateway proxy: the listeners and route configs of its Gateways (clusters are
    /// every service in scope, as above), and the blackhole cluster.
    fn gateway_listeners(&mut self) {
        self.out.add(
            ResourceType::Cluster,
            Resource::encode(crate::envoy::BLACKHOLE, &cluster::blackhole(self.opts())),
        );
        let gw = crate::envoy::gateway::build(&self.scope);
        if !gw.sni_dnat.is_empty() {
            self.sni_dnat_clusters(&gw.sni_dnat);
        }
        for l in gw.listeners {
            self.listener(l);
        }
        for rc in gw.routes {
            self.out
                .add(ResourceType::Route, Resource::encode(rc.name.clone(), &rc));
        }
    }

    /// Adds an Envoy listener, with the mesh's access log on its HTTP connection managers
    /// and TCP proxies when MeshConfig asks for one.
    fn listener(&mut self, mut l: shoal_api::pb::envoy::config::listener::v3::Listener) {
        if let Some(log) = &self.opts().access_log {
            crate::envoy::access_log::apply(&mut l, log);
        }
        self.out
            .add(ResourceType::Listener, Resource::encode(l.name.clone(), &l));
    }

    /// The SNI-DNAT twins of the outbound clusters AUTO_PASSTHROUGH servers expose.
    fn sni_dnat_clusters(&mut self, exposed: &BTreeSet<String>) {
        use crate::envoy::gateway::sni_dnat;
        let flavor = self.flavor();
        for svc in self.scope.services() {
            for c in cluster::outbound_clusters(&self.scope, svc) {
                if !exposed.contains(&c.name) {
                    continue;
                }
                // SNI-DNAT passes connections on as they come: no locality placement.
                let built = cluster::build(
                    &c,
                    flavor,
                    self.scope.model,
                    self.scope.key.workload_certs,
                    None,
                );
                if let Some(dnat) = sni_dnat::cluster(&c, built) {
                    self.out.add(
                        ResourceType::Cluster,
                        Resource::encode(dnat.name.clone(), &dnat),
                    );
                }
            }
        }
    }

    fn special_clusters(&mut self, capture: bool) {
        let opts = self.opts();
        self.out.add(
            ResourceType::Cluster,
            Resource::encode(crate::envoy::BLACKHOLE, &cluster::blackhole(opts)),
        );
        self.out.add(
            ResourceType::Cluster,
            Resource::encode(
                crate::envoy::PASSTHROUGH,
                &cluster::passthrough(false, opts),
            ),
        );
        if capture {
            self.out.add(
                ResourceType::Cluster,
                Resource::encode(
                    crate::envoy::INBOUND_PASSTHROUGH,
                    &cluster::passthrough(true, opts),
                ),
            );
        }
        let ingress = ingress::listeners(&self.scope);
        if capture || !ingress.is_empty() {
            for p in &self.scope.key.inbound {
                let mut c = cluster::inbound(p.port, p.protocol, opts);
                if let Some(pool) = ingress::inbound_pool(&self.scope) {
                    crate::envoy::traffic_policy::apply_connection_pool(&mut c, pool);
                }
                if let Some(l) = ingress.get(&p.port) {
                    c = ingress::cluster(c, l);
                }
                self.out
                    .add(ResourceType::Cluster, Resource::encode(c.name.clone(), &c));
            }
        }
    }

    fn sidecar_listeners(&mut self, vss: &[&'m Arc<VirtualServiceRule>]) {
        let capture = self.scope.key.interception != Interception::None;
        self.special_clusters(capture);
        let egress = self.scope.egress.clone();
        // As in Istio, an egress listener binds its ports when the proxy does not capture
        // traffic or the listener says `captureMode: NONE`.
        let binds = |e: &Egress| e.capture_none || !capture;
        let mut claimed_ports = BTreeSet::new();
        let mut bound = BTreeSet::new();
        for e in egress.iter().filter(|e| e.port.is_some()) {
            let Some(port) = e.port else { continue };
            if binds(e) {
                if !self.scope.key.can_bind(port) {
                    continue;
                }
                bound.insert((self.bind_of(e), port));
                self.bound_listener(e, port, vss);
            } else if claimed_ports.insert(port) {
                let services = self.scope.services_of(e);
                self.capture_port(port, &services, vss);
            }
        }
        for e in egress.iter().filter(|e| e.port.is_none() && binds(e)) {
            self.bound_catch_all(e, &bound, &claimed_ports, vss);
        }
        if capture {
            // The catch-all egress listener: one listener per service port not claimed above.
            let mut by_port: BTreeMap<u16, Vec<&'m Arc<Service>>> = BTreeMap::new();
            for e in egress.iter().filter(|e| e.port.is_none() && !binds(e)) {
                for svc in self.scope.services_of(e) {
                    for p in &svc.ports {
                        if !claimed_ports.contains(&p.port) && p.protocol != Protocol::Udp {
                            by_port.entry(p.port).or_default().push(svc);
                        }
                    }
                }
            }
            for (port, mut services) in by_port {
                services.dedup_by_key(|s| s.host.clone());
                self.capture_port(port, &services, vss);
            }
            // Pods of headless services get listeners of their own, unless bound above.
            let captured: Vec<Egress> = egress
                .iter()
                .filter(|e| e.port.is_some() || !binds(e))
                .cloned()
                .collect();
            self.headless_pod_listeners(&captured, vss);
            self.listener(listener::virtual_outbound(&Unknown::of(&self.scope)));
        }
        self.inbound_listeners(capture);
    }

    /// `virtualInbound` for a captured sidecar, and a bound listener per Sidecar ingress
    /// port that is not captured.
    fn inbound_listeners(&mut self, capture: bool) {
        let ingress = ingress::listeners(&self.scope);
        if !capture && ingress.is_empty() {
            return;
        }
        let security = self.scope.inbound_security();
        let (mut captured, mut tls) = (Vec::new(), BTreeMap::new());
        for p in &self.scope.key.inbound {
            let Some(l) = ingress.get(&p.port) else {
                captured.push(*p);
                continue;
            };
            let ctx = ingress::tls(l);
            if ingress::bound(l, capture) {
                let listener = inbound::bound_inbound(ingress::bind(l), p, &security, ctx.as_ref());
                self.listener(listener);
                continue;
            }
            if let Some(ctx) = ctx {
                tls.insert(p.port, ctx);
            }
            captured.push(*p);
        }
        if capture {
            self.listener(inbound::virtual_inbound(&captured, &security, &tls));
        }
    }

    /// A listener bound by a Sidecar egress listener with a port (`captureMode: NONE` or a
    /// proxy without traffic capture): HTTP on its route config of the same name, or TCP to
    /// the first of its services.
    fn bound_listener(&mut self, e: &Egress, port: u16, vss: &[&'m Arc<VirtualServiceRule>]) {
        let bind = self.bind_of(e);
        let services: Vec<&'m Arc<Service>> = self
            .scope
            .services_of(e)
            .into_iter()
            .filter(|s| s.port(port).is_some())
            .collect();
        let http = match e.protocol {
            Some(p) => p.is_http(),
            None => services.iter().any(|s| {
                s.port(port)
                    .is_some_and(|p| p.protocol.is_http() || p.protocol == Protocol::Unknown)
            }),
        };
        let name = listener::bound_name(&bind, port);
        let (cluster, timeouts) = match services.first() {
            Some(s) => (
                outbound_cluster_name(port, "", &s.host),
                crate::envoy::traffic_policy::TcpTimeouts::for_host(&self.scope, &s.host),
            ),
            None => (crate::envoy::BLACKHOLE.to_string(), Default::default()),
        };
        let traffic = if http {
            listener::BoundTraffic::Http { route: &name }
        } else {
            listener::BoundTraffic::Tcp {
                cluster: &cluster,
                timeouts: &timeouts,
                sniffed: None,
            }
        };
        let mut l = listener::bound(&bind, port, traffic);
        if !http {
            crate::envoy::tcp_route::apply_sidecar(
                &self.scope,
                vss,
                &services[..1.min(services.len())],
                port,
                &mut l,
            );
        }
        self.listener(l);
        if http {
            let rc = self.route_config(&name, port, &services, vss, false);
            self.out
                .add(ResourceType::Route, Resource::encode(rc.name.clone(), &rc));
        }
    }

    /// A route config for a port: a virtual host per HTTP service, per VirtualService host
    /// that names no service, and (with traffic capture) the catch-all of the outbound
    /// traffic policy (`allow_any` or `block_all`).
    fn route_config(
        &mut self,
        name: &str,
        port: u16,
        services: &[&'m Arc<Service>],
        vss: &[&'m Arc<VirtualServiceRule>],
        allow_any: bool,
    ) -> RouteConfiguration {
        let flavor = Generator::Envoy;
        let mut used = BTreeSet::new();
        let mut vhosts = self.service_vhosts(port, services, vss, &mut used);
        // VirtualService hosts that are not services (e.g. a name that routes elsewhere).
        for vs in vss {
            for h in &vs.hosts {
                let is_service = services.iter().any(|s| host::matches(h, &s.host));
                if is_service || h == "*" {
                    continue;
                }
                let routes = route::vs_routes(&self.scope, vs, port, flavor);
                let targets_port = routes.iter().any(|r| route_targets_port(r, port));
                if targets_port {
                    let domains = vec![h.clone(), format!("{h}:{port}")];
                    vhosts.extend(route::virtual_host(
                        format!("{h}:{port}"),
                        domains,
                        routes,
                        &mut used,
                    ));
                }
            }
        }
        if allow_any {
            vhosts.extend(Unknown::of(&self.scope).virtual_host(&mut used));
        }
        RouteConfiguration {
            name: name.to_string(),
            virtual_hosts: vhosts,
            validate_clusters: Some(crate::envoy::boolv(false)),
            ..Default::default()
        }
    }

    /// The virtual hosts of the HTTP (or sniffed) services of a port.
    fn service_vhosts(
        &self,
        port: u16,
        services: &[&'m Arc<Service>],
        vss: &[&'m Arc<VirtualServiceRule>],
        used: &mut BTreeSet<String>,
    ) -> Vec<shoal_api::pb::envoy::config::route::v3::VirtualHost> {
        let suffix = &self.opts().domain_suffix;
        let ns = self.scope.namespace();
        let mut vhosts = Vec::new();
        for svc in services {
            let Some(p) = svc.port(port) else { continue };
            if !(p.protocol.is_http() || p.protocol == Protocol::Unknown) {
                continue;
            }
            let vs = self.scope.virtual_service_for(vss, &svc.host);
            let routes = route::routes(
                &self.scope,
                vs.map(|v| v.as_ref()),
                svc,
                port,
                Generator::Envoy,
            );
            let domains = route::domains(svc, port, ns, suffix);
            vhosts.extend(route::virtual_host(
                format!("{}:{port}", svc.host),
                domains,
                routes,
                used,
            ));
        }
        vhosts
    }

    /// gRPC's `HOST:PORT` listeners and `outbound|PORT||HOST` route configs.
    /// A proxyless gRPC workload's server listeners (on demand: the server names them).
    fn grpc_server_listeners(&mut self) {
        if self.scope.key.inbound.is_empty() {
            return;
        }
        let sec = self.scope.inbound_security();
        for l in crate::envoy::grpc_server::listeners(
            &self.scope.key.inbound,
            &sec,
            self.scope.key.tls_mode_istio,
        ) {
            self.out
                .add_on_demand(ResourceType::Listener, Resource::encode(l.name.clone(), &l));
        }
    }

    fn grpc_listeners(
        &mut self,
        services: &[&'m Arc<Service>],
        vss: &[&'m Arc<VirtualServiceRule>],
        on_demand: bool,
    ) {
        let suffix = &self.opts().domain_suffix;
        let ns = self.scope.namespace();
        for svc in services {
            for p in svc
                .ports
                .iter()
                .filter(|p| p.protocol.is_http() || p.protocol == Protocol::Unknown)
            {
                let rc_name = outbound_cluster_name(p.port, "", &svc.host);
                let address = svc
                    .addresses
                    .iter()
                    .find(|a| crate::envoy::is_ip(a))
                    .map_or("0.0.0.0", String::as_str);
                let l = listener::api_listener(&svc.host, p.port, address, &rc_name);
                let vs = self.scope.virtual_service_for(vss, &svc.host);
                let routes = route::routes(
                    &self.scope,
                    vs.map(|v| v.as_ref()),
                    svc,
                    p.port,
                    Generator::Grpc,
                );
                let mut used = BTreeSet::new();
                let vh = route::virtual_host(
                    format!("{}:{}", svc.host, p.port),
                    route::domains(svc, p.port, ns, suffix),
                    routes,
                    &mut used,
                );
                let rc = RouteConfiguration {
                    name: rc_name.clone(),
                    virtual_hosts: vh.into_iter().collect(),
                    ..Default::default()
                };
                let (lr, rr) = (
                    Resource::encode(l.name.clone(), &l),
                    Resource::encode(rc_name, &rc),
                );
                if on_demand {
                    self.out.add_on_demand(ResourceType::Listener, lr);
                    self.out.add_on_demand(ResourceType::Route, rr);
                } else {
                    self.out.add(ResourceType::Listener, lr);
                    self.out.add(ResourceType::Route, rr);
                }
            }
        }
    }
}

fn route_targets_port(r: &shoal_api::pb::envoy::config::route::v3::Route, port: u16) -> bool {
    use shoal_api::pb::envoy::config::route::v3::{route::Action, route_action::ClusterSpecifier};
    let needle = format!("outbound|{port}|");
    match &r.action {
        Some(Action::Route(a)) => match &a.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => c.starts_with(&needle),
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                w.clusters.iter().any(|c| c.name.starts_with(&needle))
            }
            _ => false,
        },
        _ => false,
    }
}
