//! Istio's MeshConfig: the mesh-wide settings istiod reads from the `mesh` key of the
//! `istio` ConfigMap. [`parse`] takes that YAML, or the whole ConfigMap, so an Istio user
//! can point shoal at the file they already have.
//!
//! The fields shoal acts on are typed here; every other field Istio defines is read and
//! reported by name as not acted on (a warning), never silently dropped. `defaultConfig`
//! (the mesh-wide ProxyConfig) is read by each proxy's agent when the workload starts, so
//! nothing of it reaches xDS: reported as such.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::istio::{LocalityLbSetting, OutboundMode};
use crate::validate::Validator;
use crate::{Issue, host};

/// The MeshConfig fields shoal acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// The mesh's SPIFFE trust domain.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Other trust domains whose identities count as this one's in authorization
    /// (AuthorizationPolicy principals; Istio's trust domain bundle).
    #[serde(default)]
    pub trust_domain_aliases: Vec<String>,
    /// The namespace whose policies apply mesh-wide.
    #[serde(default)]
    pub root_namespace: Option<String>,
    /// Istio's `enableAutoMtls`.
    #[serde(default)]
    pub enable_auto_mtls: Option<bool>,
    /// Upstream connect timeout (a duration).
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// The mesh-wide locality load balancing a DestinationRule's own setting overrides.
    #[serde(default)]
    pub locality_lb_setting: Option<LocalityLbSetting>,
    /// Where proxies write access logs (empty: none).
    #[serde(default)]
    pub access_log_file: Option<String>,
    #[serde(default)]
    pub access_log_encoding: Option<AccessLogEncoding>,
    /// Envoy format operators (for JSON encoding, a JSON object of them).
    #[serde(default)]
    pub access_log_format: Option<String>,
    /// Namespaces in the mesh: those whose labels one of these selects (all when empty;
    /// see [`crate::discovery`]).
    #[serde(default)]
    pub discovery_selectors: Vec<crate::k8s::LabelSelector>,
    /// The mesh-wide ProxyConfig (read by the proxies' agents, not by shoal).
    #[serde(default)]
    pub default_config: Option<serde_json::Value>,
    /// Every other field, reported by name.
    #[serde(flatten)]
    pub others: BTreeMap<String, serde_json::Value>,
}

/// `accessLogEncoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccessLogEncoding {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OutboundTrafficPolicy {
    #[serde(default)]
    pub mode: Option<OutboundMode>,
}

impl MeshConfig {
    /// The connect timeout, when set and valid.
    pub fn connect_timeout(&self) -> Option<std::time::Duration> {
        self.connect_timeout
            .as_deref()
            .and_then(|d| crate::duration::parse(d).ok())
    }

    /// The outbound traffic policy's mode, when set.
    pub fn outbound_mode(&self) -> Option<OutboundMode> {
        self.outbound_traffic_policy.as_ref().and_then(|p| p.mode)
    }
}

/// Why a MeshConfig could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum MeshConfigError {
    #[error("not YAML: {0}")]
    Yaml(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("a ConfigMap without a `data.mesh` string")]
    NoMesh,
}

/// When `doc` is a ConfigMap (Istio's `istio` ConfigMap as a whole): its `data.KEY` text, or
/// `Some(None)` when it has none. `None` when `doc` is not a ConfigMap.
pub(crate) fn config_map_text<'a>(
    doc: &'a serde_json::Value,
    key: &str,
) -> Option<Option<&'a str>> {
    (doc.get("kind").and_then(serde_json::Value::as_str) == Some("ConfigMap")).then(|| {
        doc.get("data")
            .and_then(|d| d.get(key))
            .and_then(serde_json::Value::as_str)
    })
}

