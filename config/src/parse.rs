//! YAML documents in, typed and validated objects out.
//!
//! Documents are parsed one at a time so that a broken document costs only itself. Each
//! document becomes [`Outcome::Accepted`] (with warnings, e.g. fields shoal does not act on
//! yet), [`Outcome::Rejected`] (with the errors and, when it could be read, the key of the
//! object it meant to define) or [`Outcome::Skipped`] (a kind shoal does not serve).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::issue::{Issue, Origin};
use crate::meta::{Kind, ObjectKey};
use crate::object::Object;
use crate::validate;

/// Namespace given to namespaced objects that do not name one (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, Clone)]
pub struct ParsedDoc {
    pub origin: Origin,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Accepted {
        object: Arc<Object>,
        warnings: Vec<Issue>,
    },
    Rejected {
        key: Option<ObjectKey>,
        issues: Vec<Issue>,
    },
    Skipped {
        api_version: String,
        kind: String,
    },
}

/// Splits a multi-document YAML text at `---` lines. Returns (1-based start line, text) of
/// every document that has content.
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    fn push<'t>(chunk: &'t str, line: usize, docs: &mut Vec<(usize, &'t str)>) {
        let first_content = chunk.lines().position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
        });
        if let Some(pos) = first_content {
            docs.push((line + pos, chunk));
        }
    }
    let marker = |line: &str, m: &str| {
        line.starts_with(m) && line[3..].chars().next().is_none_or(char::is_whitespace)
    };
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0usize, 1usize, 0usize);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let is_start = marker(line, "---");
        let is_end = marker(line, "...");
        if is_start || is_end {
            push(&text[start..offset], start_line, &mut docs);
            start = if is_end { offset + line.len() } else { offset };
            start_line = i + 1;
        }
        offset += line.len();
    }
    push(&text[start..], start_line, &mut docs);
    docs
}

/// Parses every document of a YAML file.
pub fn parse_yaml(source: &str, text: &str) -> Vec<ParsedDoc> {
    let source: Arc<str> = source.into();
    let mut out = Vec::new();
    for (index, (line, chunk)) in split_documents(text).into_iter().enumerate() {
        let origin = Origin {
            source: source.clone(),
            doc: index + 1,
            line,
            item: None,
        };
        match decode_yaml(chunk) {
            Ok(value) => out.extend(parse_value(origin, value)),
            Err(message) => out.push(ParsedDoc {
                outcome: Outcome::Rejected {
                    key: None,
                    issues: vec![Issue::error("", message).at(Some(&origin), None)],
                },
                origin,
            }),
        }
    }
    out
}

/// Decodes one YAML document (JSON is YAML too) as every source reads them; the error is
/// one line, `malformed YAML: …`.
pub fn decode_yaml(document: &str) -> Result<Value, String> {
    let options = serde_saphyr::options! { with_snippet: false, strict_booleans: true };
    serde_saphyr::from_str_with_options::<Value>(document, options)
        .map_err(|e| format!("malformed YAML: {}", one_line(&e.to_string())))
}

/// A unit of config that could not be read at all (I/O error, not UTF-8).
pub fn unreadable(source: &str, message: &str) -> ParsedDoc {
    let origin = Origin {
        source: source.into(),
        doc: 1,
        line: 1,
        item: None,
    };
    reject(origin, None, vec![Issue::error("", message)])
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses one already-decoded document (YAML or JSON), expanding `kind: List`.
pub fn parse_value(origin: Origin, value: Value) -> Vec<ParsedDoc> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == "List" && api_version == "v1" {
        let items = match value.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        return items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let origin = Origin {
                    item: Some(i),
                    ..origin.clone()
                };
                parse_object(origin, item)
            })
            .collect();
    }
    vec![parse_object(origin, value)]
}

fn reject(origin: Origin, key: Option<ObjectKey>, issues: Vec<Issue>) -> ParsedDoc {
    let issues = issues
        .into_iter()
        .map(|i| i.at(Some(&origin), key.as_ref()))
        .collect();
    ParsedDoc {
        origin,
        outcome: Outcome::Rejected { key, issues },
    }
}

