//! Watches: a chunked stream of `{"type": ..., "object": ...}` lines from a resourceVersion on,
//! with the real server's selector semantics (objects entering a selector are ADDED, leaving
//! it DELETED), bookmarks, `timeoutSeconds`, `sendInitialEvents`, and a single 410 `ERROR`
//! event when the history no longer reaches back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::Shared;
use crate::crud::{filter, parse_rv};
use crate::error::ApiError;
use crate::handlers::Req;
use crate::present;
use crate::selectors::Filter;
use crate::server::Body;
use crate::store::{Event, EventType};

fn line(typ: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": typ, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// What one watcher sees of an event, given its namespace and selectors.
fn convert<'a>(e: &'a Event, ns: Option<&str>, f: &Filter) -> Option<(EventType, &'a Value)> {
    if ns.is_some_and(|ns| ns != e.key.0) {
        return None;
    }
    if e.typ == EventType::Deleted {
        return f
            .matches(&e.object)
            .then_some((EventType::Deleted, &*e.object));
    }
    let cur = f.matches(&e.object);
    let old = e.prev.as_ref().is_some_and(|p| f.matches(p));
    match (cur, old) {
        (true, false) => Some((EventType::Added, &*e.object)),
        (true, true) => Some((EventType::Modified, &*e.object)),
        // Left the selector: the previous state, with this event's resourceVersion.
        (false, true) => Some((EventType::Deleted, e.prev.as_deref().unwrap_or(&e.object))),
        (false, false) => None,
    }
}

pub(crate) fn watch(shared: Arc<Shared>, r: Req) -> Result<Response<Body>, ApiError> {
    let f = filter(&r)?;
    let from = parse_rv(r.param("resourceVersion"))?;
    let bookmarks = matches!(r.param("allowWatchBookmarks"), Some("true" | "1"));
    let initial_events = matches!(r.param("sendInitialEvents"), Some("true" | "1"));
    let timeout = match r.param("timeoutSeconds") {
        None | Some("") => None,
        Some(t) => Some(Duration::from_secs(t.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}"))
        })?)),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        run(shared, r, f, from, bookmarks, initial_events, deadline, tx).await;
    });
    let body = StreamBody::new(ReceiverStream::new(rx).map(|b| Ok(Frame::data(b)))).boxed();
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn render(r: &Req, obj: &Value, rv_override: Option<u64>) -> Value {
    let mut o = obj.clone();
    if let Some(rv) = rv_override {
        o["metadata"]["resourceVersion"] = json!(rv.to_string());
    }
    present::single(&r.def, &r.version, &o, r.output)
}

fn bookmark(r: &Req, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": r.def.kind, "apiVersion": r.def.group_version(&r.version), "metadata": meta}),
    )
}

#[allow(clippy::too_many_arguments)]
async fn run(
    shared: Arc<Shared>,
    r: Req,
    f: Filter,
    from: Option<u64>,
    bookmarks: bool,
    initial_events: bool,
    deadline: Option<tokio::time::Instant>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut rv_rx = shared.rv_rx.clone();
    rv_rx.borrow_and_update();
    let ns = r.ns.clone();
    // Where the stream starts: the current state as ADDED events (no resourceVersion, "0",
    // or sendInitialEvents), or the history after the given resourceVersion.
    let start = {
        let store = shared.store.lock();
        match from {
            Some(rv) if !initial_events => {
                if rv < store.floor {
                    Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        store.floor
                    )))
                } else {
                    Ok((Vec::new(), rv))
                }
            }
            _ => Ok(match store.snapshot(&r.def, ns.as_deref(), None) {
                Some((items, rv)) => (items, rv),
                None => (Vec::new(), store.rv),
            }),
        }
    };
    let (initial, mut last) = match start {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(line("ERROR", e.to_status())).await;
            return;
        }
    };
    for (_, obj) in initial.iter().filter(|(_, o)| f.matches(o)) {
        if tx.send(line("ADDED", render(&r, obj, None))).await.is_err() {
            return;
        }
    }
    if initial_events && bookmarks && tx.send(bookmark(&r, last, true)).await.is_err() {
        return;
    }
    let interval = shared.opts.bookmark_interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        rv_rx.borrow_and_update();
        let (batch, gone) = {
            let store = shared.store.lock();
            // A deleted CRD takes its endpoints along: stream what led there, then end.
            let gone = store
                .registry
                .find(&r.def.group, &r.version, &r.def.plural)
                .is_none();
            let batch = store
                .events_after(last, &r.def.group, &r.def.plural)
                .map(|evs| (evs, store.rv.max(last)));
            (batch, gone)
        };
        let Some((events, upto)) = batch else {
            let e = ApiError::expired(format!("too old resource version: {last}"));
            let _ = tx.send(line("ERROR", e.to_status())).await;
            return;
        };
        for e in &events {
            if let Some((typ, obj)) = convert(e, ns.as_deref(), &f) {
                let msg = line(typ.as_str(), render(&r, obj, Some(e.rv)));
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
        last = upto;
        if gone {
            return;
        }
        tokio::select! {
            changed = rv_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ticker.tick(), if bookmarks => {
                if tx.send(bookmark(&r, last, false)).await.is_err() {
                    return;
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => return,
            _ = tx.closed() => return,
        }
    }
}
