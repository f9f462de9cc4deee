//! Which cluster an object was read from, and what that changes about it (pure).
//!
//! The local cluster's objects are kept as they are. A remote cluster's (Istio's
//! multi-primary "remote secrets": only its service discovery, Services, EndpointSlices,
//! Pods and Nodes, is read) are made to fit the one mesh beside the local ones:
//!
//! - their source ids name the cluster: `kubernetes@CLUSTER:KIND/NAMESPACE/NAME`;
//! - Pods, EndpointSlices and Nodes are renamed `NAME.CLUSTER` (the cluster id as a DNS
//!   label, see [`name_part`]), and what names them with it (a slice's `targetRef` to a
//!   Pod, the `nodeName` of a Pod or a slice endpoint), so that a StatefulSet's `db-0` in
//!   two clusters stays two pods, and a remote pod takes its locality from its own
//!   cluster's node, never from a local node of the same name. Services keep their names:
//!   Istio's namespace sameness has a remote `reviews` slice serve the mesh's Service
//!   `reviews`;
//! - Services are labelled `topology.istio.io/cluster: CLUSTER` (so that MeshNetworks finds
//!   a network's gateway Service in the cluster it lists, and federation never exports a
//!   remote cluster's Service as this one's);
//! - Pods are labelled `topology.istio.io/cluster: CLUSTER`, and, when they carry no
//!   `topology.istio.io/network` label, with the cluster's network (read by the caller from
//!   the remote cluster's system namespace, as Istio does) when one is known;
//! - a remote pod on a renamed node is never one a local node proxy may ask certificates
//!   for: the node check of the CA counts this cluster's pods only (those without another
//!   cluster's `topology.istio.io/cluster` label, `server/src/identity`).
//!
//! Everything a remote cluster defines is delivered at [`Precedence::Fallback`]: a Service
//! also defined locally yields quietly to the local one (and takes over if it goes), and a
//! renamed Pod that a local one happens to be named like can never displace it.

use std::sync::Arc;

use serde_json::Value;

use crate::k8s::topology;
use crate::meta::Kind;
use crate::store::Precedence;

/// A remote cluster, as the objects read from it are stamped with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCluster {
    /// Its cluster id (the key of its kubeconfig in the remote secret).
    pub id: Arc<str>,
    /// The network its pods are on unless they say otherwise (`None`: unknown, the pods'
    /// own label or this cluster's network applies).
    pub network: Option<String>,
}

impl RemoteCluster {
    pub fn new(id: &str, network: Option<String>) -> Self {
        RemoteCluster {
            id: id.into(),
            network,
        }
    }

    /// The prefix of the source ids of this cluster's objects: `kubernetes@CLUSTER:`.
    pub fn source_prefix(&self) -> String {
        format!("kubernetes@{}:", self.id)
    }

    /// The name an object of `kind` named `name` in this cluster has in the mesh.
    pub fn rename(&self, kind: Kind, name: &str) -> String {
        match kind {
            Kind::Pod | Kind::EndpointSlice | Kind::Node => {
                format!("{name}.{}", name_part(&self.id))
            }
            _ => name.to_string(),
        }
    }

    /// Rewrites a (pruned) object read from this cluster for the mesh (module doc).
    pub fn localize(&self, kind: Kind, object: &mut Value) {
        let Value::Object(m) = object else { return };
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            if let Some(Value::String(name)) = meta.get_mut("name") {
                *name = self.rename(kind, name);
            }
            if matches!(kind, Kind::Pod | Kind::Service) {
                let labels = meta
                    .entry("labels")
                    .or_insert_with(|| Value::Object(Default::default()));
                if !labels.is_object() {
                    *labels = Value::Object(Default::default());
                }
                if let Value::Object(labels) = labels {
                    labels.insert(topology::CLUSTER.into(), Value::String(self.id.to_string()));
                    if let (Kind::Pod, Some(network)) = (kind, &self.network) {
                        labels
                            .entry(topology::NETWORK)
                            .or_insert_with(|| Value::String(network.clone()));
                    }
                }
            }
        }
        let rename_node = |at: &mut serde_json::Map<String, Value>| {
            if let Some(Value::String(node)) = at.get_mut("nodeName") {
                *node = self.rename(Kind::Node, node);
            }
        };
        match kind {
            Kind::Pod => {
                if let Some(Value::Object(spec)) = m.get_mut("spec") {
                    rename_node(spec);
                }
            }
            Kind::EndpointSlice => {
                let Some(Value::Array(endpoints)) = m.get_mut("endpoints") else {
                    return;
                };
                for e in endpoints.iter_mut().filter_map(Value::as_object_mut) {
                    rename_node(e);
                    let Some(Value::Object(target)) = e.get_mut("targetRef") else {
                        continue;
                    };
                    let is_pod = target
                        .get("kind")
                        .and_then(Value::as_str)
                        .is_none_or(|k| k == "Pod");
                    if is_pod && let Some(Value::String(name)) = target.get_mut("name") {
                        *name = self.rename(Kind::Pod, name);
                    }
                }
            }
            _ => {}
        }
    }

    /// What this cluster's objects rank at in the store.
    pub fn precedence(&self) -> Precedence {
        Precedence::Fallback
    }
}

