//! Who is asking: the proxy's identity and settings, read from the xDS `Node`.
//!
//! Node ids follow Istio: `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN`, with `TYPE` one of
//! `sidecar`, `router`, `waypoint` or `ztunnel` (and `federation` for a peer shoal group). Node metadata may add `NAMESPACE`, `LABELS`,
//! `INTERCEPTION_MODE` (`REDIRECT`, `TPROXY`, `NONE`), `GENERATOR` (`grpc` for proxyless
//! clients), `INSTANCE_IPS`, `CLUSTER_ID`, `ISTIO_VERSION` and `UNPRIVILEGED_POD`.

use serde::Serialize;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind as ValueKind};
use shoal_config::Labels;
use thiserror::Error;

use crate::model::Locality;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyType {
    Sidecar,
    Router,
    /// An ambient waypoint (Envoy deployed for a Gateway of class `istio-waypoint`). A
    /// `router~` proxy of such a Gateway is one too ([`crate::ViewKey::for_proxy`]).
    Waypoint,
    Ztunnel,
    /// A peer shoal group importing what this one exports (`crate::federation`).
    Federation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    Envoy,
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Interception {
    Redirect,
    Tproxy,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proxy {
    pub id: String,
    pub proxy_type: ProxyType,
    pub ips: Vec<String>,
    /// `POD.NAMESPACE` part of the id.
    pub workload: String,
    pub namespace: String,
    pub labels: Labels,
    pub generator: Generator,
    pub interception: Interception,
    pub cluster_id: Option<String>,
    pub istio_version: Option<String>,
    /// Where the proxy runs: the node's `locality` (Istio's agent fills it from the pod's
    /// topology), else the `istio-locality` label.
    pub locality: Locality,
    /// `PROXY_CONFIG.gatewayTopology` (mesh default, or the pod's `proxy.istio.io/config`):
    /// what a gateway trusts of the hops in front of it.
    pub gateway_topology: Option<GatewayTopology>,
    /// `UNPRIVILEGED_POD`: the proxy cannot bind ports below 1024.
    pub unprivileged: bool,
}

/// ProxyConfig `gatewayTopology`: the trusted proxies in front of a gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct GatewayTopology {
    /// `numTrustedProxies`: X-Forwarded-For hops to trust (Envoy's `xff_num_trusted_hops`).
    pub num_trusted_proxies: u32,
    /// `forwardClientCertDetails`; `None` (UNDEFINED) means Istio's gateway default.
    pub forward_client_cert: Option<ClientCertForwarding>,
    /// `proxyProtocol`: connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
}

/// How a gateway handles `x-forwarded-client-cert` (Istio's `ForwardClientCertDetails`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientCertForwarding {
    Sanitize,
    ForwardOnly,
    AppendForward,
    SanitizeSet,
    AlwaysForwardOnly,
}

fn gateway_topology(meta: &Struct) -> Result<Option<GatewayTopology>, ProxyError> {
    let Some(ValueKind::StructValue(pc)) = meta
        .fields
        .get("PROXY_CONFIG")
        .and_then(|v| v.kind.as_ref())
    else {
        return Ok(None);
    };
    let Some(ValueKind::StructValue(gt)) = pc
        .fields
        .get("gatewayTopology")
        .and_then(|v| v.kind.as_ref())
    else {
        return Ok(None);
    };
    let bad = |m: String| ProxyError::BadMetadata("PROXY_CONFIG.gatewayTopology", m);
    let num_trusted_proxies = match gt
        .fields
        .get("numTrustedProxies")
        .and_then(|v| v.kind.as_ref())
    {
        None => 0,
        Some(ValueKind::NumberValue(n))
            if *n >= 0.0 && *n <= f64::from(u32::MAX) && n.fract() == 0.0 =>
        {
            *n as u32
        }
        Some(ValueKind::StringValue(s)) => s
            .parse()
            .map_err(|_| bad(format!("numTrustedProxies {s:?} is not a count")))?,
        Some(other) => return Err(bad(format!("numTrustedProxies {other:?} is not a count"))),
    };
    let forward_client_cert = match string_field(gt, "forwardClientCertDetails") {
        None | Some("UNDEFINED") => None,
        Some("SANITIZE") => Some(ClientCertForwarding::Sanitize),
        Some("FORWARD_ONLY") => Some(ClientCertForwarding::ForwardOnly),
        Some("APPEND_FORWARD") => Some(ClientCertForwarding::AppendForward),
        Some("SANITIZE_SET") => Some(ClientCertForwarding::SanitizeSet),
        Some("ALWAYS_FORWARD_ONLY") => Some(ClientCertForwarding::AlwaysForwardOnly),
        Some(other) => return Err(bad(format!("unknown forwardClientCertDetails {other:?}"))),
    };
    Ok(Some(GatewayTopology {
        num_trusted_proxies,
        forward_client_cert,
        proxy_protocol: gt.fields.contains_key("proxyProtocol"),
    }))
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("the first request of a stream must carry a node")]
    NoNode,
    #[error("node id {0:?} is not TYPE~IP~POD.NAMESPACE~DOMAIN")]
    BadId(String),
    #[error("node id {0:?}: unknown proxy type {1:?} (sidecar, router or ztunnel)")]
    BadType(String, String),
    #[error("node id {0:?}: no namespace in the id or the NAMESPACE metadata")]
    NoNamespace(String),
    #[error("node metadata {0}: {1}")]
    BadMetadata(&'static str, String),
}

