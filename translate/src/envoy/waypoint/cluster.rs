//! A waypoint's clusters: `main_internal`, `encap` and `connect_originate` (the hops of
//! the internal listener chain), and one `inbound-vip|PORT|KIND|HOST` cluster per service port
//! (and subset) its routes reach.
//!
//! A VIP cluster is the service's outbound cluster (its DestinationRule's traffic policy,
//! auto mTLS to endpoints with a sidecar) with its endpoints inline: ambient endpoints are
//! addresses of the internal listener `connect_originate` carrying the workload's
//! `IP:PORT` (`envoy.filters.listener.original_dst` metadata, passed through by the
//! `internal_upstream` transport socket), the others the workload itself.

use std::collections::{BTreeSet, HashMap};

use shoal_api::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{
        ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy, OriginalDstLbConfig,
        TransportSocketMatch,
    },
};
use shoal_api::pb::envoy::config::core::v3::{
    Address, EnvoyInternalAddress, Http2ProtocolOptions, Metadata, TransportSocket, address,
    envoy_internal_address::AddressNameSpecifier, socket_address::PortSpecifier,
    transport_socket::ConfigType,
};
use shoal_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use shoal_api::pb::envoy::config::route::v3::{
    Route, route::Action, route_action::ClusterSpecifier,
};
use shoal_api::pb::envoy::extensions::transport_sockets::internal_upstream::v3::{
    InternalUpstreamTransport, internal_upstream_transport::MetadataValueSource,
};
use shoal_api::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use shoal_api::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config},
};
use shoal_api::pb::envoy::r#type::metadata::v3::{MetadataKind, metadata_kind};
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind};

use super::{CONNECT_ORIGINATE, MAIN_INTERNAL};
use crate::ambient::{Enrolment, HBONE_PORT};
use crate::envoy::cluster::{self as outbound, OutboundCluster};
use crate::envoy::{duration_ms, endpoint, filters, u32v};
use crate::proxy::Generator;
use crate::scope::Scope;
use crate::security::tls;

/// The endpoint metadata `original_dst` reads on an internal listener.
const ORIGINAL_DST_METADATA: &str = "envoy.filters.listener.original_dst";
/// The transport socket match of endpoints reached through a tunnel.
const TUNNEL_MATCH: (&str, &str) = ("tunnel", "hbone");

/// The VIP clusters a waypoint's chains and routes refer to.
#[derive(Debug, Default)]
pub(super) struct Wanted(BTreeSet<String>);

impl Wanted {
    pub(super) fn insert(&mut self, name: &str) {
        self.0.insert(name.to_string());
    }
}

/// `inbound-vip|PORT|KIND|HOST`, `KIND` being `http` or `tcp`, `/SUBSET` appended for a
/// subset (Istio's names).
pub(super) fn vip_name(port: u16, kind: &str, subset: &str, host: &str) -> String {
    if subset.is_empty() {
        format!("inbound-vip|{port}|{kind}|{host}")
    } else {
        format!("inbound-vip|{port}|{kind}/{subset}|{host}")
    }
}

