//! A remote secret, as `istioctl create-remote-secret` makes it, read into the clusters it
//! names (pure).
//!
//! Each key of the Secret's `data` is a cluster id, its value (base64, as the API server
//! serves every Secret) a kubeconfig to reach that cluster. A key that cannot be used is
//! refused alone, with the reason; the Secret's other keys still count.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;

/// The label Istio selects remote secrets by.
pub const MULTICLUSTER_LABEL: &str = "istio/multiCluster";
/// Its value on a remote secret.
pub const MULTICLUSTER_LABEL_VALUE: &str = "true";
/// The label selector of the Secret watch.
pub const SELECTOR: &str = "istio/multiCluster=true";

/// A kubeconfig for one remote cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The kubeconfig as read.
    pub kubeconfig: Arc<kube::config::Kubeconfig>,
    /// Its text: two configs are the same when their texts are.
    text: Arc<str>,
}

impl PartialEq for ClusterConfig {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ClusterConfig {}

/// Why a key of a remote secret is not used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("secret has no data: no cluster to read")]
    NoData,
    #[error("cluster {cluster:?}: the value is not base64: {message}")]
    Base64 { cluster: String, message: String },
    #[error("cluster {cluster:?}: the kubeconfig is not UTF-8 text")]
    NotText { cluster: String },
    #[error("cluster {cluster:?}: the kubeconfig does not parse: {message}")]
    Kubeconfig { cluster: String, message: String },
    #[error("cluster {cluster:?}: the kubeconfig names no cluster")]
    NoCluster { cluster: String },
    #[error(
        "cluster {cluster:?} is this control plane's own cluster id (--cluster-id): its \
         service discovery is read from the local API server, not through a remote secret"
    )]
    OwnCluster { cluster: String },
    #[error(
        "cluster {cluster:?} is already read through secret {owner:?}; this secret's \
         kubeconfig for it is not used"
    )]
    Claimed { cluster: String, owner: String },
}

/// A remote secret read: the clusters it gives a kubeconfig for, and the keys refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteSecret {
    pub clusters: BTreeMap<String, ClusterConfig>,
    pub refused: Vec<Refusal>,
}

/// Reads a Secret (as the API server serves it: `data` values in base64) into the clusters
/// it names. `own_cluster` is this control plane's cluster id, which is refused.
pub fn parse(secret: &Value, own_cluster: &str) -> RemoteSecret {
    let mut out = RemoteSecret::default();
    let field = |name: &str| {
        secret
            .get(name)
            .and_then(Value::as_object)
            .filter(|d| !d.is_empty())
    };
    // `stringData` (plain text) is what `istioctl create-remote-secret` writes; an API
    // server folds it into `data`, but a Secret read from elsewhere may still carry it
    // (and, as on a write, it wins over `data`).
    let (data, string_data) = (field("data"), field("stringData"));
    if data.is_none() && string_data.is_none() {
        out.refused.push(Refusal::NoData);
        return out;
    }
    let mut values: BTreeMap<&String, Result<Vec<u8>, String>> = BTreeMap::new();
    for (cluster, value) in data.into_iter().flatten() {
        let decoded = crate::k8s::secret::decode_data_value(value.as_str().unwrap_or_default())
            .map_err(|e| e.to_string());
        values.insert(cluster, decoded);
    }
    for (cluster, value) in string_data.into_iter().flatten() {
        let text = value.as_str().unwrap_or_default();
        values.insert(cluster, Ok(text.as_bytes().to_vec()));
    }
    for (cluster, bytes) in values {
        match read(cluster, bytes, own_cluster) {
            Ok(config) => {
                out.clusters.insert(cluster.clone(), config);
            }
            Err(refusal) => out.refused.push(refusal),
        }
    }
    out
}

