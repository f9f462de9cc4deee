//! Validation of a policy's attachment ([`PolicyTarget`]), shared by every kind that
//! attaches by `selector` and `targetRef(s)`.

use super::Validator;
use crate::istio::PolicyTarget;

/// Where the selector's labels are reported.
const SELECTOR_LABELS: &str = "spec.selector.matchLabels";

/// The checks a kind's selector gets beyond the common ones.
#[derive(Debug, Clone, Copy)]
pub(super) struct SelectorChecks {
    /// The labels must be valid Kubernetes label keys and values.
    pub labels: bool,
    /// A selector that is written must name at least one label.
    pub not_empty: bool,
}

pub(super) const PEER_AUTHENTICATION: SelectorChecks = SelectorChecks {
    labels: false,
    not_empty: false,
};
pub(super) const AUTHORIZATION_POLICY: SelectorChecks = PEER_AUTHENTICATION;
pub(super) const REQUEST_AUTHENTICATION: SelectorChecks = SelectorChecks {
    labels: true,
    not_empty: false,
};
pub(super) const PROXY_CONFIG: SelectorChecks = SelectorChecks {
    labels: true,
    not_empty: true,
};

/// A selector, and `targetRef(s)`: never both; references are accepted but attach the
/// policy to no proxy shoal serves (gateways and waypoints named by reference).
pub(super) fn policy_target(v: &mut Validator, t: PolicyTarget<'_>, checks: SelectorChecks) {
    if let Some(labels) = t.selector {
        if checks.not_empty && labels.is_empty() {
            v.error(SELECTOR_LABELS, "must not be empty when selector is set");
        }
        if checks.labels {
            v.labels(SELECTOR_LABELS, labels);
        }
    }
    if let Some(field) = t.target_ref_field() {
        if t.selector.is_some() {
            v.error(field, "only one of selector or targetRef(s) may be set");
        }
        v.warning(
            field,
            "targetRef(s) attach policies to gateways and waypoints, which shoal does not \
             serve: this policy applies to no proxy",
        );
    }
}
