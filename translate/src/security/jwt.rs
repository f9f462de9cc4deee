//! RequestAuthentication → Envoy's `jwt_authn` HTTP filter, placed before the RBAC
//! filters of inbound HTTP chains.
//!
//! As in Istio, a request without a token passes and one with an invalid token is rejected
//! (401): the requirement is `requires_any` of every provider plus `allow_missing`.
//! Requiring a token is left to AuthorizationPolicy (`requestPrincipals`), whose RBAC
//! matchers read the verified payload from the filter's dynamic metadata
//! (`filters::HTTP_JWT_AUTHN` / [`PAYLOAD_KEY`]).
//!
//! Keys come from the inline `jwks`, from the control plane, which fetches `jwksUri` (or
//! discovers it from the issuer) and inlines the keys, or — under the `envoy`/`hybrid`
//! [`crate::model::JwksFetch`] modes — are fetched by Envoy through the outbound cluster of
//! a registry host. Keys that cannot be had become a key set that verifies nothing: the
//! rule's tokens are rejected, never let through unverified.

use std::sync::Arc;

use shoal_api::pb::envoy::config::core::v3::{
    DataSource, HttpUri, data_source::Specifier, http_uri::HttpUpstreamType,
};
use shoal_api::pb::envoy::config::route::v3::{RouteMatch, route_match::PathSpecifier};
use shoal_api::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider, JwtRequirement,
    JwtRequirementOrList, RemoteJwks, RequirementRule, jwt_provider::JwksSourceSpecifier,
    jwt_requirement::RequiresType, requirement_rule::RequirementType,
};
use shoal_api::pb::google::protobuf::Empty;
use shoal_config::istio::JwtRule;

use crate::envoy::{duration, outbound_cluster_name};
use crate::model::{KeySource, Model, RequestAuthenticationPolicy};

/// The dynamic-metadata key under which every provider stores the verified payload (in
/// the filter's namespace, `filters::HTTP_JWT_AUTHN`).
pub(crate) const PAYLOAD_KEY: &str = "payload";
/// Istio's default timeout of a JWKS fetch.
const DEFAULT_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `jwt_authn` filter of a workload and the issuers it verifies (for RBAC's
/// `requestPrincipals`, which name `ISSUER/SUBJECT`).
#[derive(Debug, Clone, Default)]
pub(crate) struct JwtConfig {
    pub filter: JwtAuthentication,
    pub issuers: Vec<String>,
}

/// Where Envoy gets a rule's keys (see [`crate::model::KeySource`]).
fn jwks_source(model: &Model, rule: &JwtRule) -> JwksSourceSpecifier {
    let inline = |keys: &str| {
        JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(Specifier::InlineString(keys.to_string())),
            ..Default::default()
        })
    };
    match model.key_source(rule) {
        KeySource::Inline(keys) => inline(keys),
        KeySource::Fetched(r) => inline(model.fetched_jwks(&r)),
        KeySource::Remote { uri, host, port } => {
            let timeout = rule
                .timeout
                .as_deref()
                .and_then(|t| shoal_config::duration::parse(t).ok())
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_FETCH_TIMEOUT);
            JwksSourceSpecifier::RemoteJwks(RemoteJwks {
                http_uri: Some(HttpUri {
                    uri: uri.to_string(),
                    timeout: Some(duration(timeout)),
                    http_upstream_type: Some(HttpUpstreamType::Cluster(outbound_cluster_name(
                        port, "", &host,
                    ))),
                }),
                ..Default::default()
            })
        }
    }
}

fn provider(rule: &JwtRule, jwks: JwksSourceSpecifier) -> JwtProvider {
    JwtProvider {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token,
        // None set: Envoy's default locations (`Authorization: Bearer`, `access_token`).
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| JwtHeader {
                name: h.name.clone(),
                value_prefix: h.prefix.clone(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| JwtClaimToHeader {
                header_name: c.header.clone(),
                claim_name: c.claim.clone(),
                ..Default::default()
            })
            .collect(),
        payload_in_metadata: PAYLOAD_KEY.into(),
        jwks_source_specifier: Some(jwks),
        ..Default::default()
    }
}

/// The `jwt_authn` configuration of the RequestAuthentications that apply to a workload
/// (in key order); `None` when no rule can be served.
pub(crate) fn build(
    model: &Model,
    policies: &[&Arc<RequestAuthenticationPolicy>],
) -> Option<JwtConfig> {
    let mut filter = JwtAuthentication::default();
    let mut issuers = Vec::new();
    let mut requirements = Vec::new();
    for p in policies {
        for (i, rule) in p.spec.jwt_rules.iter().enumerate() {
            if rule.issuer.is_empty() {
                continue;
            }
            let jwks = jwks_source(model, rule);
            let name = format!("{}/{}[{i}]", p.namespace, p.name);
            filter.providers.insert(name.clone(), provider(rule, jwks));
            requirements.push(JwtRequirement {
                requires_type: Some(RequiresType::ProviderName(name)),
            });
            if !issuers.contains(&rule.issuer) {
                issuers.push(rule.issuer.clone());
            }
        }
    }
    if requirements.is_empty() {
        return None;
    }
    // Missing token: allowed. Invalid token (for every provider): rejected.
    requirements.push(JwtRequirement {
        requires_type: Some(RequiresType::AllowMissing(Empty {})),
    });
    filter.rules = vec![RequirementRule {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        requirement_type: Some(RequirementType::Requires(JwtRequirement {
            requires_type: Some(RequiresType::RequiresAny(JwtRequirementOrList {
                requirements,
            })),
        })),
    }];
    Some(JwtConfig { filter, issuers })
}

#[cfg(test)]
mod tests;
