//! References across namespaces: a route's backend in another namespace is used only when a
//! `ReferenceGrant` of that namespace allows routes of the kind and namespace to refer to
//! it (all its Services, or the one named), as the Gateway API says. Without one it is an
//! invalid backend, as a backend of another kind or without a port is.

use shoal_config::gateway_api::{BackendKind, BackendRef, GROUP, ISTIO_NETWORKING};
use shoal_config::istio::{Destination, PortSelector};
use shoal_config::{ConfigSnapshot, Kind, Object};

use super::RouteKind;

/// Why a backend reference is invalid: the reasons of a route's `ResolvedRefs: False`
/// condition (`status.rs`; a missing Service is found there, as translation routes to the
/// name regardless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InvalidBackend {
    /// Not a kind shoal routes to.
    InvalidKind(String),
    /// In another namespace, and no ReferenceGrant there allows it.
    RefNotPermitted(String),
    /// A Service without a port (rejected by the API server's validation).
    NoPort(String),
    /// A ServiceEntry that does not exist.
    NotFound(String),
}

/// Resolves the backends of one route.
pub(super) struct Backends<'a> {
    pub cfg: &'a ConfigSnapshot,
    pub route_ns: &'a str,
    pub kind: RouteKind,
    pub suffix: &'a str,
}

impl Backends<'_> {
    /// The destination of a backend: a Service with a port, of the route's namespace or of
    /// one whose ReferenceGrant allows it. `None` for an invalid backend.
    pub fn destination(&self, b: &BackendRef) -> Option<Destination> {
        self.resolve(b).ok()
    }

    /// The destination of a backend, or why it is invalid. Istio's own backend kinds are
    /// routed as Istio routes them: a `Hostname` to that host (any host of the registry,
    /// so no namespace applies), a `ServiceEntry` to its first host.
    pub fn resolve(&self, b: &BackendRef) -> Result<Destination, InvalidBackend> {
        let ns = b.namespace.as_deref().unwrap_or(self.route_ns);
        let (group, kind) = match b.kind() {
            BackendKind::Service => ("", "Service"),
            BackendKind::ServiceEntry => (ISTIO_NETWORKING, "ServiceEntry"),
            BackendKind::Hostname => return self.with_port(b, ns, b.name.clone()),
            BackendKind::Other => {
                return Err(InvalidBackend::InvalidKind(format!(
                    "backendRef {ns}/{} is a {} of group {:?}: only Services, Hostnames and ServiceEntries are supported",
                    b.name,
                    b.kind.as_deref().unwrap_or("Service"),
                    b.group.as_deref().unwrap_or("")
                )));
            }
        };
        if ns != self.route_ns
            && !granted(
                self.cfg,
                (GROUP, self.kind.name(), self.route_ns),
                ns,
                (group, kind, &b.name),
            )
        {
            return Err(InvalidBackend::RefNotPermitted(format!(
                "backendRef {ns}/{}: no ReferenceGrant in namespace {ns:?} lets {}s of namespace {:?} refer to it",
                b.name,
                self.kind.name(),
                self.route_ns
            )));
        }
        let host = if kind == "Service" {
            format!("{}.{ns}.svc.{}", b.name, self.suffix)
        } else {
            service_entry_host(self.cfg, ns, &b.name, self.suffix).ok_or_else(|| {
                InvalidBackend::NotFound(format!(
                    "backendRef {ns}/{}: no such ServiceEntry",
                    b.name
                ))
            })?
        };
        self.with_port(b, ns, host)
    }

    fn with_port(
        &self,
        b: &BackendRef,
        ns: &str,
        host: String,
    ) -> Result<Destination, InvalidBackend> {
        let Some(port) = b.port.and_then(|p| u32::try_from(p).ok()) else {
            return Err(InvalidBackend::NoPort(format!(
                "backendRef {ns}/{}: a backend needs a port",
                b.name
            )));
        };
        Ok(Destination {
            host,
            subset: None,
            port: Some(PortSelector { number: port }),
        })
    }
}

/// The first host of ServiceEntry `ns/name` (relative names resolved in `ns`).
pub(super) fn service_entry_host(
    cfg: &ConfigSnapshot,
    ns: &str,
    name: &str,
    suffix: &str,
) -> Option<String> {
    service_entry_hosts(cfg, ns, name, suffix)
        .into_iter()
        .next()
}

