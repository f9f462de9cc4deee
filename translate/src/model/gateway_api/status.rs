//! Gateway API status as Istio's gateway controller (`istio.io/gateway-controller`) writes
//! it, for the status writer to patch onto the objects: pure, deterministic, and without the
//! times and generations the writer adds.
//!
//! - a Gateway of class `istio` gets its addresses and conditions, and each listener's
//!   (`gateway.rs`);
//! - an HTTPRoute, GRPCRoute, TLSRoute or TCPRoute gets one entry per reference to such a
//!   Gateway or to a Service (mesh routing), written as the route names it: `Accepted` says
//!   whether a listener takes the route through it (the decision translation takes,
//!   [`listener_outcomes`]) and, when none does, why, in Istio's order of preference
//!   (`NotAllowedByListeners`, `NoMatchingListenerHostname`, `NoMatchingParent`);
//!   `ResolvedRefs` whether its backends are valid (`refs.rs`) and exist.
//!
//! References to Gateways of other classes, or to Gateways that do not exist, get no entry
//! (as in Istio, which cannot tell they are its own); a route with no entry gets no status
//! at all, so that the writer leaves it to other controllers.

mod gateway;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};
use shoal_config::gateway_api::{BackendRef, FilterType, HttpRouteSpec, ParentReference};
use shoal_config::{ConfigSnapshot, Kind, KubeGateway, Object, ObjectKey};

use super::refs::{Backends, InvalidBackend};
use super::{Denial, GATEWAY_CLASS, RouteKind, RouteRef, listener_outcomes};

/// The controller whose status entries shoal writes (Istio's, whose `istio` class it
/// implements).
pub const CONTROLLER_NAME: &str = "istio.io/gateway-controller";

/// The status one object should have (the parts shoal owns): a Gateway's whole `status`,
/// or a route's `status` with the `parents` entries of [`CONTROLLER_NAME`]. Conditions carry
/// `type`, `status`, `reason` and `message`, sorted by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectStatus {
    pub key: ObjectKey,
    pub status: Value,
}

