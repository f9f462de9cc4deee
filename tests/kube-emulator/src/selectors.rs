//! Label and field selectors, as in `?labelSelector=app=web,tier!=db&fieldSelector=...`.

use serde_json::Value;

use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Clone, Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Eq(v), Some(x)) => x == v,
            (Op::Eq(_), None) => false,
            (Op::NotEq(v), x) => x != Some(v.as_str()),
            (Op::In(vs), Some(x)) => vs.iter().any(|v| v == x),
            (Op::In(_), None) => false,
            (Op::NotIn(vs), x) => x.is_none_or(|x| !vs.iter().any(|v| v == x)),
            (Op::Exists, x) => x.is_some(),
            (Op::NotExists, x) => x.is_none(),
        }
    }
}

/// A parsed selector: every requirement must hold. Empty matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Selector {
    reqs: Vec<Requirement>,
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_set(rest: &str, err: &dyn Fn() -> ApiError) -> Result<Vec<String>, ApiError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(err)?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(|v| !valid_value(v)) {
        return Err(err());
    }
    Ok(values)
}

impl Selector {
    /// Parses a label selector (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`).
    pub fn labels(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let err = || {
                ApiError::bad_request(format!(
                    "unable to parse requirement: found '{part}', expected a valid label selector"
                ))
            };
            let req = if let Some(k) = part.strip_prefix('!') {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::NotExists,
                }
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::NotEq(v.trim().to_string()),
                }
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::Eq(v.trim().to_string()),
                }
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::NotIn(parse_set(rest, &err)?),
                }
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::In(parse_set(rest, &err)?),
                }
            } else {
                Requirement {
                    key: part.to_string(),
                    op: Op::Exists,
                }
            };
            let value_ok = match &req.op {
                Op::Eq(v) | Op::NotEq(v) => valid_value(v),
                _ => true,
            };
            if !valid_key(&req.key) || !value_ok {
                return Err(err());
            }
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    /// Parses a field selector (`path=value`, `path==value`, `path!=value`).
    pub fn fields(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, op) = if let Some((k, v)) = part.split_once("!=") {
                (k, Op::NotEq(v.to_string()))
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, Op::Eq(v.to_string()))
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            reqs.push(Requirement {
                key: key.trim().to_string(),
                op,
            });
        }
        Ok(Selector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// A structured `metav1.LabelSelector` (`matchLabels` and `matchExpressions` with `In`,
    /// `NotIn`, `Exists`, `DoesNotExist`), as webhooks' `namespaceSelector`/`objectSelector`
    /// have it. Absent, `null` or `{}` selects everything.
    pub fn structured(sel: Option<&Value>) -> Result<Self, String> {
        let mut reqs = Vec::new();
        let Some(sel) = sel.filter(|s| !s.is_null()) else {
            return Ok(Selector { reqs });
        };
        if !sel.is_object() {
            return Err("a label selector must be an object".into());
        }
        if let Some(labels) = sel.get("matchLabels").filter(|l| !l.is_null()) {
            let labels = labels.as_object().ok_or("matchLabels must be a map")?;
            for (k, v) in labels {
                let v = v.as_str().ok_or("matchLabels values must be strings")?;
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq(v.to_string()),
                });
            }
        }
        let exprs = match sel.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err("matchExpressions must be a list".into()),
        };
        for e in exprs {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .ok_or("matchExpressions[].key: Required value")?;
            let values: Vec<String> = match e.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or("matchExpressions[].values must be strings")?,
                Some(_) => return Err("matchExpressions[].values must be a list".into()),
            };
            let op = match (e.get("operator").and_then(Value::as_str), values.is_empty()) {
                (Some("In"), false) => Op::In(values),
                (Some("NotIn"), false) => Op::NotIn(values),
                (Some("Exists"), true) => Op::Exists,
                (Some("DoesNotExist"), true) => Op::NotExists,
                (Some(op @ ("In" | "NotIn")), true) => {
                    return Err(format!("values: must be specified when `operator` is {op}"));
                }
                (Some(op @ ("Exists" | "DoesNotExist")), false) => {
                    return Err(format!(
                        "values: may not be specified when `operator` is {op}"
                    ));
                }
                (op, _) => return Err(format!("{op:?} is not a valid label selector operator")),
            };
            reqs.push(Requirement {
                key: key.to_string(),
                op,
            });
        }
        Ok(Selector { reqs })
    }

    /// Whether an object's labels satisfy this (label) selector.
    pub fn matches_labels(&self, obj: &Value) -> bool {
        self.matches_label_map(obj.pointer("/metadata/labels"))
    }

    /// Whether a `labels` map (or none) satisfies this (label) selector.
    pub fn matches_label_map(&self, labels: Option<&Value>) -> bool {
        self.reqs
            .iter()
            .all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str)))
    }

    /// Whether an object satisfies this (field) selector. Any dotted path is accepted (the real
    /// server knows only a few per kind; `metadata.name` and `metadata.namespace` everywhere).
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| {
            let mut cur = Some(obj);
            for seg in r.key.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let s = match cur {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(Value::Number(n)) => Some(n.to_string()),
                // A missing namespace reads as "" for cluster-scoped objects.
                None if r.key == "metadata.namespace" => Some(String::new()),
                _ => None,
            };
            match &r.op {
                Op::Eq(v) => s.as_deref().unwrap_or("") == v,
                Op::NotEq(v) => s.as_deref().unwrap_or("") != v,
                _ => true,
            }
        })
    }
}

/// Label and field selector of one list or watch.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub labels: Selector,
    pub fields: Selector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_labels(obj) && self.fields.matches_fields(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_operators() -> Result<(), ApiError> {
        let p = pod(json!({"app": "web", "tier": "front"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing!=x", true),
            ("app=web,tier in (front, back)", true),
            ("", true),
        ] {
            assert_eq!(Selector::labels(sel)?.matches_labels(&p), want, "{sel}");
        }
        assert!(Selector::labels("app in web").is_err());
        assert!(Selector::labels("a b=c").is_err());
        Ok(())
    }

    #[test]
    fn structured_selectors() -> Result<(), String> {
        let labels = json!({"env": "prod", "team": "mesh"});
        for (sel, want) in [
            (json!({}), true),
            (Value::Null, true),
            (json!({"matchLabels": {"env": "prod"}}), true),
            (json!({"matchLabels": {"env": "dev"}}), false),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev", "prod"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["mesh"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "istio-injection", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchLabels": {"env": "prod"}, "matchExpressions": [{"key": "team", "operator": "Exists"}]}),
                true,
            ),
        ] {
            assert_eq!(
                Selector::structured(Some(&sel))?.matches_label_map(Some(&labels)),
                want,
                "{sel}"
            );
        }
        assert!(
            Selector::structured(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
            ))
            .is_err()
        );
        assert!(
            Selector::structured(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})
            ))
            .is_err()
        );
        assert!(Selector::structured(Some(&json!([1]))).is_err());
        Ok(())
    }

    #[test]
    fn field_selectors() -> Result<(), ApiError> {
        let p = pod(json!({}));
        assert!(Selector::fields("metadata.name=p")?.matches_fields(&p));
        assert!(!Selector::fields("metadata.name!=p")?.matches_fields(&p));
        assert!(Selector::fields("metadata.namespace==ns,metadata.name=p")?.matches_fields(&p));
        assert!(Selector::fields("nonsense").is_err());
        Ok(())
    }
}
