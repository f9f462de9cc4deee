//! The admin HTTP server: readiness, Prometheus metrics, and debug views of what shoal
//! serves.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use shoal_cache::status::StatusRegistry;
use shoal_config::source::etcd::status::EtcdStatusWatch;
use shoal_config::source::kubernetes::status::StatusWatch;
use shoal_shard::ShardNode;

use crate::pipeline::Pipeline;

/// What the admin server reads.
#[derive(Clone)]
pub struct Admin {
    pub pipeline: Arc<Pipeline>,
    pub status: Arc<StatusRegistry>,
    pub metrics: PrometheusHandle,
    pub node: Option<Arc<ShardNode>>,
    pub jwks: Arc<crate::jwks::JwksStatus>,
    /// The Kubernetes source's status, when it runs.
    pub kubernetes: Option<StatusWatch>,
    /// The etcd source's status, when it runs.
    pub etcd: Option<EtcdStatusWatch>,
    /// The federation importer's links, when it runs.
    pub federation: Option<tokio::sync::watch::Receiver<crate::federation::FederationStatus>>,
}

pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/debug/syncz", get(syncz))
        .route("/debug/config_dump", get(config_dump))
        .route("/debug/configz", get(configz))
        .route("/debug/views", get(views))
        .route("/debug/jwksz", get(jwksz))
        .route("/debug/shardz", get(shardz))
        .with_state(admin)
}

