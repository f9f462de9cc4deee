//! `istio.security.Authorization`: the L4 part of AuthorizationPolicies, and STRICT
//! PeerAuthentications, as ztunnel enforces them.
//!
//! A policy becomes one resource named `NAMESPACE/NAME`, scoped as Istio scopes it: a
//! `selector` makes it `WORKLOAD_SELECTOR` (the workloads it selects list it), none makes it
//! `NAMESPACE`, or `GLOBAL` in the root namespace. Each rule is a group; within it, `from`
//! and `to` are each one set of alternatives and every `when` condition another, all of
//! which must hold (ztunnel: groups OR-ed, a group's rules AND-ed, a rule's matches OR-ed).
//! What ztunnel cannot see — methods, paths, hosts, request principals, remote IPs, other
//! `when` keys — is the waypoint's: as Istio does, an ALLOW alternative that needs one of
//! them never matches (fails closed), and a DENY one is enforced on its L4 part (denies
//! more). Policies attached by `targetRef(s)` belong to waypoints and gateways; `AUDIT` and
//! `CUSTOM` ones are not enforced by ztunnel. A STRICT PeerAuthentication becomes a DENY
//! of every connection without a peer identity (`converted_peer_authentication_NAME`);
//! port-level modes are not carried (ztunnel sees the workload's mode only).

use shoal_api::istio::security::{
    Action, Address, Authorization, Group, Match, Rules, Scope, StringMatch, string_match,
};
use shoal_config::istio::{
    Attached, AuthzAction, AuthzRule, Condition, MtlsMode, Operation, PolicySelector, Source,
};
use shoal_config::{Labels, selects};

use super::ip_bytes;
use crate::model::Model;

const CONVERTED_PEER_AUTHENTICATION: &str = "converted_peer_authentication_";

/// Whether a policy is ztunnel's: attached by selector or namespace, not by `targetRef`.
fn for_ztunnel<T: Attached>(spec: &T) -> bool {
    let t = spec.target();
    t.target_ref.is_none() && t.target_refs.is_empty()
}

fn scope(model: &Model, ns: &str, selector: Option<&PolicySelector>) -> Scope {
    match selector {
        Some(s) if !s.match_labels.is_empty() => Scope::WorkloadSelector,
        _ if ns == model.options.root_namespace => Scope::Global,
        _ => Scope::Namespace,
    }
}

/// The names of the selector-scoped Authorization resources that apply to a workload of
/// namespace `ns` with `labels` (namespace and global ones apply by their scope).
pub(super) fn selecting(model: &Model, ns: &str, labels: &Labels) -> Vec<String> {
    let picks = |p_ns: &str, selector: Option<&PolicySelector>| {
        let root = p_ns == model.options.root_namespace;
        (p_ns == ns || root)
            && selector
                .is_some_and(|s| !s.match_labels.is_empty() && selects(&s.match_labels, labels))
    };
    let mut out = Vec::new();
    for p in &model.peer_authentications {
        if strict(&p.spec.mtls)
            && for_ztunnel(&*p.spec)
            && picks(&p.namespace, p.spec.selector.as_ref())
        {
            out.push(format!(
                "{}/{CONVERTED_PEER_AUTHENTICATION}{}",
                p.namespace, p.name
            ));
        }
    }
    for p in &model.authorization_policies {
        if enforced(p.spec.action()).is_some()
            && for_ztunnel(&*p.spec)
            && picks(&p.namespace, p.spec.selector.as_ref())
        {
            out.push(format!("{}/{}", p.namespace, p.name));
        }
    }
    out.sort();
    out
}

fn strict(mtls: &Option<shoal_config::istio::PeerMtls>) -> bool {
    mtls.as_ref().and_then(|m| m.mode) == Some(MtlsMode::Strict)
}

fn enforced(action: AuthzAction) -> Option<Action> {
    match action {
        AuthzAction::Allow => Some(Action::Allow),
        AuthzAction::Deny => Some(Action::Deny),
        AuthzAction::Audit | AuthzAction::Custom => None,
    }
}

