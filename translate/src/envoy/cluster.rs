//! CDS: outbound clusters per service port and DestinationRule subset, inbound clusters per
//! workload port, and Istio's special clusters.

use std::collections::HashMap;
use std::sync::Arc;

use shoal_api::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, EdsClusterConfig, LbPolicy,
        TransportSocketMatch,
    },
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
use shoal_config::istio::{ClientTlsMode, ClientTlsSettings, LocalityLbSetting, SimpleLb, Subset};

use super::traffic_policy::{self, Settings};
use super::{ads, duration_ms, endpoint, filters, outbound_cluster_name, u32v};
use crate::MeshOptions;
use crate::locality::ClientLocality;
use crate::model::{DestinationRuleRule, Model, PortModel, Protocol, Resolution, Service};
use crate::proxy::Generator;
use crate::scope::Scope;
use crate::security::tls::SanMatch;
use crate::security::{self, PeerMode, tls};

/// One outbound cluster to build: a service port, optionally narrowed to a subset.
#[derive(Debug, Clone)]
pub(crate) struct OutboundCluster<'a> {
    pub name: String,
    pub service: &'a Arc<Service>,
    pub port: &'a PortModel,
    pub subset: Option<&'a Subset>,
    pub dr: Option<&'a Arc<DestinationRuleRule>>,
    /// MeshConfig `localityLbSetting`, for a DestinationRule that sets none.
    pub mesh_locality: Option<&'a LocalityLbSetting>,
}

impl OutboundCluster<'_> {
    /// The DestinationRule settings that apply to this cluster's port (Istio's
    /// `MergeTrafficPolicy`; see [`Settings::merged`]).
    pub fn settings(&self) -> Settings<'_> {
        Settings::merged(
            self.dr.and_then(|d| d.spec.traffic_policy.as_deref()),
            self.subset.and_then(|s| s.traffic_policy.as_ref()),
            u32::from(self.port.port),
        )
    }

    /// The load balancer the DestinationRule asks for, if any.
    pub fn lb(&self) -> Option<SimpleLb> {
        self.settings().lb.and_then(|l| l.simple)
    }

    /// The DestinationRule's client TLS settings for this cluster, if any.
    pub fn tls(&self) -> Option<&ClientTlsSettings> {
        self.settings().tls
    }

    pub fn subset_labels(&self) -> Option<&Labels> {
        self.subset.map(|s| &s.labels)
    }

    /// How the cluster spreads requests over localities, if it does.
    pub fn locality_policy(&self) -> Option<crate::locality::Policy<'_>> {
        let s = self.settings();
        let setting = s.lb.and_then(|l| l.locality_lb_setting.as_ref());
        crate::locality::Policy::of(setting.or(self.mesh_locality), s.outlier)
    }

    /// Endpoints come over EDS (rather than DNS or the original destination).
    pub fn uses_eds(&self) -> bool {
        self.service.resolution == Resolution::ClientSideLb
            && self.lb() != Some(SimpleLb::Passthrough)
    }
}

/// Whether a cluster's inline endpoints are placed for the client's locality: a STRICT_DNS
/// cluster (DNS resolution, Envoy) that balances by locality. LOGICAL_DNS clusters (gRPC,
/// DNS_ROUND_ROBIN) hold a single endpoint, EDS clusters get theirs placed over EDS.
pub(crate) fn places_inline_by_locality(c: &OutboundCluster<'_>, flavor: Generator) -> bool {
    flavor == Generator::Envoy
        && !c.uses_eds()
        && c.service.resolution == Resolution::Dns
        && c.locality_policy().is_some()
}

