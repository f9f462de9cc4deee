//! CDS: outbound clusters per service port and DestinationRule subset, inbound clusters per
//! workload port, and Istio's special clusters.

use std::collections::HashMap;
use std::sync::Arc;

use shoal_api::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster,
    circuit_breakers::Thresholds,
    cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, EdsClusterConfig, LbPolicy},
};
use shoal_api::pb::envoy::config::core::v3::{
    BindConfig, Http1ProtocolOptions, Http2ProtocolOptions, Metadata, SocketAddress,
    socket_address::PortSpecifier,
};
use shoal_api::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig,
        explicit_http_config::ProtocolConfig,
    },
};
use shoal_api::pb::google::protobuf::{ListValue, Struct, Value, value::Kind as VKind};
use shoal_config::Labels;
use shoal_config::istio::{SimpleLb, Subset};

use super::{ads, duration_ms, endpoint, outbound_cluster_name, u32v};
use crate::MeshOptions;
use crate::model::{DestinationRuleRule, PortModel, Protocol, Resolution, Service};
use crate::proxy::Generator;
use crate::scope::Scope;

/// One outbound cluster to build: a service port, optionally narrowed to a subset.
#[derive(Debug, Clone)]
pub(crate) struct OutboundCluster<'a> {
    pub name: String,
    pub service: &'a Arc<Service>,
    pub port: &'a PortModel,
    pub subset: Option<&'a Subset>,
    pub dr: Option<&'a Arc<DestinationRuleRule>>,
}

impl OutboundCluster<'_> {
    /// The load balancer: the subset's policy, else the rule's, else Istio's default.
    pub fn lb(&self) -> Option<SimpleLb> {
        let sub = self
            .subset
            .and_then(|s| s.traffic_policy.as_ref())
            .and_then(|p| p.load_balancer.as_ref())
            .and_then(|l| l.simple);
        let top = self
            .dr
            .and_then(|d| d.spec.traffic_policy.as_ref())
            .and_then(|p| p.load_balancer.as_ref())
            .and_then(|l| l.simple);
        sub.or(top)
    }

    pub fn subset_labels(&self) -> Option<&Labels> {
        self.subset.map(|s| &s.labels)
    }

    /// Endpoints come over EDS (rather than DNS or the original destination).
    pub fn uses_eds(&self) -> bool {
        self.service.resolution == Resolution::ClientSideLb
            && self.lb() != Some(SimpleLb::Passthrough)
    }
}

/// The outbound clusters of a service in a scope: one per port, plus one per port and
/// subset of the DestinationRule that applies.
pub(crate) fn outbound_clusters<'a>(
    scope: &Scope<'a>,
    svc: &'a Arc<Service>,
) -> Vec<OutboundCluster<'a>> {
    let dr = scope.destination_rule(&svc.host, &svc.namespace);
    let mut out = Vec::new();
    for port in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
        out.push(OutboundCluster {
            name: outbound_cluster_name(port.port, "", &svc.host),
            service: svc,
            port,
            subset: None,
            dr,
        });
        for subset in dr.map(|d| d.spec.subsets.as_slice()).unwrap_or_default() {
            out.push(OutboundCluster {
                name: outbound_cluster_name(port.port, &subset.name, &svc.host),
                service: svc,
                port,
                subset: Some(subset),
                dr,
            });
        }
    }
    out
}

fn default_thresholds() -> CircuitBreakers {
    CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: Some(u32v(u32::MAX)),
            max_pending_requests: Some(u32v(u32::MAX)),
            max_requests: Some(u32v(u32::MAX)),
            max_retries: Some(u32v(u32::MAX)),
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn protocol_options(protocol: Protocol) -> HashMap<String, shoal_api::pb::google::protobuf::Any> {
    let config = if protocol.is_http2() {
        UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
            protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                Http2ProtocolOptions::default(),
            )),
        })
    } else if protocol == Protocol::Unknown {
        // Sniffed traffic keeps the protocol the client spoke.
        UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
            http_protocol_options: Some(Http1ProtocolOptions::default()),
            http2_protocol_options: Some(Http2ProtocolOptions::default()),
            ..Default::default()
        })
    } else {
        return HashMap::new();
    };
    let opts = HttpProtocolOptions {
        upstream_protocol_options: Some(config),
        ..Default::default()
    };
    HashMap::from([(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        shoal_api::pack(&opts),
    )])
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(VKind::StringValue(s.to_string())),
    }
}

