//! Validation of `RequestAuthentication`, following Istio's checks (issuer required, one
//! key source, JWKS URIs as http(s) URLs with a host, valid header names).

use std::collections::BTreeSet;
use std::time::Duration;

use super::Validator;
use super::policy_target::{self, policy_target};
use super::virtual_service::header_name;
use crate::istio::{Attached, JwtRule, RequestAuthenticationSpec, jwks_uri_parts};

pub(super) fn request_authentication(v: &mut Validator, s: &RequestAuthenticationSpec) {
    policy_target(v, s.target(), policy_target::REQUEST_AUTHENTICATION);
    let mut issuers = BTreeSet::new();
    for (i, rule) in s.jwt_rules.iter().enumerate() {
        let f = format!("spec.jwtRules[{i}]");
        if !rule.issuer.is_empty() && !issuers.insert(rule.issuer.as_str()) {
            v.error(
                format!("{f}.issuer"),
                format!("issuer {:?} appears in more than one rule", rule.issuer),
            );
        }
        jwt_rule(v, &f, rule);
    }
}

fn jwt_rule(v: &mut Validator, f: &str, r: &JwtRule) {
    if r.issuer.is_empty() {
        v.error(format!("{f}.issuer"), "issuer must be set");
    }
    for (i, a) in r.audiences.iter().enumerate() {
        if a.is_empty() {
            v.error(format!("{f}.audiences[{i}]"), "audience must not be empty");
        }
    }
    match (&r.jwks, &r.jwks_uri) {
        (Some(_), Some(_)) => v.error(f, "only one of jwks or jwksUri may be set"),
        (Some(jwks), None) => {
            if serde_json::from_str::<serde_json::Value>(jwks)
                .ok()
                .and_then(|j| j.get("keys").map(serde_json::Value::is_array))
                != Some(true)
            {
                v.error(
                    format!("{f}.jwks"),
                    "not a JSON Web Key Set (a JSON object with a `keys` array)",
                );
            }
        }
        (None, Some(uri)) => {
            if jwks_uri_parts(uri).is_none() {
                v.error(
                    format!("{f}.jwksUri"),
                    format!("{uri:?} is not an http or https URL with a host"),
                );
            }
        }
        // Keys discovered from the issuer's OpenID configuration.
        (None, None) => {
            if !r.issuer.is_empty() && jwks_uri_parts(&r.issuer).is_none() {
                v.warning(
                    format!("{f}.issuer"),
                    format!(
                        "without jwks or jwksUri, keys are discovered from the issuer's \
                         OpenID configuration, but {:?} is not an http(s) URL: every token \
                         of this rule is rejected",
                        r.issuer
                    ),
                );
            }
        }
    }
    for (i, h) in r.from_headers.iter().enumerate() {
        header_name(v, &format!("{f}.fromHeaders[{i}].name"), &h.name);
    }
    for (i, p) in r.from_params.iter().enumerate() {
        if p.is_empty() {
            v.error(
                format!("{f}.fromParams[{i}]"),
                "parameter name must not be empty",
            );
        }
    }
    for (i, c) in r.from_cookies.iter().enumerate() {
        if c.is_empty() {
            v.error(
                format!("{f}.fromCookies[{i}]"),
                "cookie name must not be empty",
            );
        }
    }
    if let Some(h) = &r.output_payload_to_header {
        header_name(v, &format!("{f}.outputPayloadToHeader"), h);
    }
    for (i, c) in r.output_claim_to_headers.iter().enumerate() {
        let cf = format!("{f}.outputClaimToHeaders[{i}]");
        header_name(v, &format!("{cf}.header"), &c.header);
        if c.claim.is_empty() {
            v.error(format!("{cf}.claim"), "claim must be set");
        }
    }
    if let Some(t) = &r.timeout {
        v.duration(format!("{f}.timeout"), t, Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::support::findings;

    fn ra(spec: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: ra, namespace: default}}\nspec:\n{spec}"
        )
    }

    fn has(f: &[String], s: &str) -> bool {
        f.iter().any(|x| x.contains(s))
    }

    #[test]
    fn a_valid_policy_has_no_findings() {
        let f = findings(&ra(
            "  selector: {matchLabels: {app: a}}\n  jwtRules:\n  - issuer: https://issuer.example\n    audiences: [a]\n    jwksUri: https://keys.example/jwks.json\n    fromHeaders: [{name: x-jwt, prefix: 'Bearer '}]\n    fromParams: [token]\n    outputClaimToHeaders: [{header: x-sub, claim: sub}]\n    timeout: 5s\n  - issuer: other\n    jwks: '{\"keys\": []}'\n",
        ));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn istio_checks() {
        let f = findings(&ra("  jwtRules:\n  - audiences: ['']\n    jwks: '{}'\n"));
        assert!(
            has(&f, "error spec.jwtRules[0].issuer: issuer must be set"),
            "{f:?}"
        );
        assert!(has(&f, "error spec.jwtRules[0].audiences[0]"), "{f:?}");
        assert!(
            has(&f, "error spec.jwtRules[0].jwks: not a JSON Web Key Set"),
            "{f:?}"
        );
        let f = findings(&ra(
            "  jwtRules:\n  - issuer: a\n    jwks: '{\"keys\": []}'\n    jwksUri: https://k/j\n  - issuer: a\n    jwksUri: ftp://k/j\n",
        ));
        assert!(
            has(&f, "error spec.jwtRules[0]: only one of jwks or jwksUri"),
            "{f:?}"
        );
        assert!(
            has(&f, "error spec.jwtRules[1].issuer: issuer \"a\" appears"),
            "{f:?}"
        );
        assert!(has(&f, "error spec.jwtRules[1].jwksUri"), "{f:?}");
        let f = findings(&ra(
            "  jwtRules:\n  - issuer: a\n    fromHeaders: [{name: 'bad header'}]\n    outputPayloadToHeader: 'x y'\n    outputClaimToHeaders: [{header: x-a}]\n    timeout: nope\n",
        ));
        assert!(
            has(
                &f,
                "warning spec.jwtRules[0].issuer: without jwks or jwksUri"
            ),
            "{f:?}"
        );
        assert!(
            has(&f, "error spec.jwtRules[0].fromHeaders[0].name"),
            "{f:?}"
        );
        assert!(
            has(&f, "error spec.jwtRules[0].outputPayloadToHeader"),
            "{f:?}"
        );
        assert!(
            has(&f, "error spec.jwtRules[0].outputClaimToHeaders[0].claim"),
            "{f:?}"
        );
        assert!(has(&f, "error spec.jwtRules[0].timeout"), "{f:?}");
        let f = findings(&ra(
            "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]\n",
        ));
        assert!(f.is_empty(), "{f:?}");
        let f = findings(&ra("  targetRefs: [{kind: Gateway, name: g}]\n"));
        assert!(
            has(&f, "warning spec.targetRefs[0]: core/Gateway is not a kind"),
            "{f:?}"
        );
    }
}