/// The status of every Gateway of class `istio` and of every route naming one (or a
/// Service), sorted by key. Hostnames of Services end in `domain_suffix`.
pub fn gateway_api_status(cfg: &ConfigSnapshot, domain_suffix: &str) -> Vec<ObjectStatus> {
    let mut attached = Attached::new();
    let mut out = Vec::new();
    for (key, e) in cfg.of_kind(Kind::HttpRoute) {
        if let Object::HttpRoute(r) = e.object.as_ref() {
            let route = Route::http(key, RouteKind::Http, &r.spec);
            out.extend(route.status(cfg, domain_suffix, &mut attached));
        }
    }
    for (key, e) in cfg.of_kind(Kind::GrpcRoute) {
        if let Object::GrpcRoute(r) = e.object.as_ref() {
            let spec = super::grpc::as_http_route(&r.spec);
            let route = Route::http(key, RouteKind::Grpc, &spec);
            out.extend(route.status(cfg, domain_suffix, &mut attached));
        }
    }
    for (kind, route_kind) in [
        (Kind::TlsRoute, RouteKind::Tls),
        (Kind::TcpRoute, RouteKind::Tcp),
    ] {
        for (key, e) in cfg.of_kind(kind) {
            let (Object::TlsRoute(r) | Object::TcpRoute(r)) = e.object.as_ref() else {
                continue;
            };
            let route = Route {
                key,
                kind: route_kind,
                parents: &r.spec.parent_refs,
                hostnames: &r.spec.hostnames,
                backends: r
                    .spec
                    .rules
                    .iter()
                    .flat_map(|rule| &rule.backend_refs)
                    .map(|b| b.backend())
                    .collect(),
            };
            out.extend(route.status(cfg, domain_suffix, &mut attached));
        }
    }
    for (key, e) in cfg.of_kind(Kind::KubeGateway) {
        let Object::KubeGateway(gw) = e.object.as_ref() else {
            continue;
        };
        let class = match gw.spec.gateway_class_name.as_str() {
            GATEWAY_CLASS => gateway::Class::Gateway,
            crate::ambient::WAYPOINT_CLASS => gateway::Class::Waypoint,
            _ => continue,
        };
        let routes = attached.get(&(key.namespace.to_string(), key.name.to_string()));
        out.push(gateway::status(
            cfg,
            domain_suffix,
            key,
            &gw.spec,
            routes,
            class,
        ));
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// The routes attached to each listener: by Gateway (namespace, name), by listener name.
type Attached = BTreeMap<(String, String), ListenerRoutes>;
/// The routes attached to each listener of one Gateway.
type ListenerRoutes = BTreeMap<String, BTreeSet<ObjectKey>>;

/// A route of any kind, as status sees it.
struct Route<'a> {
    key: &'a ObjectKey,
    kind: RouteKind,
    parents: &'a [ParentReference],
    hostnames: &'a [String],
    /// Every backend it refers to (rules and mirrors).
    backends: Vec<BackendRef>,
}

impl<'a> Route<'a> {
    /// An HTTPRoute, or a GRPCRoute in its HTTP form.
    fn http(key: &'a ObjectKey, kind: RouteKind, spec: &'a HttpRouteSpec) -> Self {
        let mut backends = Vec::new();
        for rule in &spec.rules {
            backends.extend(rule.backend_refs.iter().map(|b| b.backend()));
            let mirrors = rule
                .filters
                .iter()
                .filter(|f| f.filter_type == FilterType::RequestMirror);
            backends.extend(
                mirrors
                    .filter_map(|f| f.request_mirror.as_ref())
                    .map(|m| m.backend_ref.clone()),
            );
        }
        Route {
            key,
            kind,
            parents: &spec.parent_refs,
            hostnames: &spec.hostnames,
            backends,
        }
    }

    /// Its status, `None` when no parent is shoal's; counts it on the listeners it attaches
    /// to.
    fn status(
        &self,
        cfg: &ConfigSnapshot,
        suffix: &str,
        attached: &mut Attached,
    ) -> Option<ObjectStatus> {
        let route_ref = RouteRef::new(cfg, &self.key.namespace, self.kind, self.hostnames);
        let resolved = self.resolved_refs(cfg, suffix);
        // Keyed by the reference as written: sorted, and one entry per distinct reference.
        let mut parents = BTreeMap::new();
        for parent in self.parents {
            let Some(accepted) = self.accepted(cfg, &route_ref, parent, attached) else {
                continue;
            };
            let parent_ref = parent_ref(parent);
            let key = parent_ref.to_string();
            let entry = json!({
                "parentRef": parent_ref,
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions([accepted, resolved.clone()]),
            });
            parents.insert(key, entry);
        }
        if parents.is_empty() {
            return None;
        }
        Some(ObjectStatus {
            key: self.key.clone(),
            status: json!({ "parents": parents.into_values().collect::<Vec<_>>() }),
        })
    }

    /// The `Accepted` condition of one reference; `None` when it is not shoal's.
    fn accepted(
        &self,
        cfg: &ConfigSnapshot,
        route_ref: &RouteRef<'_>,
        parent: &ParentReference,
        attached: &mut Attached,
    ) -> Option<Condition> {
        let ns = parent.namespace.as_deref().unwrap_or(&self.key.namespace);
        if parent.is_service() || parent.is_service_entry() {
            let (kind, what) = if parent.is_service() {
                (Kind::Service, "Service")
            } else {
                (Kind::ServiceEntry, "ServiceEntry")
            };
            let target = ObjectKey::new(kind, ns, &parent.name);
            return Some(match self.kind {
                RouteKind::Http | RouteKind::Grpc if cfg.get(&target).is_some() => {
                    Condition::ok("Accepted", "Accepted", "Route accepted".into())
                }
                RouteKind::Http | RouteKind::Grpc => Condition::failed(
                    "Accepted",
                    "NoMatchingParent",
                    format!("{what} {ns}/{} not found", parent.name),
                ),
                RouteKind::Tls | RouteKind::Tcp => Condition::failed(
                    "Accepted",
                    "NoMatchingParent",
                    format!(
                        "shoal applies {}s to Gateways only, not to Services or ServiceEntries (mesh routing)",
                        self.kind.name()
                    ),
                ),
            });
        }
        if !parent.is_gateway() {
            return None;
        }
        let gw = istio_gateway(cfg, ns, &parent.name)?;
        let mut denials = Vec::new();
        let mut listeners = 0;
        for (l, outcome) in listener_outcomes(&gw.spec, ns, parent, route_ref) {
            match outcome {
                Ok(_) => {
                    listeners += 1;
                    attached
                        .entry((ns.to_string(), parent.name.clone()))
                        .or_default()
                        .entry(l.name.clone())
                        .or_default()
                        .insert(self.key.clone());
                }
                Err(d) => denials.push(d),
            }
        }
        Some(match listeners {
            0 => denied(&denials, &self.key.namespace),
            1 => Condition::ok("Accepted", "Accepted", "Route accepted".into()),
            n => Condition::ok(
                "Accepted",
                "Accepted",
                format!("Route accepted by {n} listeners"),
            ),
        })
    }

    /// Whether every backend is a Service the route may refer to, with a port, that exists.
    fn resolved_refs(&self, cfg: &ConfigSnapshot, suffix: &str) -> Condition {
        let backends = Backends {
            cfg,
            route_ns: &self.key.namespace,
            kind: self.kind,
            suffix,
        };
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        for b in &self.backends {
            let problem = match backends.resolve(b) {
                Err(InvalidBackend::InvalidKind(m)) => ("InvalidKind", m),
                Err(InvalidBackend::RefNotPermitted(m)) => ("RefNotPermitted", m),
                // Istio's reason for an unusable destination (not one of the API's).
                Err(InvalidBackend::NoPort(m)) => ("InvalidDestination", m),
                Err(InvalidBackend::NotFound(m)) => ("BackendNotFound", m),
                // Any host of the registry, or a ServiceEntry `resolve` found.
                Ok(_) if !b.is_service() => continue,
                Ok(_) => {
                    let ns = b.namespace.as_deref().unwrap_or(&self.key.namespace);
                    if cfg
                        .get(&ObjectKey::new(Kind::Service, ns, &b.name))
                        .is_some()
                    {
                        continue;
                    }
                    (
                        "BackendNotFound",
                        format!("backendRef {ns}/{}: Service not found", b.name),
                    )
                }
            };
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
        resolved_refs(&problems)
    }
}

/// The Gateway of class `istio` named `ns/name`, if there is one.
fn istio_gateway<'a>(cfg: &'a ConfigSnapshot, ns: &str, name: &str) -> Option<&'a KubeGateway> {
    match cfg
        .get(&ObjectKey::new(Kind::KubeGateway, ns, name))?
        .object
        .as_ref()
    {
        Object::KubeGateway(gw) if gw.spec.gateway_class_name == GATEWAY_CLASS => Some(gw),
        _ => None,
    }
}

