//! Which webhooks a write goes to: the `webhooks` of the Mutating/ValidatingWebhookConfigurations
//! and kube-apiserver's matching of `rules` (operations, groups, versions, resources with `*`
//! and `res/sub` forms, scope), `matchPolicy`, `namespaceSelector` and `objectSelector`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{Attributes, Operation};
use crate::selectors::Selector;

/// One entry of a configuration's `webhooks`, as far as the emulator uses it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Webhook {
    pub name: String,
    pub client_config: ClientConfig,
    pub rules: Vec<Rule>,
    pub failure_policy: Option<String>,
    pub match_policy: Option<String>,
    pub namespace_selector: Option<Value>,
    pub object_selector: Option<Value>,
    pub side_effects: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub admission_review_versions: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ClientConfig {
    pub url: Option<String>,
    pub service: Option<ServiceRef>,
    /// Base64 of PEM certificates (a `[]byte` in the Go type).
    pub ca_bundle: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceRef {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub scope: Option<String>,
}

impl Webhook {
    /// `failurePolicy: Ignore`; `Fail` is the default.
    pub fn ignores_failures(&self) -> bool {
        self.failure_policy.as_deref() == Some("Ignore")
    }

    /// `timeoutSeconds`, 10 by default (the API allows 1 to 30).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.unwrap_or(10).clamp(1, 30))
    }
}

/// The webhooks of one configuration object, or why they cannot be read.
pub(crate) fn parse_configuration(config: &Value) -> Result<Vec<Webhook>, String> {
    let hooks = match config.get("webhooks") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("webhooks must be a list".into()),
    };
    hooks
        .iter()
        .map(|h| serde_json::from_value::<Webhook>(h.clone()).map_err(|e| e.to_string()))
        .collect()
}

fn exact_or_wildcard(items: &[String], requested: &str) -> bool {
    items.iter().any(|i| i == "*" || i == requested)
}

impl Rule {
    /// Whether this rule covers the request at `version` of the requested resource.
    fn matches(&self, attrs: &Attributes<'_>, version: &str) -> bool {
        let def = attrs.def;
        let is_namespace = def.group.is_empty() && def.plural == "namespaces";
        let scope = match self.scope.as_deref() {
            None | Some("*") => true,
            // A Namespace is cluster-scoped even though its requests name a namespace.
            Some("Namespaced") => !is_namespace && def.namespaced,
            Some("Cluster") => is_namespace || !def.namespaced,
            Some(_) => false,
        };
        let op = attrs.op.as_str();
        let operation = self.operations.iter().any(|o| o == "*" || o == op);
        let sub = attrs.sub.unwrap_or("");
        let resource = self.resources.iter().any(|r| {
            let (res, rsub) = r.split_once('/').unwrap_or((r, ""));
            (res == "*" || res == def.plural) && (rsub == "*" || rsub == sub)
        });
        scope
            && operation
            && exact_or_wildcard(&self.api_groups, &def.group)
            && exact_or_wildcard(&self.api_versions, version)
            && resource
    }
}

/// The version a webhook is called at, if its rules cover the request: the requested one, or
/// (with the default `matchPolicy: Equivalent`) another served version of the same resource.
pub(crate) fn rule_version(hook: &Webhook, attrs: &Attributes<'_>) -> Option<String> {
    let covers = |v: &str| hook.rules.iter().any(|r| r.matches(attrs, v));
    if covers(attrs.version) {
        return Some(attrs.version.to_string());
    }
    if hook.match_policy.as_deref() == Some("Exact") {
        return None;
    }
    attrs
        .def
        .versions
        .iter()
        .find(|v| v.as_str() != attrs.version && covers(v))
        .cloned()
}

