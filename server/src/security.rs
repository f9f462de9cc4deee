//! Workload identity on the xDS path: who a stream is (a client certificate or a
//! service-account token), and the SDS secrets of that identity — `default` (the proxy's own
//! key and certificate) and `ROOTCA` (the trust bundle) — each identity in its own view, so a
//! proxy can only ever be sent its own key.
//!
//! Gateway credentials (`credentialName`): an authenticated *gateway* proxy (`router~…`)
//! gets a secrets view of its own (one per identity, apart from the sidecar view of the same
//! identity) that also serves, by name only, the TLS Secrets of its namespace as
//! `kubernetes://NAME` (certificate and key) and `kubernetes://NAME-cacert` (CA bundle).
//! This is Istio's rule — a proxy reads credentials of its own verified namespace only —
//! with the proxy type in place of Istio's `SubjectAccessReview` (shoal has no Kubernetes
//! RBAC to ask): sidecars and anonymous streams never get a view holding credentials, and
//! the identity's namespace, which the node must claim (`pipeline.rs`), is the only one
//! whose Secrets the view holds. The views are republished when the config's Secrets change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use parking_lot::RwLock;
use shoal_api::pb::envoy::config::core::v3::{DataSource, data_source};
use shoal_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use shoal_api::{Resource, ResourceType};
use shoal_ca::grpc::PeerCertificates;
use shoal_ca::{Caller, CertificateAuthority, Identity, JwtAuthenticator};
use shoal_cache::{Resources, Snapshot, StreamContext, Trigger, View};
use shoal_config::{ConfigSnapshot, Kind, Object};
use tonic::Status;

/// Name of the SDS secret holding a proxy's own certificate and key (Istio's).
pub const DEFAULT_SECRET: &str = "default";
/// Name of the SDS secret holding the trust bundle (Istio's).
pub const ROOT_SECRET: &str = "ROOTCA";

/// How a stream reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The TLS port: callers must authenticate.
    Tls,
    /// The plaintext port: anonymous callers get config but no secrets.
    Plaintext,
}

struct Issued {
    view: Arc<View>,
    renew_at: SystemTime,
    bundle: Vec<String>,
    /// The identity's own secrets (`default`, `ROOTCA`).
    own: Vec<Resource>,
    /// For a gateway proxy: the namespace whose credentials the view serves too.
    credentials_of: Option<String>,
}

/// Encoded credentials (`kubernetes://…` secrets) by namespace.
type Credentials = BTreeMap<String, Arc<Vec<Resource>>>;

/// The CA, the token verifier and the per-identity secret views.
pub struct Security {
    pub ca: Arc<CertificateAuthority>,
    pub jwt: Arc<JwtAuthenticator>,
    workload_ttl: Duration,
    /// Keyed by [`view_key`].
    secrets: DashMap<String, Issued>,
    credentials: RwLock<Credentials>,
    /// Who may read its namespace's credentials besides the registry's gateways.
    pub readers: crate::credential_readers::CredentialReaders,
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

impl Security {
    pub fn new(
        ca: Arc<CertificateAuthority>,
        jwt: Arc<JwtAuthenticator>,
        workload_ttl: Duration,
    ) -> Self {
        Security {
            ca,
            jwt,
            workload_ttl,
            secrets: DashMap::new(),
            credentials: RwLock::new(Credentials::new()),
            readers: Default::default(),
        }
    }

    /// With the operator's `--credential-readers`.
    pub fn with_readers(self, readers: crate::credential_readers::CredentialReaders) -> Self {
        Security { readers, ..self }
    }

