//! Cross-object analysis, like `istioctl analyze`: findings that involve several objects
//! (a route to a subset no DestinationRule defines, two namespace-wide Sidecars). Objects
//! stay accepted — a reference may be satisfied by the next change — but `shoal validate`
//! fails on errors found here, and a running server reports them.

use std::collections::{BTreeMap, BTreeSet};

use crate::host::{self, DEFAULT_DOMAIN_SUFFIX};
use crate::issue::{Issue, IstioCode};
use crate::istio::Attached;
use crate::meta::Kind;
use crate::object::Object;
use crate::store::ConfigSnapshot;

/// Runs every cross-object check.
pub fn analyze(snapshot: &ConfigSnapshot) -> Vec<Issue> {
    let mut issues = Vec::new();
    let suffix = DEFAULT_DOMAIN_SUFFIX;

    // Hosts the registry knows: Kubernetes services and ServiceEntry hosts.
    let mut known_hosts: BTreeSet<String> = BTreeSet::new();
    for (key, _) in snapshot.of_kind(Kind::Service) {
        known_hosts.insert(format!("{}.{}.svc.{suffix}", key.name, key.namespace));
    }
    for (_, e) in snapshot.of_kind(Kind::ServiceEntry) {
        if let Object::ServiceEntry(se) = e.object.as_ref() {
            for h in &se.spec.hosts {
                known_hosts.insert(host::resolve(h, e.object.namespace(), suffix));
            }
        }
    }
    // Subsets per host, from every DestinationRule.
    let mut subsets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, e) in snapshot.of_kind(Kind::DestinationRule) {
        if let Object::DestinationRule(dr) = e.object.as_ref() {
            let h = host::resolve(&dr.spec.host, e.object.namespace(), suffix);
            subsets
                .entry(h)
                .or_default()
                .extend(dr.spec.subsets.iter().map(|s| s.name.clone()));
        }
    }
    let subset_defined = |h: &str, s: &str| {
        subsets
            .iter()
            .any(|(pattern, names)| host::matches(pattern, h) && names.contains(s))
    };

    for (key, e) in snapshot.of_kind(Kind::VirtualService) {
        let Object::VirtualService(vs) = e.object.as_ref() else {
            continue;
        };
        // Every route destination, of `http`, `tcp` and `tls` routes alike (as istioctl
        // analyze checks them).
        let http = vs.spec.http.iter().enumerate().flat_map(|(i, r)| {
            r.route.iter().enumerate().map(move |(k, d)| {
                (
                    format!("spec.http[{i}].route[{k}].destination"),
                    &d.destination,
                )
            })
        });
        let tcp = vs.spec.tcp.iter().enumerate().flat_map(|(i, r)| {
            r.route.iter().enumerate().map(move |(k, d)| {
                (
                    format!("spec.tcp[{i}].route[{k}].destination"),
                    &d.destination,
                )
            })
        });
        let tls = vs.spec.tls.iter().enumerate().flat_map(|(i, r)| {
            r.route.iter().enumerate().map(move |(k, d)| {
                (
                    format!("spec.tls[{i}].route[{k}].destination"),
                    &d.destination,
                )
            })
        });
        for (field, d) in http.chain(tcp).chain(tls) {
            let h = host::resolve(&d.host, &key.namespace, suffix);
            let known = known_hosts.iter().any(|k| host::matches(k, &h));
            if !known {
                issues.push(
                    Issue::warning(
                        format!("{field}.host"),
                        format!("host {h:?} is not in the service registry"),
                    )
                    .istio(IstioCode::REFERENCED_RESOURCE_NOT_FOUND)
                    .at(Some(&e.origin), Some(key)),
                );
            }
            if let Some(s) = &d.subset
                && !subset_defined(&h, s)
            {
                issues.push(
                    Issue::error(
                        format!("{field}.subset"),
                        format!("subset {s:?} of host {h:?} is not defined by any DestinationRule"),
                    )
                    .istio(IstioCode::REFERENCED_RESOURCE_NOT_FOUND)
                    .at(Some(&e.origin), Some(key)),
                );
            }
        }
    }

    delegates(snapshot, &mut issues);

    // At most one namespace-wide Sidecar per namespace.
    let mut wide: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, e) in snapshot.of_kind(Kind::Sidecar) {
        if let Object::Sidecar(sc) = e.object.as_ref()
            && sc.spec.target().workload_labels().is_none()
        {
            wide.entry(&key.namespace).or_default().push(&key.name);
        }
    }
    for (ns, names) in wide {
        if names.len() > 1 {
            for (key, e) in snapshot.of_kind_in(Kind::Sidecar, ns) {
                if names.contains(&key.name.as_ref()) && names[0] != key.name.as_ref() {
                    issues.push(
                        Issue::error(
                            "spec.workloadSelector",
                            format!("namespace {ns} already has a Sidecar without workloadSelector ({}); this one is ignored", names[0]),
                        )
                        .istio(IstioCode::MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS)
                        .at(Some(&e.origin), Some(key)),
                    );
                }
            }
        }
    }

    // At most one namespace-wide PeerAuthentication per namespace: Istio takes the oldest;
    // shoal, which has no creation times, the first by name.
    let mut wide_pa: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, e) in snapshot.of_kind(Kind::PeerAuthentication) {
        if let Object::PeerAuthentication(pa) = e.object.as_ref()
            && pa.spec.target().workload_labels().is_none()
        {
            wide_pa.entry(&key.namespace).or_default().push(&key.name);
        }
    }
    for (ns, names) in wide_pa {
        for (key, e) in snapshot.of_kind_in(Kind::PeerAuthentication, ns) {
            if names.len() > 1 && names[1..].contains(&key.name.as_ref()) {
                issues.push(
                    Issue::warning(
                        "spec.selector",
                        format!("namespace {ns} already has a PeerAuthentication without selector ({}); this one is ignored", names[0]),
                    )
                    .at(Some(&e.origin), Some(key)),
                );
            }
        }
    }

    // EndpointSlices of services that do not exist.
    for (key, e) in snapshot.of_kind(Kind::EndpointSlice) {
        if let Object::EndpointSlice(s) = e.object.as_ref()
            && let Some(svc) = s.service_name()
            && snapshot
                .get(&crate::ObjectKey::new(Kind::Service, &key.namespace, svc))
                .is_none()
        {
            issues.push(
                Issue::warning(
                    "metadata.labels",
                    format!("service {}/{svc} does not exist", key.namespace),
                )
                .at(Some(&e.origin), Some(key)),
            );
        }
    }
    issues
}

