//! Cross-object analysis, like `istioctl analyze`: findings that involve several objects
//! (a route to a subset no DestinationRule defines, two namespace-wide Sidecars). Objects
//! stay accepted — a reference may be satisfied by the next change — but `shoal validate`
//! fails on errors found here, and a running server reports them.

use std::collections::{BTreeMap, BTreeSet};

use crate::host::{self, DEFAULT_DOMAIN_SUFFIX};
use crate::issue::Issue;
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
        for (i, r) in vs.spec.http.iter().enumerate() {
            for (k, d) in r.route.iter().enumerate() {
                let field = format!("spec.http[{i}].route[{k}].destination");
                let h = host::resolve(&d.destination.host, &key.namespace, suffix);
                let known = known_hosts.iter().any(|k| host::matches(k, &h));
                if !known {
                    issues.push(
                        Issue::warning(
                            format!("{field}.host"),
                            format!("host {h:?} is not in the service registry"),
                        )
                        .at(Some(&e.origin), Some(key)),
                    );
                }
                if let Some(s) = &d.destination.subset
                    && !subset_defined(&h, s)
                {
                    issues.push(
                        Issue::error(
                            format!("{field}.subset"),
                            format!(
                                "subset {s:?} of host {h:?} is not defined by any DestinationRule"
                            ),
                        )
                        .at(Some(&e.origin), Some(key)),
                    );
                }
            }
        }
    }

    // At most one namespace-wide Sidecar per namespace.
    let mut wide: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, e) in snapshot.of_kind(Kind::Sidecar) {
        if let Object::Sidecar(sc) = e.object.as_ref()
            && sc
                .spec
                .workload_selector
                .as_ref()
                .is_none_or(|s| s.labels.is_empty())
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
            && crate::istio::selector_labels(pa.spec.selector.as_ref()).is_none()
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
