//! The secrets views: one per identity (and, for a gateway, one more apart from its
//! sidecar view), each holding that identity's own `default` and `ROOTCA` secrets — and,
//! in a gateway's view, its namespace's credentials by name only. A stream is only ever
//! attached to the view of the identity it proved, so a proxy can never be sent another
//! identity's key. Certificates are issued on first use, renewed at half their life and
//! reissued when the trust bundle changes; the encoding itself is `shoal_translate::sds`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use parking_lot::RwLock;
use shoal_api::{Resource, ResourceType};
use shoal_ca::{CertificateAuthority, Identity};
use shoal_cache::{Resources, Snapshot, Trigger, View};
use shoal_translate::sds::{self, Credentials};
use tonic::Status;

/// Secrets views unused this long are dropped (their certificate with them).
const IDLE: Duration = Duration::from_secs(600);

struct Issued {
    view: Arc<View>,
    renew_at: SystemTime,
    bundle: Vec<String>,
    /// The identity's own secrets (`default`, `ROOTCA`).
    own: Vec<Resource>,
    /// For a gateway proxy: the namespace whose credentials the view serves too.
    credentials_of: Option<String>,
}

/// Every identity's secrets view, and the credentials gateway views serve.
pub struct SecretViews {
    ca: Arc<CertificateAuthority>,
    workload_ttl: Duration,
    /// Keyed by [`view_key`].
    views: DashMap<String, Issued>,
    credentials: RwLock<Credentials>,
}

/// The secrets view of an identity, for a sidecar or for a gateway: never the same view.
fn view_key(uri: &str, gateway: bool) -> String {
    if gateway {
        format!("gateway-secrets:{uri}")
    } else {
        format!("secrets:{uri}")
    }
}

/// A view's resources: its own secrets for any subscription, the credentials by name only.
fn view_resources(own: &[Resource], credentials: Option<&[Resource]>) -> Resources {
    Resources {
        wildcard: vec![(ResourceType::Secret, own.to_vec())],
        on_demand: credentials
            .map(|c| vec![(ResourceType::Secret, c.to_vec())])
            .unwrap_or_default(),
    }
}

fn trigger(reason: &'static str) -> Trigger {
    Trigger {
        since: Instant::now(),
        reason,
    }
}

impl SecretViews {
    pub fn new(ca: Arc<CertificateAuthority>, workload_ttl: Duration) -> Self {
        SecretViews {
            ca,
            workload_ttl,
            views: DashMap::new(),
            credentials: RwLock::new(Credentials::new()),
        }
    }

    /// The secrets view of an identity, issuing its certificate on first use. A gateway
    /// proxy's view also serves its namespace's credentials (the identity's namespace,
    /// which admission has checked the node claims); a sidecar's never does.
    pub fn view_of(&self, identity: &Identity, gateway: bool) -> Result<Arc<View>, Status> {
        let uri = identity.spiffe_uri();
        let key = view_key(&uri, gateway);
        if let Some(e) = self.views.get(&key) {
            return Ok(e.view.clone());
        }
        let (own, renew_at, bundle) = self.issue(identity)?;
        let credentials_of = gateway.then(|| identity.namespace.clone());
        // Read the credentials while holding the entry: `set_credentials` swaps the map
        // before visiting entries, so a view created concurrently is never left stale.
        let entry = self.views.entry(key.clone()).or_insert_with(|| {
            let credentials = credentials_of
                .as_ref()
                .and_then(|ns| self.credentials.read().get(ns).cloned());
            let resources = view_resources(&own, credentials.as_deref().map(Vec::as_slice));
            Issued {
                view: View::new(key, Snapshot::initial(&resources, trigger("new-identity"))),
                renew_at,
                bundle,
                own,
                credentials_of,
            }
        });
        Ok(entry.view.clone())
    }

    /// Takes the credentials of a config snapshot and republishes the gateway views of
    /// every namespace whose credentials changed.
    pub fn set_credentials(&self, next: Credentials) {
        let changed: BTreeSet<String> = {
            let mut current = self.credentials.write();
            let changed = next
                .keys()
                .chain(current.keys())
                .filter(|ns| current.get(*ns) != next.get(*ns))
                .cloned()
                .collect();
            *current = next.clone();
            changed
        };
        if changed.is_empty() {
            return;
        }
        let secrets: usize = next.values().map(|c| c.len()).sum();
        tracing::info!(
            namespaces = changed.len(),
            secrets,
            "gateway credentials changed"
        );
        for e in self.views.iter() {
            let Some(ns) = e.credentials_of.as_ref().filter(|ns| changed.contains(*ns)) else {
                continue;
            };
            let resources = view_resources(&e.own, next.get(ns).map(|c| c.as_slice()));
            let snapshot = e
                .view
                .current()
                .replaced(&resources, trigger("credentials"));
            e.view.publish(snapshot);
        }
    }