/// Maps apiVersion/kind to a shoal kind; `None` for kinds shoal does not serve.
pub fn kind_for(api_version: &str, kind: &str) -> Option<Kind> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let version = api_version.rsplit('/').next().unwrap_or_default();
    match (group, kind) {
        ("", "Service") if version == "v1" => Some(Kind::Service),
        ("", "Pod") if version == "v1" => Some(Kind::Pod),
        ("", "Node") if version == "v1" => Some(Kind::Node),
        ("", "Namespace") if version == "v1" => Some(Kind::Namespace),
        ("", "Secret") if version == "v1" => Some(Kind::Secret),
        ("discovery.k8s.io", "EndpointSlice") if matches!(version, "v1" | "v1beta1") => {
            Some(Kind::EndpointSlice)
        }
        ("networking.istio.io", k) if matches!(version, "v1" | "v1beta1" | "v1alpha3") => match k {
            "ServiceEntry" => Some(Kind::ServiceEntry),
            "WorkloadEntry" => Some(Kind::WorkloadEntry),
            "VirtualService" => Some(Kind::VirtualService),
            "DestinationRule" => Some(Kind::DestinationRule),
            "Sidecar" => Some(Kind::Sidecar),
            "Gateway" => Some(Kind::Gateway),
            "ProxyConfig" => Some(Kind::ProxyConfig),
            _ => None,
        },
        ("gateway.networking.k8s.io", k) => match (k, version) {
            ("Gateway", "v1" | "v1beta1") => Some(Kind::KubeGateway),
            ("HTTPRoute", "v1" | "v1beta1") => Some(Kind::HttpRoute),
            ("ReferenceGrant", "v1" | "v1beta1" | "v1alpha2") => Some(Kind::ReferenceGrant),
            ("TLSRoute", "v1alpha2") => Some(Kind::TlsRoute),
            ("TCPRoute", "v1alpha2") => Some(Kind::TcpRoute),
            ("GRPCRoute", "v1" | "v1alpha2") => Some(Kind::GrpcRoute),
            _ => None,
        },
        ("multicluster.x-k8s.io", "ServiceExport") if version == "v1alpha1" => {
            Some(Kind::ServiceExport)
        }
        ("security.istio.io", k) if matches!(version, "v1" | "v1beta1") => match k {
            "PeerAuthentication" => Some(Kind::PeerAuthentication),
            "AuthorizationPolicy" => Some(Kind::AuthorizationPolicy),
            "RequestAuthentication" => Some(Kind::RequestAuthentication),
            _ => None,
        },
        _ => None,
    }
}

