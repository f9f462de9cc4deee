//! The listeners of captured outbound traffic, laid out as Istio lays them out (its
//! sidecar outbound listener builder): each TCP or sniffed service with a virtual IP gets
//! `VIP_PORT` (HTTP found on a sniffed one goes to the route config `HOST:PORT`, its own
//! virtual hosts only); each pod of a headless Service gets `PODIP_PORT` the same way; and
//! `0.0.0.0_PORT` carries the rest of the port — HTTP services by host on the route config
//! `PORT`, services on address blocks by destination range, TLS services without an address
//! by SNI, a TCP service without an address as the port's catch-all — with the outbound
//! traffic policy behind them ([`listener::outbound_wildcard`]). `virtualOutbound` hands
//! each connection to the listener of its original destination: `VIP_PORT` before
//! `0.0.0.0_PORT`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shoal_api::pb::envoy::config::route::v3::RouteConfiguration;
use shoal_api::{Resource, ResourceType};

use super::ViewBuilder;
use crate::envoy::listener::{self, PortService};
use crate::envoy::outbound_cluster_name;
use crate::envoy::outbound_policy::Unknown;
use crate::envoy::tcp_route;
use crate::envoy::traffic_policy::TcpTimeouts;
use crate::model::{Protocol, Resolution, Service, ServiceOrigin, VirtualServiceRule};
use crate::scope::Egress;

impl<'m> ViewBuilder<'_, 'm> {
    fn port_service(&self, svc: &Service, protocol: Protocol, port: u16) -> PortService {
        PortService {
            host: svc.host.to_string(),
            cluster: outbound_cluster_name(port, "", &svc.host),
            tcp: TcpTimeouts::for_host(&self.scope, &svc.host),
            protocol,
            addresses: svc.addresses.clone(),
        }
    }

    /// The listeners of a port reached by original destination: `VIP_PORT` for each
    /// virtual IP of its TCP and sniffed services, then `0.0.0.0_PORT` for the rest, and
    /// the route configs they name.
    pub(super) fn capture_port(
        &mut self,
        port: u16,
        services: &[&'m Arc<Service>],
        vss: &[&'m Arc<VirtualServiceRule>],
    ) {
        let mut by_vip: BTreeMap<String, Vec<(&'m Arc<Service>, PortService)>> = BTreeMap::new();
        let mut wildcard: Vec<(&'m Arc<Service>, PortService)> = Vec::new();
        for svc in services {
            let Some(p) = svc.port(port) else { continue };
            let ps = self.port_service(svc, p.protocol, port);
            let vips = ps.vips();
            if vips.is_empty() {
                wildcard.push((svc, ps));
                continue;
            }
            for vip in vips {
                by_vip
                    .entry(vip.to_string())
                    .or_default()
                    .push((svc, ps.clone()));
            }
        }
        let mut sniffed = BTreeSet::new();
        for (vip, on_vip) in &by_vip {
            let (svcs, ports): (Vec<_>, Vec<_>) = on_vip.iter().cloned().unzip();
            let mut l = listener::outbound_vip(vip, port, &ports);
            tcp_route::apply_sidecar(&self.scope, vss, &svcs, port, &mut l);
            self.listener(l);
            for (svc, ps) in on_vip {
                if ps.protocol == Protocol::Unknown && sniffed.insert(svc.host.clone()) {
                    self.sniffed_route(svc, port, vss);
                }
            }
        }
        if wildcard.is_empty() {
            return;
        }
        let (svcs, ports): (Vec<_>, Vec<_>) = wildcard.into_iter().unzip();
        let mut l = listener::outbound_wildcard(port, &ports, &Unknown::of(&self.scope));
        tcp_route::apply_sidecar(&self.scope, vss, &svcs, port, &mut l);
        self.listener(l);
        // Every HTTP and sniffed service of the port has its virtual hosts in `PORT`.
        if ports
            .iter()
            .any(|s| s.protocol.is_http() || s.protocol == Protocol::Unknown)
        {
            let rc = self.route_config(&port.to_string(), port, services, vss, true);
            self.out
                .add(ResourceType::Route, Resource::encode(rc.name.clone(), &rc));
        }
    }

    /// `HOST:PORT`: the virtual hosts of one sniffed service, for the HTTP found on its
    /// own listener; no catch-all (what is not one of its hosts is not its HTTP).
    pub(super) fn sniffed_route(
        &mut self,
        svc: &'m Arc<Service>,
        port: u16,
        vss: &[&'m Arc<VirtualServiceRule>],
    ) {
        let name = listener::sniffed_route(&svc.host, port);
        let mut used = BTreeSet::new();
        let rc = RouteConfiguration {
            name: name.clone(),
            virtual_hosts: self.service_vhosts(port, &[svc], vss, &mut used),
            validate_clusters: Some(crate::envoy::boolv(false)),
            ..Default::default()
        };
        self.out
            .add(ResourceType::Route, Resource::encode(name, &rc));
    }

    /// `PODIP_PORT` for each pod of the headless Kubernetes Services in scope, on their TCP
    /// and sniffed ports (HTTP ones route by host on `0.0.0.0_PORT`), as Istio builds them.
    pub(super) fn headless_pod_listeners(
        &mut self,
        egress: &[Egress],
        vss: &[&'m Arc<VirtualServiceRule>],
    ) {
        let mut seen = BTreeSet::new();
        let mut sniffed = BTreeSet::new();
        for e in egress {
            for svc in self.scope.services_of(e) {
                if svc.resolution != Resolution::Passthrough
                    || svc.origin != ServiceOrigin::Kubernetes
                {
                    continue;
                }
                for p in svc
                    .ports
                    .iter()
                    .filter(|p| !p.protocol.is_http() && p.protocol != Protocol::Udp)
                {
                    let ps = self.port_service(svc, p.protocol, p.port);
                    let mut any = false;
                    for ep in svc
                        .endpoints
                        .iter()
                        .filter(|ep| crate::envoy::is_ip(&ep.address))
                    {
                        if !seen.insert((ep.address.clone(), p.port)) {
                            continue;
                        }
                        // The pod's address stands in for the virtual IP it lacks.
                        let ps = PortService {
                            addresses: vec![ep.address.to_string()],
                            ..ps.clone()
                        };
                        let l = listener::outbound_vip(&ep.address, p.port, &[ps]);
                        self.listener(l);
                        any = true;
                    }
                    if any
                        && p.protocol == Protocol::Unknown
                        && sniffed.insert((svc.host.clone(), p.port))
                    {
                        self.sniffed_route(svc, p.port, vss);
                    }
                }
            }
        }
    }
}