    /// Who opened a stream: a bearer token first, else a verified client certificate.
    /// `Ok(None)`: an anonymous caller on the plaintext port.
    pub fn authenticate(&self, ctx: &StreamContext) -> Result<Option<Caller>, Status> {
        // The TLS listener puts the peer's certificates (maybe none) on every request.
        let transport = if ctx.extensions.get::<PeerCertificates>().is_some() {
            Transport::Tls
        } else {
            Transport::Plaintext
        };
        let peer = ctx.extensions.get::<PeerCertificates>();
        // A stream forwarded by a replica (or router) over mTLS: the peer certificate is
        // the forwarder's, not the proxy's. The forwarder vouches for the client
        // certificate it verified ([`shoal_router::CALLER`]), passes a token on for us to
        // verify, or forwards an anonymous stream it accepted on a plaintext port.
        let from_replica = peer.is_some_and(|PeerCertificates(chain)| {
            !chain.is_empty()
                && self
                    .ca
                    .authenticate_client_cert(chain)
                    .is_ok_and(|c| c.identity == *self.ca.server_identity())
        });
        if let Some(claim) = ctx.headers.get(shoal_router::CALLER) {
            if !from_replica {
                return Err(Status::unauthenticated(format!(
                    "{} is only accepted from a replica over mTLS",
                    shoal_router::CALLER
                )));
            }
            let identity = claim
                .to_str()
                .ok()
                .and_then(|c| Identity::parse(c).ok())
                .ok_or_else(|| Status::unauthenticated("malformed forwarded caller"))?;
            return Ok(Some(Caller {
                identity,
                node: None,
                pod: None,
                via: shoal_ca::CallerKind::ClientCert,
            }));
        }
        if from_replica && !ctx.headers.contains_key(http::header::AUTHORIZATION) {
            return Ok(None);
        }
        if let Some(value) = ctx.headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| Status::unauthenticated("authorization is not a Bearer token"))?;
            return self
                .jwt
                .authenticate(token.trim())
                .map(Some)
                .map_err(|e| Status::unauthenticated(e.to_string()));
        }
        if let Some(PeerCertificates(chain)) = peer
            && !chain.is_empty()
        {
            return self
                .ca
                .authenticate_client_cert(chain)
                .map(Some)
                .map_err(|e| Status::unauthenticated(e.to_string()));
        }
        match transport {
            Transport::Tls => Err(Status::unauthenticated(
                "the TLS xDS port needs a client certificate or \"authorization: Bearer <token>\"",
            )),
            Transport::Plaintext => Ok(None),
        }
    }

    /// The secrets view of an identity, issuing its certificate on first use. A gateway
    /// proxy's view also serves its namespace's credentials (the identity's namespace,
    /// which the caller has checked the node claims); a sidecar's never does.
    pub fn secrets_for(&self, identity: &Identity, gateway: bool) -> Result<Arc<View>, Status> {
        let uri = identity.spiffe_uri();
        let key = view_key(&uri, gateway);
        if let Some(e) = self.secrets.get(&key) {
            return Ok(e.view.clone());
        }
        let (own, renew_at, bundle) = self.issue(identity)?;
        let credentials_of = gateway.then(|| identity.namespace.clone());
        // Read the credentials while holding the entry: `set_credentials` swaps the map
        // before visiting entries, so a view created concurrently is never left stale.
        let entry = self.secrets.entry(key.clone()).or_insert_with(|| {
            let credentials = credentials_of
                .as_ref()
                .and_then(|ns| self.credentials.read().get(ns).cloned());
            let resources = view_resources(&own, credentials.as_deref().map(Vec::as_slice));
            Issued {
                view: View::new(
                    key,
                    Snapshot::initial(
                        &resources,
                        Trigger {
                            since: Instant::now(),
                            reason: "new-identity",
                        },
                    ),
                ),
                renew_at,
                bundle,
                own,
                credentials_of,
            }
        });
        Ok(entry.view.clone())
    }

    /// Takes the TLS Secrets of a config snapshot and republishes the gateway views of
    /// every namespace whose credentials changed.
    pub fn set_credentials(&self, config: &ConfigSnapshot) {
        let next = credentials(config);
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
        for e in self.secrets.iter() {
            let Some(ns) = e.credentials_of.as_ref().filter(|ns| changed.contains(*ns)) else {
                continue;
            };
            let resources = view_resources(&e.own, next.get(ns).map(|c| c.as_slice()));
            let snapshot = e.view.current().replaced(
                &resources,
                Trigger {
                    since: Instant::now(),
                    reason: "credentials",
                },
            );
            e.view.publish(snapshot);
        }
    }

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
        let default = Secret {
            name: DEFAULT_SECRET.into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(chain.into_bytes())),
                private_key: Some(inline(issued.key_pem.into_bytes())),
                ..Default::default()
            })),
        };
        let root = Secret {
            name: ROOT_SECRET.into(),
            r#type: Some(secret::Type::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(inline(bundle.concat().into_bytes())),
                    ..Default::default()
                },
            )),
        };
        let own = vec![
            Resource::encode(DEFAULT_SECRET, &default),
            Resource::encode(ROOT_SECRET, &root),
        ];
        Ok((own, renew_at, bundle))
    }

    /// Renews certificates past half their life and republishes every identity's secrets
    /// when the trust bundle changed (a root rotation). Idle identities are dropped.
    pub fn maintain(&self) {
        let bundle = self.ca.trust_bundle();
        let now = SystemTime::now();
        let mut idle = Vec::new();
        for mut e in self.secrets.iter_mut() {
            if e.view.is_idle_for(Duration::from_secs(600)) {
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
                    let next = e.view.current().replaced(
                        &resources,
                        Trigger {
                            since: Instant::now(),
                            reason: "certificate",
                        },
                    );
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
            self.secrets.remove(&k);
        }
        metrics::gauge!("shoal_sds_identities").set(self.secrets.len() as f64);
    }
}

