//! AuthorizationPolicy → Envoy RBAC, following Istio's authz builder.
//!
//! Every rule of a policy becomes one RBAC policy named `ns[NS]-policy[NAME]-rule[I]`:
//! its permissions are one AND per `to` (operation fields, then `when` conditions on the
//! destination), its principals one AND per `from` (source fields, then `when` conditions
//! on the peer); each field is an OR of its values, and its `not` values a NOT of their OR.
//! An empty side matches anything, so `rules: [{}]` allows everything while a policy
//! without rules contributes nothing (an ALLOW policy without rules denies everything).
//!
//! Peers are matched on the SPIFFE URI of their certificate: `principals` (and
//! `source.principal` conditions) in the mesh's trust domain bundle — a principal of the
//! mesh's trust domain, of one of its aliases (MeshConfig `trustDomainAliases`) or of
//! `cluster.local` becomes one per trust domain of the bundle, others stay as written —
//! `namespaces` and `serviceAccounts` in any trust domain, as Istio does. Path templates (`{*}`, `{**}`) become Envoy `uri_template`
//! permissions; other paths exact, prefix or suffix `url_path` matchers.
//!
//! Filters run in Istio's order: AUDIT (Envoy's LOG action), DENY, ALLOW. On TCP filter
//! chains, HTTP-only fields cannot be evaluated: an ALLOW rule using one is dropped (it
//! allows less), a DENY or AUDIT rule ignores it (it denies more). CUSTOM policies, which
//! need an external authorizer shoal does not configure, deny what their rules match (fail
//! closed, as Istio does for a CUSTOM policy it cannot build).

use std::collections::HashMap;
use std::sync::Arc;

use shoal_api::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, principal, rbac::Action,
};
use shoal_config::istio::{
    AuthzAction, AuthzRule, ConditionKey, Operation, Source, is_path_template,
};

use super::matchers;
use crate::model::AuthorizationPolicyRule;

/// One RBAC filter's rules.
pub(crate) type RbacConfig = Rbac;

/// An attribute a value is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attr {
    Principal,
    /// `serviceAccounts`: `NS/SA` or `SA` (in the policy's namespace).
    ServiceAccount,
    RequestPrincipal,
    Namespace,
    RemoteIp,
    SourceIp,
    Header(String),
    /// A claim of the verified JWT payload, by path.
    Claims(Vec<String>),
    Host,
    Method,
    Path,
    Port,
    DestinationIp,
    Sni,
}

impl Attr {
    /// Attributes only an HTTP filter can evaluate.
    fn http_only(&self) -> bool {
        matches!(
            self,
            Attr::RequestPrincipal
                | Attr::Header(_)
                | Attr::Claims(_)
                | Attr::Host
                | Attr::Method
                | Attr::Path
        )
    }
}

/// An attribute with the values it must match and those it must not.
#[derive(Debug, Clone)]
struct Cond<'a> {
    attr: Attr,
    values: &'a [String],
    not_values: &'a [String],
}

fn cond<'a>(attr: Attr, values: &'a [String], not_values: &'a [String]) -> Cond<'a> {
    Cond {
        attr,
        values,
        not_values,
    }
}

/// What translating a value needs besides the value: the mesh's trust domain and its
/// aliases, the issuers the workload's `jwt_authn` filter verifies and the policy's
/// namespace.
#[derive(Debug, Clone, Copy)]
struct Cx<'a> {
    td: &'a str,
    aliases: &'a [String],
    issuers: &'a [String],
    namespace: &'a str,
    peer: PeerSource,
}

/// Where the peer's identity is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerSource {
    /// The connection's own mTLS peer certificate (sidecars, gateways).
    Connection,
    /// The filter state [`PEER_PRINCIPAL`] the HBONE tunnel carried in (a waypoint: the
    /// client's certificate ends at the tunnel, the request arrives on an internal
    /// connection).
    Tunnel,
}

/// The filter state key a waypoint's tunnel terminator stores the client's identity under
/// (Istio's name), shared with the internal connection the request continues on.
pub(crate) const PEER_PRINCIPAL: &str = "io.istio.peer_principal";

fn never() -> Principal {
    Principal {
        identifier: Some(principal::Identifier::NotId(Box::new(Principal::any()))),
    }
}