/// Istio's cluster metadata: which service (and subset) a cluster stands for.
fn istio_metadata(c: &OutboundCluster<'_>) -> Metadata {
    let svc = Struct {
        fields: HashMap::from([
            ("host".to_string(), string_value(&c.service.host)),
            ("name".to_string(), string_value(&c.service.name)),
            ("namespace".to_string(), string_value(&c.service.namespace)),
        ]),
    };
    let mut fields = HashMap::from([
        (
            "services".to_string(),
            Value {
                kind: Some(VKind::ListValue(ListValue {
                    values: vec![Value {
                        kind: Some(VKind::StructValue(svc)),
                    }],
                })),
            },
        ),
        (
            "default_original_port".to_string(),
            Value {
                kind: Some(VKind::NumberValue(f64::from(c.port.port))),
            },
        ),
    ]);
    if let Some(s) = c.subset {
        fields.insert("subset".to_string(), string_value(&s.name));
    }
    if let Some(dr) = c.dr {
        fields.insert(
            "config".to_string(),
            string_value(&format!(
                "/apis/networking.istio.io/v1/namespaces/{}/destination-rule/{}",
                dr.namespace, dr.name
            )),
        );
    }
    Metadata {
        filter_metadata: HashMap::from([("istio".to_string(), Struct { fields })]),
        ..Default::default()
    }
}

/// Builds an outbound cluster. gRPC clients get the subset of features their xDS client
/// accepts (EDS or LOGICAL_DNS, round robin).
pub(crate) fn build(c: &OutboundCluster<'_>, flavor: Generator, opts: &MeshOptions) -> Cluster {
    let grpc = flavor == Generator::Grpc;
    let mut cluster = Cluster {
        name: c.name.clone(),
        connect_timeout: Some(duration_ms(opts.connect_timeout_ms)),
        circuit_breakers: Some(default_thresholds()),
        metadata: Some(istio_metadata(c)),
        ..Default::default()
    };
    cluster.lb_policy = match (c.lb(), grpc) {
        (_, true) => LbPolicy::RoundRobin,
        (Some(SimpleLb::RoundRobin), _) => LbPolicy::RoundRobin,
        (Some(SimpleLb::Random), _) => LbPolicy::Random,
        (Some(SimpleLb::Passthrough), _) => LbPolicy::ClusterProvided,
        _ => LbPolicy::LeastRequest,
    } as i32;
    if !grpc {
        cluster.typed_extension_protocol_options = protocol_options(c.port.protocol);
    }
    let discovery = if c.uses_eds() {
        cluster.eds_cluster_config = Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        });
        DiscoveryType::Eds
    } else {
        match c.service.resolution {
            Resolution::Dns | Resolution::DnsRoundRobin => {
                cluster.load_assignment = Some(endpoint::dns_assignment(c));
                cluster.dns_lookup_family = DnsLookupFamily::V4Only as i32;
                if grpc || c.service.resolution == Resolution::DnsRoundRobin {
                    DiscoveryType::LogicalDns
                } else {
                    DiscoveryType::StrictDns
                }
            }
            _ => {
                cluster.lb_policy = LbPolicy::ClusterProvided as i32;
                DiscoveryType::OriginalDst
            }
        }
    };
    cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(discovery as i32));
    cluster
}

/// `inbound|PORT||`: traffic for the workload itself, to the original destination, from
/// Istio's inbound source address so the app sees it as local.
pub(crate) fn inbound(port: u16, protocol: Protocol, opts: &MeshOptions) -> Cluster {
    Cluster {
        name: super::inbound_cluster_name(port),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration_ms(opts.connect_timeout_ms)),
        circuit_breakers: Some(default_thresholds()),
        upstream_bind_config: Some(inbound_bind()),
        typed_extension_protocol_options: protocol_options(protocol),
        ..Default::default()
    }
}

fn inbound_bind() -> BindConfig {
    BindConfig {
        source_address: Some(SocketAddress {
            address: "127.0.0.6".into(),
            port_specifier: Some(PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `BlackHoleCluster`: no endpoints; traffic routed here is dropped.
pub(crate) fn blackhole(opts: &MeshOptions) -> Cluster {
    Cluster {
        name: super::BLACKHOLE.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration_ms(opts.connect_timeout_ms)),
        ..Default::default()
    }
}

/// `PassthroughCluster` / `InboundPassthroughCluster`: to wherever the client connected.
pub(crate) fn passthrough(inbound: bool, opts: &MeshOptions) -> Cluster {
    Cluster {
        name: if inbound {
            super::INBOUND_PASSTHROUGH
        } else {
            super::PASSTHROUGH
        }
        .into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration_ms(opts.connect_timeout_ms)),
        circuit_breakers: Some(default_thresholds()),
        upstream_bind_config: inbound.then(inbound_bind),
        typed_extension_protocol_options: protocol_options(Protocol::Unknown),
        ..Default::default()
    }
}
