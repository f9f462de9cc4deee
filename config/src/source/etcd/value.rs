//! One key's value in, the document the store gets out: decoded (YAML or JSON, one object),
//! checked against its key, and parsed and validated exactly as a file's documents and the
//! API server's objects are ([`crate::parse::parse_value`]). Pure: no IO, no panic on any
//! bytes.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::key::{Prefix, source_id};
use crate::issue::{Issue, Origin};
use crate::meta::ObjectKey;
use crate::parse::{Outcome, ParsedDoc, decode_yaml, kind_for, parse_value, split_documents};

/// The largest value read (etcd's own default request limit is 1.5 MiB); a larger one is
/// rejected without being decoded.
pub const MAX_VALUE_BYTES: usize = 4 << 20;

/// How much of a string from the value a report quotes.
const QUOTE: usize = 120;

/// The document `key` defines with `value`. The issues of a rejected value name the key
/// (the origin is `etcd:KEY`) and, where one is at fault, the field; a rejected value keeps
/// the object its key names, so the store keeps that object's last good version.
pub fn parse_entry(prefix: &Prefix, key: &[u8], value: &[u8]) -> ParsedDoc {
    let origin = Origin {
        source: Arc::from(source_id(key)),
        doc: 1,
        line: 0,
        item: None,
    };
    let object = match prefix.parse(key) {
        Ok(object) => object,
        Err(e) => {
            let message = format!("key ignored: {e}");
            let issue = if e.foreign() {
                Issue::warning("", message)
            } else {
                Issue::error("", message)
            };
            return reject(origin, None, issue);
        }
    };
    let mut decoded = match decode(value) {
        Ok(v) => v,
        Err(issue) => return reject(origin, Some(object), *issue),
    };
    if let Err(issue) = agree(&mut decoded, &object) {
        return reject(origin, Some(object), *issue);
    }
    let mut docs = parse_value(origin.clone(), decoded);
    let doc = match (docs.pop(), docs.is_empty()) {
        (Some(doc), true) => doc,
        // `agree` refused Lists: one value is one document.
        _ => {
            return reject(origin, Some(object), Issue::error("", "one object per key"));
        }
    };
    match doc.outcome {
        // A rejected object stands for its key's object whatever it names, so that the
        // store keeps the last good version of what the key defined.
        Outcome::Rejected { issues, .. } => ParsedDoc {
            origin: doc.origin,
            outcome: Outcome::Rejected {
                issues: issues
                    .into_iter()
                    .map(|mut i| {
                        i.object = Some(object.clone());
                        i
                    })
                    .collect(),
                key: Some(object),
            },
        },
        outcome => ParsedDoc {
            origin: doc.origin,
            outcome,
        },
    }
}

fn reject(origin: Origin, key: Option<ObjectKey>, issue: Issue) -> ParsedDoc {
    let issue = issue.at(Some(&origin), key.as_ref());
    ParsedDoc {
        origin,
        outcome: Outcome::Rejected {
            key,
            issues: vec![issue],
        },
    }
}

/// The value as a JSON value: UTF-8, one YAML document or a JSON object, bounded in size.
fn decode(value: &[u8]) -> Result<Value, Box<Issue>> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(refuse(
            "",
            format!(
                "the value is {} bytes, more than the {MAX_VALUE_BYTES} shoal reads",
                value.len()
            ),
        ));
    }
    let text = std::str::from_utf8(value).map_err(|e| {
        refuse(
            "",
            format!("the value is not UTF-8 text (YAML or JSON): {e}"),
        )
    })?;
    let body = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if body.is_empty() {
        return Err(refuse("", "the value is empty"));
    }
    if body.starts_with('{') {
        return serde_json::from_str(body).map_err(|e| refuse("", format!("malformed JSON: {e}")));
    }
    match split_documents(text).as_slice() {
        [] => Err(refuse("", "the value holds no YAML document")),
        [(_, document)] => decode_yaml(document).map_err(|m| refuse("", m)),
        more => Err(refuse(
            "",
            format!(
                "one object per key: the value holds {} YAML documents",
                more.len()
            ),
        )),
    }
}

