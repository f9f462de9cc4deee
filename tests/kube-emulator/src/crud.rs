//! The resource verbs: get, list (selectors, paging, resourceVersion semantics) and TokenReview
//! here; the writes (through admission) in `writes.rs`.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::Response;
use serde_json::{Value, json};

use crate::api::{Shared, Verb};
use crate::error::ApiError;
use crate::handlers::{Req, json_response, parse_body};
use crate::present;
use crate::selectors::{Filter, Selector};
use crate::server::Body;
use crate::store::ObjKey;
use crate::writes::{self, check_body, out};

pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    r: Req,
    content_type: &str,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    match r.verb {
        Verb::Get => get(&shared, &r),
        Verb::List => list(&shared, &r),
        Verb::Watch => crate::watch::watch(shared, r),
        Verb::Create if r.def.create_only => {
            token_review(&shared, &r, parse_body(content_type, &body, false)?)
        }
        Verb::Create => writes::create(&shared, &r, parse_body(content_type, &body, false)?).await,
        Verb::Update => writes::update(&shared, &r, parse_body(content_type, &body, false)?).await,
        Verb::Patch => writes::patch(&shared, &r, content_type, &body).await,
        Verb::Delete => writes::delete(&shared, &r, &body).await,
        Verb::DeleteCollection => writes::delete_collection(&shared, &r).await,
    }
}

pub(crate) fn filter(r: &Req) -> Result<Filter, ApiError> {
    Ok(Filter {
        labels: Selector::labels(r.param("labelSelector").unwrap_or(""))?,
        fields: Selector::fields(r.param("fieldSelector").unwrap_or(""))?,
    })
}

/// `resourceVersion` as a number; `None` for "" (and "0", which means "any").
pub(crate) fn parse_rv(s: Option<&str>) -> Result<Option<u64>, ApiError> {
    match s {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}"))),
    }
}

fn get(shared: &Shared, r: &Req) -> Result<Response<Body>, ApiError> {
    let obj = shared
        .store
        .lock()
        .get(&r.def, r.ns.as_deref(), r.name())
        .ok_or_else(|| ApiError::not_found(&r.def.group, &r.def.plural, r.name()))?;
    Ok(json_response(
        200,
        &present::single(&r.def, &r.version, &obj, r.output),
    ))
}

fn encode_continue(rv: u64, key: &ObjKey) -> String {
    let raw = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(u64, ObjKey), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let ns = v.get("ns").and_then(Value::as_str).ok_or_else(bad)?;
    let name = v.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

fn list(shared: &Shared, r: &Req) -> Result<Response<Body>, ApiError> {
    let filter = filter(r)?;
    let limit = match r.param("limit") {
        None | Some("") => None,
        Some(l) => match l.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => return Err(ApiError::bad_request(format!("invalid limit: {l:?}"))),
        },
    };
    let (at, start) = match r.param("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, key) = decode_continue(token)?;
            (Some(rv), Some(key))
        }
        None => {
            let rv = parse_rv(r.param("resourceVersion"))?;
            match r.param("resourceVersionMatch") {
                Some("Exact") => {
                    if rv.is_none() {
                        return Err(ApiError::bad_request(
                            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                        ));
                    }
                    (rv, None)
                }
                None | Some("") | Some("NotOlderThan") => (None, None),
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersionMatch: Unsupported value: {other:?}"
                    )));
                }
            }
        }
    };
    let store = shared.store.lock();
    let (items, rv) = store
        .snapshot(&r.def, r.ns.as_deref(), at)
        .ok_or_else(|| {
            if start.is_some() {
                ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            } else {
                ApiError::expired("The resourceVersion for the provided list is too old.")
            }
        })?;
    drop(store);
    let mut matching = items
        .into_iter()
        .filter(|(k, _)| start.as_ref().is_none_or(|s| k > s))
        .filter(|(_, o)| filter.matches(o));
    let mut page: Vec<(ObjKey, Arc<Value>)> = Vec::new();
    for item in matching.by_ref() {
        if limit.is_some_and(|l| page.len() >= l) {
            page.push(item);
            break;
        }
        page.push(item);
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(l) = limit
        && page.len() > l
    {
        page.truncate(l);
        if let Some((last, _)) = page.last() {
            meta["continue"] = json!(encode_continue(rv, last));
        }
        if filter.labels.is_empty() && filter.fields.is_empty() {
            meta["remainingItemCount"] = json!(matching.count() + 1);
        }
    }
    let objs: Vec<Value> = page.into_iter().map(|(_, o)| (*o).clone()).collect();
    Ok(json_response(
        200,
        &present::list(&r.def, &r.version, &objs, meta, r.output),
    ))
}

fn token_review(shared: &Shared, r: &Req, body: Value) -> Result<Response<Body>, ApiError> {
    let mut review = check_body(r, body)?;
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let audiences = review
        .pointer("/spec/audiences")
        .cloned()
        .unwrap_or(json!([]));
    let requested: Vec<String> = audiences
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let status = match shared.token_reviews.lock().get(&token) {
        // As kube-apiserver: a token issued for other audiences does not authenticate for
        // the requested ones; the audiences reported are those both name.
        Some(u)
            if !u.audiences.is_empty() && !requested.iter().any(|a| u.audiences.contains(a)) =>
        {
            json!({"authenticated": false, "error": "token audiences are invalid for the target audiences"})
        }
        Some(u) => {
            let matched: Vec<&String> = if u.audiences.is_empty() {
                requested.iter().collect()
            } else {
                requested
                    .iter()
                    .filter(|a| u.audiences.contains(a))
                    .collect()
            };
            json!({
                "authenticated": true,
                "user": {"username": u.username, "uid": u.uid, "groups": u.groups, "extra": u.extra},
                "audiences": matched,
            })
        }
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    review["status"] = status;
    Ok(out(r, 201, &review))
}