/// Whether a VirtualService's `exportTo` lets namespace `ns` see it (empty: everyone).
fn exported_to(export_to: &[String], own: &str, ns: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == ns || (e == "." && own == ns))
}

/// Delegating routes whose delegate is missing, has hosts of its own, or is not exported
/// to the root's namespace: translation skips those routes.
fn delegates(snapshot: &ConfigSnapshot, issues: &mut Vec<Issue>) {
    for (key, e) in snapshot.of_kind(Kind::VirtualService) {
        let Object::VirtualService(vs) = e.object.as_ref() else {
            continue;
        };
        for (i, r) in vs.spec.http.iter().enumerate() {
            let Some(d) = &r.delegate else { continue };
            let ns = d.namespace.as_deref().unwrap_or(&key.namespace);
            let target = crate::ObjectKey::new(Kind::VirtualService, ns, &d.name);
            let problem = match snapshot.get(&target).map(|t| t.object.as_ref()) {
                Some(Object::VirtualService(dvs)) if !dvs.spec.hosts.is_empty() => Some(format!(
                    "VirtualService {ns}/{} has hosts: it is no delegate",
                    d.name
                )),
                Some(Object::VirtualService(dvs))
                    if !exported_to(&dvs.spec.export_to, ns, &key.namespace) =>
                {
                    Some(format!(
                        "VirtualService {ns}/{} is not exported to namespace {}",
                        d.name, key.namespace
                    ))
                }
                Some(_) => None,
                None => Some(format!("VirtualService {ns}/{} does not exist", d.name)),
            };
            let missing = snapshot.get(&target).is_none();
            if let Some(p) = problem {
                let issue = Issue::warning(
                    format!("spec.http[{i}].delegate"),
                    format!("{p}; the route is left out"),
                );
                let issue = if missing {
                    issue.istio(IstioCode::REFERENCED_RESOURCE_NOT_FOUND)
                } else {
                    issue
                };
                issues.push(issue.at(Some(&e.origin), Some(key)));
            }
        }
    }
}

#[cfg(test)]
mod delegate_tests {
    use crate::parse::parse_yaml;
    use crate::store::ConfigStore;

    #[test]
    fn broken_delegations_are_reported() {
        let mut store = ConfigStore::new();
        store.apply(
            "t.yaml",
            parse_yaml(
                "t.yaml",
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: root, namespace: app}\nspec:\n  hosts: [api]\n  http:\n  - delegate: {name: missing}\n  - delegate: {name: hosted}\n  - delegate: {name: private, namespace: team}\n  - delegate: {name: fine, namespace: team}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hosted, namespace: app}\nspec:\n  hosts: [x]\n  http: [{route: [{destination: {host: x}}]}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: private, namespace: team}\nspec:\n  exportTo: [.]\n  http: [{route: [{destination: {host: x}}]}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: fine, namespace: team}\nspec:\n  exportTo: [app]\n  http: [{route: [{destination: {host: x}}]}]\n",
            ),
        );
        let found: Vec<String> = super::analyze(&store.snapshot())
            .iter()
            .map(|i| format!("{}: {}", i.field, i.message))
            .filter(|l| l.contains("delegate"))
            .collect();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0]
                .starts_with("spec.http[0].delegate: VirtualService app/missing does not exist"),
            "{found:#?}"
        );
        assert!(found[1].contains("app/hosted has hosts"), "{found:#?}");
        assert!(
            found[2].contains("team/private is not exported to namespace app"),
            "{found:#?}"
        );
    }
}