/// The VIP cluster a sidecar's outbound cluster name stands for on a waypoint's HTTP chain.
fn http_vip_name(outbound: &str) -> Option<String> {
    let mut parts = outbound.splitn(4, '|');
    let (dir, port, subset, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if dir != "outbound" {
        return None;
    }
    Some(vip_name(port.parse().ok()?, "http", subset, host))
}

/// Points routes built for sidecars at the waypoint's VIP clusters, and notes those.
pub(super) fn rename_routes(routes: &mut [Route], wanted: &mut Wanted) {
    let mut rename = |name: &mut String| {
        if let Some(vip) = http_vip_name(name) {
            wanted.insert(&vip);
            *name = vip;
        }
    };
    for r in routes {
        let Some(Action::Route(a)) = r.action.as_mut() else {
            continue;
        };
        match a.cluster_specifier.as_mut() {
            Some(ClusterSpecifier::Cluster(name)) => rename(name),
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                for c in &mut w.clusters {
                    rename(&mut c.name);
                }
            }
            _ => {}
        }
        for m in &mut a.request_mirror_policies {
            rename(&mut m.cluster);
        }
    }
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn raw_buffer() -> TransportSocket {
    TransportSocket {
        name: filters::RAW_BUFFER_TRANSPORT_SOCKET.into(),
        config_type: Some(ConfigType::TypedConfig(shoal_api::pack(
            &RawBuffer::default(),
        ))),
    }
}

/// To an internal listener, passing the endpoint's `original_dst` metadata along.
fn internal_upstream() -> TransportSocket {
    let transport = InternalUpstreamTransport {
        passthrough_metadata: vec![MetadataValueSource {
            kind: Some(MetadataKind {
                kind: Some(metadata_kind::Kind::Host(metadata_kind::Host::default())),
            }),
            name: ORIGINAL_DST_METADATA.into(),
        }],
        transport_socket: Some(raw_buffer()),
    };
    TransportSocket {
        name: filters::INTERNAL_UPSTREAM_TRANSPORT_SOCKET.into(),
        config_type: Some(ConfigType::TypedConfig(shoal_api::pack(&transport))),
    }
}

fn internal_address(listener: &str, endpoint_id: &str) -> Address {
    Address {
        address: Some(address::Address::EnvoyInternalAddress(
            EnvoyInternalAddress {
                address_name_specifier: Some(AddressNameSpecifier::ServerListenerName(
                    listener.into(),
                )),
                endpoint_id: endpoint_id.into(),
            },
        )),
    }
}

fn endpoint_at(address: Address) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(address),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The assignment of `cluster`: one endpoint, the internal listener `listener`.
fn to_internal_listener(cluster: &str, listener: &str) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![endpoint_at(internal_address(listener, ""))],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `main_internal`: one endpoint, the internal listener of that name.
fn main_internal(connect_timeout_ms: u64) -> Cluster {
    Cluster {
        name: MAIN_INTERNAL.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration_ms(connect_timeout_ms)),
        load_assignment: Some(to_internal_listener(MAIN_INTERNAL, MAIN_INTERNAL)),
        transport_socket: Some(internal_upstream()),
        ..Default::default()
    }
}

/// `encap`: traffic addressed to a workload, into `connect_originate`.
pub(super) const ENCAP: &str = "encap";

fn encap(connect_timeout_ms: u64) -> Cluster {
    Cluster {
        name: ENCAP.into(),
        load_assignment: Some(to_internal_listener(ENCAP, CONNECT_ORIGINATE)),
        ..main_internal(connect_timeout_ms)
    }
}

/// `connect_originate`: HBONE to the original destination's port 15008 — mTLS with the
/// waypoint's certificate, HTTP/2.
fn connect_originate(connect_timeout_ms: u64) -> Cluster {
    let mut context = tls::upstream_mesh(String::new(), &[]);
    if let Some(common) = context.common_tls_context.as_mut() {
        common.alpn_protocols = vec!["h2".into()];
    }
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    Cluster {
        name: CONNECT_ORIGINATE.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        lb_config: Some(LbConfig::OriginalDstLbConfig(OriginalDstLbConfig {
            upstream_port_override: Some(u32v(HBONE_PORT)),
            ..Default::default()
        })),
        connect_timeout: Some(duration_ms(connect_timeout_ms)),
        typed_extension_protocol_options: HashMap::from([(
            filters::HTTP_PROTOCOL_OPTIONS.to_string(),
            shoal_api::pack(&options),
        )]),
        transport_socket: Some(tls::socket(shoal_api::pack(&context))),
        ..Default::default()
    }
}

