//! HTTP entry point: authentication, routing, discovery, request bodies and responses.
//! Resource verbs are in `crud.rs` and `watch.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde_json::Value;

use crate::api::{Shared, Verb};
use crate::discovery;
use crate::error::ApiError;
use crate::present::{self, Output};
use crate::resources::ResourceDef;
use crate::server::Body;

/// One resource request, resolved.
pub(crate) struct Req {
    pub def: ResourceDef,
    pub version: String,
    pub ns: Option<String>,
    pub name: Option<String>,
    /// `Some("status")` for the status subresource.
    pub sub: Option<String>,
    pub params: HashMap<String, String>,
    pub output: Output,
    pub verb: Verb,
    /// Admission webhooks' warnings, sent back as `Warning` headers.
    pub warnings: Arc<Mutex<Vec<String>>>,
}

impl Req {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    bytes_response(code, "application/json", body)
}

pub(crate) fn bytes_response(code: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    match route(shared, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn authorized(shared: &Shared, req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == shared.opts.token)
}

fn header_str(req: &Request<Incoming>, h: header::HeaderName) -> &str {
    req.headers()
        .get(h)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => {
            return Ok(bytes_response(200, "text/plain", b"ok".to_vec()));
        }
        ["version"] => {
            return Ok(json_response(
                200,
                &discovery::version(&shared.opts.server_version),
            ));
        }
        _ => {}
    }
    if !authorized(&shared, &req) {
        return Err(ApiError::unauthorized());
    }
    let get_only = |v: Option<Value>| -> Result<Response<Body>, ApiError> {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        v.map(|v| json_response(200, &v))
            .ok_or_else(ApiError::no_route)
    };
    let reg = || shared.store.lock().registry.clone();
    match s.as_slice() {
        ["api"] => get_only(Some(discovery::api_versions(&shared.addr.to_string()))),
        ["api", "v1"] => get_only(discovery::resource_list(&reg(), "", "v1")),
        ["apis"] => get_only(Some(discovery::api_group_list(&reg()))),
        ["apis", g] => get_only(discovery::api_group(&reg(), g)),
        ["apis", g, v] => get_only(discovery::resource_list(&reg(), g, v)),
        ["openapi", "v2"] => {
            if header_str(&req, header::ACCEPT).contains("protobuf") {
                Ok(bytes_response(
                    200,
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    discovery::openapi_v2_protobuf(),
                ))
            } else {
                get_only(Some(discovery::openapi_v2_json()))
            }
        }
        ["openapi", "v3"] => {
            let rv = shared.store.lock().rv;
            get_only(Some(discovery::openapi_v3_root(&reg(), rv)))
        }
        ["openapi", "v3", "api", "v1"] => get_only(discovery::openapi_v3_gv(&reg(), "", "v1")),
        ["openapi", "v3", "apis", g, v] => get_only(discovery::openapi_v3_gv(&reg(), g, v)),
        ["api", "v1", rest @ ..] => resource(shared, req, "", "v1", rest).await,
        ["apis", g, v, rest @ ..] => resource(shared.clone(), req, g, v, rest).await,
        _ => Err(ApiError::no_route()),
    }
}

fn parse_query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

async fn resource(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, r @ ..]
            if r.first()
                .is_some_and(|x| !matches!(*x, "status" | "finalize")) =>
        {
            (Some(ns.to_string()), r)
        }
        r => (None, r),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(ApiError::no_route()),
    };
    let def = shared
        .store
        .lock()
        .registry
        .find(group, version, plural)
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    if (def.namespaced && ns.is_none() && name.is_some()) || (!def.namespaced && ns.is_some()) {
        return Err(ApiError::no_route());
    }
    if sub.as_deref().is_some_and(|s| s != "status" || !def.status) {
        return Err(ApiError::no_route());
    }
    let params = parse_query(&req);
    let watch =
        legacy_watch || matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
    let method = req.method().clone();
    let verb = match (&method, name.is_some()) {
        (&Method::GET, true) if !watch => Verb::Get,
        (&Method::GET, _) if watch => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, false) if ns.is_some() || !def.namespaced => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => return Err(ApiError::method_not_allowed()),
    };
    if (def.create_only && verb != Verb::Create)
        || (sub.is_some() && !matches!(verb, Verb::Get | Verb::Update | Verb::Patch))
    {
        return Err(ApiError::method_not_allowed());
    }
    let counter = match &sub {
        Some(s) => format!("{}/{s}", def.qualified()),
        None => def.qualified(),
    };
    *shared
        .counts
        .lock()
        .entry((verb, counter.clone()))
        .or_insert(0) += 1;
    if shared.forbidden.lock().contains(&(verb, counter.clone())) {
        return Err(ApiError::forbidden(
            &shared.opts.user,
            verb.as_str(),
            &def.group,
            &counter.replacen(&def.qualified(), &def.plural, 1),
            name.as_deref().unwrap_or(""),
            ns.as_deref(),
        ));
    }
    let output = present::negotiate(
        header_str(&req, header::ACCEPT),
        params.get("includeObject").map(String::as_str),
    );
    let content_type = header_str(&req, header::CONTENT_TYPE).to_string();
    let r = Req {
        def,
        version: version.to_string(),
        ns,
        name,
        sub,
        params,
        output,
        verb,
        warnings: Arc::new(Mutex::new(Vec::new())),
    };
    let body = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        read_body(req, shared.opts.max_body_bytes).await?
    } else {
        Bytes::new()
    };
    let warnings = r.warnings.clone();
    let mut resp = match crate::crud::dispatch(shared, r, &content_type, body).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    };
    add_warnings(&mut resp, &warnings.lock());
    Ok(resp)
}

/// `Warning: 299 - "text"` headers (RFC 7234 form, as kube-apiserver sends them; kubectl
/// prints `Warning: text`), each text once.
fn add_warnings(resp: &mut Response<Body>, warnings: &[String]) {
    let mut seen = Vec::new();
    for w in warnings {
        if seen.contains(&w) {
            continue;
        }
        seen.push(w);
        let mut quoted = String::with_capacity(w.len() + 2);
        quoted.push('"');
        for c in w.chars() {
            match c {
                '"' | '\\' => {
                    quoted.push('\\');
                    quoted.push(c);
                }
                c if c.is_control() => quoted.push(' '),
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        match header::HeaderValue::from_bytes(format!("299 - {quoted}").as_bytes()) {
            Ok(v) => {
                resp.headers_mut().append(header::WARNING, v);
            }
            Err(e) => tracing::debug!("kube-emulator: dropping warning {w:?}: {e}"),
        }
    }
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(e) => Err(ApiError::bad_request(format!("reading the body: {e}"))),
    }
}

/// A request body as JSON, or YAML when the content type says so.
pub(crate) fn parse_body(content_type: &str, body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::unsupported_media_type(ct));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    if yaml || ct == "application/yaml" {
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
    } else {
        serde_json::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    }
}