/// Checks that the value is the object its key names: the same kind, and the same name and
/// namespace where it gives them (left out, the key's are filled in).
fn agree(value: &mut Value, key: &ObjectKey) -> Result<(), Box<Issue>> {
    let Value::Object(map) = value else {
        return Err(refuse("", "the value must be one object (a mapping)"));
    };
    let text = |map: &Map<String, Value>, field: &str| -> Result<Option<String>, Box<Issue>> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(refuse(field, "must be a string")),
        }
    };
    let api_version = text(map, "apiVersion")?;
    let kind = text(map, "kind")?;
    let (api_version, kind) = match (api_version, kind) {
        (_, Some(kind)) if kind == "List" => {
            return Err(refuse("kind", "one object per key: a List is not accepted"));
        }
        (Some(a), Some(k)) => (a, k),
        (None, _) => return Err(refuse("apiVersion", "required")),
        (_, None) => return Err(refuse("kind", "required")),
    };
    match kind_for(&api_version, &kind) {
        Some(k) if k == key.kind => {}
        Some(k) => {
            return Err(refuse(
                "kind",
                format!(
                    "the value is a {k} but its key is under {}: the key names the object",
                    key.kind
                ),
            ));
        }
        None => {
            return Err(refuse(
                "apiVersion",
                format!(
                    "{} {} is not a kind and version shoal reads; the key is under {}",
                    quote(&api_version),
                    quote(&kind),
                    key.kind
                ),
            ));
        }
    }
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    let Value::Object(metadata) = metadata else {
        return Err(refuse("metadata", "must be a mapping"));
    };
    let mut fill = |field: &str, want: &str| -> Result<(), Box<Issue>> {
        let path = format!("metadata.{field}");
        match text(metadata, field).map_err(|_| refuse(&path, "must be a string"))? {
            None => {
                metadata.insert(field.to_string(), Value::String(want.to_string()));
                Ok(())
            }
            Some(given) if given == want => Ok(()),
            Some(given) => Err(refuse(
                path,
                format!(
                    "{} disagrees with the key, which says {}: the key names the object",
                    quote(&given),
                    quote(want)
                ),
            )),
        }
    };
    fill("name", &key.name)?;
    if key.kind.namespaced() {
        fill("namespace", &key.namespace)?;
    }
    Ok(())
}

/// An error issue, boxed (it is large) for the checks' results.
fn refuse(field: impl Into<String>, message: impl Into<String>) -> Box<Issue> {
    Box::new(Issue::error(field, message))
}