async fn ready(State(a): State<Admin>) -> Response {
    if a.pipeline.is_ready() {
        // Once served, a source that falls behind (an unreachable API server) does not
        // make shoal unready: the last good config keeps being served.
        return (StatusCode::OK, "ready\n").into_response();
    }
    let mut message = String::from("loading config\n");
    if let Some(k) = &a.kubernetes {
        let status = k.borrow();
        let syncing = status.syncing();
        if !syncing.is_empty() {
            message.push_str(&format!(
                "kubernetes: still syncing {}\n",
                syncing.join(", ")
            ));
        }
    }
    if let Some(e) = &a.etcd {
        let status = e.borrow();
        if !status.synced {
            message.push_str(&format!(
                "etcd: waiting for the first read of {}{}\n",
                status.prefix,
                status
                    .last_error
                    .as_deref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ));
        }
    }
    (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
}

async fn metrics_text(State(a): State<Admin>) -> Response {
    a.metrics.run_upkeep();
    (
        [("content-type", "text/plain; version=0.0.4")],
        a.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct SynczQuery {
    /// Gather every replica's streams (`?fleet=1`).
    fleet: Option<String>,
}

/// This replica's streams, each tagged with the replica that serves it.
fn local_reports(a: &Admin) -> Vec<serde_json::Value> {
    let replica = a.node.as_ref().map(|n| n.id());
    a.status
        .reports()
        .into_iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .map(|mut v| {
            v["replica"] = serde_json::json!(replica);
            v
        })
        .collect()
}

async fn syncz(State(a): State<Admin>, Query(q): Query<SynczQuery>) -> Response {
    let mut reports = local_reports(&a);
    if q.fleet.is_some()
        && let Some(node) = &a.node
    {
        // Each replica reports its own streams; ask the others.
        let me = node.id();
        let members: Vec<(u64, String)> = node
            .current()
            .state
            .members
            .iter()
            .filter(|(id, m)| **id != me && m.alive)
            .map(|(id, m)| (*id, m.addrs.admin_addr.clone()))
            .collect();
        for (_, addr) in members {
            let Ok(addr) = addr.parse() else { continue };
            if let Ok(body) = crate::status::fetch(addr, "/debug/syncz").await
                && let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(&body)
            {
                reports.extend(list);
            }
        }
    }
    Json(reports).into_response()
}

async fn shardz(State(a): State<Admin>) -> Response {
    match &a.node {
        Some(n) => {
            let v = n.current();
            Json(serde_json::json!({
                "replica": n.id(),
                "leader": v.leader,
                "term": v.term,
                "commit_index": v.commit_index,
                "lease": v.lease,
                "serving": v.serving_count(),
                "owned": v.state.counts(),
                "migrations": v.state.migrations,
                "members": v.state.members,
                "owners": v.state.shards.iter().map(|e| e.owner).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not a replica of a shard group\n").into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct DumpQuery {
    proxy: Option<String>,
    view: Option<String>,
}

async fn config_dump(State(a): State<Admin>, Query(q): Query<DumpQuery>) -> Response {
    let view = match (&q.proxy, &q.view) {
        (Some(id), _) => {
            let Some(stream) = a.status.find(id).into_iter().next() else {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no connected proxy {id:?}\n"),
                )
                    .into_response();
            };
            stream.report().view.and_then(|v| a.pipeline.view(&v))
        }
        (None, Some(v)) => a.pipeline.view(v),
        (None, None) => {
            return (
                StatusCode::BAD_REQUEST,
                "give ?proxy=NODE_ID or ?view=VIEW_ID\n",
            )
                .into_response();
        }
    };
    match view {
        Some(v) => {
            let dump = tokio::task::spawn_blocking(move || dump(&v)).await;
            match dump {
                Ok(d) => Json(d).into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
        None => (StatusCode::NOT_FOUND, "no such view\n").into_response(),
    }
}

async fn configz(State(a): State<Admin>) -> Response {
    let config = a.pipeline.config();
    let counts: serde_json::Map<String, serde_json::Value> = config
        .counts()
        .into_iter()
        .map(|(k, n)| (k.to_string(), n.into()))
        .collect();
    let issues = a.pipeline.issues();
    let analysis = shoal_config::analyze::analyze(&config);
    Json(serde_json::json!({
        "revision": config.revision,
        "objects": counts,
        "mesh": a.pipeline.options(),
        // The namespaces in the mesh (`null`: every namespace; no discovery selectors).
        "discovery_namespaces": a.pipeline.selected_namespaces(),
        "issues": issues.iter().map(|i| serde_json::json!({ "severity": i.severity, "message": i.to_string() })).collect::<Vec<_>>(),
        "analysis": analysis.iter().map(|i| serde_json::json!({ "severity": i.severity, "message": i.to_string() })).collect::<Vec<_>>(),
        "sources": {
            "kubernetes": a.kubernetes.as_ref().map(|k| {
                let status = k.borrow();
                let mut v = serde_json::to_value(&*status).unwrap_or_default();
                v["stale"] = status.stale().into();
                v
            }),
            "etcd": a.etcd.as_ref().map(|e| {
                let status = e.borrow();
                let mut v = serde_json::to_value(&*status).unwrap_or_default();
                v["stale"] = status.stale().into();
                v
            }),
            "federation": a.federation.as_ref().map(|f| serde_json::to_value(&*f.borrow()).unwrap_or_default()),
        },
    }))
    .into_response()
}

/// The JSON Web Key Sets shoal fetches for RequestAuthentications, and how each fares.
async fn jwksz(State(a): State<Admin>) -> Response {
    Json(a.jwks.get()).into_response()
}

async fn views(State(a): State<Admin>) -> Response {
    let list: Vec<serde_json::Value> = a
        .pipeline
        .views()
        .iter()
        .map(|v| {
            let snap = v.current();
            serde_json::json!({ "view": v.id.as_ref(), "version": snap.version, "streams": v.stream_count(), "resources": snap.resource_count() })
        })
        .collect();
    Json(list).into_response()
}

/// Config dump of a view: every resource rendered as Envoy JSON.
fn dump(view: &shoal_cache::View) -> serde_json::Value {
    let snap = view.current();
    let mut types = serde_json::Map::new();
    for ty in shoal_api::ResourceType::ALL {
        let t = snap.get(ty);
        if t.is_empty() {
            continue;
        }
        let render = |m: &shoal_cache::snapshot::TypeMap| -> Vec<serde_json::Value> {
            m.values()
                .map(|r| {
                    let body = shoal_api::json::to_json(ty.type_url(), &r.body)
                        .unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
                    serde_json::json!({ "name": r.name.as_ref(), "version": r.version.to_string(), "resource": body })
                })
                .collect()
        };
        types.insert(
            ty.short_name().to_string(),
            serde_json::json!({ "type_url": ty.type_url(), "resources": render(&t.wildcard), "on_demand": render(&t.on_demand) }),
        );
    }
    serde_json::json!({ "view": view.id.as_ref(), "version": snap.version, "types": types })
}
