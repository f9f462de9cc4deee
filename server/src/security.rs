//! Workload identity on the xDS path: who a stream is (a client certificate or a
//! service-account token), and the SDS secrets of that identity — `default` (the proxy's own
//! key and certificate) and `ROOTCA` (the trust bundle) — each identity in its own view, so a
//! proxy can only ever be sent its own key.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use shoal_api::pb::envoy::config::core::v3::{DataSource, data_source};
use shoal_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use shoal_api::{Resource, ResourceType};
use shoal_ca::grpc::PeerCertificates;
use shoal_ca::{Caller, CertificateAuthority, Identity, JwtAuthenticator};
use shoal_cache::{Resources, Snapshot, StreamContext, Trigger, View};
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
}

/// The CA, the token verifier and the per-identity secret views.
pub struct Security {
    pub ca: Arc<CertificateAuthority>,
    pub jwt: Arc<JwtAuthenticator>,
    workload_ttl: Duration,
    secrets: DashMap<String, Issued>,
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
        }
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

    /// The secrets view of an identity, issuing its certificate on first use.
    pub fn secrets_for(&self, identity: &Identity) -> Result<Arc<View>, Status> {
        let uri = identity.spiffe_uri();
        if let Some(e) = self.secrets.get(&uri) {
            return Ok(e.view.clone());
        }
        let (resources, renew_at, bundle) = self.issue(identity)?;
        let entry = self.secrets.entry(uri.clone()).or_insert_with(|| Issued {
            view: View::new(
                format!("secrets:{uri}"),
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
        });
        Ok(entry.view.clone())
    }

    fn issue(&self, identity: &Identity) -> Result<(Resources, SystemTime, Vec<String>), Status> {
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
        let resources = Resources {
            wildcard: vec![(
                ResourceType::Secret,
                vec![
                    Resource::encode(DEFAULT_SECRET, &default),
                    Resource::encode(ROOT_SECRET, &root),
                ],
            )],
            on_demand: Vec::new(),
        };
        Ok((resources, renew_at, bundle))
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
            let Ok(identity) = Identity::parse(e.key()) else {
                continue;
            };
            match self.issue(&identity) {
                Ok((resources, renew_at, bundle)) => {
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
    let security = Arc::new(Security::new(ca.clone(), jwt.clone(), sa.workload_cert_ttl));
    let _ = pipeline.security.set(security.clone());
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
