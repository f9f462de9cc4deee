//! What a proxy sees: its view key, and the services and rules in its scope (namespace
//! visibility via `exportTo`, and its `Sidecar`'s egress hosts). The security policies
//! that apply are chosen here (`policies.rs`) and handed to the builders in `security/`.

pub(crate) mod policies;

use std::sync::Arc;

use serde::Serialize;
use shoal_config::istio::{Attached, CaptureMode, IstioEgressListener, IstioIngressListener};
use shoal_config::{Labels, host, selects};

use crate::locality::ClientLocality;
use crate::model::TargetPort;
use crate::model::{
    DestinationRuleRule, Model, Protocol, Service, SidecarRule, VirtualServiceRule,
};
use crate::proxy::{GatewayTopology, Generator, Interception, Proxy, ProxyType};
use crate::security::{self, InboundSecurity};

/// A port a workload receives traffic on (the service's target port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct InboundPort {
    pub port: u16,
    pub protocol: Protocol,
}

/// Everything that decides a proxy's config. Proxies with equal keys share one view.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ViewKey {
    pub proxy_type: ProxyType,
    pub generator: Generator,
    pub namespace: Arc<str>,
    /// The `Sidecar` resource (namespace, name) that applies, if any.
    pub sidecar: Option<(Arc<str>, Arc<str>)>,
    pub interception: Interception,
    pub inbound: Vec<InboundPort>,
    /// The PeerAuthentications (namespace, name) that decide the workload's inbound mTLS
    /// modes — mesh-wide, namespace-wide, workload-level — for proxies that receive
    /// inbound traffic. With `authorization`, this is all of a workload's labels that
    /// matters: workloads selected by the same policies share a view.
    pub peer_authentication: Vec<(Arc<str>, Arc<str>)>,
    /// The AuthorizationPolicies (namespace, name) that apply to the workload, sorted.
    pub authorization: Vec<(Arc<str>, Arc<str>)>,
    /// The RequestAuthentications (namespace, name) that apply to the workload, sorted.
    pub request_authentication: Vec<(Arc<str>, Arc<str>)>,
    /// Whether the proxy receives its workload certificate (`default`, `ROOTCA`) over SDS:
    /// it authenticated as a workload identity. Without one, optional mTLS (PERMISSIVE
    /// inbound, auto-mTLS outbound) is left out instead of referring to secrets the proxy
    /// can never get; required mTLS (STRICT, ISTIO_MUTUAL) stays and fails closed.
    pub workload_certs: bool,
    /// For gateway proxies (`router~…`): the Gateways (namespace, name) whose `selector`
    /// matches the proxy's labels, sorted. Like the policies above, this is all that the
    /// labels of a gateway decide: gateways selected by the same Gateways share a view.
    pub gateways: Vec<(Arc<str>, Arc<str>)>,
    /// The proxy's locality (and the labels `failoverPriority` compares), only while some
    /// DestinationRule balances by locality: otherwise proxies anywhere share views.
    pub locality: Option<ClientLocality>,
    /// The proxy's labels (key, value) among those some VirtualService match compares in
    /// `sourceLabels`, sorted by key: empty while no VirtualService uses `sourceLabels`, so
    /// that proxies with different labels still share views.
    pub source_labels: Vec<(Arc<str>, Arc<str>)>,
    /// For gateway proxies: service port → target port of the Services of its namespace
    /// that select it, where they differ. A Gateway server on such a port listens on the
    /// target port (the container port), as Istio maps it.
    pub gateway_ports: Vec<(u16, u16)>,
    /// For gateway proxies: their `gatewayTopology` (trusted hops, client cert forwarding,
    /// PROXY protocol).
    pub gateway_topology: Option<GatewayTopology>,
    /// An Envoy sidecar whose addresses are all IPv6: what it binds where traffic is not
    /// captured is `::1`, not `127.0.0.1` (Istio's IP mode).
    pub ipv6: bool,
    /// An Envoy sidecar that cannot bind ports below 1024 (`UNPRIVILEGED_POD`): listeners it
    /// would bind there are left out, as Istio leaves them out.
    pub unprivileged: bool,
    /// A proxyless gRPC server whose workload carries `security.istio.io/tlsMode: istio`:
    /// clients reach it with auto mTLS, and gRPC cannot serve plaintext and mTLS on one
    /// port, so PERMISSIVE serves mTLS (as Istio does).
    pub tls_mode_istio: bool,
}

