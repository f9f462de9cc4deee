//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! (built-in kinds) and server-side apply (approximated as a strategic merge of the applied
//! fields).

use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Applies a parsed patch body to `doc`.
pub(crate) fn apply_patch(typ: PatchType, doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    match typ {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "couldn't get version/kind; json parse error: a merge patch must be a JSON object",
                ));
            }
            json_patch::merge(doc, patch);
            Ok(())
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(doc, &ops.0)
                .map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}")))
        }
        PatchType::Strategic | PatchType::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            *doc = strategic_merge(doc, patch, typ == PatchType::Apply);
            Ok(())
        }
    }
}

/// The merge key of a list field, as the built-in types declare them (`patchMergeKey`), by
/// field name and the keys the elements have. `None`: the list is replaced as a whole.
fn merge_key(field: &str, elems: &[&Value]) -> Option<&'static str> {
    let has = |k: &str| elems.iter().all(|e| e.get(k).is_some());
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "secrets" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "ports" if has("containerPort") => Some("containerPort"),
        "ports" if has("port") => Some("port"),
        "conditions" => Some("type"),
        "hostAliases" => Some("ip"),
        "ownerReferences" => Some("uid"),
        "addresses" if has("type") && has("address") => Some("type"),
        _ => None,
    }
}

/// Lists of scalars merged as sets rather than replaced.
fn merges_as_set(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge of `patch` into `doc`: maps merge recursively (null deletes), lists with a
/// merge key merge element-wise, other lists are replaced. Directives: `$patch: replace` /
/// `$patch: delete` on maps and list elements, `$deleteFromPrimitiveList/<field>`,
/// `$retainKeys`; `$setElementOrder/<field>` is honoured for ordering only where simple and
/// otherwise ignored. `apply` keeps `null`s from deleting (server-side apply sets fields).
pub(crate) fn strategic_merge(doc: &Value, patch: &Value, apply: bool) -> Value {
    let (Some(d), Some(p)) = (doc.as_object(), patch.as_object()) else {
        return strip_directives(patch);
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut p = p.clone();
            p.remove("$patch");
            return strip_directives(&Value::Object(p));
        }
        Some("delete") => return Value::Object(Map::new()),
        _ => {}
    }
    let mut out = d.clone();
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in p {
        if k.starts_with('$') {
            if let Some(target) = k.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(list)), Some(del)) = (out.get_mut(target), pv.as_array())
            {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if pv.is_null() {
            if !apply {
                out.remove(k);
            }
            continue;
        }
        let merged = match (out.get(k), pv) {
            (Some(dv @ Value::Object(_)), Value::Object(_)) => strategic_merge(dv, pv, apply),
            (Some(Value::Array(dl)), Value::Array(pl)) => {
                let order = p
                    .get(&format!("$setElementOrder/{k}"))
                    .and_then(Value::as_array);
                merge_list(k, dl, pl, order, apply)
            }
            _ => strip_directives(pv),
        };
        out.insert(k.clone(), merged);
    }
    Value::Object(out)
}

fn merge_list(
    field: &str,
    doc: &[Value],
    patch: &[Value],
    order: Option<&Vec<Value>>,
    apply: bool,
) -> Value {
    if merges_as_set(field) && patch.iter().all(|v| !v.is_object()) {
        let mut out = doc.to_vec();
        for v in patch {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        return Value::Array(out);
    }
    let elems: Vec<&Value> = doc
        .iter()
        .chain(patch.iter())
        .filter(|v| v.is_object())
        .collect();
    let Some(key) = (if elems.len() == doc.len() + patch.len() && !elems.is_empty() {
        merge_key(field, &elems)
    } else {
        None
    }) else {
        if patch
            .iter()
            .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"))
        {
            return Value::Array(
                patch
                    .iter()
                    .filter(|v| v.get("$patch").is_none())
                    .map(strip_directives)
                    .collect(),
            );
        }
        return Value::Array(patch.iter().map(strip_directives).collect());
    };
    let mut out: Vec<Value> = doc.to_vec();
    for pv in patch {
        let id = pv.get(key);
        let pos = out.iter().position(|d| d.get(key) == id);
        let directive = pv.get("$patch").and_then(Value::as_str);
        match (pos, directive) {
            (Some(i), Some("delete")) => {
                out.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => out[i] = strategic_merge(&out[i], pv, apply),
            (None, _) => out.push(strip_directives(pv)),
        }
    }
    if let Some(order) = order {
        let rank = |v: &Value| {
            order
                .iter()
                .position(|o| o.get(key) == v.get(key))
                .unwrap_or(usize::MAX)
        };
        out.sort_by_key(rank);
    }
    Value::Array(out)
}

/// A patch value as plain data: directive keys removed.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() -> Result<(), ApiError> {
        let mut doc = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
        apply_patch(
            PatchType::Strategic,
            &mut doc,
            &json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}}),
        )?;
        assert_eq!(
            doc,
            json!({"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}})
        );
        apply_patch(
            PatchType::Strategic,
            &mut doc,
            &json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}],
                "containers": [{"name": "a", "$patch": "delete"}]}}),
        )?;
        assert_eq!(
            doc,
            json!({"spec": {"containers": [{"name": "c", "image": "c:1"}, {"name": "b", "image": "b:2"}]}})
        );
        Ok(())
    }

    #[test]
    fn strategic_replaces_plain_lists_and_deletes_nulls() -> Result<(), ApiError> {
        let mut doc =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"hosts": ["x", "y"]}});
        apply_patch(
            PatchType::Strategic,
            &mut doc,
            &json!({"metadata": {"labels": {"a": null}}, "spec": {"hosts": ["z"]}}),
        )?;
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"hosts": ["z"]}})
        );
        Ok(())
    }

    #[test]
    fn service_ports_merge_by_port() -> Result<(), ApiError> {
        let mut doc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}});
        apply_patch(
            PatchType::Strategic,
            &mut doc,
            &json!({"spec": {"ports": [{"port": 80, "name": "web"}]}}),
        )?;
        assert_eq!(
            doc,
            json!({"spec": {"ports": [{"port": 80, "name": "web"}, {"port": 443}]}})
        );
        Ok(())
    }

    #[test]
    fn json_patch_errors_are_statuses() {
        let mut doc = json!({"a": 1});
        let err = apply_patch(
            PatchType::Json,
            &mut doc,
            &json!([{"op": "remove", "path": "/nope"}]),
        );
        assert!(matches!(err, Err(e) if e.code == 422));
        let err = apply_patch(PatchType::Json, &mut doc, &json!({"op": 1}));
        assert!(matches!(err, Err(e) if e.code == 400));
        assert!(apply_patch(PatchType::Merge, &mut doc, &json!([1])).is_err());
    }
}
