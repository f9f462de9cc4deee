//! The `admission.k8s.io/v1` `AdmissionReview` sent to a webhook, and the checks kube-apiserver
//! makes of the one that comes back.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::Attributes;
use crate::present;

/// `authentication.k8s.io/v1` `UserInfo` of the emulator's (only) user: a service account's
/// groups when the name is `system:serviceaccount:NS:NAME`.
pub(crate) fn user_info(username: &str) -> Value {
    let mut groups = Vec::new();
    if let Some(rest) = username.strip_prefix("system:serviceaccount:")
        && let Some((ns, _)) = rest.split_once(':')
    {
        groups.push("system:serviceaccounts".to_string());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    groups.push("system:authenticated".to_string());
    json!({"username": username, "groups": groups})
}

/// The review of one write for one webhook, `version` being the one the webhook is called at
/// (the requested one unless `matchPolicy: Equivalent` picked another).
pub(crate) fn request(
    uid: &str,
    attrs: &Attributes<'_>,
    version: &str,
    user: &Value,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let def = attrs.def;
    let gvk = |v: &str| json!({"group": def.group, "version": v, "kind": def.kind});
    let gvr = |v: &str| json!({"group": def.group, "version": v, "resource": def.plural});
    let at = |o: Option<&Value>| o.map_or(Value::Null, |o| present::object(def, version, o));
    let mut req = Map::new();
    req.insert("uid".into(), json!(uid));
    req.insert("kind".into(), gvk(version));
    req.insert("resource".into(), gvr(version));
    if let Some(sub) = attrs.sub {
        req.insert("subResource".into(), json!(sub));
    }
    req.insert("requestKind".into(), gvk(attrs.version));
    req.insert("requestResource".into(), gvr(attrs.version));
    if let Some(sub) = attrs.sub {
        req.insert("requestSubResource".into(), json!(sub));
    }
    if !attrs.name.is_empty() {
        req.insert("name".into(), json!(attrs.name));
    }
    if let Some(ns) = review_namespace(attrs) {
        req.insert("namespace".into(), json!(ns));
    }
    req.insert("operation".into(), json!(attrs.op.as_str()));
    req.insert("userInfo".into(), user.clone());
    req.insert("object".into(), at(object));
    req.insert("oldObject".into(), at(old));
    req.insert("dryRun".into(), json!(attrs.dry_run));
    req.insert("options".into(), attrs.options.clone());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": req,
    })
}

/// The request's namespace as kube-apiserver reports it: a Namespace's own name when the URL
/// names it (updates, deletes), none for other cluster-scoped objects.
fn review_namespace<'a>(attrs: &Attributes<'a>) -> Option<&'a str> {
    let def = attrs.def;
    if def.group.is_empty() && def.plural == "namespaces" {
        return (attrs.op != super::Operation::Create).then_some(attrs.name);
    }
    if def.namespaced { attrs.ns } else { None }
}

/// A webhook's verdict.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub allowed: bool,
    /// `response.status` (a `metav1.Status`), when given.
    pub status: Option<Value>,
    /// The decoded `response.patch` (a JSON patch), when given.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
}

/// Decodes and checks a webhook's answer; errors read as kube-apiserver's reasons for
/// "failed calling webhook".
pub(crate) fn verify(uid: &str, mutating: bool, body: &[u8]) -> Result<Verdict, String> {
    let review: Value = serde_json::from_slice(body).map_err(|e| {
        format!("failed to call webhook: the response is not an AdmissionReview: {e}")
    })?;
    let invalid = |why: String| format!("received invalid webhook response: {why}");
    let Some(resp) = review.get("response").filter(|r| r.is_object()) else {
        return Err(invalid("webhook response was absent".into()));
    };
    let got_uid = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got_uid != uid {
        return Err(invalid(format!(
            "expected response.uid={uid:?}, got {got_uid:?}"
        )));
    }
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if (api_version, kind) != ("admission.k8s.io/v1", "AdmissionReview") {
        let (g, v) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(invalid(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {g}/{v}, Kind={kind}"
        )));
    }
    let patch = match resp.get("patch") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| format!("failed to call webhook: response.patch: {e}"))?,
        ),
        Some(_) => {
            return Err("failed to call webhook: response.patch must be a base64 string".into());
        }
    }
    .filter(|p| !p.is_empty());
    let patch_type = resp.get("patchType").filter(|t| !t.is_null());
    if mutating {
        match (&patch, patch_type) {
            (Some(_), None) => {
                return Err(invalid(
                    "webhook returned response.patch but not response.patchType".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "webhook returned response.patchType but not response.patch".into(),
                ));
            }
            (Some(_), Some(t)) if t.as_str() != Some("JSONPatch") => {
                let t = t.as_str().unwrap_or_default();
                return Err(if t.is_empty() {
                    invalid(format!(
                        "webhook returned invalid response.patchType of {t:?}"
                    ))
                } else {
                    format!("unsupported patch type {t:?}")
                });
            }
            _ => {}
        }
    } else if patch.is_some() {
        return Err(invalid(
            "validating webhook may not return response.patch".into(),
        ));
    } else if patch_type.is_some() {
        return Err(invalid(
            "validating webhook may not return response.patchType".into(),
        ));
    }
    Ok(Verdict {
        allowed: resp.get("allowed").and_then(Value::as_bool) == Some(true),
        status: resp.get("status").filter(|s| s.is_object()).cloned(),
        patch,
        warnings: resp
            .get("warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(resp: Value) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn verifies_like_kube_apiserver() -> Result<(), String> {
        let ok = verify("u", true, &answer(json!({"uid": "u", "allowed": true})))?;
        assert!(ok.allowed && ok.patch.is_none());
        let patch = base64::engine::general_purpose::STANDARD.encode(b"[]");
        let p = verify(
            "u",
            true,
            &answer(
                json!({"uid": "u", "allowed": true, "patch": patch, "patchType": "JSONPatch",
                "warnings": ["careful"]}),
            ),
        )?;
        assert_eq!(p.patch.as_deref(), Some(&b"[]"[..]));
        assert_eq!(p.warnings, ["careful"]);
        for (mutating, body, want) in [
            (
                true,
                answer(json!({"uid": "other", "allowed": true})),
                "expected response.uid=\"u\", got \"other\"",
            ),
            (true, b"{}".to_vec(), "webhook response was absent"),
            (
                true,
                answer(json!({"uid": "u", "allowed": true, "patch": patch})),
                "but not response.patchType",
            ),
            (
                false,
                answer(json!({"uid": "u", "allowed": true, "patch": patch})),
                "validating webhook may not return response.patch",
            ),
            (true, b"not json".to_vec(), "failed to call webhook"),
        ] {
            let err = verify("u", mutating, &body).err().unwrap_or_default();
            assert!(err.contains(want), "{err}");
        }
        let v1beta1 = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true}});
        let err = verify("u", false, v1beta1.to_string().as_bytes())
            .err()
            .unwrap_or_default();
        assert!(
            err.ends_with("got admission.k8s.io/v1beta1, Kind=AdmissionReview"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn service_account_users_get_their_groups() {
        let u = user_info("system:serviceaccount:istio-system:shoal");
        assert_eq!(
            u["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:istio-system",
                "system:authenticated"
            ])
        );
        assert_eq!(
            user_info("alice")["groups"],
            json!(["system:authenticated"])
        );
    }
}
