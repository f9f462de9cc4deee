//! Which remote clusters to read, from the remote secrets seen (pure).
//!
//! The registry holds every remote secret as last read and decides which kubeconfig each
//! cluster is read with: the secret that first named a cluster keeps it for as long as it
//! names it (another secret naming the same cluster is refused, as Istio refuses it); when
//! it stops, the first other secret (by name) naming the cluster takes over. Each change
//! is answered with what the watchers must do: start a cluster, restart it with another
//! kubeconfig, or stop it (and forget its objects).

use std::collections::{BTreeMap, BTreeSet};

use super::secret::{ClusterConfig, Refusal, RemoteSecret};

/// What the IO half does about one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start {
        cluster: String,
        config: ClusterConfig,
    },
    /// Its kubeconfig changed: watch again with the new one (objects kept, re-listed).
    Restart {
        cluster: String,
        config: ClusterConfig,
    },
    /// No secret names it any more: stop watching and remove its objects.
    Stop { cluster: String },
}

/// A cluster being read, and through which secret.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Running {
    secret: String,
    config: ClusterConfig,
}

#[derive(Debug, Default)]
pub struct Registry {
    secrets: BTreeMap<String, RemoteSecret>,
    running: BTreeMap<String, Running>,
    /// During a (re-)list: the secrets listed so far.
    listing: Option<BTreeSet<String>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A (re-)list of the secrets begins.
    pub fn init(&mut self) {
        self.listing = Some(BTreeSet::new());
    }

    /// The secret `name` reads as `secret` now.
    pub fn apply(&mut self, name: &str, secret: RemoteSecret) -> Vec<Action> {
        if let Some(listing) = &mut self.listing {
            listing.insert(name.to_string());
        }
        self.secrets.insert(name.to_string(), secret);
        self.reconcile()
    }

    /// The secret `name` is deleted (or lost its label).
    pub fn delete(&mut self, name: &str) -> Vec<Action> {
        self.secrets.remove(name);
        self.reconcile()
    }

    /// The (re-)list is complete: secrets it did not list are gone.
    pub fn init_done(&mut self) -> Vec<Action> {
        let Some(listed) = self.listing.take() else {
            return Vec::new();
        };
        self.secrets.retain(|name, _| listed.contains(name));
        self.reconcile()
    }

    /// The clusters read now, each with the secret it is read through.
    pub fn clusters(&self) -> BTreeMap<&str, &str> {
        self.running
            .iter()
            .map(|(c, r)| (c.as_str(), r.secret.as_str()))
            .collect()
    }

    /// What is refused, by secret: keys that do not parse or name this cluster, and
    /// clusters another secret already gives.
    pub fn refusals(&self) -> BTreeMap<String, Vec<Refusal>> {
        let mut out: BTreeMap<String, Vec<Refusal>> = BTreeMap::new();
        for (name, secret) in &self.secrets {
            let mut refused = secret.refused.clone();
            for cluster in secret.clusters.keys() {
                if let Some(r) = self.running.get(cluster)
                    && r.secret != *name
                {
                    refused.push(Refusal::Claimed {
                        cluster: cluster.clone(),
                        owner: r.secret.clone(),
                    });
                }
            }
            if !refused.is_empty() {
                out.insert(name.clone(), refused);
            }
        }
        out
    }