/// A cluster id as a DNS label for names: lower-cased, characters a label may not hold
/// turned to `-`; when that changed it (so that `East` and `east` stay apart) or it is too
/// long, shortened and followed by a hash of the id (FNV-1a: stable across builds, so
/// every replica names alike).
pub fn name_part(id: &str) -> String {
    let label: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let label = label.trim_matches('-');
    if label == id && label.len() <= 63 {
        return label.to_string();
    }
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head = label.get(..label.len().min(54)).unwrap_or_default();
    let head = head.trim_end_matches('-');
    if head.is_empty() {
        format!("c{:08x}", hash as u32)
    } else {
        format!("{head}-{:08x}", hash as u32)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn remote() -> RemoteCluster {
        RemoteCluster::new("cluster2", Some("net2".into()))
    }

    #[test]
    fn pods_are_renamed_stamped_with_the_cluster_and_its_network_and_name_its_node() {
        let mut pod = json!({
            "metadata": {"name": "db-0", "namespace": "app", "labels": {"app": "db"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "db"},
        });
        remote().localize(Kind::Pod, &mut pod);
        assert_eq!(pod["metadata"]["name"], "db-0.cluster2");
        assert_eq!(pod["metadata"]["namespace"], "app");
        assert_eq!(pod["metadata"]["labels"][topology::CLUSTER], "cluster2");
        assert_eq!(pod["metadata"]["labels"][topology::NETWORK], "net2");
        assert_eq!(pod["metadata"]["labels"]["app"], "db");
        assert_eq!(
            pod["spec"],
            json!({"nodeName": "node-1.cluster2", "serviceAccountName": "db"})
        );
    }

    #[test]
    fn a_pods_own_network_label_wins_and_a_pod_without_labels_gets_some() {
        let mut own = json!({"metadata": {"name": "a", "labels": {(topology::NETWORK): "mine"}}});
        remote().localize(Kind::Pod, &mut own);
        assert_eq!(own["metadata"]["labels"][topology::NETWORK], "mine");
        let mut bare = json!({"metadata": {"name": "b"}});
        RemoteCluster::new("c", None).localize(Kind::Pod, &mut bare);
        assert_eq!(
            bare["metadata"]["labels"],
            json!({(topology::CLUSTER): "c"}),
            "no network known: none set"
        );
    }

    #[test]
    fn slices_are_renamed_with_their_pod_references_and_keep_their_service() {
        let mut slice = json!({
            "metadata": {"name": "reviews-abc", "namespace": "app",
                         "labels": {"kubernetes.io/service-name": "reviews"}},
            "endpoints": [
                {"addresses": ["10.0.0.1"], "nodeName": "n", "zone": "z1",
                 "targetRef": {"kind": "Pod", "name": "reviews-0", "namespace": "app"}},
                {"addresses": ["10.0.0.2"],
                 "targetRef": {"kind": "WorkloadEntry", "name": "vm", "namespace": "app"}},
                {"addresses": ["10.0.0.3"]},
            ],
        });
        remote().localize(Kind::EndpointSlice, &mut slice);
        assert_eq!(slice["metadata"]["name"], "reviews-abc.cluster2");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "reviews"
        );
        let e = &slice["endpoints"];
        assert_eq!(e[0]["targetRef"]["name"], "reviews-0.cluster2");
        assert_eq!(e[0]["zone"], "z1");
        assert_eq!(e[0]["nodeName"], "n.cluster2");
        assert_eq!(e[1]["targetRef"]["name"], "vm", "not a pod: kept");
        assert!(e[2].get("targetRef").is_none());
    }

    #[test]
    fn nodes_are_renamed_and_keep_their_labels() {
        let labels = json!({"topology.kubernetes.io/region": "r2"});
        let mut node = json!({"metadata": {"name": "node-1", "labels": labels.clone()}});
        remote().localize(Kind::Node, &mut node);
        assert_eq!(
            node,
            json!({"metadata": {"name": "node-1.cluster2", "labels": labels}})
        );
    }

    #[test]
    fn services_keep_their_names_and_are_labelled_with_their_cluster() {
        let mut svc = json!({"metadata": {"name": "reviews", "namespace": "app"}, "spec": {}});
        remote().localize(Kind::Service, &mut svc);
        assert_eq!(
            svc,
            json!({"metadata": {"name": "reviews", "namespace": "app", "labels": {(topology::CLUSTER): "cluster2"}}, "spec": {}})
        );
    }

    #[test]
    fn cluster_ids_become_distinct_dns_labels() {
        assert_eq!(name_part("cluster2"), "cluster2");
        let upper = name_part("Cluster2");
        assert!(upper.starts_with("cluster2-"), "{upper}");
        assert_ne!(upper, name_part("cluster2"));
        assert_ne!(name_part("a_b"), name_part("a.b"));
        for id in ["Kubernetes", "east/1", "-x-", &"y".repeat(80)] {
            let p = name_part(id);
            assert!(crate::host::is_dns_label(&p), "{id} → {p}");
            assert!(!p.bytes().any(|b| b.is_ascii_uppercase()), "{p}");
        }
    }
}
