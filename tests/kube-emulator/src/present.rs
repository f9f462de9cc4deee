//! How objects go out: `apiVersion`/`kind` of the version asked for, lists, and the
//! `Table` / `PartialObjectMetadata` forms that `Accept` headers ask for.

use serde_json::{Value, json};

use crate::resources::ResourceDef;
use crate::util::age;

/// The representation an `Accept` header asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Plain,
    /// `as=Table`, with the Table's `apiVersion` (`meta.k8s.io/v1` or `v1beta1`) and what each
    /// row carries (`includeObject`).
    Table {
        v1: bool,
        include: Include,
    },
    /// `as=PartialObjectMetadata` / `as=PartialObjectMetadataList`.
    Metadata {
        v1: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Include {
    None,
    Metadata,
    Object,
}

/// Picks the first media range of `accept` the emulator can produce.
pub(crate) fn negotiate(accept: &str, include_object: Option<&str>) -> Output {
    for range in accept.split(',') {
        let params: Vec<(&str, &str)> = range
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().split_once('='))
            .collect();
        let get = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let v1 = get("v") != Some("v1beta1");
        match get("as") {
            Some("Table") if get("g") == Some("meta.k8s.io") => {
                let include = match include_object {
                    Some("None") => Include::None,
                    Some("Object") => Include::Object,
                    _ => Include::Metadata,
                };
                return Output::Table { v1, include };
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if get("g") == Some("meta.k8s.io") =>
            {
                return Output::Metadata { v1 };
            }
            Some(_) => continue,
            None => return Output::Plain,
        }
    }
    Output::Plain
}

/// The stored object as served at `version`.
pub(crate) fn object(def: &ResourceDef, version: &str, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(def.group_version(version)));
        m.insert("kind".into(), json!(def.kind));
    }
    o
}

fn meta_api(v1: bool) -> &'static str {
    if v1 {
        "meta.k8s.io/v1"
    } else {
        "meta.k8s.io/v1beta1"
    }
}

fn partial(obj: &Value, v1: bool) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": meta_api(v1),
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Evaluates a printer column's simple JSONPath (`.spec.hosts`, `.metadata.creationTimestamp`).
fn column_value(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    for seg in path.trim_start_matches('.').split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return Value::Null,
        }
    }
    match cur {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => cur.clone(),
        Value::Null => Value::Null,
        other => json!(other.to_string()),
    }
}

fn table(def: &ResourceDef, version: &str, objs: &[Value], v1: bool, include: Include) -> Value {
    let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    for c in &def.printer_columns {
        if c.json_path != ".metadata.creationTimestamp" {
            columns.push(json!({"name": c.name, "type": c.type_, "format": "",
                "description": "", "priority": 0}));
        }
    }
    columns.push(json!({"name": "Age", "type": "date", "format": "",
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
        "priority": 0}));
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            for c in &def.printer_columns {
                if c.json_path != ".metadata.creationTimestamp" {
                    cells.push(column_value(o, &c.json_path));
                }
            }
            cells.push(json!(age(o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str))));
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Metadata => row["object"] = partial(o, v1),
                Include::Object => row["object"] = object(def, version, o),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": meta_api(v1),
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// One object in the asked-for representation.
pub(crate) fn single(def: &ResourceDef, version: &str, obj: &Value, out: Output) -> Value {
    match out {
        Output::Plain => object(def, version, obj),
        Output::Metadata { v1 } => partial(obj, v1),
        Output::Table { v1, include } => {
            let mut t = table(def, version, std::slice::from_ref(obj), v1, include);
            t["metadata"]["resourceVersion"] = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            t
        }
    }
}

/// A list response; `list_meta` is the list's `metadata` (resourceVersion, continue, ...).
pub(crate) fn list(
    def: &ResourceDef,
    version: &str,
    objs: &[Value],
    list_meta: Value,
    out: Output,
) -> Value {
    match out {
        Output::Plain => json!({
            "kind": def.list_kind,
            "apiVersion": def.group_version(version),
            "metadata": list_meta,
            "items": objs.iter().map(|o| object(def, version, o)).collect::<Vec<_>>(),
        }),
        Output::Metadata { v1 } => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": meta_api(v1),
            "metadata": list_meta,
            "items": objs.iter().map(|o| partial(o, v1)).collect::<Vec<_>>(),
        }),
        Output::Table { v1, include } => {
            let mut t = table(def, version, objs, v1, include);
            t["metadata"] = list_meta;
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_kubectl_accept_headers() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate(kubectl, None),
            Output::Table {
                v1: true,
                include: Include::Metadata
            }
        );
        assert_eq!(negotiate("application/json", None), Output::Plain);
        assert_eq!(negotiate("*/*", None), Output::Plain);
        assert_eq!(
            negotiate(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
                None
            ),
            Output::Metadata { v1: true }
        );
        assert_eq!(
            negotiate(
                "application/json;as=APIGroupDiscoveryList;g=apidiscovery.k8s.io;v=v2,application/json",
                None
            ),
            Output::Plain
        );
    }
}
