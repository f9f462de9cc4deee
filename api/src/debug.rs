//! Istio's debug xDS: what `istioctl` asks the control plane over ADS (`proxy-status
//! --xds-address`, `proxy-config` against the control plane), and how such a client is told
//! from a proxy.

use crate::pb::envoy::config::core::v3::Node;
use crate::pb::google::protobuf::value::Kind;

/// Every debug type URL starts with this.
pub const PREFIX: &str = "istio.io/debug";
/// Per connected proxy, its sync status: resources are `envoy.service.status.v3.ClientConfig`.
pub const SYNCZ: &str = "istio.io/debug/syncz";
/// One proxy's configuration, named by the request's only resource name: resources are the
/// `envoy.admin.v3.*ConfigDump` sections of an Envoy config dump.
pub const CONFIG_DUMP: &str = "istio.io/debug/config_dump";

/// The node id `istioctl` writes into its debug requests.
pub const ISTIOCTL_NODE_ID: &str = "debug~0.0.0.0~istioctl~cluster.local";

/// Whether a stream's node is a debug client rather than a proxy: its id has the proxy type
/// `debug` (as istioctl writes it), or its metadata asks for Istio's `event` generator (what
/// istioctl's xDS client announces, with a node id of its own in place of the one the
/// request carried). Neither is ever a proxy that wants config.
pub fn is_debug_client(node: &Node) -> bool {
    node.id.split('~').next() == Some("debug")
        || node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get("GENERATOR"))
            .is_some_and(|v| matches!(&v.kind, Some(Kind::StringValue(g)) if g == "event"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::google::protobuf::{Struct, Value};

    fn node(id: &str, generator: Option<&str>) -> Node {
        let metadata = generator.map(|g| Struct {
            fields: [(
                "GENERATOR".to_string(),
                Value {
                    kind: Some(Kind::StringValue(g.to_string())),
                },
            )]
            .into(),
        });
        Node {
            id: id.to_string(),
            metadata,
            ..Default::default()
        }
    }

    #[test]
    fn debug_clients_are_told_from_proxies() {
        assert!(is_debug_client(&node(ISTIOCTL_NODE_ID, None)));
        assert!(is_debug_client(&node(
            "sidecar~10.0.0.1~test-1.default~default.svc.cluster.local",
            Some("event")
        )));
        assert!(!is_debug_client(&node(
            "sidecar~10.0.0.1~web-0.shop~shop.svc.cluster.local",
            None
        )));
        assert!(!is_debug_client(&node("sidecar~1~a.b~b.svc", Some("grpc"))));
        assert!(!is_debug_client(&node("debugger~1~a.b~b", None)));
    }
}