/// `Accepted: False` for a reference no listener takes (of a route of `route_ns`): the
/// most relevant reason, with the message of every listener that gives it.
fn denied(denials: &[Denial<'_>], route_ns: &str) -> Condition {
    let Some(best) = denials.iter().map(|d| d.reason()).min() else {
        return Condition::failed(
            "Accepted",
            Reason::NoMatchingParent.as_str(),
            "the Gateway has no listeners".into(),
        );
    };
    let mut messages: Vec<String> = Vec::new();
    for d in denials.iter().filter(|d| d.reason() == best) {
        let m = d.message(route_ns);
        if !messages.contains(&m) {
            messages.push(m);
        }
    }
    Condition::failed("Accepted", best.as_str(), messages.join("; "))
}

/// The reasons of a route's `Accepted: False`, in Istio's order of preference when no
/// listener of a parent takes the route: a listener that refuses such routes says more than
/// a hostname mismatch, which says more than a listener the reference does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    NotAllowedByListeners,
    NoMatchingListenerHostname,
    NoMatchingParent,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::NotAllowedByListeners => "NotAllowedByListeners",
            Reason::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Reason::NoMatchingParent => "NoMatchingParent",
        }
    }
}

impl Denial<'_> {
    fn reason(&self) -> Reason {
        match self {
            Denial::Kind { .. } | Denial::Namespace { .. } => Reason::NotAllowedByListeners,
            Denial::Hostname { .. } => Reason::NoMatchingListenerHostname,
            Denial::NoListener { .. } => Reason::NoMatchingParent,
        }
    }

    fn message(&self, route_ns: &str) -> String {
        match *self {
            Denial::Kind { listener, kind } => {
                format!("listener {listener:?} does not take {}s", kind.name())
            }
            Denial::Namespace { listener, from } => format!(
                "listener {listener:?} does not take routes of namespace {route_ns:?} (allowedRoutes.namespaces.from: {from:?})"
            ),
            Denial::Hostname { listener, hostname } => format!(
                "no hostname of the route matches the hostname {:?} of listener {listener:?}",
                hostname.unwrap_or("*")
            ),
            Denial::NoListener { section, port } => match (section, port) {
                (Some(s), Some(p)) => format!("the Gateway has no listener {s:?} on port {p}"),
                (Some(s), None) => format!("the Gateway has no listener {s:?}"),
                (None, Some(p)) => format!("the Gateway has no listener on port {p}"),
                (None, None) => "the Gateway has no listeners".into(),
            },
        }
    }
}