impl ViewKey {
    /// Derives the view of a proxy from the current model.
    pub fn for_proxy(model: &Model, proxy: &Proxy) -> ViewKey {
        match proxy.proxy_type {
            ProxyType::Ztunnel => return ViewKey::ztunnel(),
            ProxyType::Federation => return ViewKey::federation(),
            _ => {}
        }
        if let Some(gateway) = waypoint_of(model, proxy) {
            return ViewKey::waypoint(&proxy.namespace, gateway);
        }
        let router = proxy.proxy_type == ProxyType::Router;
        // Istio applies `Sidecar` resources to sidecars only; a gateway sees every service
        // its namespace may see.
        let sidecar_rule =
            select_sidecar(model, &proxy.namespace, &proxy.labels).filter(|_| !router);
        let sidecar = sidecar_rule.map(|s| (s.namespace.clone(), s.name.clone()));
        let gateways_apply = router && !grpc_generator(proxy);
        let gateways = if gateways_apply {
            select_gateways(model, &proxy.namespace, &proxy.labels)
        } else {
            Vec::new()
        };
        let grpc = proxy.generator == Generator::Grpc;
        let mut inbound = Vec::new();
        // A Sidecar's ingress listeners replace the ports derived from services.
        let ingress = sidecar_rule
            .map(|s| s.spec.ingress.as_slice())
            .unwrap_or_default();
        if !grpc && proxy.proxy_type == ProxyType::Sidecar && !ingress.is_empty() {
            inbound = ingress_ports(ingress);
        } else if proxy.proxy_type == ProxyType::Sidecar {
            // A proxyless gRPC workload serves these ports itself (xDS-enabled servers).
            inbound = service_ports(model, proxy);
        }
        // Security policies apply where inbound traffic arrives: `virtualInbound` of a
        // captured sidecar, the listeners of its Sidecar's ingress, or the server listeners
        // of a proxyless gRPC workload.
        let inbound_listener = proxy.proxy_type == ProxyType::Sidecar
            && if grpc {
                !inbound.is_empty()
            } else {
                proxy.interception != Interception::None || !ingress.is_empty()
            };
        let tls_mode_istio = grpc
            && inbound_listener
            && proxy.labels.get(crate::model::TLS_MODE_LABEL) == Some("istio");
        // A gateway is where traffic enters the mesh: it enforces the AuthorizationPolicies
        // and RequestAuthentications that select it (PeerAuthentication does not apply to
        // gateways, whose listeners say their own TLS modes).
        let refs = if inbound_listener {
            policies::policy_refs(model, &proxy.namespace, &proxy.labels)
        } else if proxy.proxy_type == ProxyType::Router && !grpc {
            policies::PolicyRefs {
                peer: Vec::new(),
                ..policies::policy_refs(model, &proxy.namespace, &proxy.labels)
            }
        } else {
            policies::PolicyRefs::default()
        };
        ViewKey {
            proxy_type: proxy.proxy_type,
            generator: proxy.generator,
            namespace: proxy.namespace.as_str().into(),
            sidecar,
            interception: if grpc {
                Interception::None
            } else {
                proxy.interception
            },
            inbound,
            peer_authentication: refs.peer,
            authorization: refs.authorization,
            request_authentication: refs.request_authentication,
            workload_certs: true,
            gateways,
            locality: client_locality(model, proxy),
            source_labels: source_labels(model, proxy),
            gateway_topology: proxy.gateway_topology.filter(|_| gateways_apply),
            gateway_ports: if gateways_apply {
                gateway_ports(model, proxy)
            } else {
                Vec::new()
            },
            tls_mode_istio,
            ipv6: proxy.proxy_type == ProxyType::Sidecar && !grpc && proxy.ipv6_only(),
            unprivileged: proxy.proxy_type == ProxyType::Sidecar && !grpc && proxy.unprivileged,
        }
    }

