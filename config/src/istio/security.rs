//! Istio security resources (`security.istio.io` v1, with the v1beta1 alias):
//! `PeerAuthentication` and `AuthorizationPolicy`, field names as in Istio's API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Attached, PolicySelector, PolicyTarget};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    #[serde(default)]
    pub selector: Option<PolicySelector>,
    #[serde(default)]
    pub mtls: Option<PeerMtls>,
    /// Per workload port (the port the workload listens on, not the service port). Keys
    /// are kept as written so that a bad key is reported with its path.
    #[serde(default)]
    pub port_level_mtls: BTreeMap<String, PeerMtls>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMtls {
    #[serde(default)]
    pub mode: Option<MtlsMode>,
}

/// `PeerAuthentication.MutualTLS.Mode`. `UNSET` (or no mode) inherits from the parent
/// scope: workload → namespace → mesh → PERMISSIVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    Unset,
    Disable,
    Permissive,
    Strict,
}

impl Attached for PeerAuthenticationSpec {
    fn target(&self) -> PolicyTarget<'_> {
        PolicyTarget::selector(self.selector.as_ref())
    }
}

impl PeerMtls {
    /// The mode, `None` when it inherits (`UNSET` or absent).
    pub fn set_mode(&self) -> Option<MtlsMode> {
        self.mode.filter(|m| *m != MtlsMode::Unset)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    #[serde(default)]
    pub selector: Option<PolicySelector>,
    /// Gateway-API style attachment (gateways and waypoints), see [`PolicyTarget`].
    #[serde(default)]
    pub target_ref: Option<serde_json::Value>,
    #[serde(default)]
    pub target_refs: Vec<serde_json::Value>,
    #[serde(default)]
    pub rules: Vec<AuthzRule>,
    #[serde(default)]
    pub action: Option<AuthzAction>,
    #[serde(default)]
    pub provider: Option<ExtensionProvider>,
}

impl AuthorizationPolicySpec {
    pub fn action(&self) -> AuthzAction {
        self.action.unwrap_or(AuthzAction::Allow)
    }
}

impl Attached for AuthorizationPolicySpec {
    fn target(&self) -> PolicyTarget<'_> {
        PolicyTarget {
            selector: self.selector.as_ref().map(|s| &s.match_labels),
            target_ref: self.target_ref.as_ref(),
            target_refs: &self.target_refs,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthzAction {
    Allow,
    Deny,
    Audit,
    Custom,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionProvider {
    #[serde(default)]
    pub name: String,
}

/// One rule: matches when any `from`, any `to` and every `when` match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzRule {
    #[serde(default)]
    pub from: Vec<RuleFrom>,
    #[serde(default)]
    pub to: Vec<RuleTo>,
    #[serde(default)]
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFrom {
    #[serde(default)]
    pub source: Option<Source>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTo {
    #[serde(default)]
    pub operation: Option<Operation>,
}

/// The peer: every set field must match (and none of the `not` values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub not_principals: Vec<String>,
    #[serde(default)]
    pub request_principals: Vec<String>,
    #[serde(default)]
    pub not_request_principals: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub not_namespaces: Vec<String>,
    /// Kubernetes service accounts of the peer certificate (Istio 1.24+): `NAMESPACE/NAME`,
    /// or `NAME` in the policy's namespace. Never combined with `principals` or
    /// `namespaces` in one source.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    #[serde(default)]
    pub not_service_accounts: Vec<String>,
    #[serde(default)]
    pub ip_blocks: Vec<String>,
    #[serde(default)]
    pub not_ip_blocks: Vec<String>,
    #[serde(default)]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<String>,
}

impl Source {
    pub fn is_empty(&self) -> bool {
        self == &Source::default()
    }
}

/// The request: every set field must match (and none of the `not` values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub not_hosts: Vec<String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub not_ports: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub not_methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub not_paths: Vec<String>,
}

impl Operation {
    pub fn is_empty(&self) -> bool {
        self == &Operation::default()
    }
}

/// Istio's path template operators (1.18+): `{*}` is one path segment, `{**}` zero or more
/// (the last operator).
pub const PATH_TEMPLATE_ONE: &str = "{*}";
pub const PATH_TEMPLATE_ANY: &str = "{**}";

/// Whether a `paths`/`notPaths` value is a path template rather than an exact, prefix or
/// suffix value (as Istio decides: it contains `{*}` or `{**}`).
pub fn is_path_template(path: &str) -> bool {
    path.contains(PATH_TEMPLATE_ONE) || path.contains(PATH_TEMPLATE_ANY)
}

/// A path template in Envoy's `uri_template` syntax: `{*}` → `*`, `{**}` → `**`.
pub fn envoy_path_template(path: &str) -> String {
    path.replace(PATH_TEMPLATE_ANY, "**")
        .replace(PATH_TEMPLATE_ONE, "*")
}

/// A `when` condition on an attribute (`request.headers[x]`, `source.ip`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub not_values: Vec<String>,
}

/// The attribute a `when` key names, parsed once for validation and translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `request.headers[NAME]`.
    RequestHeader(String),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    /// `source.serviceAccount` (`NAMESPACE/NAME`, or `NAME` in the policy's namespace).
    SourceServiceAccount,
    SourcePrincipal,
    /// `request.auth.principal`, `request.auth.audiences`, `request.auth.presenter`.
    RequestAuth(&'static str),
    /// `request.auth.claims[a][b]…`: the claim path.
    RequestAuthClaims(Vec<String>),
    DestinationIp,
    DestinationPort,
    ConnectionSni,
    /// `experimental.envoy.filters.*`: not supported by shoal.
    Experimental,
}

impl ConditionKey {
    /// Parses a key; `None` for keys Istio does not define.
    pub fn parse(key: &str) -> Option<ConditionKey> {
        let bracketed = |rest: &str| -> Option<Vec<String>> {
            let mut parts = Vec::new();
            let mut rest = rest;
            while !rest.is_empty() {
                let inner = rest.strip_prefix('[')?;
                let end = inner.find(']')?;
                let part = &inner[..end];
                if part.is_empty() {
                    return None;
                }
                parts.push(part.to_string());
                rest = &inner[end + 1..];
            }
            (!parts.is_empty()).then_some(parts)
        };
        Some(match key {
            "source.ip" => ConditionKey::SourceIp,
            "remote.ip" => ConditionKey::RemoteIp,
            "source.namespace" => ConditionKey::SourceNamespace,
            "source.principal" => ConditionKey::SourcePrincipal,
            "source.serviceAccount" => ConditionKey::SourceServiceAccount,
            "request.auth.principal" => ConditionKey::RequestAuth("request.auth.principal"),
            "request.auth.audiences" => ConditionKey::RequestAuth("request.auth.audiences"),
            "request.auth.presenter" => ConditionKey::RequestAuth("request.auth.presenter"),
            "destination.ip" => ConditionKey::DestinationIp,
            "destination.port" => ConditionKey::DestinationPort,
            "connection.sni" => ConditionKey::ConnectionSni,
            k if k.starts_with("experimental.envoy.filters.") => ConditionKey::Experimental,
            k => {
                if let Some(rest) = k.strip_prefix("request.headers") {
                    let parts = bracketed(rest)?;
                    if parts.len() != 1 {
                        return None;
                    }
                    ConditionKey::RequestHeader(parts.into_iter().next()?)
                } else if let Some(rest) = k.strip_prefix("request.auth.claims") {
                    ConditionKey::RequestAuthClaims(bracketed(rest)?)
                } else {
                    return None;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_keys() {
        assert_eq!(
            ConditionKey::parse("request.headers[x-user]"),
            Some(ConditionKey::RequestHeader("x-user".into()))
        );
        assert_eq!(ConditionKey::parse("request.headers[]"), None);
        assert_eq!(ConditionKey::parse("request.headers[a][b]"), None);
        assert_eq!(ConditionKey::parse("request.headers"), None);
        assert_eq!(
            ConditionKey::parse("request.auth.claims[groups][0]"),
            Some(ConditionKey::RequestAuthClaims(vec![
                "groups".into(),
                "0".into()
            ]))
        );
        assert_eq!(
            ConditionKey::parse("destination.port"),
            Some(ConditionKey::DestinationPort)
        );
        assert_eq!(ConditionKey::parse("source.nope"), None);
    }
}