fn string_field<'a>(s: &'a Struct, key: &str) -> Option<&'a str> {
    match s.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(ValueKind::StringValue(v)) => Some(v.as_str()),
        _ => None,
    }
}

fn labels_field(s: &Struct) -> Result<Labels, ProxyError> {
    let Some(v) = s.fields.get("LABELS") else {
        return Ok(Labels::new());
    };
    match &v.kind {
        Some(ValueKind::StructValue(st)) => st
            .fields
            .iter()
            .map(|(k, v): (&String, &Value)| match &v.kind {
                Some(ValueKind::StringValue(s)) => Ok((k.clone(), s.clone())),
                _ => Err(ProxyError::BadMetadata(
                    "LABELS",
                    format!("label {k:?} is not a string"),
                )),
            })
            .collect(),
        Some(ValueKind::NullValue(_)) | None => Ok(Labels::new()),
        _ => Err(ProxyError::BadMetadata(
            "LABELS",
            "not a map of strings".into(),
        )),
    }
}

fn node_locality(node: &Node, labels: &Labels) -> Locality {
    let from_node = node.locality.as_ref().map(|l| Locality {
        region: l.region.clone(),
        zone: l.zone.clone(),
        subzone: l.sub_zone.clone(),
    });
    match from_node {
        Some(l) if !l.is_empty() => l,
        _ => labels
            .get(shoal_config::k8s::topology::ISTIO_LOCALITY)
            .map(Locality::parse)
            .unwrap_or_default(),
    }
}

/// Longest accepted node id; anything longer is hostile.
const MAX_ID: usize = 1024;

