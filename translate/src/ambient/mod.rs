//! Ambient mode: what ztunnel receives. Workload discovery (`istio.workload.Address`: a
//! `Workload` per pod, WorkloadEntry and ServiceEntry endpoint, a `Service` per Service
//! and ServiceEntry host) and the L4 authorization it enforces
//! (`istio.security.Authorization`), as Istio's ambient controller derives them.
//!
//! Every ztunnel gets the same collection (one view, [`crate::ViewKey::ztunnel`]): a pod
//! change is encoded once and reaches every ztunnel through the shared delta path.
//! Workloads are named by uid (`CLUSTER//Pod/NAMESPACE/NAME`), services by
//! `NAMESPACE/HOSTNAME`; each address is also served on demand under its alias
//! `NETWORK/IP`, so a ztunnel that subscribes by address gets what is there.
//!
//! Enrolment: a pod is ambient (tunnel protocol HBONE) when it or its namespace is labelled
//! `istio.io/dataplane-mode=ambient` (a pod's `none` opts out) and it runs no sidecar;
//! `istio.io/use-waypoint` on a pod, Service or namespace names its waypoint.

mod authorization;
mod workload;

pub(crate) use workload::Enrolment;

use std::net::IpAddr;

use shoal_api::ResourceType;

use crate::model::Model;
use crate::view::{Out, ViewOutput};

/// The namespace or pod label that enrols workloads in ambient mode.
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// The label naming the waypoint of a namespace, Service or pod (`none`: no waypoint).
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
/// With [`USE_WAYPOINT_LABEL`], the namespace of that waypoint (default: the object's).
pub const USE_WAYPOINT_NAMESPACE_LABEL: &str = "istio.io/use-waypoint-namespace";
/// Gateway API Gateways of this class are waypoints.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// The port waypoints (and ztunnels) accept HBONE on.
pub const HBONE_PORT: u32 = 15008;

/// Every Address and Authorization resource of the mesh.
pub(crate) fn build(model: &Model) -> ViewOutput {
    let mut out = Out::default();
    for a in workload::addresses(model) {
        let r = shoal_api::Resource::encode(a.name.clone(), &a.address);
        for alias in &a.aliases {
            out.add_on_demand(
                ResourceType::Address,
                shoal_api::Resource::from_body(alias.clone(), r.body.clone()),
            );
        }
        out.add(ResourceType::Address, r);
    }
    for (name, authz) in authorization::policies(model) {
        out.add(
            ResourceType::Authorization,
            shoal_api::Resource::encode(name, &authz),
        );
    }
    out.finish()
}

/// An IP address as ztunnel's protos carry it: 4 or 16 bytes.
fn ip_bytes(ip: &str) -> Option<Vec<u8>> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.octets().to_vec()),
        IpAddr::V6(v6) => Some(v6.octets().to_vec()),
    }
}

#[cfg(test)]
mod tests;
