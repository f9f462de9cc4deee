//! The write verbs: create, update, patch, delete and deletecollection, each through admission
//! (`admission.rs`) before it is stored. The store is never locked across a webhook call: an
//! update reads the object, runs admission, and stores only if the object is still the one
//! read (else it starts over, as kube-apiserver's `GuaranteedUpdate` does).

use std::sync::Arc;

use http::Response;
use serde_json::{Value, json};

use crate::admission::{self, Attributes, Operation};
use crate::api::Shared;
use crate::error::ApiError;
use crate::handlers::{Req, json_response, parse_body};
use crate::patch::{PatchType, apply_patch};
use crate::present;
use crate::server::Body;
use crate::store::{Deleted, Part, name_of, rv_of};

/// Re-reads after a concurrent write before giving up with 409.
const UPDATE_ATTEMPTS: usize = 8;

/// Checks a body's `apiVersion`/`kind`/namespace against the URL and fills them in.
pub(crate) fn check_body(r: &Req, mut obj: Value) -> Result<Value, ApiError> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let gv = r.def.group_version(&r.version);
    match o.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != gv => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({gv})"
            )));
        }
        _ => {}
    }
    match o.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != r.def.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                r.def.kind
            )));
        }
        _ => {}
    }
    o.insert("apiVersion".into(), json!(gv));
    o.insert("kind".into(), json!(r.def.kind));
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    let Some(m) = meta.as_object_mut() else {
        return Err(ApiError::bad_request("metadata must be an object"));
    };
    if let Some(ns) = &r.ns {
        match m.get("namespace").and_then(Value::as_str) {
            Some(b) if !b.is_empty() && b != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                m.insert("namespace".into(), json!(ns));
            }
        }
    }
    if let Some(name) = &r.name {
        match m.get("name").and_then(Value::as_str) {
            Some(b) if !b.is_empty() && b != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({b}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                m.insert("name".into(), json!(name));
            }
        }
    }
    Ok(obj)
}

pub(crate) fn out(r: &Req, code: u16, obj: &Value) -> Response<Body> {
    json_response(code, &present::object(&r.def, &r.version, obj))
}

fn part(r: &Req) -> Part {
    if r.sub.is_some() {
        Part::Status
    } else {
        Part::Main
    }
}

/// `dryRun=All` in the query (or, for deletes, in the DeleteOptions).
fn dry_run(r: &Req, delete_options: Option<&Value>) -> bool {
    r.param("dryRun").is_some_and(|d| !d.is_empty())
        || delete_options
            .and_then(|o| o.get("dryRun"))
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty())
}

/// The `CreateOptions`/`UpdateOptions` webhooks are sent.
fn write_options(r: &Req, kind: &str) -> Value {
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if let Some(d) = r.param("dryRun").filter(|d| !d.is_empty()) {
        o["dryRun"] = json!([d]);
    }
    if let Some(f) = r.param("fieldManager").filter(|f| !f.is_empty()) {
        o["fieldManager"] = json!(f);
    }
    o
}

fn attributes<'a>(
    r: &'a Req,
    ns: Option<&'a str>,
    name: &'a str,
    op: Operation,
    options: Value,
) -> Attributes<'a> {
    Attributes {
        def: &r.def,
        version: &r.version,
        sub: r.sub.as_deref(),
        ns: if r.def.namespaced { ns } else { None },
        name,
        op,
        dry_run: dry_run(r, Some(&options)),
        options,
    }
}

/// Runs admission on `obj` and checks what the webhooks made of it.
async fn admitted(
    shared: &Shared,
    r: &Req,
    op: Operation,
    obj: Value,
    old: Option<&Value>,
) -> Result<Value, ApiError> {
    let name = name_of(&obj).to_string();
    let kind = if op == Operation::Create {
        "CreateOptions"
    } else {
        "UpdateOptions"
    };
    let attrs = attributes(r, r.ns.as_deref(), &name, op, write_options(r, kind));
    let old = old.map(|o| present::object(&r.def, &r.version, o));
    let admitted = admission::admit(shared, &attrs, Some(obj), old.as_ref(), &r.warnings).await?;
    let obj = admitted.ok_or_else(|| ApiError::internal("admission dropped the object"))?;
    // A webhook must not move the object elsewhere.
    check_body(r, obj)
}

async fn create_admitted(shared: &Shared, r: &Req, obj: Value) -> Result<Response<Body>, ApiError> {
    let obj = admitted(shared, r, Operation::Create, obj, None).await?;
    let stored = shared
        .store
        .lock()
        .create(&r.def, r.ns.as_deref(), obj, Part::Main)?;
    Ok(out(r, 201, &stored))
}

pub(crate) async fn create(
    shared: &Shared,
    r: &Req,
    body: Value,
) -> Result<Response<Body>, ApiError> {
    let obj = check_body(r, body)?;
    create_admitted(shared, r, obj).await
}

