//! From config to views: applies source updates to the config store, debounces them,
//! translates every live view and publishes the new snapshots. Also maps connecting proxies
//! to views ([`ViewSource`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use parking_lot::Mutex;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_cache::snapshot::Patch;
use shoal_cache::{
    Registry, Resolved, Resources, Snapshot, StreamContext, Trigger, View, ViewSource,
};
use shoal_config::source::SourceUpdate;
use shoal_config::{ChangeSet, ConfigSnapshot, ConfigStore, Issue, Kind, Labels};
use shoal_translate::model::{FetchedJwks, JwksRef};
use shoal_translate::{
    Generator, Interception, MeshOptions, ModelDelta, Proxy, ProxyType, Translator, ViewKey,
    ViewOutput,
};
use tokio::sync::{mpsc, watch};
use tonic::Status;

/// Views no stream has used for this long are dropped.
const VIEW_IDLE: Duration = Duration::from_secs(60);
/// Shared response bodies unused for this long are dropped (rebuilt when needed).
const RESPONSE_IDLE: Duration = Duration::from_secs(5);
/// How often upkeep runs.
pub const MAINTENANCE: Duration = Duration::from_secs(2);

/// Proxies that differ only in name and IP resolve to the same view; remember the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProxyClass {
    proxy_type: ProxyType,
    generator: Generator,
    interception: Interception,
    namespace: String,
    labels: Labels,
    locality: shoal_translate::model::Locality,
    gateway_topology: Option<shoal_translate::GatewayTopology>,
}

struct BuildState {
    translator: Translator,
    keys: HashMap<Arc<str>, ViewKey>,
    classes: HashMap<ProxyClass, ViewKey>,
}

/// The config pipeline, shared by the build loop, the ADS service and the admin server.
pub struct Pipeline {
    registry: Registry,
    state: Mutex<BuildState>,
    epoch: watch::Sender<u64>,
    ready: AtomicBool,
    issues: Mutex<Vec<Issue>>,
    config: Mutex<ConfigSnapshot>,
    /// Workload identity (set once at start when the CA is enabled).
    pub security: std::sync::OnceLock<Arc<crate::security::Security>>,
    /// The JSON Web Key Sets the config needs fetched (`jwks.rs` fetches them).
    jwks_wanted: watch::Sender<std::collections::BTreeSet<JwksRef>>,
    /// The identities that run gateways, as of the last build (credentials go to them).
    gateway_identities: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// What the JWKS fetcher knows of each key set (for `/debug/jwksz`).
    pub jwks_status: Mutex<Vec<serde_json::Value>>,
}

pub fn resources(out: ViewOutput) -> Resources {
    Resources {
        wildcard: out.resources.into_iter().collect(),
        on_demand: out.on_demand.into_iter().collect(),
    }
}