/// The hosts of ServiceEntry `ns/name` (relative names resolved in `ns`); none when there
/// is no such ServiceEntry.
pub(super) fn service_entry_hosts(
    cfg: &ConfigSnapshot,
    ns: &str,
    name: &str,
    suffix: &str,
) -> Vec<String> {
    cfg.of_kind_in(Kind::ServiceEntry, ns)
        .find(|(k, _)| &*k.name == name)
        .and_then(|(_, e)| match e.object.as_ref() {
            Object::ServiceEntry(se) => Some(
                se.spec
                    .hosts
                    .iter()
                    .map(|h| shoal_config::host::resolve(h, ns, suffix))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// Whether a ReferenceGrant of `to_ns` lets `from` (group, kind, namespace) refer to `to`
/// (group, kind, name).
pub(super) fn granted(
    cfg: &ConfigSnapshot,
    from: (&str, &str, &str),
    to_ns: &str,
    to: (&str, &str, &str),
) -> bool {
    cfg.of_kind_in(Kind::ReferenceGrant, to_ns)
        .any(|(_, e)| match e.object.as_ref() {
            Object::ReferenceGrant(g) => g.spec.allows(from, to),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use shoal_config::ConfigStore;
    use shoal_config::gateway_api::BackendRef;
    use shoal_config::parse::parse_yaml;

    use super::*;

    const GRANT: &str = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: data}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: edge}]\n  to: [{group: '', kind: Service, name: db}]\n";

    fn backend(name: &str, ns: Option<&str>) -> BackendRef {
        BackendRef {
            name: name.into(),
            namespace: ns.map(Into::into),
            port: Some(5432),
            ..Default::default()
        }
    }

    #[test]
    fn other_namespaces_need_a_grant_there() {
        let mut store = ConfigStore::new();
        store.apply("g.yaml", parse_yaml("g.yaml", GRANT));
        let cfg = store.snapshot();
        let resolve = |kind, route_ns, b: &BackendRef| {
            Backends {
                cfg: &cfg,
                route_ns,
                kind,
                suffix: "cluster.local",
            }
            .destination(b)
            .map(|d| d.host)
        };
        let granted = backend("db", Some("data"));
        assert_eq!(
            resolve(RouteKind::Tcp, "edge", &granted).as_deref(),
            Some("db.data.svc.cluster.local")
        );
        // Another kind, namespace or Service: not granted.
        assert_eq!(resolve(RouteKind::Http, "edge", &granted), None);
        assert_eq!(resolve(RouteKind::Tcp, "web", &granted), None);
        assert_eq!(
            resolve(RouteKind::Tcp, "edge", &backend("x", Some("data"))),
            None
        );
        // The route's own namespace needs no grant; a backend without a port is invalid.
        assert_eq!(
            resolve(RouteKind::Http, "web", &backend("a", None)).as_deref(),
            Some("a.web.svc.cluster.local")
        );
        let no_port = BackendRef {
            port: None,
            ..backend("a", None)
        };
        assert_eq!(resolve(RouteKind::Http, "web", &no_port), None);
    }

    #[test]
    fn istio_backends_name_hosts_of_the_registry() {
        let mut store = ConfigStore::new();
        let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api, namespace: egress}\nspec:\n  hosts: [api.example.com, alt.example.com]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n";
        store.apply("se.yaml", parse_yaml("se.yaml", se));
        let cfg = store.snapshot();
        let backends = |route_ns| Backends {
            cfg: &cfg,
            route_ns,
            kind: RouteKind::Http,
            suffix: "cluster.local",
        };
        let istio = |kind: &str, name: &str, ns: Option<&str>| BackendRef {
            group: Some(ISTIO_NETWORKING.into()),
            kind: Some(kind.into()),
            name: name.into(),
            namespace: ns.map(Into::into),
            port: Some(443),
        };
        // A Hostname is any host, whatever the namespace.
        let d = backends("web")
            .resolve(&istio("Hostname", "api.example.com", None))
            .unwrap();
        assert_eq!(
            (d.host.as_str(), d.port.map(|p| p.number)),
            ("api.example.com", Some(443))
        );
        // A ServiceEntry is its first host, in its namespace (another one needs a grant).
        let d = backends("egress").resolve(&istio("ServiceEntry", "api", None));
        assert_eq!(d.map(|d| d.host).as_deref(), Ok("api.example.com"));
        assert!(matches!(
            backends("web").resolve(&istio("ServiceEntry", "api", Some("egress"))),
            Err(InvalidBackend::RefNotPermitted(_))
        ));
        assert!(matches!(
            backends("egress").resolve(&istio("ServiceEntry", "nope", None)),
            Err(InvalidBackend::NotFound(_))
        ));
        // Both need a port; other kinds of Istio's group are not backends.
        let no_port = BackendRef {
            port: None,
            ..istio("Hostname", "api.example.com", None)
        };
        assert!(matches!(
            backends("web").resolve(&no_port),
            Err(InvalidBackend::NoPort(_))
        ));
        assert!(matches!(
            backends("web").resolve(&istio("VirtualService", "x", None)),
            Err(InvalidBackend::InvalidKind(_))
        ));
    }
}