/// SDS name of a credential's certificate and key (Istio's).
pub const CREDENTIAL_PREFIX: &str = "kubernetes://";
/// Suffix of the SDS name of a credential's CA bundle (Istio's).
pub const CA_SUFFIX: &str = "-cacert";

/// The credentials of every namespace, as Istio's SDS serves them: `kubernetes://NAME` is
/// the certificate and key of the Secret `NAME` (keys `cert`/`key`, else
/// `tls.crt`/`tls.key`); `kubernetes://NAME-cacert` is the CA bundle (`cacert`, else
/// `ca.crt`) of the Secret `NAME-cacert` if there is one, else of the Secret `NAME`. A
/// name ending in `-cacert` is always a CA bundle. Secrets without such keys serve nothing.
pub fn credentials(config: &ConfigSnapshot) -> Credentials {
    let mut by_ns: BTreeMap<String, BTreeMap<String, Resource>> = BTreeMap::new();
    let names: BTreeSet<(&str, &str)> = config
        .of_kind(Kind::Secret)
        .map(|(k, _)| (k.namespace.as_ref(), k.name.as_ref()))
        .collect();
    for (key, entry) in config.of_kind(Kind::Secret) {
        let Object::Secret(secret) = entry.object.as_ref() else {
            continue;
        };
        let out = by_ns.entry(key.namespace.to_string()).or_default();
        let name = key.name.as_ref();
        if name.ends_with(CA_SUFFIX) {
            if let Some(ca) = secret.ca_certificate() {
                let sds = format!("{CREDENTIAL_PREFIX}{name}");
                out.insert(sds.clone(), ca_secret(sds, ca));
            }
        } else if let Some((cert, key)) = secret.certificate_and_key() {
            let sds = format!("{CREDENTIAL_PREFIX}{name}");
            let tls = Secret {
                name: sds.clone(),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: Some(inline(cert.to_vec())),
                    private_key: Some(inline(key.to_vec())),
                    ..Default::default()
                })),
            };
            out.insert(sds.clone(), Resource::encode(sds, &tls));
        }
        let alias = format!("{name}{CA_SUFFIX}");
        if !name.ends_with(CA_SUFFIX)
            && !names.contains(&(key.namespace.as_ref(), alias.as_str()))
            && let Some(ca) = secret.ca_certificate()
        {
            let sds = format!("{CREDENTIAL_PREFIX}{alias}");
            out.insert(sds.clone(), ca_secret(sds, ca));
        }
    }
    by_ns
        .into_iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(ns, m)| (ns, Arc::new(m.into_values().collect())))
        .collect()
}

fn ca_secret(name: String, ca: &[u8]) -> Resource {
    let secret = Secret {
        name: name.clone(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(inline(ca.to_vec())),
                ..Default::default()
            },
        )),
    };
    Resource::encode(name, &secret)
}

fn inline(bytes: Vec<u8>) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes)),
        ..Default::default()
    }
}

/// Which workloads run on which node, from the Pods in the config (`spec.nodeName`,
/// `spec.serviceAccountName`): a node proxy may ask for certificates only for those.
pub struct PodDirectory(pub Arc<crate::pipeline::Pipeline>);

impl shoal_ca::NodeDirectory for PodDirectory {
    fn has_workload_on_node(&self, node: &str, identity: &Identity) -> bool {
        let config = self.0.config();
        config.iter().any(|(_, entry)| match entry.object.as_ref() {
            shoal_config::Object::Pod(pod) => {
                pod.spec.node_name.as_deref() == Some(node)
                    && pod.metadata.namespace.as_deref().unwrap_or("default") == identity.namespace
                    && pod
                        .spec
                        .service_account_name
                        .as_deref()
                        .unwrap_or("default")
                        == identity.service_account
            }
            _ => false,
        })
    }
}