// JWT attributes use `metadata`, deprecated in favour of `sourced_metadata` (Envoy 1.32+):
// Istio still emits `metadata`, which every Envoy it supports understands.
#[allow(deprecated)]
fn metadata(m: shoal_api::pb::envoy::r#type::matcher::v3::MetadataMatcher) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Metadata(m)),
    }
}

fn principal_of(attr: &Attr, v: &str, cx: Cx<'_>) -> Option<Principal> {
    use principal::{Authenticated, Identifier};
    use shoal_api::pb::envoy::r#type::matcher::v3::{FilterStateMatcher, filter_state_matcher};
    let peer = |m| match cx.peer {
        PeerSource::Connection => Identifier::Authenticated(Authenticated {
            principal_name: Some(m),
        }),
        PeerSource::Tunnel => Identifier::FilterState(FilterStateMatcher {
            key: PEER_PRINCIPAL.into(),
            matcher: Some(filter_state_matcher::Matcher::StringMatch(m)),
        }),
    };
    let id = match attr {
        Attr::Principal => peer(matchers::principal(v)),
        Attr::Namespace => peer(matchers::namespace(v)),
        Attr::ServiceAccount => peer(matchers::service_account(v, cx.namespace)),
        Attr::RequestPrincipal => {
            let alternatives: Vec<Principal> = matchers::request_principal(v, cx.issuers)
                .into_iter()
                .map(|all| Principal::set(all.into_iter().map(metadata).collect(), true))
                .collect();
            // A principal of an issuer the workload does not verify never appears.
            return Some(if alternatives.is_empty() {
                never()
            } else {
                Principal::set(alternatives, false)
            });
        }
        Attr::Claims(path) => {
            let keys: Vec<&str> = path.iter().map(String::as_str).collect();
            return Some(metadata(matchers::claim(&keys, v)));
        }
        Attr::RemoteIp => Identifier::RemoteIp(matchers::cidr(v)?),
        Attr::SourceIp => Identifier::DirectRemoteIp(matchers::cidr(v)?),
        Attr::Header(name) => Identifier::Header(matchers::request_header(name, v)),
        _ => return None,
    };
    Some(Principal {
        identifier: Some(id),
    })
}

fn permission_of(attr: &Attr, v: &str) -> Option<Permission> {
    use permission::Rule;
    let rule = match attr {
        Attr::Host => Rule::Header(matchers::host(v)),
        Attr::Method => Rule::Header(matchers::method(v)),
        Attr::Path if is_path_template(v) => Rule::UriTemplate(matchers::path_template(v)),
        Attr::Path => Rule::UrlPath(matchers::path(v)),
        Attr::Port => Rule::DestinationPort(matchers::port(v)?),
        Attr::DestinationIp => Rule::DestinationIp(matchers::cidr(v)?),
        Attr::Sni => Rule::RequestedServerName(matchers::string_match(v, "")),
        _ => return None,
    };
    Some(Permission { rule: Some(rule) })
}

/// One side of an RBAC policy: principals (the peer) or permissions (the request).
trait Side: Sized {
    fn one(attr: &Attr, v: &str, cx: Cx<'_>) -> Option<Self>;
    fn set(items: Vec<Self>, and: bool) -> Self;
    fn not(self) -> Self;
    fn any() -> Self;
}

impl Side for Principal {
    fn one(attr: &Attr, v: &str, cx: Cx<'_>) -> Option<Self> {
        principal_of(attr, v, cx)
    }

    fn set(ids: Vec<Self>, and: bool) -> Self {
        use principal::{Identifier, Set};
        let set = Set { ids };
        Principal {
            identifier: Some(if and {
                Identifier::AndIds(set)
            } else {
                Identifier::OrIds(set)
            }),
        }
    }

    fn not(self) -> Self {
        Principal {
            identifier: Some(principal::Identifier::NotId(Box::new(self))),
        }
    }

    fn any() -> Self {
        Principal {
            identifier: Some(principal::Identifier::Any(true)),
        }
    }
}

impl Side for Permission {
    fn one(attr: &Attr, v: &str, _cx: Cx<'_>) -> Option<Self> {
        permission_of(attr, v)
    }