/// The `IP:PORT` of an endpoint with a socket address.
fn socket_of(e: &LbEndpoint) -> Option<(String, u32)> {
    let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
        return None;
    };
    let Some(address::Address::SocketAddress(sa)) = ep.address.as_ref()?.address.as_ref() else {
        return None;
    };
    let Some(PortSpecifier::PortValue(port)) = sa.port_specifier else {
        return None;
    };
    Some((sa.address.clone(), port))
}

/// Turns an ambient workload's endpoint into one through `connect_originate`.
fn tunnel(e: &mut LbEndpoint, ip: &str, port: u32) {
    let target = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    if let Some(HostIdentifier::Endpoint(ep)) = e.host_identifier.as_mut() {
        ep.address = Some(internal_address(CONNECT_ORIGINATE, &target));
    }
    let meta = e.metadata.get_or_insert_with(Metadata::default);
    meta.filter_metadata.insert(
        ORIGINAL_DST_METADATA.into(),
        Struct {
            fields: HashMap::from([("local".to_string(), string(&target))]),
        },
    );
    meta.filter_metadata.insert(
        filters::TRANSPORT_SOCKET_MATCH.into(),
        Struct {
            fields: HashMap::from([(TUNNEL_MATCH.0.to_string(), string(TUNNEL_MATCH.1))]),
        },
    );
}

/// A VIP cluster from the service's outbound cluster.
fn vip(scope: &Scope<'_>, enrolment: &Enrolment, c: &OutboundCluster<'_>, name: &str) -> Cluster {
    let mut cluster = outbound::build(c, Generator::Envoy, scope.model, true, None);
    cluster.name = name.to_string();
    if c.uses_eds() {
        let mut assignment = endpoint::assignment(c, None, scope.model);
        assignment.cluster_name = name.to_string();
        for e in assignment
            .endpoints
            .iter_mut()
            .flat_map(|l| l.lb_endpoints.iter_mut())
        {
            if let Some((ip, port)) = socket_of(e)
                && enrolment.hbone(&ip)
            {
                tunnel(e, &ip, port);
            }
        }
        cluster.eds_cluster_config = None;
        cluster.cluster_discovery_type =
            Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
        cluster.load_assignment = Some(assignment);
    }
    cluster.transport_socket_matches.insert(
        0,
        TransportSocketMatch {
            name: "hbone".into(),
            r#match: Some(Struct {
                fields: HashMap::from([(TUNNEL_MATCH.0.to_string(), string(TUNNEL_MATCH.1))]),
            }),
            transport_socket: Some(internal_upstream()),
        },
    );
    cluster
}

/// `inbound-vip|PORT|KIND[/SUBSET]|HOST` → (port, subset, host).
fn parse_vip(name: &str) -> Option<(u16, &str, &str)> {
    let mut parts = name.splitn(4, '|');
    let (dir, port, kind, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if dir != "inbound-vip" {
        return None;
    }
    let subset = kind.split_once('/').map_or("", |(_, s)| s);
    Some((port.parse().ok()?, subset, host))
}

/// Every cluster of a waypoint: the two internal hops and the wanted VIP clusters whose
/// service (and subset) exists.
pub(super) fn build(scope: &Scope<'_>, enrolment: &Enrolment, wanted: &Wanted) -> Vec<Cluster> {
    let timeout = scope.model.options.connect_timeout_ms;
    let mut out = vec![
        main_internal(timeout),
        encap(timeout),
        connect_originate(timeout),
    ];
    for name in &wanted.0 {
        let Some((port, subset, host)) = parse_vip(name) else {
            continue;
        };
        let Some(svc) = scope.model.service_for(host, scope.namespace()) else {
            continue;
        };
        let found = outbound::outbound_clusters(scope, svc)
            .into_iter()
            .find(|c| c.port.port == port && c.subset.map_or("", |s| s.name.as_str()) == subset);
        if let Some(c) = found {
            out.push(vip(scope, enrolment, &c, name));
        }
    }
    out
}