/// A reference as the route wrote it (the fields it set).
fn parent_ref(p: &ParentReference) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    put("group", p.group.clone().map(Value::from));
    put("kind", p.kind.clone().map(Value::from));
    put("namespace", p.namespace.clone().map(Value::from));
    put("name", Some(p.name.clone().into()));
    put("sectionName", p.section_name.clone().map(Value::from));
    put("port", p.port.map(Value::from));
    Value::Object(m)
}

/// One condition, without `lastTransitionTime` and `observedGeneration`.
#[derive(Debug, Clone)]
struct Condition {
    kind: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

impl Condition {
    fn ok(kind: &'static str, reason: &'static str, message: String) -> Self {
        Condition {
            kind,
            status: true,
            reason,
            message,
        }
    }

    fn failed(kind: &'static str, reason: &'static str, message: String) -> Self {
        Condition {
            kind,
            status: false,
            reason,
            message,
        }
    }
}

/// `ResolvedRefs`: `True`, or `False` with the reason of the first problem and the message
/// of each.
fn resolved_refs(problems: &[(&'static str, String)]) -> Condition {
    match problems.first() {
        None => Condition::ok(
            "ResolvedRefs",
            "ResolvedRefs",
            "All references resolved".into(),
        ),
        Some((reason, _)) => {
            let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
            Condition::failed("ResolvedRefs", reason, messages.join("; "))
        }
    }
}

/// Conditions as the API writes them, sorted by type.
fn conditions(list: impl IntoIterator<Item = Condition>) -> Value {
    let mut list: Vec<Condition> = list.into_iter().collect();
    list.sort_by_key(|c| c.kind);
    let values = list.into_iter().map(|c| {
        json!({
            "type": c.kind,
            "status": if c.status { "True" } else { "False" },
            "reason": c.reason,
            "message": c.message,
        })
    });
    Value::Array(values.collect())
}
