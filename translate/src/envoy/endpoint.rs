//! EDS: a cluster's endpoints grouped by locality, each locality weighted (gRPC's xDS client
//! drops localities without a weight).

use std::collections::{BTreeMap, HashMap};

use shoal_api::pb::envoy::config::core::v3::{HealthStatus, Locality as EnvoyLocality, Metadata};
use shoal_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind};
use shoal_config::selects;

use super::cluster::OutboundCluster;
use super::{is_ip, socket, u32v};
use crate::model::{Endpoint, Locality};

/// An endpoint. One that runs a sidecar carries `tlsMode: istio` under
/// `envoy.transport_socket_match`, which selects the cluster's `tlsMode-istio` transport
/// socket (auto mTLS).
fn lb_endpoint(address: &str, port: u16, weight: u32, istio_tls: bool) -> LbEndpoint {
    let metadata = istio_tls.then(|| Metadata {
        filter_metadata: HashMap::from([(
            "envoy.transport_socket_match".to_string(),
            Struct {
                fields: HashMap::from([(
                    "tlsMode".to_string(),
                    Value {
                        kind: Some(Kind::StringValue("istio".into())),
                    },
                )]),
            },
        )]),
        ..Default::default()
    });
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(socket(address, port)),
            ..Default::default()
        })),
        health_status: HealthStatus::Healthy as i32,
        metadata,
        load_balancing_weight: Some(u32v(weight.max(1))),
    }
}

fn group(endpoints: impl Iterator<Item = (Locality, LbEndpoint)>) -> Vec<LocalityLbEndpoints> {
    let mut by_locality: BTreeMap<Locality, Vec<LbEndpoint>> = BTreeMap::new();
    for (locality, ep) in endpoints {
        by_locality.entry(locality).or_default().push(ep);
    }
    by_locality
        .into_iter()
        .map(|(l, eps)| {
            let weight: u32 = eps
                .iter()
                .map(|e| e.load_balancing_weight.as_ref().map_or(1, |w| w.value))
                .fold(0u32, u32::saturating_add);
            LocalityLbEndpoints {
                locality: Some(EnvoyLocality {
                    region: l.region,
                    zone: l.zone,
                    sub_zone: l.subzone,
                }),
                lb_endpoints: eps,
                load_balancing_weight: Some(u32v(weight.max(1))),
                ..Default::default()
            }
        })
        .collect()
}

fn selected<'a>(c: &'a OutboundCluster<'_>) -> impl Iterator<Item = &'a Endpoint> + 'a {
    c.service.endpoints.iter().filter(move |e| {
        c.subset_labels()
            .is_none_or(|labels| selects(labels, &e.labels))
    })
}

/// The ClusterLoadAssignment of an EDS cluster. Endpoints without an IP address (EDS
/// cannot resolve names) or without the port are left out.
pub(crate) fn assignment(c: &OutboundCluster<'_>) -> ClusterLoadAssignment {
    let eps = selected(c).filter(|e| is_ip(&e.address)).filter_map(|e| {
        let port = e.port_for(c.port)?;
        Some((
            e.locality.clone(),
            lb_endpoint(&e.address, port, e.weight, e.istio_tls),
        ))
    });
    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: group(eps),
        ..Default::default()
    }
}

/// The inline assignment of a DNS cluster: the endpoints' names, or the host itself.
pub(crate) fn dns_assignment(c: &OutboundCluster<'_>) -> ClusterLoadAssignment {
    let mut eps: Vec<(Locality, LbEndpoint)> = selected(c)
        .filter_map(|e| {
            Some((
                e.locality.clone(),
                lb_endpoint(&e.address, e.port_for(c.port)?, e.weight, e.istio_tls),
            ))
        })
        .collect();
    if eps.is_empty() && c.service.endpoints.is_empty() && !c.service.host.starts_with('*') {
        let port = match &c.port.target_port {
            Some(crate::model::TargetPort::Number(n)) => *n,
            _ => c.port.port,
        };
        eps.push((
            Locality::default(),
            lb_endpoint(&c.service.host, port, 1, false),
        ));
    }
    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: group(eps.into_iter()),
        ..Default::default()
    }
}