    /// The one view of every ztunnel: the mesh's workloads, services and L4 policies
    /// (`crate::ambient`), the same whoever asks.
    pub fn ztunnel() -> ViewKey {
        ViewKey {
            proxy_type: ProxyType::Ztunnel,
            generator: Generator::Envoy,
            namespace: "".into(),
            sidecar: None,
            interception: Interception::None,
            inbound: Vec::new(),
            peer_authentication: Vec::new(),
            authorization: Vec::new(),
            request_authentication: Vec::new(),
            workload_certs: true,
            gateways: Vec::new(),
            locality: None,
            source_labels: Vec::new(),
            gateway_ports: Vec::new(),
            gateway_topology: None,
            ipv6: false,
            unprivileged: false,
            tls_mode_istio: false,
        }
    }

    /// The one view of every peer group: what this group exports (`crate::federation`).
    pub fn federation() -> ViewKey {
        ViewKey {
            proxy_type: ProxyType::Federation,
            ..ViewKey::ztunnel()
        }
    }

    /// The view of the proxies of one waypoint (`gateway`: its Gateway's name, `None` for a
    /// `waypoint~` proxy that names none: it serves nothing). Policies and services are
    /// read from the model when the view is built (`crate::envoy::waypoint`), so every
    /// proxy of the waypoint shares it.
    pub fn waypoint(namespace: &str, gateway: Option<&str>) -> ViewKey {
        ViewKey {
            proxy_type: ProxyType::Waypoint,
            namespace: namespace.into(),
            gateways: gateway
                .map(|g| vec![(namespace.into(), g.into())])
                .unwrap_or_default(),
            ..ViewKey::ztunnel()
        }
    }

    /// The waypoint Gateway (namespace, name) of a waypoint view.
    pub fn waypoint_gateway(&self) -> Option<(&str, &str)> {
        let (ns, name) = self.gateways.first()?;
        (self.proxy_type == ProxyType::Waypoint).then_some((ns, name))
    }

    /// The loopback address the proxy binds listeners to where traffic is not captured.
    pub(crate) fn loopback(&self) -> &'static str {
        if self.ipv6 { "::1" } else { "127.0.0.1" }
    }

    /// Whether the proxy may bind a listener to `port` (Istio's `CanBindToPort`).
    pub(crate) fn can_bind(&self, port: u16) -> bool {
        !(self.unprivileged && (1..1024).contains(&port))
    }

    /// A readable, unique id of the view (used in metrics and debug output).
    pub fn id(&self) -> String {
        let sidecar = match &self.sidecar {
            Some((ns, name)) => format!("{ns}/{name}"),
            None => "-".into(),
        };
        let inbound: Vec<String> = self
            .inbound
            .iter()
            .map(|p| format!("{}:{}", p.port, p.protocol.as_str()))
            .collect();
        let policies = |label: &str, list: &[(Arc<str>, Arc<str>)]| {
            if list.is_empty() {
                return String::new();
            }
            let names: Vec<String> = list.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
            format!("|{label}={}", names.join(","))
        };
        format!(
            "{}|{}|{}|sidecar={}|{}|inbound={}{}{}",
            serde_json::to_value(self.proxy_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            serde_json::to_value(self.generator)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            self.namespace,
            sidecar,
            serde_json::to_value(self.interception)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            inbound.join(","),
            policies("peerauthn", &self.peer_authentication),
            policies("authz", &self.authorization),
        ) + policies("reqauthn", &self.request_authentication).as_str()
            + policies("gateways", &self.gateways).as_str()
            + if self.workload_certs { "" } else { "|no-certs" }
            + if self.ipv6 { "|ipv6" } else { "" }
            + if self.unprivileged {
                "|unprivileged"
            } else {
                ""
            }
            + if self.tls_mode_istio {
                "|tlsmode-istio"
            } else {
                ""
            }
            + &self.locality.as_ref().map(locality_id).unwrap_or_default()
            + &source_labels_id(&self.source_labels)
            + &gateway_ports_id(&self.gateway_ports)
            + &self
                .gateway_topology
                .map(|t| {
                    format!(
                        "|topology={},{},{}",
                        t.num_trusted_proxies,
                        t.forward_client_cert
                            .and_then(|f| serde_json::to_value(f).ok())
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_else(|| "UNDEFINED".into()),
                        if t.proxy_protocol {
                            "proxy-protocol"
                        } else {
                            "-"
                        }
                    )
                })
                .unwrap_or_default()
    }
}