fn read(
    cluster: &str,
    bytes: Result<Vec<u8>, String>,
    own_cluster: &str,
) -> Result<ClusterConfig, Refusal> {
    if cluster == own_cluster {
        return Err(Refusal::OwnCluster {
            cluster: cluster.into(),
        });
    }
    let bytes = bytes.map_err(|message| Refusal::Base64 {
        cluster: cluster.into(),
        message,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Refusal::NotText {
        cluster: cluster.into(),
    })?;
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&text).map_err(|e| Refusal::Kubeconfig {
            cluster: cluster.into(),
            message: e.to_string(),
        })?;
    if kubeconfig.clusters.is_empty() {
        return Err(Refusal::NoCluster {
            cluster: cluster.into(),
        });
    }
    Ok(ClusterConfig {
        kubeconfig: Arc::new(kubeconfig),
        text: text.into(),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn kubeconfig(server: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{server}\"}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: t}}\n"
        )
    }

    pub(crate) fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    pub(crate) fn secret(data: Value) -> Value {
        json!({
            "metadata": {"name": "istio-remote-secret-cluster2", "namespace": "istio-system",
                         "labels": {(MULTICLUSTER_LABEL): MULTICLUSTER_LABEL_VALUE},
                         "annotations": {"networking.istio.io/cluster": "cluster2"}},
            "data": data,
        })
    }

    #[test]
    fn every_key_is_a_cluster_and_its_kubeconfig() {
        let s = parse(
            &secret(json!({
                "cluster2": b64(&kubeconfig("https://10.0.0.2:6443")),
                "cluster3": b64(&kubeconfig("https://10.0.0.3:6443")),
            })),
            "cluster1",
        );
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        assert_eq!(
            s.clusters.keys().collect::<Vec<_>>(),
            ["cluster2", "cluster3"]
        );
        assert_eq!(
            s.clusters["cluster3"].kubeconfig.clusters[0]
                .cluster
                .as_ref()
                .and_then(|c| c.server.as_deref()),
            Some("https://10.0.0.3:6443")
        );
        assert_ne!(s.clusters["cluster2"], s.clusters["cluster3"]);
    }

    #[test]
    fn a_bad_key_is_refused_alone_with_its_reason() {
        let s = parse(
            &secret(json!({
                "good": b64(&kubeconfig("https://10.0.0.2:6443")),
                "not-base64": "%%%",
                "not-yaml": b64("clusters: [unclosed"),
                "no-cluster": b64("apiVersion: v1\nkind: Config\n"),
                "binary": "/w==",
            })),
            "cluster1",
        );
        assert_eq!(s.clusters.keys().collect::<Vec<_>>(), ["good"]);
        let reasons: Vec<String> = s.refused.iter().map(ToString::to_string).collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(matches!(&s.refused[0], Refusal::NotText { cluster } if cluster == "binary"));
        assert!(matches!(&s.refused[1], Refusal::NoCluster { cluster } if cluster == "no-cluster"));
        assert!(
            matches!(&s.refused[2], Refusal::Base64 { cluster, .. } if cluster == "not-base64")
        );
        assert!(
            matches!(&s.refused[3], Refusal::Kubeconfig { cluster, .. } if cluster == "not-yaml")
        );
    }

    #[test]
    fn this_control_planes_own_cluster_is_refused() {
        let s = parse(
            &secret(json!({"cluster1": b64(&kubeconfig("https://10.0.0.1:6443"))})),
            "cluster1",
        );
        assert!(s.clusters.is_empty());
        assert_eq!(
            s.refused,
            [Refusal::OwnCluster {
                cluster: "cluster1".into()
            }]
        );
        assert!(s.refused[0].to_string().contains("own cluster id"));
    }

    #[test]
    fn string_data_as_istioctl_writes_it_is_read_too() {
        let s = parse(
            &json!({"metadata": {"name": "s"}, "stringData": {"c2": kubeconfig("https://c2")}}),
            "c1",
        );
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        assert_eq!(s.clusters.keys().collect::<Vec<_>>(), ["c2"]);
    }

    #[test]
    fn a_secret_without_data_is_refused() {
        for data in [json!({}), Value::Null] {
            let s = parse(&secret(data), "cluster1");
            assert!(s.clusters.is_empty());
            assert_eq!(s.refused, [Refusal::NoData]);
        }
    }
}