    fn set(rules: Vec<Self>, and: bool) -> Self {
        use permission::{Rule, Set};
        let set = Set { rules };
        Permission {
            rule: Some(if and {
                Rule::AndRules(set)
            } else {
                Rule::OrRules(set)
            }),
        }
    }

    fn not(self) -> Self {
        Permission {
            rule: Some(permission::Rule::NotRule(Box::new(self))),
        }
    }

    fn any() -> Self {
        Permission {
            rule: Some(permission::Rule::Any(true)),
        }
    }
}

/// The values of a condition as matched: principals expanded over the trust domain bundle,
/// others as written.
fn expand<'v>(attr: &Attr, values: &'v [String], cx: Cx<'_>) -> Vec<std::borrow::Cow<'v, str>> {
    use std::borrow::Cow;
    match attr {
        Attr::Principal => values
            .iter()
            .flat_map(|v| matchers::trust_domain_principals(v, cx.td, cx.aliases))
            .map(Cow::Owned)
            .collect(),
        _ => values.iter().map(|v| Cow::Borrowed(v.as_str())).collect(),
    }
}

/// Builds one side of a policy (an AND of ORs) from its conditions, or `None` when the
/// rule must be dropped (an HTTP-only attribute on TCP, in an ALLOW rule).
fn and_of<T: Side>(conds: &[Cond<'_>], for_tcp: bool, allow: bool, cx: Cx<'_>) -> Option<T> {
    let mut all = Vec::new();
    for c in conds {
        if for_tcp && c.attr.http_only() && !(c.values.is_empty() && c.not_values.is_empty()) {
            if allow {
                return None;
            }
            continue;
        }
        let yes: Vec<T> = expand(&c.attr, c.values, cx)
            .iter()
            .filter_map(|v| T::one(&c.attr, v, cx))
            .collect();
        if !yes.is_empty() {
            all.push(T::set(yes, false));
        }
        let no: Vec<T> = expand(&c.attr, c.not_values, cx)
            .iter()
            .filter_map(|v| T::one(&c.attr, v, cx))
            .collect();
        if !no.is_empty() {
            all.push(T::set(no, false).not());
        }
    }
    if all.is_empty() {
        all.push(T::any());
    }
    Some(T::set(all, true))
}

fn source_conds(s: &Source) -> Vec<Cond<'_>> {
    vec![
        cond(Attr::Principal, &s.principals, &s.not_principals),
        cond(
            Attr::RequestPrincipal,
            &s.request_principals,
            &s.not_request_principals,
        ),
        cond(Attr::Namespace, &s.namespaces, &s.not_namespaces),
        cond(
            Attr::ServiceAccount,
            &s.service_accounts,
            &s.not_service_accounts,
        ),
        cond(Attr::RemoteIp, &s.remote_ip_blocks, &s.not_remote_ip_blocks),
        cond(Attr::SourceIp, &s.ip_blocks, &s.not_ip_blocks),
    ]
}

fn operation_conds(o: &Operation) -> Vec<Cond<'_>> {
    vec![
        cond(Attr::Host, &o.hosts, &o.not_hosts),
        cond(Attr::Method, &o.methods, &o.not_methods),
        cond(Attr::Path, &o.paths, &o.not_paths),
        cond(Attr::Port, &o.ports, &o.not_ports),
    ]
}