/// Every Authorization resource, by name.
pub(super) fn policies(model: &Model) -> Vec<(String, Authorization)> {
    let mut out = Vec::new();
    for p in &model.peer_authentications {
        if !strict(&p.spec.mtls) || !for_ztunnel(&*p.spec) {
            continue;
        }
        let name = format!("{CONVERTED_PEER_AUTHENTICATION}{}", p.name);
        let no_identity = Match {
            not_principals: vec![presence()],
            ..Default::default()
        };
        out.push((
            format!("{}/{name}", p.namespace),
            Authorization {
                name,
                namespace: p.namespace.to_string(),
                scope: scope(model, &p.namespace, p.spec.selector.as_ref()) as i32,
                action: Action::Deny as i32,
                groups: vec![Group {
                    rules: vec![Rules {
                        matches: vec![no_identity],
                    }],
                }],
            },
        ));
    }
    for p in &model.authorization_policies {
        let Some(action) = enforced(p.spec.action()) else {
            continue;
        };
        if !for_ztunnel(&*p.spec) {
            continue;
        }
        let conv = Conv {
            allow: action == Action::Allow,
            trust_domain: &model.options.trust_domain,
            namespace: &p.namespace,
        };
        out.push((
            format!("{}/{}", p.namespace, p.name),
            Authorization {
                name: p.name.to_string(),
                namespace: p.namespace.to_string(),
                scope: scope(model, &p.namespace, p.spec.selector.as_ref()) as i32,
                action: action as i32,
                groups: p.spec.rules.iter().filter_map(|r| conv.group(r)).collect(),
            },
        ));
    }
    out
}

/// Converts one policy's rules.
struct Conv<'a> {
    allow: bool,
    trust_domain: &'a str,
    namespace: &'a str,
}

