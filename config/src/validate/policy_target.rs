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

/// A selector, and `targetRef(s)`: never both. References attach the policy to waypoints
/// (their Gateway, the Services and ServiceEntries they serve, or the GatewayClass
/// `istio-waypoint` from the root namespace); other kinds attach it nowhere.
pub(super) fn policy_target(v: &mut Validator, t: PolicyTarget<'_>, checks: SelectorChecks) {
    if let Some(labels) = t.selector {
        if checks.not_empty && labels.is_empty() {
            v.error(SELECTOR_LABELS, "must not be empty when selector is set");
        }
        if checks.labels {
            v.labels(SELECTOR_LABELS, labels);
        }
    }
    let Some(field) = t.target_ref_field() else {
        return;
    };
    if t.selector.is_some() {
        v.error(field, "only one of selector or targetRef(s) may be set");
    }
    let single = t.target_ref.map(|r| ("spec.targetRef".to_string(), r));
    let listed = t.target_refs.iter().enumerate();
    let written = single
        .into_iter()
        .chain(listed.map(|(i, r)| (format!("spec.targetRefs[{i}]"), r)));
    for (at, raw) in written {
        let Some(r) = crate::istio::TargetRef::read(raw) else {
            v.error(at, "a reference needs a kind and a name");
            continue;
        };
        match r.kind() {
            None => v.warning(
                at.clone(),
                format!(
                    "{}/{} is not a kind policies attach to (Gateway, GatewayClass, \
                     Service, ServiceEntry): this reference applies to no proxy",
                    if r.group.is_empty() { "core" } else { r.group },
                    r.kind
                ),
            ),
            Some(crate::istio::RefKind::GatewayClass) if r.name != "istio-waypoint" => v.warning(
                at.clone(),
                "only the GatewayClass istio-waypoint is attached to (every waypoint)",
            ),
            Some(_) => {}
        }
    }
}