impl Pipeline {
    pub fn new(options: MeshOptions) -> Arc<Pipeline> {
        Arc::new(Pipeline {
            registry: Registry::default(),
            state: Mutex::new(BuildState {
                translator: Translator::new(ConfigSnapshot::default(), options),
                keys: HashMap::new(),
                classes: HashMap::new(),
            }),
            epoch: watch::Sender::new(0),
            ready: AtomicBool::new(false),
            issues: Mutex::new(Vec::new()),
            config: Mutex::new(ConfigSnapshot::default()),
            security: std::sync::OnceLock::new(),
            jwks_wanted: watch::Sender::new(Default::default()),
            gateway_identities: Mutex::new(Default::default()),
            jwks_status: Mutex::new(Vec::new()),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn views(&self) -> Vec<Arc<View>> {
        self.registry.live()
    }

    pub fn view(&self, id: &str) -> Option<Arc<View>> {
        self.registry.get(id)
    }

    /// Periodic upkeep: drop idle views and the shared responses nobody used lately.
    pub fn maintain(&self) {
        for v in self.registry.live() {
            v.trim(RESPONSE_IDLE);
        }
        let removed = self.registry.prune(VIEW_IDLE);
        if !removed.is_empty() {
            let mut st = self.state.lock();
            for id in removed {
                st.keys.remove(&id);
            }
        }
    }

    /// Current findings of the config store (rejected objects, warnings).
    pub fn issues(&self) -> Vec<Issue> {
        self.issues.lock().clone()
    }

    pub fn config(&self) -> ConfigSnapshot {
        self.config.lock().clone()
    }

    /// Hands the config's TLS Secrets to the gateway secrets views (once the CA is set up;
    /// `build` keeps them current afterwards). Serialized with `build` by the state lock, so
    /// the latest config always wins.
    pub fn refresh_credentials(&self) {
        let _st = self.state.lock();
        if let Some(security) = self.security.get() {
            security.set_credentials(&self.config.lock());
        }
    }

    /// The key sets the current config needs fetched, kept current by `build`.
    pub fn jwks_wanted(&self) -> watch::Receiver<std::collections::BTreeSet<JwksRef>> {
        self.jwks_wanted.subscribe()
    }

    /// The mesh-wide options views are built with.
    pub fn options(&self) -> MeshOptions {
        self.state.lock().translator.model().options.clone()
    }

    /// Moves every view to new mesh-wide options (a changed MeshConfig). Runs on a
    /// blocking thread.
    pub fn set_options(&self, options: MeshOptions) {
        let started = Instant::now();
        let mut st = self.state.lock();
        let delta = st.translator.set_options(options);
        if delta.full {
            self.want_jwks(&st);
        }
        let trigger = Trigger {
            since: started,
            reason: "mesh-config",
        };
        self.publish(&mut st, &delta, trigger, started);
    }

    /// Notes the key sets the current model needs fetched.
    fn want_jwks(&self, st: &BuildState) {
        let wanted = st.translator.model().jwks_refs();
        self.jwks_wanted.send_if_modified(|w| {
            let changed = *w != wanted;
            *w = wanted;
            changed
        });
    }

    /// Moves every view to newly fetched JSON Web Key Sets. Runs on a blocking thread.
    pub fn set_jwks(&self, jwks: FetchedJwks) {
        let started = Instant::now();
        let mut st = self.state.lock();
        let delta = st.translator.set_jwks(jwks);
        let trigger = Trigger {
            since: started,
            reason: "jwks",
        };
        self.publish(&mut st, &delta, trigger, started);
    }

    /// Applies a batch of config changes to every live view. Runs on a blocking thread.
    pub fn build(&self, config: ConfigSnapshot, changes: &ChangeSet, since: Instant) {
        let started = Instant::now();
        let mut st = self.state.lock();
        // Secrets are served by the secrets views only and ProxyConfigs by no view (the
        // injector and agent read them at workload start): their changes rebuild no view.
        let secrets_changed = changes.keys.iter().any(|k| k.kind == Kind::Secret);
        let untranslated = changes.keys.iter().any(|k| !k.kind.translated());
        let translated = if untranslated {
            std::borrow::Cow::Owned(ChangeSet {
                keys: changes
                    .keys
                    .iter()
                    .filter(|k| k.kind.translated())
                    .cloned()
                    .collect(),
            })
        } else {
            std::borrow::Cow::Borrowed(changes)
        };
        let delta = st.translator.update(config.clone(), &translated);
        if secrets_changed && let Some(security) = self.security.get() {
            security.set_credentials(&config);
        }
        // Pods are endpoint-only changes, but one may make its identity a gateway's (or
        // stop it being one): streams are then resolved again, which is where a gateway's
        // credentials are granted.
        let pods_changed = changes.keys.iter().any(|k| k.kind == Kind::Pod);
        let mut gateways_changed = false;
        if (pods_changed || delta.full) && self.security.get().is_some() {
            let now = crate::credential_readers::gateway_identities(&config);
            let mut known = self.gateway_identities.lock();
            gateways_changed = *known != now && !delta.full;
            *known = now;
        }
        *self.config.lock() = config;
        if gateways_changed {
            // After the config is in place: streams read it when they resolve again.
            tracing::info!("gateway workloads changed: streams resolve their identity again");
            self.epoch.send_modify(|e| *e += 1);
        }
        if delta.full {
            self.want_jwks(&st);
        }
        let reason = if delta.full { "config" } else { "endpoints" };
        self.publish(&mut st, &delta, Trigger { since, reason }, started);
    }

    /// Publishes what a model change means for every live view.
    fn publish(&self, st: &mut BuildState, delta: &ModelDelta, trigger: Trigger, started: Instant) {
        if delta.is_empty() {
            return;
        }
        let views = self.registry.live();
        let reason = trigger.reason;
        let mut published = 0;
        for view in &views {
            let Some(key) = st.keys.get(&view.id).cloned() else {
                continue;
            };
            let current = view.current();
            let next = if delta.full {
                current.replaced(&resources(st.translator.build(&key)), trigger.clone())
            } else {
                let upserts = st
                    .translator
                    .endpoints(&key, &delta.endpoint_hosts)
                    .into_iter()
                    .map(|r| (shoal_api::ResourceType::Endpoint, r))
                    .collect();
                current.patched(
                    &Patch {
                        upserts,
                        removals: Vec::new(),
                    },
                    trigger.clone(),
                )
            };
            if view.publish(next) {
                published += 1;
            }
        }
        if delta.full {
            // Proxies may belong to other views now: let their streams ask again.
            st.classes.clear();
            self.epoch.send_modify(|e| *e += 1);
        }
        for id in self.registry.prune(VIEW_IDLE) {
            st.keys.remove(&id);
        }
        gauge!("shoal_views").set(self.registry.len() as f64);
        counter!("shoal_builds_total", "trigger" => reason).increment(1);
        histogram!("shoal_build_seconds", "trigger" => reason)
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            trigger = reason,
            views = views.len(),
            published,
            hosts = delta.endpoint_hosts.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "built"
        );
    }

    fn record_store(&self, store: &ConfigStore) {
        let snap = store.snapshot();
        for kind in Kind::ALL {
            gauge!("shoal_config_objects", "kind" => kind.as_str()).set(0.0);
        }
        for (kind, n) in snap.counts() {
            gauge!("shoal_config_objects", "kind" => kind.as_str()).set(n as f64);
        }
        gauge!("shoal_config_rejected_objects").set(store.rejected_count() as f64);
        let issues = store.issues();
        for i in issues.iter().filter(|i| i.is_error()) {
            tracing::warn!("{i}");
        }
        *self.issues.lock() = issues;
    }

    /// The config loop: applies source updates, debounces, builds. Returns when the
    /// sources are gone. `sources` is how many `Synced` updates mean "initial load done".
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<SourceUpdate>,
        sources: usize,
        debounce: Duration,
        debounce_max: Duration,
    ) {
        let mut store = ConfigStore::new();
        let mut pending = ChangeSet::default();
        let mut first_change: Option<Instant> = None;
        let mut last_change = Instant::now();
        let mut synced = 0usize;
        let mut skipped_kinds = std::collections::BTreeSet::new();
        loop {
            let deadline =
                first_change.map(|first| (last_change + debounce).min(first + debounce_max));
            let update = match deadline {
                Some(d) if synced >= sources => tokio::select! {
                    u = rx.recv() => u,
                    _ = tokio::time::sleep_until(d.into()) => {
                        let changes = std::mem::take(&mut pending);
                        let since = first_change.take().unwrap_or_else(Instant::now);
                        self.clone().build_async(store.snapshot(), changes, since).await;
                        continue;
                    }
                },
                _ => rx.recv().await,
            };
            let Some(update) = update else { return };
            let changes = match update {
                SourceUpdate::Apply { source, docs } => {
                    for d in &docs {
                        if let shoal_config::parse::Outcome::Skipped { api_version, kind } =
                            &d.outcome
                            && skipped_kinds.insert((api_version.clone(), kind.clone()))
                        {
                            tracing::warn!(%api_version, %kind, first_seen_in = %d.origin, "skipping objects of a kind shoal does not serve");
                        }
                    }
                    store.apply(&source, docs)
                }
                SourceUpdate::Remove { source } => store.remove_source(&source),
                SourceUpdate::Synced { source_kind } => {
                    synced += 1;
                    tracing::info!(
                        source = source_kind,
                        objects = store.snapshot().len(),
                        "source synced"
                    );
                    if synced == sources {
                        self.record_store(&store);
                        let changes = std::mem::take(&mut pending);
                        first_change = None;
                        self.clone()
                            .build_async(store.snapshot(), changes, Instant::now())
                            .await;
                        self.ready.store(true, Ordering::Release);
                    }
                    continue;
                }
            };
            self.record_store(&store);
            if changes.is_empty() {
                continue;
            }
            counter!("shoal_config_changes_total").increment(changes.keys.len() as u64);
            pending.merge(changes);
            last_change = Instant::now();
            first_change.get_or_insert(last_change);
        }
    }

    async fn build_async(
        self: Arc<Self>,
        config: ConfigSnapshot,
        changes: ChangeSet,
        since: Instant,
    ) {
        let result = tokio::task::spawn_blocking(move || self.build(config, &changes, since)).await;
        if let Err(e) = result {
            tracing::error!(error = %e, "build failed");
        }
    }

    /// Config dump of a view: every resource rendered as Envoy JSON.
    pub fn dump(view: &View) -> serde_json::Value {
        let snap = view.current();
        let mut types = serde_json::Map::new();
        for ty in shoal_api::ResourceType::ALL {
            let t = snap.get(ty);
            if t.is_empty() {
                continue;
            }
            let render = |m: &shoal_cache::snapshot::TypeMap| -> Vec<serde_json::Value> {
                m.values()
                    .map(|r| {
                        let body = shoal_api::json::to_json(ty.type_url(), &r.body)
                            .unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
                        serde_json::json!({ "name": r.name.as_ref(), "version": r.version.to_string(), "resource": body })
                    })
                    .collect()
            };
            types.insert(
                ty.short_name().to_string(),
                serde_json::json!({ "type_url": ty.type_url(), "resources": render(&t.wildcard), "on_demand": render(&t.on_demand) }),
            );
        }
        serde_json::json!({ "view": view.id.as_ref(), "version": snap.version, "types": types })
    }
}

impl ViewSource for Pipeline {
    fn resolve(&self, node: Option<&Node>, caller: &StreamContext) -> Result<Resolved, Status> {
        let proxy = Proxy::from_node(node).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // An authenticated proxy sees only its own namespace's view and gets its own
        // identity's secrets; an anonymous one (plaintext port) gets no secrets.
        let mut secrets = None;
        if let Some(security) = self.security.get()
            && let Some(c) = security.authenticate(caller)?
        {
            if c.identity.namespace != proxy.namespace {
                return Err(Status::permission_denied(format!(
                    "authenticated as {} but the node claims namespace {}",
                    c.identity.spiffe_uri(),
                    proxy.namespace
                )));
            }
            // Only a gateway's view may hold its namespace's credentials, and only for an
            // identity that runs a gateway (or that the operator named): the proxy type is
            // the proxy's own claim.
            let gateway = proxy.proxy_type == ProxyType::Router
                && security.readers.allows(&c.identity, &self.config.lock());
            if proxy.proxy_type == ProxyType::Router && !gateway {
                tracing::info!(
                    identity = %c.identity.spiffe_uri(),
                    "a gateway proxy whose identity runs no gateway workload: no credentials"
                );
            }
            secrets = Some(security.secrets_for(&c.identity, gateway)?);
        }
        if proxy.proxy_type == ProxyType::Ztunnel {
            return Err(Status::unimplemented(
                "ztunnel workload discovery (WDS) is not served by this version of shoal",
            ));
        }
        let class = ProxyClass {
            proxy_type: proxy.proxy_type,
            generator: proxy.generator,
            interception: proxy.interception,
            namespace: proxy.namespace.clone(),
            labels: proxy.labels.clone(),
            locality: proxy.locality.clone(),
            gateway_topology: proxy.gateway_topology,
        };
        let mut st = self.state.lock();
        let key = match st.classes.get(&class) {
            Some(k) => k.clone(),
            None => {
                let k = ViewKey::for_proxy(st.translator.model(), &proxy);
                st.classes.insert(class, k.clone());
                k
            }
        };
        let key = ViewKey {
            workload_certs: secrets.is_some(),
            ..key
        };
        let id = key.id();
        let view = match self.registry.get(&id) {
            Some(v) => v,
            None => {
                let out = st.translator.build(&key);
                let trigger = Trigger {
                    since: Instant::now(),
                    reason: "new-view",
                };
                self.registry
                    .get_or_insert_with(&id, || Snapshot::initial(&resources(out), trigger))
            }
        };
        st.keys.insert(view.id.clone(), key);
        gauge!("shoal_views").set(self.registry.len() as f64);
        Ok(Resolved { view, secrets })
    }

    fn epoch(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }
}
