//! Istio analysis messages as `status.validationMessages` (Istio's `IstioStatus`): each
//! finding of the cross-object analysis that is one of Istio's message types, on the Istio
//! object it is about, as `{type: {code, name}, level, documentationUrl}`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shoal_config::{ConfigSnapshot, Kind, ObjectKey};

/// Kinds with an Istio status.
fn istio_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::VirtualService
            | Kind::DestinationRule
            | Kind::ServiceEntry
            | Kind::WorkloadEntry
            | Kind::Sidecar
            | Kind::Gateway
            | Kind::PeerAuthentication
            | Kind::AuthorizationPolicy
            | Kind::RequestAuthentication
            | Kind::ProxyConfig
    )
}

/// The validation messages of every Istio object read from the cluster that has some.
pub(super) fn messages(cfg: &ConfigSnapshot) -> BTreeMap<ObjectKey, Value> {
    let mut out: BTreeMap<ObjectKey, Vec<Value>> = BTreeMap::new();
    for issue in shoal_config::analyze::analyze(cfg) {
        let (Some(code), Some(key)) = (issue.code, issue.object) else {
            continue;
        };
        let from_cluster = cfg
            .get(&key)
            .is_some_and(|e| e.origin.source.starts_with("kubernetes:"));
        if !istio_kind(key.kind) || !from_cluster {
            continue;
        }
        let message = json!({
            "documentationUrl": code.documentation_url(),
            "level": code.level,
            "type": {"code": code.code, "name": code.name},
        });
        let list = out.entry(key).or_default();
        if !list.contains(&message) {
            list.push(message);
        }
    }
    out.into_iter().map(|(k, v)| (k, Value::Array(v))).collect()
}

/// The object's status with `messages` as its validation messages (none: the field
/// removed), observed at `generation` (Istio writes it as a string).
pub(super) fn merge(messages: &Value, current: &Value, generation: i64) -> Value {
    let mut out = current.as_object().cloned().unwrap_or_default();
    match messages.as_array() {
        Some(list) if !list.is_empty() => {
            out.insert("validationMessages".into(), messages.clone());
            out.insert("observedGeneration".into(), generation.to_string().into());
        }
        _ => {
            out.remove("validationMessages");
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_config::ConfigStore;
    use shoal_config::parse::parse_yaml;

    #[test]
    fn findings_with_an_istio_code_become_messages_of_cluster_objects() {
        let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: a}\nspec:\n  hosts: [r.example.com]\n  http: [{route: [{destination: {host: nowhere.example.com, subset: v9}}]}]\n";
        let mut store = ConfigStore::new();
        store.apply("file.yaml", parse_yaml("file.yaml", vs));
        assert!(
            messages(&store.snapshot()).is_empty(),
            "file objects have no status"
        );
        let mut store = ConfigStore::new();
        let source = "kubernetes:VirtualService.networking.istio.io/a/r";
        store.apply(source, parse_yaml(source, vs));
        let all = messages(&store.snapshot());
        let list = all
            .get(&ObjectKey::new(Kind::VirtualService, "a", "r"))
            .and_then(Value::as_array)
            .expect("messages");
        // The missing host and the missing subset are one message type: written once.
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["type"]["code"], "IST0101");
        assert_eq!(list[0]["level"], "ERROR");
        assert_eq!(
            list[0]["documentationUrl"],
            "https://istio.io/latest/docs/reference/config/analysis/ist0101/"
        );
    }

    #[test]
    fn merging_sets_and_clears_only_the_messages() {
        let current = json!({"conditions": [{"type": "Reconciled"}]});
        let msgs = json!([{"type": {"code": "IST0101"}}]);
        let set = merge(&msgs, &current, 4);
        assert_eq!(set["observedGeneration"], "4");
        assert_eq!(set["conditions"], current["conditions"]);
        let cleared = merge(&json!([]), &set, 5);
        assert!(cleared.get("validationMessages").is_none());
        assert_eq!(cleared["conditions"], current["conditions"]);
    }
}