/// The ports of a Sidecar's ingress listeners, with their protocol (declared, else from
/// the port name).
fn ingress_ports(ingress: &[IstioIngressListener]) -> Vec<InboundPort> {
    let mut out: Vec<InboundPort> = ingress
        .iter()
        .filter_map(|l| {
            let p = l.port.as_ref()?;
            Some(InboundPort {
                port: u16::try_from(p.number).ok().filter(|n| *n != 0)?,
                protocol: match p.protocol.as_deref() {
                    Some(proto) => Protocol::parse(proto),
                    None => Protocol::select(None, None, p.name.as_deref().unwrap_or_default()),
                },
            })
        })
        .collect();
    out.sort();
    out.dedup_by_key(|p| p.port);
    out
}

/// See [`ViewKey::gateway_ports`].
fn gateway_ports(model: &Model, proxy: &Proxy) -> Vec<(u16, u16)> {
    let mut out = std::collections::BTreeMap::new();
    for svc in model.services.values().flatten() {
        let selected = svc.namespace.as_ref() == proxy.namespace
            && svc
                .selector
                .as_ref()
                .is_some_and(|sel| !sel.is_empty() && selects(sel, &proxy.labels));
        if !selected {
            continue;
        }
        for p in &svc.ports {
            if let Some(TargetPort::Number(t)) = p.target_port
                && t != p.port
            {
                out.entry(p.port).or_insert(t);
            }
        }
    }
    out.into_iter().collect()
}

fn gateway_ports_id(ports: &[(u16, u16)]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = ports.iter().map(|(p, t)| format!("{p}>{t}")).collect();
    format!("|ports={}", pairs.join(","))
}

/// See [`ViewKey::source_labels`].
fn source_labels(model: &Model, proxy: &Proxy) -> Vec<(Arc<str>, Arc<str>)> {
    if proxy.proxy_type == ProxyType::Ztunnel {
        return Vec::new();
    }
    let Some(keys) = model.source_label_keys.as_ref() else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|k| Some((k.as_str().into(), proxy.labels.get(k)?.into())))
        .collect()
}