/// A string from the value, quoted and cut short.
fn quote(s: &str) -> String {
    if s.chars().count() <= QUOTE {
        return format!("{s:?}");
    }
    let cut: String = s.chars().take(QUOTE).collect();
    format!("{cut:?}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::Severity;
    use crate::meta::Kind;
    use crate::object::Object;

    const VS: &str = "/shoal/config/VirtualService/default/reviews";

    fn parse(key: &str, value: &str) -> ParsedDoc {
        parse_entry(
            &Prefix::new("/shoal/config"),
            key.as_bytes(),
            value.as_bytes(),
        )
    }

    fn rejected(doc: &ParsedDoc) -> (Option<ObjectKey>, Vec<Issue>) {
        match &doc.outcome {
            Outcome::Rejected { key, issues } => (key.clone(), issues.clone()),
            other => panic!("rejected expected: {other:?}"),
        }
    }

    fn reviews() -> ObjectKey {
        ObjectKey::new(Kind::VirtualService, "default", "reviews")
    }

    const VS_YAML: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n";

    #[test]
    fn yaml_and_json_values_are_parsed_as_files_are() {
        let doc = parse(VS, VS_YAML);
        let Outcome::Accepted { object, .. } = &doc.outcome else {
            panic!("{doc:?}")
        };
        assert_eq!(object.key(), reviews());
        assert_eq!(doc.origin.to_string(), format!("etcd:{VS}"));

        let json = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"cart","namespace":"shop"},"spec":{"ports":[{"name":"http","port":80}]}}"#;
        let doc = parse("/shoal/config/Service/shop/cart", json);
        assert!(
            matches!(&doc.outcome, Outcome::Accepted { object, .. } if matches!(object.as_ref(), Object::Service(_))),
            "{doc:?}"
        );
    }

    #[test]
    fn the_key_fills_in_a_missing_name_and_namespace() {
        let doc = parse(
            VS,
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec:\n  hosts: [reviews]\n",
        );
        let Outcome::Accepted { object, .. } = &doc.outcome else {
            panic!("{doc:?}")
        };
        assert_eq!(object.key(), reviews());
        let doc = parse(
            "/shoal/config/Namespace/shop",
            "apiVersion: v1\nkind: Namespace\nmetadata: {labels: {istio-injection: enabled}}\n",
        );
        let Outcome::Accepted { object, .. } = &doc.outcome else {
            panic!("{doc:?}")
        };
        assert_eq!(object.key(), ObjectKey::new(Kind::Namespace, "", "shop"));
    }

    #[test]
    fn a_value_that_disagrees_with_its_key_is_rejected_naming_key_and_field() {
        for (value, field) in [
            (
                VS_YAML.replace("name: reviews", "name: ratings"),
                "metadata.name",
            ),
            (
                VS_YAML.replace("namespace: default", "namespace: other"),
                "metadata.namespace",
            ),
            (
                VS_YAML.replace("kind: VirtualService", "kind: DestinationRule"),
                "kind",
            ),
            (
                VS_YAML.replace("networking.istio.io/v1", "example.com/v1"),
                "apiVersion",
            ),
            (VS_YAML.replace("kind: VirtualService\n", ""), "kind"),
        ] {
            let doc = parse(VS, &value);
            let (key, issues) = rejected(&doc);
            assert_eq!(
                key,
                Some(reviews()),
                "the key's object keeps its last good version"
            );
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].field, field, "{issues:?}");
            let text = issues[0].to_string();
            assert!(text.starts_with(&format!("error: etcd:{VS}: ")), "{text}");
        }
    }

    #[test]
    fn an_invalid_object_is_rejected_by_field_and_stands_for_its_key() {
        let bad = VS_YAML.replace(
            "{destination: {host: reviews}}",
            "{destination: {host: reviews}, weight: x}",
        );
        let (key, issues) = rejected(&parse(VS, &bad));
        assert_eq!(key, Some(reviews()));
        assert!(
            issues.iter().any(|i| i.field.contains("weight")),
            "{issues:?}"
        );
        assert!(issues.iter().all(|i| i.object == Some(reviews())));
    }

    #[test]
    fn hostile_values_are_issues() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0xff, 0xfe, 0x00], "not UTF-8"),
            (b"".to_vec(), "empty"),
            (b"  \n".to_vec(), "empty"),
            (b"# only a comment\n".to_vec(), "no YAML document"),
            (b"{\"apiVersion\": ".to_vec(), "malformed JSON"),
            (b"a: [b\n".to_vec(), "malformed YAML"),
            (b"- 1\n- 2\n".to_vec(), "one object"),
            (
                format!("{VS_YAML}---\n{VS_YAML}").into_bytes(),
                "2 YAML documents",
            ),
            (b"apiVersion: v1\nkind: List\nitems: []\n".to_vec(), "List"),
            (vec![b' '; MAX_VALUE_BYTES + 1], "more than"),
            (
                format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
                "",
            ),
            (
                format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
                "",
            ),
        ];
        for (value, says) in cases {
            let doc = parse_entry(&Prefix::new("/shoal/config"), VS.as_bytes(), &value);
            let (key, issues) = rejected(&doc);
            assert_eq!(key, Some(reviews()));
            assert!(
                issues
                    .iter()
                    .any(|i| i.message.contains(says) && i.is_error()),
                "{says}: {issues:?}"
            );
        }
    }

    #[test]
    fn keys_not_under_a_kind_are_a_warning_and_bad_shapes_an_error() {
        let (key, issues) = rejected(&parse("/shoal/config/ConfigMap/default/x", "a: b"));
        assert_eq!(key, None);
        assert_eq!(issues[0].severity, Severity::Warning);
        assert!(
            issues[0]
                .to_string()
                .contains("etcd:/shoal/config/ConfigMap/default/x")
        );
        let (key, issues) = rejected(&parse("/shoal/config/VirtualService/reviews", VS_YAML));
        assert_eq!(key, None);
        assert_eq!(issues[0].severity, Severity::Error);
        assert!(
            issues[0].message.contains("PREFIX/KIND/NAMESPACE/NAME"),
            "{issues:?}"
        );
    }

    #[test]
    fn long_strings_are_quoted_short() {
        let name = "n".repeat(100_000);
        let (_, issues) = rejected(&parse(
            VS,
            &VS_YAML.replace("name: reviews", &format!("name: {name}")),
        ));
        assert!(issues[0].message.len() < 400, "{}", issues[0].message.len());
    }
}