/// The running security pieces of `shoal serve`.
pub struct Running {
    pub security: Arc<Security>,
    pub tls: Arc<crate::tls::ServingTls>,
    pub csr: shoal_ca::grpc::CertificateService,
}

/// Loads the CA (creating a root on first start), the token issuers and the serving
/// certificate, hands workload identity to the pipeline and keeps certificates fresh.
pub async fn start(
    args: &crate::cli::ServeArgs,
    pipeline: Arc<crate::pipeline::Pipeline>,
) -> anyhow::Result<Running> {
    use anyhow::Context;
    let sa = &args.security;
    let dir = sa
        .ca_dir
        .clone()
        .unwrap_or_else(|| args.cluster.data_dir.join("ca"));
    let mut config = shoal_ca::CaConfig::new(sa.trust_domain.clone());
    // Workload certificates may be shorter-lived than what CSR callers may ask for.
    config.min_ttl = config.min_ttl.min(sa.workload_cert_ttl);
    let ca = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || CertificateAuthority::load_or_create_with(&d, config))
            .await?
            .with_context(|| format!("loading the CA in {}", dir.display()))?
    };
    tracing::info!(dir = %dir.display(), mode = ?ca.mode(), "certificate authority ready");
    let ca = Arc::new(ca);
    let mut issuers = Vec::new();
    for spec in &sa.jwt_issuer {
        let (iss, file) = spec
            .split_once('=')
            .with_context(|| format!("--jwt-issuer {spec:?} is not ISSUER=FILE"))?;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the keys of issuer {iss} from {file}"))?;
        let keys = if text.trim_start().starts_with('{') {
            shoal_ca::auth::IssuerKeys::Jwks(text)
        } else {
            shoal_ca::auth::IssuerKeys::Pem(vec![text])
        };
        issuers.push(shoal_ca::auth::TrustedIssuer::new(iss, keys));
    }
    let jwt = Arc::new(JwtAuthenticator::new(&sa.trust_domain, issuers)?);
    let readers = crate::credential_readers::CredentialReaders::parse(&sa.credential_readers)?;
    let security = Arc::new(
        Security::new(ca.clone(), jwt.clone(), sa.workload_cert_ttl).with_readers(readers),
    );
    let _ = pipeline.security.set(security.clone());
    pipeline.refresh_credentials();
    let tls = Arc::new(crate::tls::ServingTls::new(
        ca.clone(),
        sa.tls_names.clone(),
    )?);
    let csr = shoal_ca::grpc::CertificateService::new(
        ca.clone(),
        jwt,
        shoal_ca::Authorizer::new(&sa.trust_domain)?,
        Arc::new(PodDirectory(pipeline)),
    );
    let check = sa.cert_check_interval.max(Duration::from_millis(100));
    {
        let (security, tls) = (security.clone(), tls.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(check);
            loop {
                tick.tick().await;
                // Another replica may have rotated the root in the shared CA directory.
                if let Err(e) = security.ca.reload() {
                    tracing::warn!(error = %e, "reloading the CA failed; keeping the current one");
                }
                let (s, t) = (security.clone(), tls.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    s.maintain();
                    t.maintain();
                })
                .await;
            }
        });
    }
    Ok(Running { security, tls, csr })
}

/// `shoal ca STEP`: one step of a root rotation on a CA directory.
pub fn run_ca(args: &crate::cli::CaArgs) -> anyhow::Result<()> {
    use crate::cli::CaStep;
    use anyhow::Context;
    let ca = CertificateAuthority::load_or_create(&args.ca_dir, &args.trust_domain)
        .with_context(|| format!("loading the CA in {}", args.ca_dir.display()))?;
    match args.step {
        CaStep::Rotate => ca.rotate_root()?,
        CaStep::Promote => ca.promote_next_root()?,
        CaStep::DropPrevious => ca.drop_previous_root()?,
        CaStep::Bundle => {}
    }
    print!("{}", ca.trust_bundle().concat());
    eprintln!("{} root(s) trusted", ca.trust_bundle().len());
    Ok(())
}