fn parse_object(origin: Origin, value: Value) -> ParsedDoc {
    if !value.is_object() {
        return reject(
            origin,
            None,
            vec![Issue::error("", "a document must be a mapping")],
        );
    }
    let kind_s = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind_s.is_empty() || api_version.is_empty() {
        let field = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        return reject(origin, None, vec![Issue::error(field, "required")]);
    }
    let Some(kind) = kind_for(&api_version, &kind_s) else {
        return ParsedDoc {
            origin,
            outcome: Outcome::Skipped {
                api_version,
                kind: kind_s,
            },
        };
    };
    // The key, read leniently, so that a rejected document still names its object.
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace = if kind.namespaced() {
        meta.and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
    } else {
        ""
    };
    let key = (!name.is_empty()).then(|| ObjectKey::new(kind, namespace, name));

    let mut unknown = Vec::new();
    let typed = match kind {
        Kind::Service => typed(value, &mut unknown).map(Object::Service),
        Kind::EndpointSlice => typed(value, &mut unknown).map(Object::EndpointSlice),
        Kind::Pod => typed(value, &mut unknown).map(Object::Pod),
        Kind::Node => typed(value, &mut unknown).map(Object::Node),
        Kind::Namespace => typed(value, &mut unknown).map(Object::Namespace),
        Kind::ServiceEntry => typed(value, &mut unknown).map(|o| Object::ServiceEntry(Box::new(o))),
        Kind::WorkloadEntry => {
            typed(value, &mut unknown).map(|o| Object::WorkloadEntry(Box::new(o)))
        }
        Kind::VirtualService => {
            typed(value, &mut unknown).map(|o| Object::VirtualService(Box::new(o)))
        }
        Kind::DestinationRule => {
            typed(value, &mut unknown).map(|o| Object::DestinationRule(Box::new(o)))
        }
        Kind::Sidecar => typed(value, &mut unknown).map(|o| Object::Sidecar(Box::new(o))),
        Kind::PeerAuthentication => {
            typed(value, &mut unknown).map(|o| Object::PeerAuthentication(Box::new(o)))
        }
        Kind::AuthorizationPolicy => {
            typed(value, &mut unknown).map(|o| Object::AuthorizationPolicy(Box::new(o)))
        }
        Kind::RequestAuthentication => {
            typed(value, &mut unknown).map(|o| Object::RequestAuthentication(Box::new(o)))
        }
        Kind::Gateway => typed(value, &mut unknown).map(|o| Object::Gateway(Box::new(o))),
        Kind::ProxyConfig => typed(value, &mut unknown).map(|o| Object::ProxyConfig(Box::new(o))),
        Kind::KubeGateway => typed(value, &mut unknown).map(|o| Object::KubeGateway(Box::new(o))),
        Kind::HttpRoute => typed(value, &mut unknown).map(|o| Object::HttpRoute(Box::new(o))),
        Kind::ReferenceGrant => {
            typed(value, &mut unknown).map(|o| Object::ReferenceGrant(Box::new(o)))
        }
        Kind::TlsRoute => typed(value, &mut unknown).map(|o| Object::TlsRoute(Box::new(o))),
        Kind::TcpRoute => typed(value, &mut unknown).map(|o| Object::TcpRoute(Box::new(o))),
        Kind::GrpcRoute => typed(value, &mut unknown).map(|o| Object::GrpcRoute(Box::new(o))),
        Kind::ServiceExport => {
            typed(value, &mut unknown).map(|o| Object::ServiceExport(Box::new(o)))
        }
        Kind::Secret => typed(value, &mut unknown)
            .map(Object::Secret)
            .map_err(|issue| redact(&issue)),
    };
    let mut object = match typed {
        Ok(o) => o,
        Err(issue) => return reject(origin, key, vec![*issue]),
    };
    if kind.namespaced() {
        object
            .meta_mut()
            .namespace
            .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
    } else {
        object.meta_mut().namespace = None;
    }
    let mut issues = validate::validate(&object);
    // Istio and Gateway API specs are checked field by field: what shoal does not act on is
    // said, not silently dropped. Built-in objects carry many fields a control plane never
    // reads.
    if !kind.builtin() {
        for path in unknown.into_iter().filter(|p| p.starts_with("spec")) {
            // An authorization rule that silently lost a condition would match more than
            // written: a wider ALLOW. Such a policy is rejected instead.
            if kind == Kind::AuthorizationPolicy && path.starts_with("spec.rules") {
                issues.push(Issue::error(
                    path,
                    "field is not supported by shoal; the policy is rejected rather than enforced without it",
                ));
            } else {
                issues.push(Issue::warning(
                    path,
                    "field is not supported by shoal yet; ignored",
                ));
            }
        }
    }
    let key = object.key();
    let issues: Vec<Issue> = issues
        .into_iter()
        .map(|i| i.at(Some(&origin), Some(&key)))
        .collect();
    if issues.iter().any(Issue::is_error) {
        return ParsedDoc {
            origin,
            outcome: Outcome::Rejected {
                key: Some(key),
                issues,
            },
        };
    }
    ParsedDoc {
        origin,
        outcome: Outcome::Accepted {
            object: Arc::new(object),
            warnings: issues,
        },
    }
}

fn typed<T: DeserializeOwned>(value: Value, unknown: &mut Vec<String>) -> Result<T, Box<Issue>> {
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path_string(&path));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        Box::new(Issue::error(field, e.inner().to_string()))
    })
}

/// A Secret's parse error without what serde quotes of the input (an invalid type's value
/// could be key material): the field and what was expected only.
fn redact(issue: &Issue) -> Box<Issue> {
    let message = if issue.message.contains("not valid base64") {
        "not valid base64 (the value is not shown)"
    } else {
        "invalid: data values must be base64 strings and stringData values strings (the value is not shown)"
    };
    Box::new(Issue::error(issue.field.clone(), message))
}

fn path_string(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_string(parent)),
        Path::Map { parent, key } => {
            let p = path_string(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_string(parent),
    }
}

#[cfg(test)]
mod tests;
