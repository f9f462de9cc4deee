//! Locality load balancing (DestinationRule `localityLbSetting`): which priority and weight
//! each locality of a destination gets, seen from the client's own locality.
//!
//! Istio's semantics, applied per client locality:
//! - `distribute`: the first rule whose `from` matches the client sets the weights of the
//!   destination localities its `to` patterns match; localities no pattern matches get no
//!   traffic.
//! - failover (only with outlier detection, or Envoy never leaves priority 0): endpoints
//!   rank by how much of the client's locality they share (subzone 0, zone 1, region 2,
//!   elsewhere 3, or 4 for a region other than the one `failover` names for the client's);
//!   `failoverPriority` ranks by the labels the endpoint shares with the client first.
//!   Priorities are then renumbered to be consecutive, as Envoy requires.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use shoal_config::Labels;
use shoal_config::istio::{LocalityLbSetting, OutlierDetection};
use shoal_config::k8s::topology;

use crate::model::Locality;

/// What of a client decides its locality load balancing: its locality and the values of its
/// labels that some `failoverPriority` names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ClientLocality {
    pub locality: Locality,
    /// Sorted by key.
    pub labels: Vec<(Arc<str>, Arc<str>)>,
}

impl ClientLocality {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref())
            .or_else(|| topology_label(&self.locality, key))
    }
}

/// The locality parts Istio also exposes as topology labels on endpoints and proxies.
fn topology_label<'a>(l: &'a Locality, key: &str) -> Option<&'a str> {
    match key {
        topology::REGION => Some(&l.region),
        topology::ZONE => Some(&l.zone),
        topology::SUBZONE => Some(&l.subzone),
        _ => None,
    }
}

/// How a cluster's endpoints are spread over localities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy<'a> {
    Distribute(&'a LocalityLbSetting),
    Failover(&'a LocalityLbSetting),
}

impl<'a> Policy<'a> {
    /// The policy of a cluster's settings: the rule's `localityLbSetting` (or Istio's mesh
    /// default, enabled without rules); failover only when outliers are ejected.
    pub fn of(
        setting: Option<&'a LocalityLbSetting>,
        outlier: Option<&OutlierDetection>,
    ) -> Option<Policy<'a>> {
        static DEFAULT: LocalityLbSetting = LocalityLbSetting {
            distribute: Vec::new(),
            failover: Vec::new(),
            failover_priority: Vec::new(),
            enabled: None,
        };
        let s = setting.unwrap_or(&DEFAULT);
        if !s.enabled() {
            return None;
        }
        if !s.distribute.is_empty() {
            return Some(Policy::Distribute(s));
        }
        outlier.map(|_| Policy::Failover(s))
    }

    /// Whether Envoy must weigh localities (`locality_weighted_lb_config`), as Istio sets it.
    pub fn weighs_localities(&self) -> bool {
        match self {
            Policy::Distribute(_) => true,
            Policy::Failover(s) => !s.failover.is_empty() || !s.failover_priority.is_empty(),
        }
    }
}

/// Whether `l` matches `pattern` (`region/zone/subzone`; `*` or a missing part matches all).
pub(crate) fn matches(l: &Locality, pattern: &str) -> bool {
    let parts = [&l.region, &l.zone, &l.subzone];
    for (i, want) in pattern.split('/').enumerate() {
        if want == "*" {
            return true;
        }
        match parts.get(i) {
            Some(have) if have.as_str() == want => {}
            _ => return false,
        }
    }
    true
}

/// How much of `client` an endpoint's locality shares: 0 (subzone) to 3 (not the region).
fn proximity(client: &Locality, ep: &Locality) -> u32 {
    if client.region != ep.region {
        3
    } else if client.zone != ep.zone {
        2
    } else if client.subzone != ep.subzone {
        1
    } else {
        0
    }
}

/// `failoverPriority`: 0 when the endpoint shares every listed label with the client,
/// else `n - i` for the first label `i` it does not share.
fn label_rank(
    client: &ClientLocality,
    ep_locality: &Locality,
    ep: &Labels,
    keys: &[String],
) -> u32 {
    let n = keys.len() as u32;
    for (i, entry) in keys.iter().enumerate() {
        let (key, fixed) = match entry.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (entry.as_str(), None),
        };
        let want = fixed.or_else(|| client.label(key));
        let have = ep.get(key).or_else(|| topology_label(ep_locality, key));
        if want != have {
            return n - i as u32;
        }
    }
    0
}