/// Replaces the object with what `make` makes of its current state, through admission.
async fn update_with(
    shared: &Shared,
    r: &Req,
    make: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Arc<Value>, ApiError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let current = shared
            .store
            .lock()
            .get(&r.def, r.ns.as_deref(), r.name())
            .ok_or_else(|| ApiError::not_found(&r.def.group, &r.def.plural, r.name()))?;
        let new = make(&current)?;
        let new = admitted(shared, r, Operation::Update, new, Some(&current)).await?;
        let mut store = shared.store.lock();
        let now = store
            .get(&r.def, r.ns.as_deref(), r.name())
            .ok_or_else(|| ApiError::not_found(&r.def.group, &r.def.plural, r.name()))?;
        if rv_of(&now) == rv_of(&current) {
            return store.update(&r.def, r.ns.as_deref(), r.name(), new, part(r));
        }
    }
    Err(ApiError::conflict(&r.def.group, &r.def.plural, r.name()))
}

pub(crate) async fn update(
    shared: &Shared,
    r: &Req,
    body: Value,
) -> Result<Response<Body>, ApiError> {
    let obj = check_body(r, body)?;
    let stored = update_with(shared, r, |_| Ok(obj.clone())).await?;
    Ok(out(r, 200, &stored))
}

pub(crate) async fn patch(
    shared: &Shared,
    r: &Req,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let typ = PatchType::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    if typ == PatchType::Strategic && r.def.custom {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    if typ == PatchType::Apply && r.param("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "PATCH /apply requests require a fieldManager: fieldManager is required for apply requests",
        ));
    }
    let patch = parse_body("", body, typ == PatchType::Apply)?;
    let exists = shared
        .store
        .lock()
        .get(&r.def, r.ns.as_deref(), r.name())
        .is_some();
    if !exists {
        if typ == PatchType::Apply && r.sub.is_none() {
            return create_admitted(shared, r, check_body(r, patch)?).await;
        }
        return Err(ApiError::not_found(&r.def.group, &r.def.plural, r.name()));
    }
    if typ == PatchType::Apply {
        // The applied configuration must name the same object.
        check_body(r, patch.clone())?;
    }
    let stored = update_with(shared, r, |current| {
        let mut doc = present::object(&r.def, &r.version, current);
        apply_patch(typ, &mut doc, &patch)?;
        check_body(r, doc)
    })
    .await?;
    Ok(out(r, 200, &stored))
}

fn deleted_status(r: &Req, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": r.name(),
            "group": r.def.group,
            "kind": r.def.plural,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        },
    })
}

/// DELETE admission of one object (no object, its current state as `oldObject`).
async fn admit_delete(
    shared: &Shared,
    r: &Req,
    ns: Option<&str>,
    name: &str,
    current: &Value,
    options: &Value,
) -> Result<(), ApiError> {
    let mut options = if options.is_object() {
        options.clone()
    } else {
        json!({})
    };
    options["kind"] = json!("DeleteOptions");
    options["apiVersion"] = json!("meta.k8s.io/v1");
    let attrs = attributes(r, ns, name, Operation::Delete, options);
    let old = present::object(&r.def, &r.version, current);
    admission::admit(shared, &attrs, None, Some(&old), &r.warnings).await?;
    Ok(())
}

pub(crate) async fn delete(
    shared: &Shared,
    r: &Req,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    // DeleteOptions (optional): the resourceVersion precondition matters here; webhooks see
    // them all.
    let opts = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        parse_body("application/json", body, false)?
    };
    let precondition = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let current = shared
        .store
        .lock()
        .get(&r.def, r.ns.as_deref(), r.name())
        .ok_or_else(|| ApiError::not_found(&r.def.group, &r.def.plural, r.name()))?;
    admit_delete(shared, r, r.ns.as_deref(), r.name(), &current, &opts).await?;
    let result =
        shared
            .store
            .lock()
            .delete(&r.def, r.ns.as_deref(), r.name(), precondition.as_deref())?;
    Ok(match result {
        Deleted::Gone(o) if !r.def.custom => json_response(200, &deleted_status(r, &o)),
        Deleted::Gone(o) => out(r, 200, &o),
        Deleted::Terminating(o) => out(r, 202, &o),
    })
}

pub(crate) async fn delete_collection(
    shared: &Shared,
    r: &Req,
) -> Result<Response<Body>, ApiError> {
    let filter = crate::crud::filter(r)?;
    let (items, _) = shared
        .store
        .lock()
        .snapshot(&r.def, r.ns.as_deref(), None)
        .ok_or_else(|| ApiError::internal("no current snapshot"))?;
    let mut gone = Vec::new();
    for ((ns, name), obj) in items {
        if !filter.matches(&obj) {
            continue;
        }
        let ns = if r.def.namespaced {
            Some(ns.as_str())
        } else {
            None
        };
        admit_delete(shared, r, ns, &name, &obj, &Value::Null).await?;
        if let Ok(Deleted::Gone(o) | Deleted::Terminating(o)) =
            shared.store.lock().delete(&r.def, ns, &name, None)
        {
            gone.push((*o).clone());
        }
    }
    let rv = shared.store.lock().rv;
    Ok(json_response(
        200,
        &present::list(
            &r.def,
            &r.version,
            &gone,
            json!({"resourceVersion": rv.to_string()}),
            present::Output::Plain,
        ),
    ))
}