/// For the router: the identity a stream's client certificate proves (streams with a token
/// are verified by the owner from the token itself).
pub fn caller_fn(ca: Arc<CertificateAuthority>) -> shoal_router::CallerFn {
    Arc::new(move |parts: &http::request::Parts| {
        if parts.headers.contains_key(http::header::AUTHORIZATION) {
            return None;
        }
        let PeerCertificates(chain) = parts.extensions.get::<PeerCertificates>()?;
        let caller = ca.authenticate_client_cert(chain).ok()?;
        Some(caller.identity.spiffe_uri())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use shoal_config::ConfigStore;
    use shoal_config::parse::parse_yaml;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAwQF\n-----END PRIVATE KEY-----\n";

    fn secret(ns: &str, name: &str, keys: &[&str]) -> String {
        let data: Vec<String> = keys
            .iter()
            .map(|k| {
                let v = if k.ends_with("key") { KEY } else { CERT };
                format!("  {k}: {v:?}")
            })
            .collect();
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData:\n{}\n---\n",
            data.join("\n")
        )
    }

    fn config(yaml: &str) -> ConfigSnapshot {
        let mut store = ConfigStore::new();
        store.apply("c.yaml", parse_yaml("c.yaml", yaml));
        assert!(store.issues().is_empty(), "{:?}", store.issues());
        store.snapshot()
    }

    fn names(c: &Credentials, ns: &str) -> Vec<String> {
        c.get(ns)
            .map(|l| l.iter().map(|r| r.name.to_string()).collect())
            .unwrap_or_default()
    }

    fn decode(r: &Resource) -> Secret {
        prost::Message::decode(r.body.as_ref()).unwrap()
    }

    #[test]
    fn credentials_follow_istio_names_per_namespace() {
        let c = credentials(&config(
            &[
                secret("gw", "web", &["tls.crt", "tls.key", "ca.crt"]),
                secret("gw", "api", &["cert", "key"]),
                // `api`'s CA is a Secret of its own, `NAME-cacert`.
                secret("gw", "api-cacert", &["cacert"]),
                secret("gw", "token", &["token"]),
                secret("other", "web", &["tls.crt", "tls.key"]),
            ]
            .concat(),
        ));
        assert_eq!(
            names(&c, "gw"),
            [
                "kubernetes://api",
                "kubernetes://api-cacert",
                "kubernetes://web",
                "kubernetes://web-cacert"
            ]
        );
        assert_eq!(names(&c, "other"), ["kubernetes://web"]);
        let gw = c.get("gw").unwrap();
        assert!(matches!(
            decode(&gw[0]).r#type,
            Some(secret::Type::TlsCertificate(_))
        ));
        assert!(matches!(
            decode(&gw[1]).r#type,
            Some(secret::Type::ValidationContext(_))
        ));
    }

    fn security(dir: &std::path::Path) -> Security {
        let ca = Arc::new(CertificateAuthority::load_or_create(dir, "cluster.local").unwrap());
        let jwt = Arc::new(JwtAuthenticator::new("cluster.local", Vec::new()).unwrap());
        Security::new(ca, jwt, Duration::from_secs(3600))
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
        let sec = security(dir.path());
        sec.set_credentials(&config(
            &[
                secret("gw", "web", &["tls.crt", "tls.key"]),
                secret("other", "db", &["tls.crt", "tls.key"]),
            ]
            .concat(),
        ));
        let id = Identity::new("cluster.local", "gw", "ingress").unwrap();
        let gateway = sec.secrets_for(&id, true).unwrap();
        let sidecar = sec.secrets_for(&id, false).unwrap();
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
            held(&sec.secrets_for(&elsewhere, true).unwrap()),
            (own.clone(), Vec::new())
        );

        // A new Secret in the gateway's namespace is published to its view; a Secret
        // removed is withdrawn.
        sec.set_credentials(&config(
            &[
                secret("gw", "web", &["tls.crt", "tls.key", "ca.crt"]),
                secret("other", "db", &["tls.crt", "tls.key"]),
            ]
            .concat(),
        ));
        assert_eq!(
            held(&gateway).1,
            ["kubernetes://web", "kubernetes://web-cacert"]
        );
        sec.set_credentials(&config(&secret("other", "db", &["tls.crt", "tls.key"])));
        assert_eq!(held(&gateway), (own.clone(), Vec::new()));
        assert_eq!(held(&sidecar), (own, Vec::new()));
    }
}