impl Proxy {
    pub fn from_node(node: Option<&Node>) -> Result<Proxy, ProxyError> {
        let node = node.ok_or(ProxyError::NoNode)?;
        let id = node.id.clone();
        if id.len() > MAX_ID {
            return Err(ProxyError::BadId(format!(
                "{}…",
                &id[..id.floor_char_boundary(64)]
            )));
        }
        let parts: Vec<&str> = id.split('~').collect();
        if parts.len() != 4 {
            return Err(ProxyError::BadId(id));
        }
        let proxy_type = match parts[0] {
            "sidecar" => ProxyType::Sidecar,
            "router" => ProxyType::Router,
            "waypoint" => ProxyType::Waypoint,
            "ztunnel" => ProxyType::Ztunnel,
            "federation" => ProxyType::Federation,
            other => return Err(ProxyError::BadType(id.clone(), other.to_string())),
        };
        let empty = Struct::default();
        let meta = node.metadata.as_ref().unwrap_or(&empty);
        let namespace = string_field(meta, "NAMESPACE")
            .map(str::to_string)
            .or_else(|| parts[2].rsplit_once('.').map(|(_, ns)| ns.to_string()))
            .or_else(|| parts[3].split('.').next().map(str::to_string))
            .filter(|ns| shoal_config::host::is_dns_label(ns))
            .ok_or_else(|| ProxyError::NoNamespace(id.clone()))?;
        let mut ips: Vec<String> = match string_field(meta, "INSTANCE_IPS") {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            None => Vec::new(),
        };
        if !parts[1].is_empty() && !ips.iter().any(|i| i == parts[1]) {
            ips.insert(0, parts[1].to_string());
        }
        let interception = match string_field(meta, "INTERCEPTION_MODE")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("REDIRECT") => Interception::Redirect,
            Some("TPROXY") => Interception::Tproxy,
            Some("NONE") => Interception::None,
            Some(other) => {
                return Err(ProxyError::BadMetadata(
                    "INTERCEPTION_MODE",
                    format!("unknown mode {other:?}"),
                ));
            }
        };
        let labels = labels_field(meta)?;
        let generator = match string_field(meta, "GENERATOR") {
            Some("grpc") => Generator::Grpc,
            _ => Generator::Envoy,
        };
        Ok(Proxy {
            proxy_type,
            ips,
            workload: parts[2].to_string(),
            namespace,
            generator,
            interception,
            cluster_id: string_field(meta, "CLUSTER_ID").map(str::to_string),
            istio_version: string_field(meta, "ISTIO_VERSION").map(str::to_string),
            locality: node_locality(node, &labels),
            gateway_topology: gateway_topology(meta)?,
            // Go's `strconv.ParseBool` truths, as Istio reads it.
            unprivileged: matches!(
                string_field(meta, "UNPRIVILEGED_POD"),
                Some("1" | "t" | "T" | "true" | "TRUE" | "True")
            ),
            labels,
            id,
        })
    }

    /// Whether every address of the proxy is IPv6 (Istio's IPv6 IP mode): its loopback
    /// address is then `::1`. A proxy with IPv4 addresses, or none known, binds IPv4.
    pub fn ipv6_only(&self) -> bool {
        !self.ips.is_empty()
            && self
                .ips
                .iter()
                .all(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, meta: &[(&str, &str)]) -> Node {
        let fields = meta
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value {
                        kind: Some(ValueKind::StringValue(v.to_string())),
                    },
                )
            })
            .collect();
        Node {
            id: id.into(),
            metadata: Some(Struct { fields }),
            ..Default::default()
        }
    }

    #[test]
    fn ipv6_only_when_every_address_is() {
        let ipv6_only = |id: &str, ips: &str| {
            Proxy::from_node(Some(&node(id, &[("INSTANCE_IPS", ips)])))
                .unwrap()
                .ipv6_only()
        };
        assert!(ipv6_only(
            "sidecar~fd00::1~a.x~x.svc.cluster.local",
            "fd00::1,fd00::2"
        ));
        // Dual stack binds IPv4 first, as Istio does without ISTIO_DUAL_STACK.
        assert!(!ipv6_only(
            "sidecar~fd00::1~a.x~x.svc.cluster.local",
            "10.0.0.1"
        ));
        assert!(!ipv6_only("sidecar~10.0.0.1~a.x~x.svc.cluster.local", ""));
        assert!(!ipv6_only("sidecar~~a.x~x.svc.cluster.local", ""));
    }

    #[test]
    fn unprivileged_as_go_parses_it() {
        let unprivileged = |v: &str| {
            Proxy::from_node(Some(&node(
                "sidecar~10.0.0.1~a.x~x.svc.cluster.local",
                &[("UNPRIVILEGED_POD", v)],
            )))
            .unwrap()
            .unprivileged
        };
        assert!(unprivileged("true") && unprivileged("1") && unprivileged("True"));
        assert!(!unprivileged("false") && !unprivileged("yes") && !unprivileged(""));
    }

    #[test]
    fn istio_node_ids() {
        let p = Proxy::from_node(Some(&node(
            "sidecar~10.0.0.1~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local",
            &[],
        )))
        .unwrap();
        assert_eq!(p.namespace, "bookinfo");
        assert_eq!(p.ips, vec!["10.0.0.1"]);
        assert_eq!(p.interception, Interception::Redirect);
        let p = Proxy::from_node(Some(&node(
            "sidecar~~c.x~x.svc.cluster.local",
            &[
                ("GENERATOR", "grpc"),
                ("INTERCEPTION_MODE", "NONE"),
                ("NAMESPACE", "y"),
            ],
        )))
        .unwrap();
        assert_eq!(p.generator, Generator::Grpc);
        assert_eq!(p.interception, Interception::None);
        assert_eq!(p.namespace, "y");
    }

    #[test]
    fn locality_from_the_node_else_the_label() {
        let mut n = node("sidecar~1~a.b~b.svc", &[]);
        n.locality = Some(shoal_api::pb::envoy::config::core::v3::Locality {
            region: "us-west".into(),
            zone: "zone-a".into(),
            sub_zone: String::new(),
        });
        let p = Proxy::from_node(Some(&n)).unwrap();
        assert_eq!(p.locality, Locality::parse("us-west/zone-a"));
        let mut labels = Struct::default();
        labels.fields.insert(
            "istio-locality".into(),
            Value {
                kind: Some(ValueKind::StringValue("eu.zone-b.rack-1".into())),
            },
        );
        let mut n = node("sidecar~1~a.b~b.svc", &[]);
        if let Some(m) = n.metadata.as_mut() {
            m.fields.insert(
                "LABELS".into(),
                Value {
                    kind: Some(ValueKind::StructValue(labels)),
                },
            );
        }
        let p = Proxy::from_node(Some(&n)).unwrap();
        assert_eq!(p.locality, Locality::parse("eu/zone-b/rack-1"));
        let p = Proxy::from_node(Some(&node("sidecar~1~a.b~b.svc", &[]))).unwrap();
        assert!(p.locality.is_empty());
    }

    #[test]
    fn gateway_topology_from_proxy_config() {
        let st = |fields: Vec<(&str, ValueKind)>| Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value { kind: Some(v) }))
                .collect(),
        };
        let with = |gt: Struct| {
            let mut n = node("router~1~gw.ns~ns.svc", &[]);
            let pc = st(vec![("gatewayTopology", ValueKind::StructValue(gt))]);
            if let Some(m) = n.metadata.as_mut() {
                m.fields.insert(
                    "PROXY_CONFIG".into(),
                    Value {
                        kind: Some(ValueKind::StructValue(pc)),
                    },
                );
            }
            Proxy::from_node(Some(&n))
        };
        let p = with(st(vec![
            ("numTrustedProxies", ValueKind::NumberValue(2.0)),
            (
                "forwardClientCertDetails",
                ValueKind::StringValue("APPEND_FORWARD".into()),
            ),
            ("proxyProtocol", ValueKind::StructValue(Struct::default())),
        ]))
        .unwrap();
        assert_eq!(
            p.gateway_topology,
            Some(GatewayTopology {
                num_trusted_proxies: 2,
                forward_client_cert: Some(ClientCertForwarding::AppendForward),
                proxy_protocol: true,
            })
        );
        assert!(
            with(st(vec![(
                "numTrustedProxies",
                ValueKind::NumberValue(-1.0)
            )]))
            .is_err()
        );
        assert!(with(st(vec![("numTrustedProxies", ValueKind::NumberValue(1.5))])).is_err());
        assert!(
            with(st(vec![(
                "forwardClientCertDetails",
                ValueKind::StringValue("SOMETIMES".into())
            )]))
            .is_err()
        );
        let none = Proxy::from_node(Some(&node("router~1~gw.ns~ns.svc", &[]))).unwrap();
        assert_eq!(none.gateway_topology, None);
    }

    #[test]
    fn bad_ids_are_errors() {
        assert_eq!(Proxy::from_node(None), Err(ProxyError::NoNode));
        assert!(matches!(
            Proxy::from_node(Some(&node("nope", &[]))),
            Err(ProxyError::BadId(_))
        ));
        assert!(matches!(
            Proxy::from_node(Some(&node("gateway~1~a.b~b.svc", &[]))),
            Err(ProxyError::BadType(..))
        ));
        assert!(matches!(
            Proxy::from_node(Some(&node("sidecar~1~a~", &[]))),
            Err(ProxyError::NoNamespace(_))
        ));
        assert!(Proxy::from_node(Some(&node(&"x".repeat(5000), &[]))).is_err());
        assert!(
            Proxy::from_node(Some(&node(
                "sidecar~1~a.b~b.svc",
                &[("INTERCEPTION_MODE", "WEIRD")]
            )))
            .is_err()
        );
    }
}