/// Reads a MeshConfig (or an `istio` ConfigMap holding one under `data.mesh`) and checks
/// it. `Err` when it cannot be read or has errors (the first is returned, every finding is
/// in the list); otherwise the warnings.
pub fn parse(text: &str) -> Result<(MeshConfig, Vec<Issue>), MeshConfigError> {
    let doc: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| MeshConfigError::Yaml(e.to_string()))?;
    let doc = match config_map_text(&doc, "mesh") {
        Some(mesh) => serde_saphyr::from_str(mesh.ok_or(MeshConfigError::NoMesh)?)
            .map_err(|e| MeshConfigError::Yaml(e.to_string()))?,
        None => doc,
    };
    let doc = if doc.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        doc
    };
    let mesh: MeshConfig =
        serde_path_to_error::deserialize(doc).map_err(|e| MeshConfigError::Invalid {
            field: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    let issues = check(&mesh);
    if let Some(e) = issues.iter().find(|i| i.is_error()) {
        return Err(MeshConfigError::Invalid {
            field: e.field.clone(),
            message: e.message.clone(),
        });
    }
    Ok((mesh, issues))
}

/// Every finding about a MeshConfig: errors and warnings.
pub fn check(mesh: &MeshConfig) -> Vec<Issue> {
    let mut v = Validator::default();
    if let Some(td) = &mesh.trust_domain
        && !host::is_dns1123_subdomain(td)
    {
        v.error("trustDomain", format!("{td:?} is not a valid trust domain"));
    }
    for (i, td) in mesh.trust_domain_aliases.iter().enumerate() {
        if !host::is_dns1123_subdomain(td) {
            v.error(
                format!("trustDomainAliases[{i}]"),
                format!("{td:?} is not a valid trust domain"),
            );
        }
    }
    if let Some(ns) = &mesh.root_namespace
        && !host::is_dns_label(ns)
    {
        v.error("rootNamespace", format!("{ns:?} is not a namespace name"));
    }
    if let Some(d) = &mesh.connect_timeout {
        v.duration("connectTimeout", d, std::time::Duration::from_millis(1));
    }
    if let Some(l) = &mesh.locality_lb_setting {
        crate::validate::locality_lb_setting(&mut v, "localityLbSetting", l);
    }
    for (i, s) in mesh.discovery_selectors.iter().enumerate() {
        crate::validate::label_selector(&mut v, &format!("discoverySelectors[{i}]"), s);
    }
    if mesh.access_log_encoding == Some(AccessLogEncoding::Json)
        && let Some(f) = mesh.access_log_format.as_deref().filter(|f| !f.is_empty())
        && serde_json::from_str::<BTreeMap<String, String>>(f).is_err()
    {
        v.error(
            "accessLogFormat",
            "with accessLogEncoding JSON, the format must be a JSON object of string fields",
        );
    }
    if mesh.default_config.is_some() {
        v.warning(
            "defaultConfig",
            "the mesh-wide ProxyConfig is rendered into injected pods (PROXY_CONFIG) and \
             read by their agents at start; nothing of it reaches xDS",
        );
    }
    for key in mesh.others.keys() {
        v.warning(key.clone(), "not acted on by shoal; ignored");
    }
    v.issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_shoal_acts_on() {
        let (m, issues) = parse(
            "trustDomain: example.org\nrootNamespace: mesh-root\nenableAutoMtls: false\n\
             connectTimeout: 2s\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}\n\
             localityLbSetting:\n  failover: [{from: us-east, to: us-west}]\n\
             trustDomainAliases: [old.example, cluster.local]\n",
        )
        .unwrap();
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(m.trust_domain.as_deref(), Some("example.org"));
        assert_eq!(m.trust_domain_aliases, ["old.example", "cluster.local"]);
        assert_eq!(m.root_namespace.as_deref(), Some("mesh-root"));
        assert_eq!(m.enable_auto_mtls, Some(false));
        assert_eq!(m.connect_timeout(), Some(std::time::Duration::from_secs(2)));
        assert_eq!(m.outbound_mode(), Some(OutboundMode::RegistryOnly));
        assert_eq!(m.locality_lb_setting.map(|l| l.failover.len()), Some(1));
    }

    #[test]
    fn discovery_selectors_are_read_and_checked() {
        let (m, issues) = parse(
            "discoverySelectors:\n- matchLabels: {env: prod}\n\
             - matchExpressions: [{key: team, operator: In, values: [a, b]}]\n",
        )
        .unwrap();
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(m.discovery_selectors.len(), 2);
        let err =
            parse("discoverySelectors: [{matchExpressions: [{key: team, operator: Near}]}]\n")
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("discoverySelectors[0].matchExpressions[0]"),
            "{err}"
        );
    }

    #[test]
    fn a_config_map_is_read_through_its_mesh_key() {
        let (m, _) = parse(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n\
             data:\n  mesh: |-\n    trustDomain: corp.example\n    accessLogFile: /dev/stdout\n",
        )
        .unwrap();
        assert_eq!(m.trust_domain.as_deref(), Some("corp.example"));
        assert!(matches!(
            parse("kind: ConfigMap\ndata: {}\n"),
            Err(MeshConfigError::NoMesh)
        ));
    }

    #[test]
    fn what_shoal_does_not_act_on_is_named() {
        let (_, issues) =
            parse("enableTracing: true\ndefaultConfig: {holdApplicationUntilProxyStarts: true}\n")
                .unwrap();
        let found: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found.iter().any(|f| f.contains("enableTracing")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|f| f.contains("defaultConfig")),
            "{found:#?}"
        );
        assert!(issues.iter().all(|i| !i.is_error()));
    }

    #[test]
    fn bad_values_are_errors_naming_the_field() {
        for (yaml, field) in [
            ("trustDomain: 'not a domain'", "trustDomain"),
            (
                "trustDomainAliases: [ok.example, 'not a domain']",
                "trustDomainAliases[1]",
            ),
            ("rootNamespace: Bad_NS", "rootNamespace"),
            ("connectTimeout: soon", "connectTimeout"),
            (
                "outboundTrafficPolicy: {mode: SOMETIMES}",
                "outboundTrafficPolicy.mode",
            ),
            (
                "localityLbSetting: {distribute: [{from: a, to: {b: 50}}]}",
                "localityLbSetting.distribute[0].to",
            ),
            ("enableAutoMtls: maybe", "enableAutoMtls"),
            (
                "accessLogEncoding: JSON\naccessLogFormat: '%START_TIME%'",
                "accessLogFormat",
            ),
            ("accessLogEncoding: XML", "accessLogEncoding"),
        ] {
            match parse(yaml) {
                Err(MeshConfigError::Invalid { field: f, .. }) => {
                    assert_eq!(f, field, "{yaml}")
                }
                other => panic!("{yaml}: {other:?}"),
            }
        }
        assert!(matches!(parse("{{"), Err(MeshConfigError::Yaml(_))));
        assert!(parse("").is_ok());
    }
}
