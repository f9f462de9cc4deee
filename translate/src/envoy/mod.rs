//! Envoy resource builders. Everything here is a pure function of the model and a scope.

pub(crate) mod access_log;
pub(crate) mod cluster;
pub(crate) mod endpoint;
pub(crate) mod filters;
pub(crate) mod gateway;
pub(crate) mod grpc_server;
pub(crate) mod inbound;
pub(crate) mod ingress;
pub(crate) mod listener;
pub(crate) mod outbound_policy;
pub(crate) mod route;
pub(crate) mod tcp_route;
pub(crate) mod traffic_policy;
pub(crate) mod waypoint;

use shoal_api::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address,
    config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use shoal_api::pb::google::protobuf::{BoolValue, Duration, UInt32Value};

/// Istio's outbound cluster name: `outbound|PORT|SUBSET|HOST`.
pub(crate) fn outbound_cluster_name(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// Istio's inbound cluster name: `inbound|PORT||`.
pub(crate) fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

pub(crate) const BLACKHOLE: &str = "BlackHoleCluster";
pub(crate) const PASSTHROUGH: &str = "PassthroughCluster";
pub(crate) const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";

/// Resources are fetched over the same ADS stream.
pub(crate) fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub(crate) fn duration_ms(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub(crate) fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub(crate) fn socket(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

pub(crate) fn u32v(v: u32) -> UInt32Value {
    UInt32Value { value: v }
}

pub(crate) fn boolv(v: bool) -> BoolValue {
    BoolValue { value: v }
}

/// Whether a string is an IP address (EDS endpoints must be).
pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}