/// The outbound clusters of a service in a scope: one per port, plus one per port and
/// subset of the DestinationRule that applies.
pub(crate) fn outbound_clusters<'a>(
    scope: &Scope<'a>,
    svc: &'a Arc<Service>,
) -> Vec<OutboundCluster<'a>> {
    let dr = scope.destination_rule(&svc.host, &svc.namespace);
    let mesh_locality = scope.model.options.locality_lb_setting.as_ref();
    let mut out = Vec::new();
    for port in svc.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
        out.push(OutboundCluster {
            name: outbound_cluster_name(port.port, "", &svc.host),
            service: svc,
            port,
            subset: None,
            dr,
            mesh_locality,
        });
        for subset in dr.map(|d| d.spec.subsets.as_slice()).unwrap_or_default() {
            out.push(OutboundCluster {
                name: outbound_cluster_name(port.port, &subset.name, &svc.host),
                service: svc,
                port,
                subset: Some(subset),
                dr,
                mesh_locality,
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
        filters::HTTP_PROTOCOL_OPTIONS.to_string(),
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
/// `certs`: the proxy has a workload certificate (else no auto-mTLS).
pub(crate) fn build(
    c: &OutboundCluster<'_>,
    flavor: Generator,
    model: &Model,
    certs: bool,
    client: Option<&ClientLocality>,
) -> Cluster {
    let opts = &model.options;
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
    let settings = c.settings();
    if !grpc {
        cluster.typed_extension_protocol_options =
            traffic_policy::http_protocol_options(c.port.protocol, settings.pool);
        if let Some(lb) = settings.lb {
            traffic_policy::apply_slow_start(&mut cluster, lb);
        }
        if let Some(ch) = settings.consistent_hash() {
            traffic_policy::apply_consistent_hash(&mut cluster, ch);
        }
        if let Some(pool) = settings.pool {
            traffic_policy::apply_connection_pool(&mut cluster, pool);
        }
        if let Some(o) = settings.outlier {
            traffic_policy::apply_outlier_detection(&mut cluster, o);
        }
    }
    if (c.uses_eds() || places_inline_by_locality(c, flavor))
        && c.locality_policy().is_some_and(|p| p.weighs_localities())
    {
        traffic_policy::weigh_localities(&mut cluster);
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
                let client = client.filter(|_| places_inline_by_locality(c, flavor));
                cluster.load_assignment = Some(endpoint::dns_assignment(c, client, opts));
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
    if grpc {
        grpc_upstream_tls(&mut cluster, c, model);
    } else {
        upstream_tls(&mut cluster, c, discovery, model, certs);
    }
    cluster
}

/// Client TLS of a proxyless gRPC cluster: mTLS when a DestinationRule says ISTIO_MUTUAL,
/// with the certificates of the client's bootstrap certificate provider (see
/// [`tls::upstream_grpc_mesh`]). As in Istio, auto mTLS does not apply (gRPC cannot choose
/// TLS per endpoint: it has no transport socket matches), and SIMPLE/MUTUAL with files are
/// not expressible (gRPC reads certificates only through its bootstrap's providers).
fn grpc_upstream_tls(cluster: &mut Cluster, c: &OutboundCluster<'_>, model: &Model) {
    let Some(settings) = c.tls() else { return };
    if settings.mode() != ClientTlsMode::IstioMutual {
        return;
    }
    let sans = if settings.subject_alt_names.is_empty() {
        service_identities(c, model)
    } else {
        SanMatch::exact_all(&settings.subject_alt_names)
    };
    let context = tls::upstream_grpc_mesh(&sans);
    cluster.transport_socket = Some(tls::socket(shoal_api::pack(&context)));
}

/// Client TLS of an Envoy cluster: the DestinationRule's settings when it has any (DISABLE
/// means plaintext), else Istio's auto mTLS — mTLS to the endpoints that run a sidecar
/// (EDS metadata `tlsMode: istio`), plaintext to the others. Original-destination clusters
/// (headless Services) have no endpoint metadata: mTLS when all the service's endpoints run
/// a sidecar. Auto mTLS is skipped for services outside the mesh and when the destination
/// namespace (or, without a namespace policy, the mesh) disables mTLS. A workload-level PeerAuthentication of the destination is not
/// considered: the client cannot know which workload it reaches (as in Istio).
fn upstream_tls(
    cluster: &mut Cluster,
    c: &OutboundCluster<'_>,
    d: DiscoveryType,
    model: &Model,
    certs: bool,
) {
    let subset = c.subset.map_or("", |s| s.name.as_str());
    let mesh_sni = || tls::mesh_sni(c.port.port, subset, &c.service.host);
    if let Some(settings) = c.tls() {
        let context = match settings.mode() {
            ClientTlsMode::Disable => return,
            ClientTlsMode::IstioMutual => {
                let sans = if settings.subject_alt_names.is_empty() {
                    service_identities(c, model)
                } else {
                    SanMatch::exact_all(&settings.subject_alt_names)
                };
                let sni = settings.sni.clone().unwrap_or_else(mesh_sni);
                tls::upstream_mesh(sni, &sans)
            }
            ClientTlsMode::Simple | ClientTlsMode::Mutual => {
                match tls::upstream_settings(settings) {
                    Some(ctx) => ctx,
                    None => return,
                }
            }
        };
        cluster.transport_socket = Some(tls::socket(shoal_api::pack(&context)));
        return;
    }
    let auto = certs
        && model.options.auto_mtls
        && !c.service.mesh_external
        && security::namespace_mode(model, &c.service.namespace) != Some(PeerMode::Disable);
    if !auto {
        return;
    }
    let context = tls::upstream_mesh(mesh_sni(), &service_identities(c, model));
    if d == DiscoveryType::OriginalDst {
        // No endpoint metadata to choose by: mTLS for every connection when every endpoint
        // of the service runs a sidecar, else plaintext (Istio's inference for headless
        // Services and PASSTHROUGH load balancing).
        let eps = &c.service.endpoints;
        if !eps.is_empty() && eps.iter().all(|e| e.istio_tls) {
            cluster.transport_socket = Some(tls::socket(shoal_api::pack(&context)));
        }
        return;
    }
    // Endpoints without the `tlsMode: istio` metadata use the cluster's default transport
    // socket, plaintext: that is Istio's `tlsMode-disabled` match.
    cluster.transport_socket_matches = vec![TransportSocketMatch {
        name: "tlsMode-istio".into(),
        r#match: Some(Struct {
            fields: HashMap::from([("tlsMode".to_string(), string_value("istio"))]),
        }),
        transport_socket: Some(tls::socket(shoal_api::pack(&context))),
    }];
}

/// The identities a client accepts from a service's endpoints: the service's declared
/// subject alt names (a ServiceEntry's `subjectAltNames`) or, without any, every identity
/// of the service's namespace (`spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/…`).
///
/// Istio pins the exact service accounts of the current endpoints; those change with every
/// rollout, and putting them in the cluster would turn endpoint-only updates into full
/// rebuilds. The namespace is fixed for a service (its workloads run there), so the
/// check costs nothing at runtime and still refuses a peer from another namespace.
fn service_identities(c: &OutboundCluster<'_>, model: &Model) -> Vec<SanMatch> {
    let svc = c.service;
    if !svc.subject_alt_names.is_empty() {
        return SanMatch::exact_all(&svc.subject_alt_names);
    }
    vec![SanMatch::Prefix(format!(
        "spiffe://{}/ns/{}/sa/",
        model.options.trust_domain, svc.namespace
    ))]
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
