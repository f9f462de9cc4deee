//! Istio's debug xDS types, answered from the per-stream status registry: what `istioctl
//! proxy-status --xds-address` and `proxy-config` ask the control plane over ADS.
//!
//! - [`SYNCZ`]: one `envoy.service.status.v3.ClientConfig` per connected proxy, named by its
//!   node id, carrying its `CLUSTER_ID`/`ISTIO_VERSION` metadata and, per type Istio lists
//!   (LDS, RDS, EDS, CDS, ECDS), the type URL, a `ConfigStatus` and the version last sent.
//! - [`CONFIG_DUMP`]: for the one proxy the request names (its node id, or Istio's proxy id
//!   `POD.NAMESPACE`), the sections of an Envoy `admin.v3.ConfigDump` — bootstrap, clusters,
//!   listeners, scoped routes, routes, secrets — each an unnamed resource, as istiod sends
//!   them. Secrets are always empty: a debug stream never carries key material.
//!
//! A replica answers about its own streams only. Nothing here knows who may ask: admission
//! decided that before the stream got here.

use std::sync::Arc;

use shoal_api::pb::envoy::admin::v3::{
    BootstrapConfigDump, ClustersConfigDump, ListenersConfigDump, RoutesConfigDump,
    ScopedRoutesConfigDump, SecretsConfigDump, clusters_config_dump, listeners_config_dump,
    routes_config_dump,
};
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::status::v3::{ClientConfig, ConfigStatus, client_config};
use shoal_api::pb::google::protobuf::{Any, Struct, Timestamp, Value, value::Kind};
use shoal_api::{ResourceType, pack};
use tonic::Status;

pub use shoal_api::debug::{CONFIG_DUMP, PREFIX, SYNCZ};

use crate::snapshot::TypeMap;
use crate::status::{StatusRegistry, StreamStatus, SyncState, TypeStatus};
use crate::view::View;

/// Istio's ECDS type URL: listed by syncz (shoal never sends it, so it is `NOT_SENT`).
const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// The types syncz reports for every proxy, in Istio's order.
const SYNCZ_TYPES: [(&str, Option<ResourceType>); 5] = [
    (shoal_api::type_url::LISTENER, Some(ResourceType::Listener)),
    (shoal_api::type_url::ROUTE, Some(ResourceType::Route)),
    (shoal_api::type_url::ENDPOINT, Some(ResourceType::Endpoint)),
    (shoal_api::type_url::CLUSTER, Some(ResourceType::Cluster)),
    (EXTENSION_CONFIG, None),
];

/// Who answers, as `istioctl` prints it (the ISTIOD and VERSION columns): the
/// `control_plane.identifier` of every debug response, Istio's JSON
/// `{"Component": …, "ID": …, "Info": {"version": …}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    /// This replica's name.
    pub id: String,
    pub version: String,
}

