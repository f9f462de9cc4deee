//! Kubernetes `Namespace` (core v1, cluster-scoped), read for its labels: Gateway API
//! listeners with `allowedRoutes.namespaces.from: Selector` select route namespaces by them.
//! `spec` and `status` are not read (and not reported).

use serde::{Deserialize, Serialize};

use crate::host;
use crate::meta::{Labels, ObjectMeta};
use crate::validate::Validator;

/// The label the API server puts on every namespace, with the namespace's name as value
/// (Kubernetes 1.21+; immutable).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// The labels of namespace `name` as a selector sees them: those of its `Namespace` object
/// (none without one) with [`NAMESPACE_NAME_LABEL`] set to its name, as the API server sets
/// it on every namespace.
pub fn namespace_labels(name: &str, object: Option<&Namespace>) -> Labels {
    let mut labels = object
        .map(|o| o.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL, name);
    labels
}

/// A namespace name is a DNS-1123 label (not a subdomain, as other names), and its labels
/// valid label keys and values.
pub(crate) fn validate(v: &mut Validator, ns: &Namespace) {
    let name = &ns.metadata.name;
    // Names that are not even subdomains are reported by the metadata check.
    let label = host::is_dns_label(name) && !name.bytes().any(|b| b.is_ascii_uppercase());
    if host::is_dns1123_subdomain(name) && !label {
        v.error(
            "metadata.name",
            format!("{name:?} is not a valid namespace name (a DNS-1123 label)"),
        );
    }
    v.labels("metadata.labels", &ns.metadata.labels);
    if let Some(value) = ns.metadata.labels.get(NAMESPACE_NAME_LABEL)
        && value != name
    {
        v.warning(
            format!("metadata.labels.{NAMESPACE_NAME_LABEL}"),
            format!("the API server sets it to the namespace's name; {name:?} is used"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_carries_its_name_label() {
        assert_eq!(
            namespace_labels("web", None),
            Labels::from([(NAMESPACE_NAME_LABEL, "web")])
        );
        let ns = Namespace {
            metadata: ObjectMeta {
                name: "web".into(),
                labels: Labels::from([("env", "prod"), (NAMESPACE_NAME_LABEL, "other")]),
                ..Default::default()
            },
        };
        let labels = namespace_labels("web", Some(&ns));
        assert_eq!(labels.get("env"), Some("prod"));
        assert_eq!(labels.get(NAMESPACE_NAME_LABEL), Some("web"));
    }
}