    /// Brings `running` in line with the secrets; returns the actions that takes.
    fn reconcile(&mut self) -> Vec<Action> {
        let mut wanted: BTreeMap<String, Running> = BTreeMap::new();
        // A cluster stays with the secret it is read through while that names it...
        for (cluster, running) in &self.running {
            if let Some(config) = self
                .secrets
                .get(&running.secret)
                .and_then(|s| s.clusters.get(cluster))
            {
                wanted.insert(
                    cluster.clone(),
                    Running {
                        secret: running.secret.clone(),
                        config: config.clone(),
                    },
                );
            }
        }
        // ... else goes to the first secret naming it.
        for (name, secret) in &self.secrets {
            for (cluster, config) in &secret.clusters {
                wanted.entry(cluster.clone()).or_insert_with(|| Running {
                    secret: name.clone(),
                    config: config.clone(),
                });
            }
        }
        let mut actions = Vec::new();
        for cluster in self.running.keys() {
            if !wanted.contains_key(cluster) {
                actions.push(Action::Stop {
                    cluster: cluster.clone(),
                });
            }
        }
        for (cluster, want) in &wanted {
            match self.running.get(cluster) {
                None => actions.push(Action::Start {
                    cluster: cluster.clone(),
                    config: want.config.clone(),
                }),
                Some(now) if now.config != want.config => actions.push(Action::Restart {
                    cluster: cluster.clone(),
                    config: want.config.clone(),
                }),
                Some(_) => {}
            }
        }
        self.running = wanted;
        actions
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::secret::parse;
    use super::super::secret::tests::{b64, kubeconfig, secret};
    use super::*;

    fn read(clusters: &[(&str, &str)]) -> RemoteSecret {
        let data: serde_json::Map<String, serde_json::Value> = clusters
            .iter()
            .map(|(c, server)| (c.to_string(), json!(b64(&kubeconfig(server)))))
            .collect();
        parse(&secret(data.into()), "own")
    }

    fn summary(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Start { cluster, config } => format!("start {cluster} {}", server(config)),
                Action::Restart { cluster, config } => {
                    format!("restart {cluster} {}", server(config))
                }
                Action::Stop { cluster } => format!("stop {cluster}"),
            })
            .collect()
    }

    fn server(c: &ClusterConfig) -> String {
        c.kubeconfig.clusters[0]
            .cluster
            .as_ref()
            .and_then(|c| c.server.clone())
            .unwrap_or_default()
    }

    #[test]
    fn secrets_start_restart_and_stop_their_clusters() {
        let mut r = Registry::new();
        let a = r.apply("s", read(&[("c2", "https://a"), ("c3", "https://b")]));
        assert_eq!(summary(&a), ["start c2 https://a", "start c3 https://b"]);
        // The same content again: nothing to do.
        assert!(
            r.apply("s", read(&[("c2", "https://a"), ("c3", "https://b")]))
                .is_empty()
        );
        // c2's kubeconfig changes, c3's key is removed.
        let a = r.apply("s", read(&[("c2", "https://a2")]));
        assert_eq!(summary(&a), ["stop c3", "restart c2 https://a2"]);
        let a = r.delete("s");
        assert_eq!(summary(&a), ["stop c2"]);
        assert!(r.clusters().is_empty());
    }

    #[test]
    fn a_cluster_named_by_two_secrets_is_read_through_the_first_and_handed_over() {
        let mut r = Registry::new();
        r.apply("b", read(&[("c2", "https://b")]));
        assert!(r.apply("a", read(&[("c2", "https://a")])).is_empty());
        assert_eq!(r.clusters(), BTreeMap::from([("c2", "b")]));
        let refused = r.refusals();
        assert_eq!(
            refused["a"],
            [Refusal::Claimed {
                cluster: "c2".into(),
                owner: "b".into()
            }]
        );
        // b lets go: a's kubeconfig takes over.
        let a = r.delete("b");
        assert_eq!(summary(&a), ["restart c2 https://a"]);
        assert!(r.refusals().is_empty());
    }

    #[test]
    fn a_relist_forgets_the_secrets_deleted_meanwhile() {
        let mut r = Registry::new();
        r.apply("s1", read(&[("c2", "https://a")]));
        r.apply("s2", read(&[("c3", "https://b")]));
        r.init();
        assert!(r.apply("s2", read(&[("c3", "https://b")])).is_empty());
        let a = r.init_done();
        assert_eq!(summary(&a), ["stop c2"]);
    }

    #[test]
    fn refused_keys_are_reported_and_start_nothing() {
        let mut r = Registry::new();
        let mut s = read(&[("c2", "https://a")]);
        s.refused.push(Refusal::OwnCluster {
            cluster: "own".into(),
        });
        assert_eq!(summary(&r.apply("s", s)), ["start c2 https://a"]);
        assert_eq!(r.refusals()["s"].len(), 1);
    }
}