fn source_labels_id(labels: &[(Arc<str>, Arc<str>)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("|source={}", pairs.join(","))
}

fn client_locality(model: &Model, proxy: &Proxy) -> Option<ClientLocality> {
    if proxy.proxy_type == ProxyType::Ztunnel {
        return None;
    }
    let keys = model.locality_labels.as_ref()?;
    Some(ClientLocality {
        locality: proxy.locality.clone(),
        labels: keys
            .iter()
            .filter_map(|k| Some((k.as_str().into(), proxy.labels.get(k)?.into())))
            .collect(),
    })
}

/// The label Istio puts on the pods of a Gateway API gateway (and waypoint).
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// Whether a proxy is a waypoint, and the name of its Gateway: a `waypoint~` proxy, or a
/// `router~` proxy whose pod belongs to a Gateway of class `istio-waypoint` of its namespace.
fn waypoint_of<'p>(model: &Model, proxy: &'p Proxy) -> Option<Option<&'p str>> {
    let gateway = proxy.labels.get(GATEWAY_NAME_LABEL);
    match proxy.proxy_type {
        ProxyType::Waypoint => Some(gateway),
        ProxyType::Router if proxy.generator == Generator::Envoy => {
            let name = gateway?;
            let key = shoal_config::ObjectKey::new(
                shoal_config::Kind::KubeGateway,
                &proxy.namespace,
                name,
            );
            match model.config.get(&key).map(|e| e.object.as_ref()) {
                Some(shoal_config::Object::KubeGateway(gw))
                    if gw.spec.gateway_class_name == crate::ambient::WAYPOINT_CLASS =>
                {
                    Some(Some(name))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn grpc_generator(proxy: &Proxy) -> bool {
    proxy.generator == Generator::Grpc
}

fn locality_id(c: &ClientLocality) -> String {
    let l = &c.locality;
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!(",{k}={v}")).collect();
    format!(
        "|locality={}/{}/{}{}",
        l.region,
        l.zone,
        l.subzone,
        labels.concat()
    )
}

/// The Gateways that configure a gateway proxy: Istio Gateways whose `selector` matches its
/// labels (an empty selector matches every gateway proxy), in any namespace, which is
/// Istio's default (`PILOT_SCOPE_GATEWAY_TO_NAMESPACE=false`; scoping them to the proxy's
/// own namespace is not offered), and the listeners of the Kubernetes Gateway whose
/// deployment the proxy belongs to (see [`crate::model::GatewayRule::selects`]).
fn select_gateways(
    model: &Model,
    namespace: &str,
    labels: &shoal_config::Labels,
) -> Vec<(Arc<str>, Arc<str>)> {
    model
        .gateways
        .iter()
        .filter(|(_, gw)| gw.selects(namespace, labels))
        .map(|(key, _)| key.clone())
        .collect()
}

/// Whether an `HTTPMatchRequest` with `gateways` applies where routes are being built: on a
/// sidecar (`gateway` is `None`) when it names none or `mesh`; on a gateway when it names
/// none or that gateway (`NS/NAME`, or `NAME` in the VirtualService's namespace).
pub(crate) fn match_applies(
    gateway: Option<&str>,
    vs_namespace: &str,
    gateways: &[String],
) -> bool {
    if gateways.is_empty() {
        return true;
    }
    match gateway {
        None => gateways.iter().any(|g| g == "mesh"),
        Some(gw) => gateways
            .iter()
            .any(|g| qualify_gateway(g, vs_namespace).as_deref() == Some(gw)),
    }
}

/// `NS/NAME` of a gateway reference written in a VirtualService of `vs_namespace`; `None`
/// for `mesh`.
pub(crate) fn qualify_gateway(reference: &str, vs_namespace: &str) -> Option<String> {
    match reference {
        "mesh" => None,
        r if r.contains('/') => Some(r.to_string()),
        r => Some(format!("{vs_namespace}/{r}")),
    }
}

/// The Sidecar that applies to a workload: one of its namespace selecting it, else its
/// namespace's default, else the mesh default from the root namespace.
fn select_sidecar<'a>(
    model: &'a Model,
    namespace: &str,
    labels: &shoal_config::Labels,
) -> Option<&'a Arc<SidecarRule>> {
    let in_ns = model.sidecars.get(namespace).into_iter().flatten();
    let selected = in_ns.clone().find(|s| {
        s.spec
            .target()
            .workload_labels()
            .is_some_and(|sel| selects(sel, labels))
    });
    let default_of = |ns: &str| {
        model
            .sidecars
            .get(ns)
            .into_iter()
            .flatten()
            .find(|s| s.spec.target().workload_labels().is_none())
    };
    selected
        .or_else(|| default_of(namespace))
        .or_else(|| default_of(&model.options.root_namespace))
}

/// An egress listener of the Sidecar (or the implicit catch-all one).
#[derive(Debug, Clone)]
pub(crate) struct Egress {
    pub port: Option<u16>,
    pub protocol: Option<Protocol>,
    pub bind: Option<String>,
    pub capture_none: bool,
    pub hosts: Vec<(String, String)>,
}

impl Egress {
    fn from_spec(e: &IstioEgressListener) -> Egress {
        Egress {
            port: e.port.as_ref().and_then(|p| u16::try_from(p.number).ok()),
            protocol: e.port.as_ref().and_then(|p| {
                p.protocol
                    .as_deref()
                    .map(Protocol::parse)
                    .or_else(|| p.name.as_deref().map(|n| Protocol::select(None, None, n)))
            }),
            bind: e.bind.clone(),
            capture_none: e.capture_mode == Some(CaptureMode::None),
            hosts: e
                .hosts
                .iter()
                .filter_map(|h| {
                    h.split_once('/')
                        .map(|(ns, host)| (ns.to_string(), host.to_ascii_lowercase()))
                })
                .collect(),
        }
    }

    fn catch_all() -> Egress {
        Egress {
            port: None,
            protocol: None,
            bind: None,
            capture_none: false,
            hosts: vec![("*".into(), "*".into())],
        }
    }

    /// Whether `ns/host` entries select something of namespace `ns` with host `h`.
    pub fn selects(&self, proxy_ns: &str, ns: &str, h: &str) -> bool {
        self.hosts.iter().any(|(hns, hhost)| {
            let ns_ok = match hns.as_str() {
                "*" => true,
                "." => ns == proxy_ns,
                "~" => false,
                other => other == ns,
            };
            ns_ok
                && (host::matches(hhost, h)
                    || (!hhost.contains('.') && h.split('.').next() == Some(hhost.as_str())))
        })
    }
}

/// A view's scope over the model.
pub(crate) struct Scope<'a> {
    pub model: &'a Model,
    pub key: &'a ViewKey,
    pub egress: Vec<Egress>,
    /// The Gateway (`NS/NAME`) routes are being built for, on a gateway proxy: decides
    /// which `match.gateways` apply. `None` on sidecars (the `mesh` gateway).
    pub gateway: Option<String>,
}

