//! Decoding what a proxy receives, the way the real clients do, once per distinct payload.
//!
//! A simulated proxy decodes every resource it receives (that is what makes an ACK honest),
//! but thousands of proxies receive the same bytes: results are cached by a hash of the
//! bytes themselves — never by the server's version strings, which the tester does not
//! trust.

use std::sync::Arc;

use dashmap::DashMap;
use prost::Message;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::config::cluster::v3::{
    Cluster, cluster::ClusterDiscoveryType, cluster::DiscoveryType,
};
use shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use shoal_api::pb::envoy::config::listener::v3::{Listener, filter::ConfigType};
use shoal_api::pb::envoy::config::route::v3::{
    RouteConfiguration, route::Action, route_action::ClusterSpecifier,
};
use shoal_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use xxhash_rust::xxh3::xxh3_64;

use super::Names;

/// What a resource means to the client that decoded it: its name (as the payload says) and
/// the resources it makes the client ask for next — an EDS cluster's endpoint assignment, the
/// route configs a listener's HTTP connection managers fetch, the clusters a route config
/// sends to.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub name: Arc<str>,
    pub refs: Vec<Arc<str>>,
}

#[derive(Debug, Default)]
pub struct DecodeCache {
    map: DashMap<u64, Result<Decoded, String>>,
}

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn rds_of(hcm: &HttpConnectionManager, names: &Names, out: &mut Vec<Arc<str>>) {
    if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
        out.push(names.get(&rds.route_config_name));
    }
}

fn decode(ty: ResourceType, bytes: &[u8], names: &Names) -> Result<Decoded, String> {
    match ty {
        ResourceType::Cluster => {
            let c = Cluster::decode(bytes).map_err(|e| format!("cluster: {e}"))?;
            let eds = matches!(c.cluster_discovery_type, Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32);
            let eds_name = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or(&c.name);
            let refs = if eds {
                vec![names.get(eds_name)]
            } else {
                Vec::new()
            };
            Ok(Decoded {
                name: names.get(&c.name),
                refs,
            })
        }
        ResourceType::Listener => {
            let l = Listener::decode(bytes).map_err(|e| format!("listener: {e}"))?;
            let mut routes = Vec::new();
            for fc in &l.filter_chains {
                for f in &fc.filters {
                    if let Some(ConfigType::TypedConfig(any)) = &f.config_type
                        && any.type_url == HCM
                    {
                        let hcm = HttpConnectionManager::decode(any.value.as_slice())
                            .map_err(|e| format!("listener {}: {e}", l.name))?;
                        rds_of(&hcm, names, &mut routes);
                    }
                }
            }
            if let Some(any) = l
                .api_listener
                .as_ref()
                .and_then(|a| a.api_listener.as_ref())
            {
                let hcm = HttpConnectionManager::decode(any.value.as_slice())
                    .map_err(|e| format!("api listener {}: {e}", l.name))?;
                rds_of(&hcm, names, &mut routes);
            }
            routes.sort();
            routes.dedup();
            Ok(Decoded {
                name: names.get(&l.name),
                refs: routes,
            })
        }
        ResourceType::Route => {
            let rc = RouteConfiguration::decode(bytes).map_err(|e| format!("route config: {e}"))?;
            let mut clusters = Vec::new();
            for vh in &rc.virtual_hosts {
                for r in &vh.routes {
                    if let Some(Action::Route(a)) = &r.action {
                        match &a.cluster_specifier {
                            Some(ClusterSpecifier::Cluster(c)) => clusters.push(names.get(c)),
                            Some(ClusterSpecifier::WeightedClusters(w)) => {
                                clusters.extend(w.clusters.iter().map(|c| names.get(&c.name)))
                            }
                            _ => {}
                        }
                    }
                }
            }
            clusters.sort();
            clusters.dedup();
            Ok(Decoded {
                name: names.get(&rc.name),
                refs: clusters,
            })
        }
        ResourceType::Endpoint => {
            let cla =
                ClusterLoadAssignment::decode(bytes).map_err(|e| format!("endpoints: {e}"))?;
            Ok(Decoded {
                name: names.get(&cla.cluster_name),
                refs: Vec::new(),
            })
        }
        // What a ztunnel holds: workloads and services by uid or `namespace/hostname`,
        // policies by `namespace/name`.
        ResourceType::Address => {
            use shoal_api::istio::workload::{Address, address};
            let a = Address::decode(bytes).map_err(|e| format!("address: {e}"))?;
            let name = match &a.r#type {
                Some(address::Type::Workload(w)) => w.uid.clone(),
                Some(address::Type::Service(s)) => format!("{}/{}", s.namespace, s.hostname),
                None => return Err("address: neither a workload nor a service".into()),
            };
            Ok(Decoded {
                name: names.get(&name),
                refs: Vec::new(),
            })
        }
        ResourceType::Authorization => {
            let a = shoal_api::istio::security::Authorization::decode(bytes)
                .map_err(|e| format!("authorization: {e}"))?;
            Ok(Decoded {
                name: names.get(&format!("{}/{}", a.namespace, a.name)),
                refs: Vec::new(),
            })
        }
        _ => Ok(Decoded {
            name: names.get(""),
            refs: Vec::new(),
        }),
    }
}

impl DecodeCache {
    /// Decodes (or recalls) a resource payload of a type.
    pub fn get(&self, ty: ResourceType, bytes: &[u8], names: &Names) -> Result<Decoded, String> {
        let key = xxh3_64(bytes) ^ (ty as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        if let Some(d) = self.map.get(&key) {
            return d.clone();
        }
        let d = decode(ty, bytes, names);
        self.map.insert(key, d.clone());
        d
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