impl Conv<'_> {
    /// A rule as a group; `None` when it can never match at L4 (an ALLOW rule whose every
    /// alternative of `from` or `to`, or some `when` condition, needs L7).
    fn group(&self, r: &AuthzRule) -> Option<Group> {
        let mut rules = Vec::new();
        if !r.from.is_empty() {
            let matches: Vec<Match> = r
                .from
                .iter()
                .filter_map(|f| self.source(f.source.as_ref()?))
                .collect();
            if matches.is_empty() {
                return self.unenforceable();
            }
            rules.push(Rules { matches });
        }
        if !r.to.is_empty() {
            let matches: Vec<Match> =
                r.to.iter()
                    .filter_map(|t| self.operation(t.operation.as_ref()?))
                    .collect();
            if matches.is_empty() {
                return self.unenforceable();
            }
            rules.push(Rules { matches });
        }
        for c in &r.when {
            match self.condition(c) {
                Some(m) => rules.push(Rules { matches: vec![m] }),
                None if self.allow => return None,
                None => {}
            }
        }
        Some(Group { rules })
    }

    /// An ALLOW rule with nothing ztunnel can check never matches; a DENY one denies on
    /// what is left (nothing: every connection).
    fn unenforceable(&self) -> Option<Group> {
        (!self.allow).then(|| Group { rules: Vec::new() })
    }

    /// `None`: this alternative needs L7 and the policy allows (it never matches).
    fn source(&self, s: &Source) -> Option<Match> {
        let l7 = !s.request_principals.is_empty()
            || !s.not_request_principals.is_empty()
            || !s.remote_ip_blocks.is_empty()
            || !s.not_remote_ip_blocks.is_empty();
        if l7 && self.allow {
            return None;
        }
        let sa = |v: &String| {
            let (ns, name) = v.split_once('/').unwrap_or((self.namespace, v));
            exact(&format!("{}/ns/{ns}/sa/{name}", self.trust_domain))
        };
        let mut principals: Vec<StringMatch> = s.principals.iter().map(|p| string(p)).collect();
        principals.extend(s.service_accounts.iter().map(sa));
        let mut not_principals: Vec<StringMatch> =
            s.not_principals.iter().map(|p| string(p)).collect();
        not_principals.extend(s.not_service_accounts.iter().map(sa));
        Some(Match {
            principals,
            not_principals,
            namespaces: s.namespaces.iter().map(|n| string(n)).collect(),
            not_namespaces: s.not_namespaces.iter().map(|n| string(n)).collect(),
            source_ips: s.ip_blocks.iter().filter_map(|b| cidr(b)).collect(),
            not_source_ips: s.not_ip_blocks.iter().filter_map(|b| cidr(b)).collect(),
            ..Default::default()
        })
    }

    fn operation(&self, o: &Operation) -> Option<Match> {
        let l7 = !o.hosts.is_empty()
            || !o.not_hosts.is_empty()
            || !o.methods.is_empty()
            || !o.not_methods.is_empty()
            || !o.paths.is_empty()
            || !o.not_paths.is_empty();
        if l7 && self.allow {
            return None;
        }
        let ports = |v: &[String]| v.iter().filter_map(|p| p.parse::<u32>().ok()).collect();
        Some(Match {
            destination_ports: ports(&o.ports),
            not_destination_ports: ports(&o.not_ports),
            ..Default::default()
        })
    }

    /// A `when` condition ztunnel can check, as a match; `None` for an L7 key.
    fn condition(&self, c: &Condition) -> Option<Match> {
        let strings = |v: &[String]| v.iter().map(|s| string(s)).collect::<Vec<_>>();
        let ips = |v: &[String]| v.iter().filter_map(|s| cidr(s)).collect::<Vec<_>>();
        let ports = |v: &[String]| v.iter().filter_map(|p| p.parse::<u32>().ok()).collect();
        let m = match c.key.as_str() {
            "source.ip" => Match {
                source_ips: ips(&c.values),
                not_source_ips: ips(&c.not_values),
                ..Default::default()
            },
            "source.namespace" => Match {
                namespaces: strings(&c.values),
                not_namespaces: strings(&c.not_values),
                ..Default::default()
            },
            "source.principal" => Match {
                principals: strings(&c.values),
                not_principals: strings(&c.not_values),
                ..Default::default()
            },
            "destination.ip" => Match {
                destination_ips: ips(&c.values),
                not_destination_ips: ips(&c.not_values),
                ..Default::default()
            },
            "destination.port" => Match {
                destination_ports: ports(&c.values),
                not_destination_ports: ports(&c.not_values),
                ..Default::default()
            },
            _ => return None,
        };
        Some(m)
    }
}

fn presence() -> StringMatch {
    StringMatch {
        match_type: Some(string_match::MatchType::Presence(())),
    }
}

fn exact(v: &str) -> StringMatch {
    StringMatch {
        match_type: Some(string_match::MatchType::Exact(v.to_string())),
    }
}

/// Istio's string forms: `*` (present), `prefix*`, `*suffix`, else exact.
fn string(v: &str) -> StringMatch {
    let t = if v == "*" {
        return presence();
    } else if let Some(p) = v.strip_suffix('*') {
        string_match::MatchType::Prefix(p.to_string())
    } else if let Some(s) = v.strip_prefix('*') {
        string_match::MatchType::Suffix(s.to_string())
    } else {
        string_match::MatchType::Exact(v.to_string())
    };
    StringMatch {
        match_type: Some(t),
    }
}

/// `IP` or `IP/LEN`.
fn cidr(v: &str) -> Option<Address> {
    let (ip, len) = match v.split_once('/') {
        Some((ip, len)) => (ip, Some(len.parse::<u32>().ok()?)),
        None => (v, None),
    };
    let address = ip_bytes(ip)?;
    let max = 8 * address.len() as u32;
    Some(Address {
        length: len.unwrap_or(max).min(max),
        address,
    })
}