/// One endpoint to place.
pub(crate) struct Placed<'e, E> {
    pub locality: &'e Locality,
    pub labels: &'e Labels,
    pub weight: u32,
    pub endpoint: E,
}

/// A group of endpoints for one `LocalityLbEndpoints`.
pub(crate) struct Group<E> {
    pub locality: Locality,
    pub priority: u32,
    pub weight: u32,
    pub endpoints: Vec<E>,
}

/// Groups endpoints by locality (and priority), applying `policy` for `client`.
pub(crate) fn place<E>(
    items: Vec<Placed<'_, E>>,
    client: Option<&ClientLocality>,
    policy: Option<Policy<'_>>,
) -> Vec<Group<E>> {
    let (client, policy) = match (client, policy) {
        (Some(c), Some(p)) => (c, p),
        _ => return group(items, |_| 0),
    };
    match policy {
        Policy::Distribute(s) => distribute(group(items, |_| 0), client, s),
        Policy::Failover(s) => {
            let by_labels = !s.failover_priority.is_empty();
            let by_locality = !by_labels || !s.failover.is_empty();
            let region_to = s
                .failover
                .iter()
                .find(|f| f.from == client.locality.region)
                .map(|f| f.to.as_str());
            let mut groups = group(items, |it| {
                let labels = if by_labels {
                    label_rank(client, it.locality, it.labels, &s.failover_priority)
                } else {
                    0
                };
                let mut near = if by_locality {
                    proximity(&client.locality, it.locality)
                } else {
                    0
                };
                if near == 3 && region_to.is_some_and(|to| it.locality.region != to) {
                    near = 4;
                }
                labels * 5 + near
            });
            // Consecutive priorities from 0, as Envoy requires.
            let mut used: Vec<u32> = groups.iter().map(|g| g.priority).collect();
            used.sort_unstable();
            used.dedup();
            for g in &mut groups {
                g.priority = used.binary_search(&g.priority).unwrap_or_default() as u32;
            }
            groups.sort_by(|a, b| (a.priority, &a.locality).cmp(&(b.priority, &b.locality)));
            groups
        }
    }
}

fn group<E>(items: Vec<Placed<'_, E>>, priority: impl Fn(&Placed<'_, E>) -> u32) -> Vec<Group<E>> {
    let mut by: BTreeMap<(u32, Locality), Group<E>> = BTreeMap::new();
    for it in items {
        let p = priority(&it);
        let g = by.entry((p, it.locality.clone())).or_insert_with(|| Group {
            locality: it.locality.clone(),
            priority: p,
            weight: 0,
            endpoints: Vec::new(),
        });
        g.weight = g.weight.saturating_add(it.weight.max(1));
        g.endpoints.push(it.endpoint);
    }
    by.into_values().collect()
}

/// `distribute`: the first rule for the client's locality reweighs the localities its `to`
/// patterns match (more specific patterns first) and drops the others.
fn distribute<E>(
    mut groups: Vec<Group<E>>,
    client: &ClientLocality,
    s: &LocalityLbSetting,
) -> Vec<Group<E>> {
    let Some(rule) = s
        .distribute
        .iter()
        .find(|d| matches(&client.locality, &d.from))
    else {
        return groups;
    };
    let mut targets: Vec<(&String, u32)> = rule.to.iter().map(|(k, w)| (k, *w)).collect();
    targets.sort_by_key(|(k, _)| {
        let specific = k.split('/').filter(|p| *p != "*").count();
        (std::cmp::Reverse(specific), (*k).clone())
    });
    let mut weight: Vec<Option<u32>> = vec![None; groups.len()];
    for (pattern, w) in targets {
        let hit: Vec<usize> = (0..groups.len())
            .filter(|i| weight[*i].is_none() && matches(&groups[*i].locality, pattern))
            .collect();
        let total: u64 = hit.iter().map(|i| u64::from(groups[*i].weight)).sum();
        for i in hit {
            let share = (u64::from(groups[i].weight) * u64::from(w)).div_ceil(total.max(1));
            weight[i] = Some(u32::try_from(share).unwrap_or(u32::MAX));
        }
    }
    let mut out = Vec::new();
    for (g, w) in groups.drain(..).zip(weight) {
        match w {
            Some(w) if w > 0 => out.push(Group { weight: w, ..g }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