    /// A fresh certificate for `identity`: its secrets, when to renew, the bundle.
    fn issue(
        &self,
        identity: &Identity,
    ) -> Result<(Vec<Resource>, SystemTime, Vec<String>), Status> {
        let issued = self
            .ca
            .issue_keypair(identity, self.workload_ttl)
            .map_err(|e| Status::internal(format!("issuing the workload certificate: {e}")))?;
        let bundle = self.ca.trust_bundle();
        // Renew at half the lifetime, as Istio's agent does by default.
        let now = SystemTime::now();
        let life = issued.not_after.duration_since(now).unwrap_or_default();
        let renew_at = now + life / 2;
        // The chain without the root: Envoy presents leaf and intermediates.
        let chain: String = issued
            .cert_chain
            .iter()
            .take(issued.cert_chain.len().saturating_sub(1).max(1))
            .map(String::as_str)
            .collect();
        let own = sds::workload_secrets(&chain, &issued.key_pem, &bundle);
        Ok((own, renew_at, bundle))
    }

    /// Renews certificates past half their life and republishes every identity's secrets
    /// when the trust bundle changed (a root rotation). Idle identities are dropped.
    pub fn maintain(&self) {
        let bundle = self.ca.trust_bundle();
        let now = SystemTime::now();
        let mut idle = Vec::new();
        for mut e in self.views.iter_mut() {
            if e.view.is_idle_for(IDLE) {
                idle.push(e.key().clone());
                continue;
            }
            if now < e.renew_at && e.bundle == bundle {
                continue;
            }
            let uri = e.key().split_once(':').map_or("", |(_, uri)| uri);
            let Ok(identity) = Identity::parse(uri) else {
                continue;
            };
            match self.issue(&identity) {
                Ok((own, renew_at, bundle)) => {
                    let credentials = e
                        .credentials_of
                        .as_ref()
                        .and_then(|ns| self.credentials.read().get(ns).cloned());
                    let resources = view_resources(&own, credentials.as_deref().map(Vec::as_slice));
                    let next = e
                        .view
                        .current()
                        .replaced(&resources, trigger("certificate"));
                    e.view.publish(next);
                    e.renew_at = renew_at;
                    e.bundle = bundle;
                    e.own = own;
                    metrics::counter!("shoal_sds_renewals_total").increment(1);
                }
                Err(err) => {
                    tracing::warn!(identity = %e.key(), error = %err.message(), "renewal failed")
                }
            }
        }
        for k in idle {
            self.views.remove(&k);
        }
        metrics::gauge!("shoal_sds_identities").set(self.views.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use shoal_config::ConfigStore;
    use shoal_config::parse::parse_yaml;

    fn credentials(yaml: &str) -> Credentials {
        let mut store = ConfigStore::new();
        store.apply("c.yaml", parse_yaml("c.yaml", yaml));
        assert!(store.issues().is_empty(), "{:?}", store.issues());
        sds::credentials(&store.snapshot())
    }

    fn secret(ns: &str, name: &str, with_ca: bool) -> String {
        let pem = |label: &str| format!("-----BEGIN {label}-----\nAAEC\n-----END {label}-----\n");
        let ca = if with_ca {
            format!("\n  ca.crt: {:?}", pem("CERTIFICATE"))
        } else {
            String::new()
        };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n  tls.crt: {:?}\n  tls.key: {:?}{ca}\n---\n",
            pem("CERTIFICATE"),
            pem("PRIVATE KEY")
        )
    }

    fn held(view: &View) -> (Vec<String>, Vec<String>) {
        let snap = view.current();
        let t = snap.get(ResourceType::Secret);
        let list = |m: &shoal_cache::snapshot::TypeMap| {
            m.values().map(|r| r.name.to_string()).collect::<Vec<_>>()
        };
        (list(&t.wildcard), list(&t.on_demand))
    }

    #[test]
    fn only_gateways_get_their_own_namespace_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            Arc::new(CertificateAuthority::load_or_create(dir.path(), "cluster.local").unwrap());
        let views = SecretViews::new(ca, Duration::from_secs(3600));
        views.set_credentials(credentials(
            &[secret("gw", "web", false), secret("other", "db", false)].concat(),
        ));
        let id = Identity::new("cluster.local", "gw", "ingress").unwrap();
        let gateway = views.view_of(&id, true).unwrap();
        let sidecar = views.view_of(&id, false).unwrap();
        assert_ne!(gateway.id, sidecar.id);
        let own = vec!["ROOTCA".to_string(), "default".to_string()];
        assert_eq!(
            held(&gateway),
            (own.clone(), vec!["kubernetes://web".into()])
        );
        // The same identity as a sidecar: its own secrets, no credential.
        assert_eq!(held(&sidecar), (own.clone(), Vec::new()));
        // A gateway of a namespace without Secrets holds none of another namespace's.
        let elsewhere = Identity::new("cluster.local", "empty", "ingress").unwrap();
        assert_eq!(
            held(&views.view_of(&elsewhere, true).unwrap()),
            (own.clone(), Vec::new())
        );

        // A new Secret in the gateway's namespace is published to its view; a Secret
        // removed is withdrawn.
        views.set_credentials(credentials(
            &[secret("gw", "web", true), secret("other", "db", false)].concat(),
        ));
        assert_eq!(
            held(&gateway).1,
            ["kubernetes://web", "kubernetes://web-cacert"]
        );
        views.set_credentials(credentials(&secret("other", "db", false)));
        assert_eq!(held(&gateway), (own.clone(), Vec::new()));
        assert_eq!(held(&sidecar), (own, Vec::new()));
    }
}