impl<'a> Scope<'a> {
    pub fn new(model: &'a Model, key: &'a ViewKey) -> Scope<'a> {
        let sidecar = key.sidecar.as_ref().and_then(|(ns, name)| {
            model
                .sidecars
                .get(ns)
                .into_iter()
                .flatten()
                .find(|s| &s.name == name)
        });
        let egress = match sidecar {
            Some(s) if !s.spec.egress.is_empty() => {
                s.spec.egress.iter().map(Egress::from_spec).collect()
            }
            _ => vec![Egress::catch_all()],
        };
        Scope {
            model,
            key,
            egress,
            gateway: None,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.key.namespace
    }

    /// The Sidecar resource that applies to the proxy, if any.
    pub fn sidecar(&self) -> Option<&'a shoal_config::istio::SidecarSpec> {
        let (ns, name) = self.key.sidecar.as_ref()?;
        let rule = self
            .model
            .sidecars
            .get(ns)?
            .iter()
            .find(|s| &s.name == name)?;
        Some(&rule.spec)
    }

    /// The inbound security of the view's proxy, from the policies its key names.
    pub fn inbound_security(&self) -> InboundSecurity {
        security::inbound(
            self.model,
            &self.key.policies(self.model),
            self.key.workload_certs,
        )
    }

    /// Whether a match's `sourceLabels` and `sourceNamespace` select this view's client
    /// workloads: all the labels carried with equal values, and the namespace equal. The
    /// key holds the proxy's values of every label key some match compares.
    pub fn source_applies(&self, labels: &Labels, namespace: Option<&str>) -> bool {
        namespace.is_none_or(|ns| ns == self.namespace())
            && labels.iter().all(|(k, v)| {
                self.key
                    .source_labels
                    .iter()
                    .any(|(pk, pv)| pk.as_ref() == k && pv.as_ref() == v)
            })
    }

    /// Whether a service is in scope (visible and selected by some egress listener).
    pub fn sees(&self, svc: &Service) -> bool {
        svc.visibility.visible_from(self.namespace())
            && self
                .egress
                .iter()
                .any(|e| e.selects(self.namespace(), &svc.namespace, &svc.host))
    }

    /// Services in scope, one per host, sorted by host.
    pub fn services(&self) -> Vec<&'a Arc<Service>> {
        self.model
            .visible_services(&self.key.namespace)
            .filter(|s| self.sees(s))
            .collect()
    }

    /// Services in scope of one egress listener.
    pub fn services_of(&self, egress: &Egress) -> Vec<&'a Arc<Service>> {
        self.model
            .visible_services(&self.key.namespace)
            .filter(|s| egress.selects(self.namespace(), &s.namespace, &s.host))
            .collect()
    }

    /// The DestinationRule for a host: the proxy's namespace first, then the service's, then
    /// the root namespace; the most specific host wins within a namespace. A rule with a
    /// `workloadSelector` applies only in the proxy's own namespace and to the workloads it
    /// selects, and goes before a rule without one for the same host (Istio: selectors
    /// never cross namespaces).
    pub fn destination_rule(
        &self,
        h: &str,
        service_ns: &str,
    ) -> Option<&'a Arc<DestinationRuleRule>> {
        let ns_order = [
            self.namespace(),
            service_ns,
            self.model.options.root_namespace.as_str(),
        ];
        for (i, ns) in ns_order.into_iter().enumerate() {
            let own = i == 0;
            let best = self
                .model
                .destination_rules
                .iter()
                .filter(|dr| {
                    dr.namespace.as_ref() == ns && dr.visibility.visible_from(self.namespace())
                })
                .filter(|dr| match &dr.spec.workload_selector {
                    None => true,
                    Some(sel) => own && self.source_applies(&sel.labels, None),
                })
                .filter(|dr| dr.hosts.iter().any(|p| host::matches(p, h)))
                .max_by_key(|dr| {
                    let p = &dr.hosts[0];
                    (
                        !p.starts_with('*'),
                        p.len(),
                        dr.spec.workload_selector.is_some(),
                    )
                });
            if best.is_some() {
                return best;
            }
        }
        None
    }

    /// VirtualServices bound to the mesh and in scope, the proxy's namespace first.
    pub fn virtual_services(&self) -> Vec<&'a Arc<VirtualServiceRule>> {
        let mut list: Vec<&Arc<VirtualServiceRule>> = self
            .model
            .virtual_services
            .iter()
            .filter(|vs| {
                vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh")
            })
            .filter(|vs| vs.visibility.visible_from(self.namespace()))
            .filter(|vs| {
                vs.hosts.iter().any(|h| {
                    self.egress
                        .iter()
                        .any(|e| e.selects(self.namespace(), &vs.namespace, h))
                })
            })
            .collect();
        list.sort_by_key(|vs| {
            (
                vs.namespace.as_ref() != self.namespace(),
                vs.namespace.clone(),
                vs.name.clone(),
            )
        });
        list
    }

    /// The VirtualService routing `h`, if any (exact host match preferred over wildcard).
    pub fn virtual_service_for(
        &self,
        vss: &[&'a Arc<VirtualServiceRule>],
        h: &str,
    ) -> Option<&'a Arc<VirtualServiceRule>> {
        vss.iter()
            .copied()
            .find(|vs| vs.hosts.iter().any(|p| p == h))
            .or_else(|| {
                vss.iter()
                    .copied()
                    .find(|vs| vs.hosts.iter().any(|p| host::matches(p, h)))
            })
    }
}

/// The ports a workload serves: the target ports of the Services of its namespace that
/// select it (by number; named target ports are left out).
fn service_ports(model: &Model, proxy: &Proxy) -> Vec<InboundPort> {
    let mut inbound = Vec::new();
    for svc in model.services.values().flatten() {
        let selected = svc.namespace.as_ref() == proxy.namespace
            && svc
                .selector
                .as_ref()
                .is_some_and(|sel| selects(sel, &proxy.labels));
        if !selected {
            continue;
        }
        for p in &svc.ports {
            let port = match &p.target_port {
                Some(TargetPort::Number(n)) => *n,
                Some(TargetPort::Name(_)) => continue,
                None => p.port,
            };
            inbound.push(InboundPort {
                port,
                protocol: p.protocol,
            });
        }
    }
    inbound.sort();
    inbound.dedup_by_key(|p| p.port);
    inbound
}

#[cfg(test)]
mod tests;