/// Whether the object (or, for updates and deletes, its old state) has labels that the
/// webhook's `objectSelector` selects.
pub(crate) fn object_selected(
    hook: &Webhook,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, String> {
    let sel = Selector::structured(hook.object_selector.as_ref())
        .map_err(|e| format!("objectSelector: {e}"))?;
    if sel.is_empty() {
        return Ok(true);
    }
    Ok([object, old]
        .into_iter()
        .flatten()
        .any(|o| sel.matches_labels(o)))
}

/// The namespace whose labels a `namespaceSelector` is matched against: `None` for
/// cluster-scoped objects (never excluded), the object itself when it is a Namespace being
/// created or updated, else the request's namespace.
pub(crate) enum NamespaceSource<'a> {
    Unscoped,
    Object,
    Named(&'a str),
}

pub(crate) fn namespace_source<'a>(attrs: &Attributes<'a>) -> NamespaceSource<'a> {
    let def = attrs.def;
    let is_namespace = def.group.is_empty() && def.plural == "namespaces";
    if is_namespace {
        if attrs.sub.is_none() && matches!(attrs.op, Operation::Create | Operation::Update) {
            NamespaceSource::Object
        } else {
            NamespaceSource::Named(attrs.name)
        }
    } else if def.namespaced {
        NamespaceSource::Named(attrs.ns.unwrap_or("default"))
    } else {
        NamespaceSource::Unscoped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use serde_json::json;

    fn hook(rules: Value) -> Result<Webhook, String> {
        serde_json::from_value(json!({"name": "h", "rules": rules})).map_err(|e| e.to_string())
    }

    fn attrs<'a>(
        def: &'a crate::resources::ResourceDef,
        sub: Option<&'a str>,
        op: Operation,
    ) -> Attributes<'a> {
        Attributes {
            def,
            version: "v1",
            sub,
            ns: def.namespaced.then_some("default"),
            name: "x",
            op,
            dry_run: false,
            options: Value::Null,
        }
    }

    #[test]
    fn rules_match_like_kube_apiserver() -> Result<(), String> {
        let reg = Registry::builtin();
        let pods = reg.find("", "v1", "pods").ok_or("pods")?.clone();
        let ns = reg
            .find("", "v1", "namespaces")
            .ok_or("namespaces")?
            .clone();
        let rule = |ops: &[&str], res: &[&str], scope: &str| {
            json!([{"operations": ops, "apiGroups": [""], "apiVersions": ["v1"],
                    "resources": res, "scope": scope}])
        };
        let create = attrs(&pods, None, Operation::Create);
        let status = attrs(&pods, Some("status"), Operation::Update);
        for (rules, a, want) in [
            (rule(&["CREATE"], &["pods"], "*"), &create, true),
            (rule(&["UPDATE"], &["pods"], "*"), &create, false),
            (rule(&["*"], &["*"], "Namespaced"), &create, true),
            (rule(&["*"], &["*"], "Cluster"), &create, false),
            (rule(&["*"], &["pods"], "*"), &status, false),
            (rule(&["*"], &["pods/status"], "*"), &status, true),
            (rule(&["*"], &["*/*"], "*"), &status, true),
            // kube-apiserver matches `pods/*` on the main resource too.
            (rule(&["*"], &["pods/*"], "*"), &create, true),
            (rule(&["*"], &["*"], "*"), &status, false),
        ] {
            assert_eq!(
                rule_version(&hook(rules.clone())?, a).is_some(),
                want,
                "{rules}"
            );
        }
        let ns_create = attrs(&ns, None, Operation::Create);
        assert!(
            rule_version(&hook(rule(&["*"], &["namespaces"], "Cluster"))?, &ns_create).is_some()
        );
        assert!(rule_version(&hook(rule(&["*"], &["*"], "Namespaced"))?, &ns_create).is_none());
        Ok(())
    }

    #[test]
    fn equivalent_match_policy_picks_another_served_version() -> Result<(), String> {
        let def = crate::resources::crd_def(&json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true}, {"name": "v1beta1", "served": true}]}
        }))?;
        let rules = json!([{"operations": ["CREATE"], "apiGroups": ["example.com"],
            "apiVersions": ["v1beta1"], "resources": ["widgets"]}]);
        let mut h = hook(rules)?;
        let a = attrs(&def, None, Operation::Create);
        assert_eq!(rule_version(&h, &a).as_deref(), Some("v1beta1"));
        h.match_policy = Some("Exact".into());
        assert_eq!(rule_version(&h, &a), None);
        Ok(())
    }

    #[test]
    fn object_selector_sees_old_and_new() -> Result<(), String> {
        let h: Webhook = serde_json::from_value(json!({"name": "h",
            "objectSelector": {"matchLabels": {"inject": "yes"}}}))
        .map_err(|e| e.to_string())?;
        let with = json!({"metadata": {"labels": {"inject": "yes"}}});
        let without = json!({"metadata": {}});
        assert!(object_selected(&h, Some(&with), None)?);
        assert!(!object_selected(&h, Some(&without), None)?);
        assert!(object_selected(&h, Some(&without), Some(&with))?);
        assert!(object_selected(&Webhook::default(), None, None)?);
        Ok(())
    }
}