/// The RBAC policy of one rule; `None` when the rule is dropped (see module docs).
fn rule_policy(rule: &AuthzRule, for_tcp: bool, allow: bool, cx: Cx<'_>) -> Option<Policy> {
    let mut peer = Vec::new();
    let mut dest = Vec::new();
    for c in &rule.when {
        let (v, n) = (c.values.as_slice(), c.not_values.as_slice());
        match ConditionKey::parse(&c.key) {
            Some(ConditionKey::DestinationIp) => dest.push(cond(Attr::DestinationIp, v, n)),
            Some(ConditionKey::DestinationPort) => dest.push(cond(Attr::Port, v, n)),
            Some(ConditionKey::ConnectionSni) => dest.push(cond(Attr::Sni, v, n)),
            Some(ConditionKey::SourceIp) => peer.push(cond(Attr::SourceIp, v, n)),
            Some(ConditionKey::RemoteIp) => peer.push(cond(Attr::RemoteIp, v, n)),
            Some(ConditionKey::SourceNamespace) => peer.push(cond(Attr::Namespace, v, n)),
            Some(ConditionKey::SourcePrincipal) => peer.push(cond(Attr::Principal, v, n)),
            Some(ConditionKey::SourceServiceAccount) => peer.push(cond(Attr::ServiceAccount, v, n)),
            Some(ConditionKey::RequestAuth("request.auth.principal")) => {
                peer.push(cond(Attr::RequestPrincipal, v, n))
            }
            Some(ConditionKey::RequestAuth("request.auth.audiences")) => {
                peer.push(cond(Attr::Claims(vec!["aud".into()]), v, n))
            }
            Some(ConditionKey::RequestAuth(_)) => {
                peer.push(cond(Attr::Claims(vec!["azp".into()]), v, n))
            }
            Some(ConditionKey::RequestAuthClaims(p)) => peer.push(cond(Attr::Claims(p), v, n)),
            Some(ConditionKey::RequestHeader(h)) => peer.push(cond(Attr::Header(h), v, n)),
            // Rejected by validation; never widen an ALLOW rule over them.
            Some(ConditionKey::Experimental) | None => {
                if allow {
                    return None;
                }
            }
        }
    }
    let principals = if rule.from.is_empty() {
        vec![and_of::<Principal>(&peer, for_tcp, allow, cx)?]
    } else {
        let mut out = Vec::new();
        for from in &rule.from {
            let src = from.source.clone().unwrap_or_default();
            let mut conds = source_conds(&src);
            conds.extend(peer.iter().cloned());
            out.push(and_of::<Principal>(&conds, for_tcp, allow, cx)?);
        }
        out
    };
    let permissions = if rule.to.is_empty() {
        vec![and_of::<Permission>(&dest, for_tcp, allow, cx)?]
    } else {
        let mut out = Vec::new();
        for to in &rule.to {
            let op = to.operation.clone().unwrap_or_default();
            let mut conds = operation_conds(&op);
            conds.extend(dest.iter().cloned());
            out.push(and_of::<Permission>(&conds, for_tcp, allow, cx)?);
        }
        out
    };
    Some(Policy {
        permissions,
        principals,
        ..Default::default()
    })
}

/// The RBAC configurations (in filter order: AUDIT, DENY, ALLOW) of the policies that
/// apply to a workload, for HTTP or for TCP filter chains. An ALLOW configuration is
/// present whenever an ALLOW policy applies, even one without rules (then it denies all);
/// AUDIT and DENY configurations only when they have rules.
pub(crate) fn build(
    policies: &[&Arc<AuthorizationPolicyRule>],
    trust_domain: &str,
    trust_domain_aliases: &[String],
    issuers: &[String],
    for_tcp: bool,
    peer: PeerSource,
) -> Vec<RbacConfig> {
    let mut log = HashMap::new();
    let mut deny = HashMap::new();
    let mut allow = HashMap::new();
    let mut any_allow = false;
    for p in policies {
        let action = p.spec.action();
        any_allow |= action == AuthzAction::Allow;
        let cx = Cx {
            td: trust_domain,
            aliases: trust_domain_aliases,
            issuers,
            namespace: &p.namespace,
            peer,
        };
        for (i, rule) in p.spec.rules.iter().enumerate() {
            let name = format!("ns[{}]-policy[{}]-rule[{i}]", p.namespace, p.name);
            let is_allow = action == AuthzAction::Allow;
            let Some(policy) = rule_policy(rule, for_tcp, is_allow, cx) else {
                continue;
            };
            match action {
                AuthzAction::Allow => allow.insert(name, policy),
                AuthzAction::Deny => deny.insert(name, policy),
                AuthzAction::Audit => log.insert(name, policy),
                AuthzAction::Custom => deny.insert(
                    format!("istio-ext-authz-{name}-deny-due-to-bad-CUSTOM-action"),
                    policy,
                ),
            };
        }
    }
    let mut out = Vec::new();
    for (action, policies) in [(Action::Log, log), (Action::Deny, deny)] {
        if !policies.is_empty() {
            out.push(Rbac {
                action: action as i32,
                policies,
                ..Default::default()
            });
        }
    }
    if any_allow {
        out.push(Rbac {
            action: Action::Allow as i32,
            policies: allow,
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests;
