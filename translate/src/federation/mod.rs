//! What this group exports to its peer groups (`shoal.federation.v1.ExportedService`): one
//! resource per public Kubernetes Service (Istio's `exportTo` `*`, the default; with
//! `--federation-export service-export` only those an MCS `ServiceExport` names), named
//! `NAMESPACE/HOSTNAME`, with its ports and this cluster's endpoints — address, ports,
//! network, locality, identity, labels and whether the workload runs a sidecar.
//!
//! Endpoints that came from a peer (labelled `topology.istio.io/cluster` with another
//! cluster's id) are never exported again: an export carries only what its group owns,
//! so federation cannot loop. Every peer gets the same view ([`crate::ViewKey::federation`]).

use std::sync::Arc;

use shoal_api::istio::federation::{ExportedEndpoint, ExportedService, ServicePort};
use shoal_api::{Resource, ResourceType};

use shoal_config::k8s::topology;

use crate::FederationExport;
use crate::model::{Endpoint, Model, Protocol, Service, ServiceOrigin, Visibility, network_of};
use crate::view::{Out, ViewOutput};
use shoal_config::{Kind, ObjectKey};

/// The label on what the importer made of a peer's export (its Service, EndpointSlices):
/// the peer's name. Such a Service is never exported again.
pub const FEDERATED_FROM: &str = "shoal.io/federated-from";

/// Whether an endpoint belongs to this cluster (not one a peer exported).
fn local(e: &Endpoint, cluster_id: &str) -> bool {
    topology::cluster_of(&e.labels, cluster_id) == cluster_id
}

fn exported(model: &Model, svc: &Service) -> Option<ExportedService> {
    if svc.origin != ServiceOrigin::Kubernetes || svc.visibility != Visibility::Public {
        return None;
    }
    let opts = &model.options;
    // A Service made from a peer's export or read from a remote cluster is not this
    // cluster's to export.
    let imported = model.config.get(&svc.key).is_some_and(|e| {
        let labels = &e.object.meta().labels;
        labels.contains_key(FEDERATED_FROM)
            || topology::cluster_of(labels, &opts.cluster_id) != opts.cluster_id
    });
    if imported {
        return None;
    }
    if opts.federation_export == FederationExport::ServiceExport {
        let key = ObjectKey::new(Kind::ServiceExport, &svc.namespace, &svc.name);
        model.config.get(&key)?;
    }
    let endpoints = svc
        .endpoints
        .iter()
        .filter(|e| local(e, &opts.cluster_id))
        .map(|e| ExportedEndpoint {
            address: e.address.to_string(),
            ports: svc
                .ports
                .iter()
                .filter_map(|p| Some((p.name.clone(), u32::from(e.port_for(p)?))))
                .collect(),
            network: network_of(&e.labels, &e.address, opts).to_string(),
            locality: if e.locality.is_empty() {
                String::new()
            } else {
                format!(
                    "{}/{}/{}",
                    e.locality.region, e.locality.zone, e.locality.subzone
                )
            },
            service_account: e.service_account.clone().unwrap_or_default(),
            healthy: true,
            labels: e
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            istio_tls: e.istio_tls,
            workload: e.workload.clone().unwrap_or_default(),
        })
        .collect();
    Some(ExportedService {
        hostname: svc.host.to_string(),
        namespace: svc.namespace.to_string(),
        name: svc.name.to_string(),
        ports: svc
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                port: u32::from(p.port),
                protocol: if p.protocol == Protocol::Unknown {
                    String::new()
                } else {
                    p.protocol.as_str().to_string()
                },
            })
            .collect(),
        endpoints,
        cluster_id: opts.cluster_id.clone(),
        addresses: svc.addresses.clone(),
    })
}

/// Every resource a peer group receives.
pub(crate) fn build(model: &Model) -> ViewOutput {
    let mut out = Out::default();
    let services: Vec<&Arc<Service>> = model.services.values().flatten().collect();
    for svc in services {
        if let Some(e) = exported(model, svc) {
            let name = format!("{}/{}", e.namespace, e.hostname);
            out.add(ResourceType::Federation, Resource::encode(name, &e));
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests;
