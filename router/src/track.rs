//! What a forwarded stream's proxy holds, tracked from the envelopes going by (names,
//! versions, nonces, subscriptions — never resources), so the stream can be re-established
//! on another replica exactly where it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use prost::Message;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use shoal_api::{ResourceType, wire};

/// Responses not yet answered per type, kept for their ACK (older ones are dropped).
const MAX_PENDING: usize = 8;

/// A delta response not acknowledged yet: nonce, (name, version) upserts, removals.
type Unacked = (String, Vec<(String, String)>, Vec<String>);

#[derive(Debug, Default)]
struct TypeTrack {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Delta: name → version the proxy acknowledged.
    acked: HashMap<String, String>,
    /// Delta: responses awaiting their ACK.
    pending: Vec<Unacked>,
    /// SotW: the names of the last request and the version acknowledged.
    sotw_names: Vec<String>,
    sotw_version: String,
    sotw_pending: Vec<(String, String)>,
}

/// The state of one proxy's stream, as seen by the router.
#[derive(Debug)]
pub struct Tracker {
    delta: bool,
    node: Option<Node>,
    types: BTreeMap<String, TypeTrack>,
}

fn legacy_wildcard(type_url: &str) -> bool {
    !matches!(
        ResourceType::from_type_url(type_url),
        Some(ResourceType::Endpoint | ResourceType::Route)
    )
}

impl Tracker {
    pub fn new(delta: bool) -> Self {
        Tracker {
            delta,
            node: None,
            types: BTreeMap::new(),
        }
    }

    /// Takes note of a request from the proxy (it is forwarded as is).
    pub fn on_request(&mut self, bytes: &Bytes) {
        if self.delta {
            let Ok(req) = DeltaDiscoveryRequest::decode(bytes.clone()) else {
                return;
            };
            if req.node.is_some() {
                self.node = req.node.clone();
            }
            let first = !self.types.contains_key(&req.type_url);
            let t = self.types.entry(req.type_url.clone()).or_default();
            if first {
                if req.resource_names_subscribe.is_empty() && legacy_wildcard(&req.type_url) {
                    t.wildcard = true;
                }
                t.acked = req.initial_resource_versions.clone().into_iter().collect();
            }
            for n in &req.resource_names_subscribe {
                if n == "*" {
                    t.wildcard = true;
                } else {
                    t.names.insert(n.clone());
                }
            }
            for n in &req.resource_names_unsubscribe {
                if n == "*" {
                    t.wildcard = false;
                } else {
                    t.names.remove(n);
                    t.acked.remove(n);
                }
            }
            if let Some(i) = t
                .pending
                .iter()
                .position(|(nonce, _, _)| *nonce == req.response_nonce)
            {
                let (_, upserts, removed) = t.pending.remove(i);
                if req.error_detail.is_none() {
                    t.acked.extend(upserts);
                    for n in removed {
                        t.acked.remove(&n);
                    }
                }
            }
        } else {
            let Ok(req) = DiscoveryRequest::decode(bytes.clone()) else {
                return;
            };
            if req.node.is_some() {
                self.node = req.node.clone();
            }
            let t = self.types.entry(req.type_url.clone()).or_default();
            t.sotw_names = req.resource_names.clone();
            if let Some(i) = t
                .sotw_pending
                .iter()
                .position(|(nonce, _)| *nonce == req.response_nonce)
            {
                let (_, version) = t.sotw_pending.remove(i);
                if req.error_detail.is_none() {
                    t.sotw_version = version;
                }
            }
        }
    }

    /// Takes note of a response to the proxy (it is forwarded as is).
    pub fn on_response(&mut self, bytes: &[u8]) {
        if self.delta {
            let Ok(env) = wire::delta_envelope(bytes) else {
                return;
            };
            let t = self.types.entry(env.type_url).or_default();
            t.pending.push((env.nonce, env.resources, env.removed));
            if t.pending.len() > MAX_PENDING {
                t.pending.remove(0);
            }
        } else {
            let Ok(env) = wire::sotw_envelope(bytes) else {
                return;
            };
            let t = self.types.entry(env.type_url).or_default();
            t.sotw_pending.push((env.nonce, env.version_info));
            if t.sotw_pending.len() > MAX_PENDING {
                t.sotw_pending.remove(0);
            }
        }
    }

    /// The requests that open the stream on another replica where it left off: every
    /// subscription, with what the proxy acknowledged.
    pub fn resume(&self) -> Vec<Bytes> {
        let mut out = Vec::new();
        for (i, (type_url, t)) in self.types.iter().enumerate() {
            let node = if i == 0 { self.node.clone() } else { None };
            let msg = if self.delta {
                let mut subscribe: Vec<String> = t.names.iter().cloned().collect();
                if t.wildcard {
                    subscribe.insert(0, "*".into());
                }
                DeltaDiscoveryRequest {
                    node,
                    type_url: type_url.clone(),
                    resource_names_subscribe: subscribe,
                    initial_resource_versions: t.acked.clone().into_iter().collect(),
                    ..Default::default()
                }
                .encode_to_vec()
            } else {
                DiscoveryRequest {
                    node,
                    type_url: type_url.clone(),
                    resource_names: t.sotw_names.clone(),
                    version_info: t.sotw_version.clone(),
                    ..Default::default()
                }
                .encode_to_vec()
            };
            out.push(Bytes::from(msg));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use shoal_api::pb::envoy::config::cluster::v3::Cluster;
    use shoal_api::{Resource, type_url};

    #[test]
    fn resumes_with_what_was_acknowledged() {
        let mut t = Tracker::new(true);
        let node = Node {
            id: "sidecar~1~a.b~b.svc.cluster.local".into(),
            ..Default::default()
        };
        t.on_request(&Bytes::from(
            DeltaDiscoveryRequest {
                node: Some(node.clone()),
                type_url: type_url::CLUSTER.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ));
        let rs = [Resource::encode(
            "a",
            &Cluster {
                name: "a".into(),
                ..Default::default()
            },
        )];
        let mut resp =
            BytesMut::from(&wire::delta_response(type_url::CLUSTER, "", rs.iter(), [])[..]);
        wire::put_nonce("1", &mut resp);
        t.on_response(&resp);
        // Not acknowledged yet: nothing to claim.
        let first = DeltaDiscoveryRequest::decode(t.resume()[0].clone()).unwrap();
        assert!(first.initial_resource_versions.is_empty());
        assert_eq!(first.resource_names_subscribe, vec!["*".to_string()]);
        assert_eq!(first.node.unwrap().id, node.id);
        t.on_request(&Bytes::from(
            DeltaDiscoveryRequest {
                type_url: type_url::CLUSTER.into(),
                response_nonce: "1".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ));
        let first = DeltaDiscoveryRequest::decode(t.resume()[0].clone()).unwrap();
        assert_eq!(
            first.initial_resource_versions.get("a"),
            Some(&rs[0].version.to_string())
        );
    }
}
