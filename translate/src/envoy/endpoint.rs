//! EDS: a cluster's endpoints grouped by locality, each locality weighted (gRPC's xDS client
//! drops localities without a weight), prioritized for the client's locality when the
//! cluster balances by locality.

use std::collections::{BTreeMap, HashMap};

use shoal_api::pb::envoy::config::core::v3::{HealthStatus, Locality as EnvoyLocality, Metadata};
use shoal_api::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind};
use shoal_config::Labels;

use super::cluster::OutboundCluster;
use super::{filters, is_ip, socket, u32v};
use crate::MeshOptions;
use crate::locality::{ClientLocality, Group, Placed, place};
use crate::model::{Endpoint, Locality};

/// An endpoint. One that runs a sidecar carries `tlsMode: istio` under
/// `envoy.transport_socket_match`, which selects the cluster's `tlsMode-istio` transport
/// socket (auto mTLS).
fn lb_endpoint(address: &str, port: u16, weight: u32, istio_tls: bool) -> LbEndpoint {
    let metadata = istio_tls.then(|| Metadata {
        filter_metadata: HashMap::from([(
            filters::TRANSPORT_SOCKET_MATCH.to_string(),
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

fn locality_endpoints(groups: Vec<Group<LbEndpoint>>) -> Vec<LocalityLbEndpoints> {
    groups
        .into_iter()
        .map(|g| LocalityLbEndpoints {
            locality: Some(EnvoyLocality {
                region: g.locality.region,
                zone: g.locality.zone,
                sub_zone: g.locality.subzone,
            }),
            lb_endpoints: g.endpoints,
            load_balancing_weight: Some(u32v(g.weight.max(1))),
            priority: g.priority,
            ..Default::default()
        })
        .collect()
}

fn selected<'a>(
    c: &'a OutboundCluster<'_>,
    opts: &'a MeshOptions,
) -> impl Iterator<Item = &'a Endpoint> + 'a {
    c.service.endpoints.iter().filter(move |e| {
        c.subset_labels()
            .is_none_or(|labels| subset_selects(labels, e, opts))
    })
}

/// Whether a subset's labels select `e`. As Istio adds them to every workload's labels, an
/// endpoint without its own `topology.istio.io/cluster`, `topology.istio.io/network`,
/// `topology.kubernetes.io/region`, `…/zone` or `topology.istio.io/subzone` label has the
/// one its place gives (this cluster's id, its network, its locality), so that subsets
/// can split a service by cluster, network or locality.
fn subset_selects(subset: &Labels, e: &Endpoint, opts: &MeshOptions) -> bool {
    use shoal_config::k8s::topology;
    subset.iter().all(|(k, v)| match e.labels.get(k) {
        Some(own) => own == v,
        None => {
            let implicit = match k {
                topology::CLUSTER => opts.cluster_id.as_str(),
                topology::NETWORK => crate::model::network_of(&e.labels, &e.address, opts),
                topology::REGION => &e.locality.region,
                topology::ZONE => &e.locality.zone,
                topology::SUBZONE => &e.locality.subzone,
                _ => return false,
            };
            !implicit.is_empty() && implicit == v
        }
    })
}

/// Endpoints of another network in one locality: the gateway they are reached through,
/// their total weight, and one of them standing for the group (its locality and labels).
type RemoteGroup<'a> = (&'a (String, u16), u32, &'a Endpoint);

/// The ClusterLoadAssignment of an EDS cluster, for a client at `client` (which matters
/// only when the cluster balances by locality: see [`OutboundCluster::locality_policy`]).
/// Endpoints without an IP address (EDS cannot resolve names) or without the port are left
/// out.
///
/// Istio's multi-network model: endpoints on another network than this cluster's are
/// reached through that network's east-west gateway
/// ([`crate::model::Model::network_gateways`]), one endpoint per network and locality
/// weighted by the endpoints behind it, with mTLS (the gateway passes connections on by
/// SNI); endpoints of a network without a gateway taking mTLS are left out.
pub(crate) fn assignment(
    c: &OutboundCluster<'_>,
    client: Option<&ClientLocality>,
    model: &crate::model::Model,
) -> ClusterLoadAssignment {
    let opts = &model.options;
    let own = opts.own_network();
    let mut items = Vec::new();
    let mut remote: BTreeMap<(&str, String), RemoteGroup<'_>> = BTreeMap::new();
    for e in selected(c, opts).filter(|e| is_ip(&e.address)) {
        let Some(port) = e.port_for(c.port) else {
            continue;
        };
        let network = crate::model::network_of(&e.labels, &e.address, opts);
        if network != own {
            if let Some(gateway) = model
                .network_gateways
                .get(network)
                .and_then(|g| g.mtls.as_ref())
            {
                let l = &e.locality;
                let key = (network, format!("{}/{}/{}", l.region, l.zone, l.subzone));
                let group = remote.entry(key).or_insert((gateway, 0, e));
                group.1 += e.weight.max(1);
            }
            continue;
        }
        items.push(Placed {
            locality: &e.locality,
            labels: &e.labels,
            weight: e.weight,
            endpoint: lb_endpoint(&e.address, port, e.weight, e.istio_tls),
        });
    }
    for ((gateway, port), weight, e) in remote.into_values() {
        items.push(Placed {
            locality: &e.locality,
            labels: &e.labels,
            weight,
            endpoint: lb_endpoint(gateway, *port, weight, true),
        });
    }
    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: locality_endpoints(place(items, client, c.locality_policy())),
        ..Default::default()
    }
}

/// The inline assignment of a DNS cluster: the endpoints' names, or the host itself,
/// placed for a client at `client` when the cluster balances by locality (see
/// [`super::cluster::places_inline_by_locality`]; `None` otherwise).
pub(crate) fn dns_assignment(
    c: &OutboundCluster<'_>,
    client: Option<&ClientLocality>,
    opts: &MeshOptions,
) -> ClusterLoadAssignment {
    let mut items: Vec<Placed<'_, LbEndpoint>> = selected(c, opts)
        .filter_map(|e| {
            Some(Placed {
                locality: &e.locality,
                labels: &e.labels,
                weight: e.weight,
                endpoint: lb_endpoint(&e.address, e.port_for(c.port)?, e.weight, e.istio_tls),
            })
        })
        .collect();
    let (nowhere, no_labels) = (Locality::default(), Labels::new());
    if items.is_empty() && c.service.endpoints.is_empty() && !c.service.host.starts_with('*') {
        let port = match &c.port.target_port {
            Some(crate::model::TargetPort::Number(n)) => *n,
            _ => c.port.port,
        };
        items.push(Placed {
            locality: &nowhere,
            labels: &no_labels,
            weight: 1,
            endpoint: lb_endpoint(&c.service.host, port, 1, false),
        });
    }
    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: locality_endpoints(place(
            items,
            client,
            client.and_then(|_| c.locality_policy()),
        )),
        ..Default::default()
    }
}
