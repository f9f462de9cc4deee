//! A Sidecar's `ingress` listeners: the ports a workload receives traffic on when its
//! Sidecar names them (instead of the ports of the services selecting it), where that
//! traffic goes (`defaultEndpoint`), how it arrives (through `virtualInbound`, or a listener
//! bound to `bind:PORT` with `captureMode: NONE` or when the proxy does not capture), the
//! TLS the sidecar terminates for it, and the connection limits towards the application.

use std::collections::BTreeMap;

use shoal_api::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy, OriginalDstLbConfig},
};
use shoal_api::pb::envoy::config::core::v3::{Address, Pipe, address};
use shoal_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use shoal_api::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use shoal_config::istio::{CaptureMode, ConnectionPoolSettings, IstioIngressListener};

use super::{socket, u32v};
use crate::scope::Scope;

/// Where the sidecar sends a port's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The connection's original destination (the default).
    OriginalDst,
    /// The original destination address on another port (`0.0.0.0:PORT`).
    OriginalDstPort(u16),
    /// A fixed address (`127.0.0.1:PORT`, `[::1]:PORT`).
    Static(String, u16),
    /// A unix domain socket (`unix:///path`).
    Unix(String),
}

fn target(l: &IstioIngressListener) -> Target {
    let Some(e) = l.default_endpoint.as_deref() else {
        return Target::OriginalDst;
    };
    if let Some(path) = e.strip_prefix("unix://") {
        return Target::Unix(path.to_string());
    }
    let Some((ip, port)) = e.rsplit_once(':') else {
        return Target::OriginalDst;
    };
    let Ok(port) = port.parse::<u16>() else {
        return Target::OriginalDst;
    };
    match ip {
        "0.0.0.0" | "[::]" => Target::OriginalDstPort(port),
        ip => Target::Static(ip.trim_matches(['[', ']']).to_string(), port),
    }
}

/// The Sidecar's `inboundConnectionPool`: limits for every inbound cluster.
pub(crate) fn inbound_pool<'m>(scope: &Scope<'m>) -> Option<&'m ConnectionPoolSettings> {
    scope.sidecar()?.inbound_connection_pool.as_ref()
}

/// The ingress listeners of the proxy's Sidecar, by port.
pub(crate) fn listeners<'m>(scope: &Scope<'m>) -> BTreeMap<u16, &'m IstioIngressListener> {
    let Some(spec) = scope.sidecar() else {
        return BTreeMap::new();
    };
    spec.ingress
        .iter()
        .filter_map(|l| {
            let port = u16::try_from(l.port.as_ref()?.number).ok()?;
            Some((port, l))
        })
        .collect()
}

/// Whether the port gets its own bound listener rather than a chain of `virtualInbound`.
pub(crate) fn bound(l: &IstioIngressListener, capture: bool) -> bool {
    !capture || l.capture_mode == Some(CaptureMode::None)
}

/// The address a bound ingress listener listens on.
pub(crate) fn bind(l: &IstioIngressListener) -> &str {
    l.bind
        .as_deref()
        .filter(|b| !b.is_empty())
        .unwrap_or("0.0.0.0")
}

/// The TLS the sidecar terminates for the port, if the listener asks for it.
pub(crate) fn tls(l: &IstioIngressListener) -> Option<DownstreamTlsContext> {
    l.tls.as_ref().and_then(super::gateway::tls::downstream)
}

/// The inbound cluster of an ingress port: `inbound|PORT||` towards its default endpoint,
/// with the listener's connection limits (the Sidecar's `inboundConnectionPool` applies
/// to the others).
pub(crate) fn cluster(base: Cluster, l: &IstioIngressListener) -> Cluster {
    let mut c = base;
    match target(l) {
        Target::OriginalDst => {}
        Target::OriginalDstPort(port) => {
            c.lb_config = Some(LbConfig::OriginalDstLbConfig(OriginalDstLbConfig {
                upstream_port_override: Some(u32v(u32::from(port))),
                ..Default::default()
            }));
        }
        Target::Static(ip, port) => fixed(&mut c, socket(&ip, port)),
        Target::Unix(path) => fixed(
            &mut c,
            Address {
                address: Some(address::Address::Pipe(Pipe { path, mode: 0 })),
            },
        ),
    }
    if let Some(pool) = &l.connection_pool {
        super::traffic_policy::apply_connection_pool(&mut c, pool);
    }
    c
}

/// Turns an original-destination cluster into one with a single fixed endpoint.
fn fixed(c: &mut Cluster, addr: Address) {
    c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
    c.lb_policy = LbPolicy::RoundRobin as i32;
    // The application listens on loopback or a socket: no need to look like the pod.
    c.upstream_bind_config = None;
    c.load_assignment = Some(ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(addr),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(endpoint: Option<&str>) -> IstioIngressListener {
        IstioIngressListener {
            default_endpoint: endpoint.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn default_endpoints() {
        assert_eq!(target(&listener(None)), Target::OriginalDst);
        assert_eq!(
            target(&listener(Some("127.0.0.1:8080"))),
            Target::Static("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            target(&listener(Some("[::1]:8080"))),
            Target::Static("::1".into(), 8080)
        );
        assert_eq!(
            target(&listener(Some("0.0.0.0:9000"))),
            Target::OriginalDstPort(9000)
        );
        assert_eq!(
            target(&listener(Some("unix:///var/run/app.sock"))),
            Target::Unix("/var/run/app.sock".into())
        );
    }
}