impl Default for ControlPlane {
    fn default() -> Self {
        ControlPlane {
            id: "shoal".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

impl ControlPlane {
    pub fn identifier(&self) -> String {
        serde_json::json!({
            "Component": "shoal",
            "ID": self.id,
            "Info": { "version": self.version },
        })
        .to_string()
    }
}

/// A debug request, whichever protocol carried it.
#[derive(Debug, Clone, Copy)]
pub struct DebugRequest<'a> {
    pub type_url: &'a str,
    pub names: &'a [String],
    pub nonce: &'a str,
}

/// The resources answering a debug request: (name, resource); names are empty where Istio
/// sends unnamed resources.
pub type DebugResources = Vec<(String, Any)>;

/// Answers one debug request from `registry`; an unknown type or a malformed request is the
/// client's error.
pub fn answer(registry: &StatusRegistry, req: DebugRequest<'_>) -> Result<DebugResources, Status> {
    match req.type_url {
        SYNCZ => Ok(syncz(registry)),
        CONFIG_DUMP => {
            let [name] = req.names else {
                return Err(Status::invalid_argument(format!(
                    "{CONFIG_DUMP} takes exactly one resource name, the proxy (its node id or \
                     POD.NAMESPACE); {} given",
                    req.names.len()
                )));
            };
            // As istiod: a proxy this replica does not serve gets an empty answer (another
            // replica may serve it).
            Ok(registry
                .find_proxy(name)
                .and_then(|s| s.view())
                .map(|v| config_dump(&v))
                .unwrap_or_default())
        }
        other => Err(Status::invalid_argument(format!(
            "unknown debug type {:?}; served: {SYNCZ}, {CONFIG_DUMP}",
            other.chars().take(128).collect::<String>()
        ))),
    }
}

fn syncz(registry: &StatusRegistry) -> DebugResources {
    registry
        .streams()
        .iter()
        .map(|s| {
            let config = client_config(s);
            (s.node_id.clone(), pack(&config))
        })
        .collect()
}

fn client_config(stream: &StreamStatus) -> ClientConfig {
    let types = stream.types();
    let generic_xds_configs = SYNCZ_TYPES
        .iter()
        .map(|(url, ty)| {
            let status = ty.and_then(|ty| types.iter().find(|(t, _)| *t == ty).map(|(_, s)| s));
            generic(url, status)
        })
        .collect();
    let mut fields = std::collections::BTreeMap::new();
    for (key, value) in [
        ("CLUSTER_ID", &stream.meta.cluster_id),
        ("ISTIO_VERSION", &stream.meta.istio_version),
    ] {
        if let Some(v) = value {
            fields.insert(
                key.to_string(),
                Value {
                    kind: Some(Kind::StringValue(v.to_string())),
                },
            );
        }
    }
    ClientConfig {
        node: Some(Node {
            id: stream.node_id.clone(),
            metadata: Some(Struct {
                fields: fields.into_iter().collect(),
            }),
            ..Default::default()
        }),
        generic_xds_configs,
        ..Default::default()
    }
}

fn generic(type_url: &str, status: Option<&TypeStatus>) -> client_config::GenericXdsConfig {
    let state = status.map_or(SyncState::NotSent, TypeStatus::state);
    let config_status = match state {
        SyncState::Synced => ConfigStatus::Synced,
        SyncState::NotSent => ConfigStatus::NotSent,
        SyncState::Stale => ConfigStatus::Stale,
        SyncState::Error => ConfigStatus::Error,
    };
    client_config::GenericXdsConfig {
        type_url: type_url.to_string(),
        version_info: status
            .and_then(|s| {
                s.sent_version_info
                    .clone()
                    .or_else(|| s.sent_version.map(|v| v.to_string()))
            })
            .unwrap_or_default(),
        last_updated: status.and_then(|s| s.sent_at_ms).map(timestamp),
        config_status: config_status as i32,
        ..Default::default()
    }
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        // Below 1e9: fits.
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// What the view holds of one type, wildcard and on-demand resources alike.
fn resources(view: &View, ty: ResourceType) -> Vec<shoal_api::Resource> {
    let snap = view.current();
    let t = snap.get(ty);
    let all = |m: &TypeMap| m.values().cloned().collect::<Vec<_>>();
    let mut out = all(&t.wildcard);
    out.extend(all(&t.on_demand));
    out
}

fn any_of(ty: ResourceType, r: &shoal_api::Resource) -> Any {
    Any {
        type_url: ty.type_url().to_string(),
        value: r.body.to_vec(),
    }
}

/// A view as an Envoy config dump, in istiod's section order.
fn config_dump(view: &Arc<View>) -> DebugResources {
    let version_info = view.current().version.to_string();
    let clusters = ClustersConfigDump {
        version_info: version_info.clone(),
        dynamic_active_clusters: resources(view, ResourceType::Cluster)
            .iter()
            .map(|r| clusters_config_dump::DynamicCluster {
                version_info: r.version.to_string(),
                cluster: Some(any_of(ResourceType::Cluster, r)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listeners = ListenersConfigDump {
        version_info: version_info.clone(),
        dynamic_listeners: resources(view, ResourceType::Listener)
            .iter()
            .map(|r| listeners_config_dump::DynamicListener {
                name: r.name.to_string(),
                active_state: Some(listeners_config_dump::DynamicListenerState {
                    version_info: r.version.to_string(),
                    listener: Some(any_of(ResourceType::Listener, r)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = RoutesConfigDump {
        dynamic_route_configs: resources(view, ResourceType::Route)
            .iter()
            .map(|r| routes_config_dump::DynamicRouteConfig {
                version_info: r.version.to_string(),
                route_config: Some(any_of(ResourceType::Route, r)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    [
        pack(&BootstrapConfigDump::default()),
        pack(&clusters),
        pack(&listeners),
        pack(&ScopedRoutesConfigDump::default()),
        pack(&routes),
        pack(&SecretsConfigDump::default()),
    ]
    .into_iter()
    .map(|any| (String::new(), any))
    .collect()
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tonic::Code;

    use super::*;
    use crate::status::ClientMeta;

    fn ask<'a>(type_url: &'a str, names: &'a [String]) -> DebugRequest<'a> {
        DebugRequest {
            type_url,
            names,
            nonce: "",
        }
    }

    #[test]
    fn syncz_reports_istio_s_types_per_proxy() {
        let registry = StatusRegistry::default();
        let meta = ClientMeta {
            cluster_id: Some("Kubernetes".into()),
            istio_version: None,
        };
        let s = registry.register("sidecar~1~web-0.shop~shop.svc.cluster.local", meta, "sotw");
        s.sent(ResourceType::Cluster, 7, Some("v7".into()), 3);
        s.acked(ResourceType::Cluster, 7);
        s.sent(ResourceType::Endpoint, 8, None, 3);
        s.sent(ResourceType::Listener, 9, None, 1);
        s.nacked(ResourceType::Listener, "bad".into());

        let answer = answer(&registry, ask(SYNCZ, &[])).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(answer.len(), 1);
        let (name, any) = &answer[0];
        assert_eq!(name, "sidecar~1~web-0.shop~shop.svc.cluster.local");
        assert_eq!(
            any.type_url,
            "type.googleapis.com/envoy.service.status.v3.ClientConfig"
        );
        let config = ClientConfig::decode(any.value.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        let status: Vec<(&str, i32, &str)> = config
            .generic_xds_configs
            .iter()
            .map(|g| {
                (
                    g.type_url.as_str(),
                    g.config_status,
                    g.version_info.as_str(),
                )
            })
            .collect();
        assert_eq!(
            status,
            [
                (
                    shoal_api::type_url::LISTENER,
                    ConfigStatus::Error as i32,
                    "9"
                ),
                (shoal_api::type_url::ROUTE, ConfigStatus::NotSent as i32, ""),
                (
                    shoal_api::type_url::ENDPOINT,
                    ConfigStatus::Stale as i32,
                    "8"
                ),
                (
                    shoal_api::type_url::CLUSTER,
                    ConfigStatus::Synced as i32,
                    "v7"
                ),
                (EXTENSION_CONFIG, ConfigStatus::NotSent as i32, ""),
            ]
        );
        let meta = config.node.and_then(|n| n.metadata).unwrap_or_default();
        assert!(meta.fields.contains_key("CLUSTER_ID"));
        assert!(!meta.fields.contains_key("ISTIO_VERSION"));
    }

    #[test]
    fn malformed_and_unknown_questions_are_refused_unknown_proxies_get_nothing() {
        let registry = StatusRegistry::default();
        registry.register(
            "sidecar~1~web-0.shop~shop.svc",
            ClientMeta::default(),
            "sotw",
        );
        let err = |r: Result<DebugResources, Status>| r.err().map(|e| e.code());
        assert_eq!(
            err(answer(&registry, ask(CONFIG_DUMP, &[]))),
            Some(Code::InvalidArgument)
        );
        let two = ["a".to_string(), "b".to_string()];
        assert_eq!(
            err(answer(&registry, ask(CONFIG_DUMP, &two))),
            Some(Code::InvalidArgument)
        );
        let huge = "x".repeat(1 << 20);
        assert_eq!(
            err(answer(&registry, ask(&huge, &[]))),
            Some(Code::InvalidArgument)
        );
        // Known, but no view yet (or not here): nothing, as istiod answers.
        let named = ["web-0.shop".to_string()];
        let dump = answer(&registry, ask(CONFIG_DUMP, &named)).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(dump.is_empty());
        assert!(registry.find_proxy("web-0.shop").is_some());
        assert!(
            registry
                .find_proxy("sidecar~1~web-0.shop~shop.svc")
                .is_some()
        );
        assert!(registry.find_proxy("web-0").is_none());
    }

    #[test]
    fn the_control_plane_identifier_is_istio_s_json() {
        let cp = ControlPlane {
            id: "shoal-2".into(),
            version: "0.1.0".into(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&cp.identifier()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["ID"], "shoal-2");
        assert_eq!(v["Info"]["version"], "0.1.0");
    }
}
