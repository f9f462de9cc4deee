//! From config to views: applies source updates to the config store, debounces them,
//! translates every live view and publishes the new snapshots, and the config snapshot
//! itself (a `watch` channel that identity and the admin server read). Maps a proxy to its
//! view ([`Pipeline::view_for`]); who may have which view is decided before, by admission.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use parking_lot::Mutex;
use shoal_cache::snapshot::Patch;
use shoal_cache::{Registry, Resources, Snapshot, Trigger, View};
use shoal_config::discovery::Scoped;
use shoal_config::source::SourceUpdate;
use shoal_config::{ChangeSet, ConfigSnapshot, ConfigStore, Issue, Kind, Labels};
use shoal_translate::model::{FetchedJwks, JwksRef};
use shoal_translate::{
    Generator, Interception, MeshOptions, ModelDelta, Proxy, ProxyType, Translator, ViewKey,
    ViewOutput,
};
use tokio::sync::{mpsc, watch};

use crate::config::MeshBase;
use crate::epoch::Epoch;

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
    ipv6_only: bool,
    unprivileged: bool,
}

struct BuildState {
    translator: Translator,
    /// The store's last snapshot, and the part of it in the mesh (discovery selectors,
    /// revision), which is what the translator sees.
    full: ConfigSnapshot,
    scoped: Scoped,
    keys: HashMap<Arc<str>, ViewKey>,
    classes: HashMap<ProxyClass, ViewKey>,
}

/// The config pipeline, shared by the build loop, the stream resolver and the admin
/// server.
pub struct Pipeline {
    registry: Registry,
    state: Mutex<BuildState>,
    /// Bumped when proxies may belong to other views.
    epoch: Arc<Epoch>,
    ready: AtomicBool,
    issues: Mutex<Vec<Issue>>,
    /// Why the last MeshConfig was refused, while it is.
    mesh_issue: Mutex<Option<Issue>>,
    /// A refused MeshNetworks.
    networks_issue: Mutex<Option<Issue>>,
    /// The config of the last build, published after the views.
    config: watch::Sender<ConfigSnapshot>,
    /// The JSON Web Key Sets the config needs fetched (`jwks.rs` fetches them).
    jwks_wanted: watch::Sender<std::collections::BTreeSet<JwksRef>>,
}

/// The changes that shape translated config: Secrets are served by the secrets views only
/// and ProxyConfigs by no view (the injector and agent read them at workload start), so
/// their changes rebuild no view.
fn translated(changes: &ChangeSet) -> std::borrow::Cow<'_, ChangeSet> {
    if changes.keys.iter().all(|k| k.kind.translated()) {
        return std::borrow::Cow::Borrowed(changes);
    }
    std::borrow::Cow::Owned(ChangeSet {
        keys: changes
            .keys
            .iter()
            .filter(|k| k.kind.translated())
            .cloned()
            .collect(),
    })
}

/// Warns once per kind that a source's documents are of a kind shoal does not serve.
fn warn_skipped(
    docs: &[shoal_config::parse::ParsedDoc],
    seen: &mut std::collections::BTreeSet<(String, String)>,
) {
    for d in docs {
        if let shoal_config::parse::Outcome::Skipped { api_version, kind } = &d.outcome
            && seen.insert((api_version.clone(), kind.clone()))
        {
            tracing::warn!(%api_version, %kind, first_seen_in = %d.origin, "skipping objects of a kind shoal does not serve");
        }
    }
}

fn describe_scope(scoped: &Scoped) -> String {
    match scoped.selected_namespaces() {
        None => "every namespace".into(),
        Some(s) => {
            let names: Vec<&str> = s.iter().map(|n| n.as_ref()).collect();
            format!(
                "{} namespace(s) selected: {}",
                names.len(),
                names.join(", ")
            )
        }
    }
}

/// The issue standing for a refused `document` (MeshConfig, MeshNetworks) from `origin`,
/// logged: the last good one stays.
fn refusal(document: &str, origin: &str, message: &str) -> Issue {
    tracing::error!(origin, error = %message, "{document} refused; keeping the last good one");
    let source = shoal_config::Origin {
        source: origin.into(),
        doc: 0,
        line: 0,
        item: None,
    };
    Issue::error(
        document,
        format!("refused, the last good one stays: {message}"),
    )
    .at(Some(&source), None)
}

pub fn resources(out: ViewOutput) -> Resources {
    Resources {
        wildcard: out.resources.into_iter().collect(),
        on_demand: out.on_demand.into_iter().collect(),
    }
}

impl Pipeline {
    pub fn new(options: MeshOptions, epoch: Arc<Epoch>) -> Arc<Pipeline> {
        Arc::new(Pipeline {
            registry: Registry::default(),
            state: Mutex::new(BuildState {
                full: ConfigSnapshot::default(),
                scoped: Scoped::new(options.discovery_scope()),
                translator: Translator::new(ConfigSnapshot::default(), options),
                keys: HashMap::new(),
                classes: HashMap::new(),
            }),
            epoch,
            ready: AtomicBool::new(false),
            issues: Mutex::new(Vec::new()),
            mesh_issue: Mutex::new(None),
            networks_issue: Mutex::new(None),
            config: watch::Sender::new(ConfigSnapshot::default()),
            jwks_wanted: watch::Sender::new(Default::default()),
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

    /// Current findings of the config store (rejected objects, warnings) and a refused
    /// MeshConfig.
    pub fn issues(&self) -> Vec<Issue> {
        let mut issues = self.issues.lock().clone();
        issues.extend(self.mesh_issue.lock().clone());
        issues.extend(self.networks_issue.lock().clone());
        issues
    }

    /// Applies a MeshNetworks `text` from `origin` (`None`: there is none any more); a
    /// broken one is refused, reported, and the last good networks stay.
    pub async fn mesh_networks(self: Arc<Self>, origin: &str, text: Option<&str>) {
        let networks = match text
            .map(|t| crate::mesh::parse_networks(origin, t))
            .transpose()
        {
            Ok(n) => n.unwrap_or_default(),
            Err(e) => {
                *self.networks_issue.lock() = Some(refusal("MeshNetworks", origin, &e.to_string()));
                return;
            }
        };
        *self.networks_issue.lock() = None;
        let mut options = self.options();
        if options.mesh_networks == networks {
            return;
        }
        tracing::info!(
            origin,
            networks = networks.networks.len(),
            "MeshNetworks changed"
        );
        options.mesh_networks = networks;
        self.apply_options(options).await;
    }

    /// Applies a MeshConfig `text` from `origin` (`None`: there is none any more) over
    /// `base`; a broken one is refused, reported, and the last good options stay.
    pub async fn mesh_config(self: Arc<Self>, base: &MeshBase, origin: &str, text: Option<&str>) {
        let options = match crate::mesh::options(base, origin, text, &self.options()) {
            Ok(o) => o,
            Err(e) => {
                *self.mesh_issue.lock() = Some(refusal("MeshConfig", origin, &format!("{e:#}")));
                return;
            }
        };
        *self.mesh_issue.lock() = None;
        tracing::info!(origin, present = text.is_some(), "MeshConfig changed");
        self.apply_options(options).await;
    }

    /// Moves every view to `options`, on a blocking thread (it rebuilds them).
    async fn apply_options(self: Arc<Self>, options: MeshOptions) {
        if let Err(e) = tokio::task::spawn_blocking(move || self.set_options(options)).await {
            tracing::error!(error = %e, "applying new mesh options failed");
        }
    }

    /// The config of the last build.
    pub fn config(&self) -> ConfigSnapshot {
        self.config.borrow().clone()
    }

    /// Every config the pipeline builds, once its views are published.
    pub fn config_watch(&self) -> watch::Receiver<ConfigSnapshot> {
        self.config.subscribe()
    }

    /// The key sets the current config needs fetched, kept current by `build`.
    pub fn jwks_wanted(&self) -> watch::Receiver<std::collections::BTreeSet<JwksRef>> {
        self.jwks_wanted.subscribe()
    }

    /// The namespaces discovery selectors put in the mesh (`None`: every namespace).
    pub fn selected_namespaces(&self) -> Option<Vec<String>> {
        let st = self.state.lock();
        st.scoped
            .selected_namespaces()
            .map(|s| s.iter().map(|n| n.to_string()).collect())
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
        let scope = options.discovery_scope();
        if scope != *st.scoped.scope() {
            let full = st.full.clone();
            let (config, changes) = st.scoped.set_scope(scope, &full);
            tracing::info!(
                changed = changes.keys.len(),
                "discovery scope changed: {}",
                describe_scope(&st.scoped)
            );
            // The options below differ too, so every view is rebuilt from this config.
            st.translator.update(config.clone(), &translated(&changes));
            self.config.send_replace(config);
        }
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
        st.full = config.clone();
        let selected_before = st.scoped.selected_namespaces().map(|s| s.len());
        let (config, changes) = st.scoped.update(&config, changes);
        if st.scoped.selected_namespaces().map(|s| s.len()) != selected_before {
            tracing::info!("discovery scope: {}", describe_scope(&st.scoped));
        }
        let delta = st.translator.update(config.clone(), &translated(&changes));
        if delta.full {
            self.want_jwks(&st);
        }
        // Before the streams are told to resolve again (`publish`), so that admission
        // reads this config; identity follows it (gateway credentials: Secrets changes
        // reach only it).
        self.config.send_replace(config);
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
            // ztunnel's view is made of the workloads themselves, a waypoint's clusters
            // carry their endpoints: both are rebuilt whole on any change (content-hashed
            // resources make the delta).
            let whole = matches!(
                key.proxy_type,
                ProxyType::Ztunnel | ProxyType::Waypoint | ProxyType::Federation
            );
            let next = if delta.full || whole {
                current.replaced(&resources(st.translator.build(&key)), trigger.clone())
            } else if delta.endpoint_hosts.is_empty() {
                continue;
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
            self.epoch.bump();
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
        let mut last = self.issues.lock();
        // Each finding is logged when it appears, not again with every later change.
        let known: std::collections::HashSet<String> = last
            .iter()
            .filter(|i| i.is_error())
            .map(ToString::to_string)
            .collect();
        for i in issues.iter().filter(|i| i.is_error()) {
            let text = i.to_string();
            if !known.contains(&text) {
                tracing::warn!("{text}");
            }
        }
        *last = issues;
    }

    /// The config loop: applies source updates, debounces, builds. Returns when the
    /// sources are gone. `sources` is how many `Synced` updates mean "initial load done".
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<SourceUpdate>,
        mesh: MeshBase,
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
                        // Findings and gauges once per batch: a source that sends an
                        // update per object (Kubernetes) must not cost a pass over the
                        // whole store per object.
                        self.record_store(&store);
                        let changes = std::mem::take(&mut pending);
                        let since = first_change.take().unwrap_or_else(Instant::now);
                        if !changes.is_empty() {
                            self.clone().build_async(store.snapshot(), changes, since).await;
                        }
                        continue;
                    }
                },
                _ => rx.recv().await,
            };
            let Some(update) = update else { return };
            let changes = match update {
                SourceUpdate::Apply { source, docs } => {
                    warn_skipped(&docs, &mut skipped_kinds);
                    store.apply(&source, docs)
                }
                SourceUpdate::ApplyAt {
                    source,
                    docs,
                    precedence,
                } => {
                    warn_skipped(&docs, &mut skipped_kinds);
                    store.apply_at(&source, docs, precedence)
                }
                SourceUpdate::Remove { source } => store.remove_source(&source),
                SourceUpdate::MeshConfig { origin, text } => {
                    self.clone()
                        .mesh_config(&mesh, &origin, text.as_deref())
                        .await;
                    continue;
                }
                // `--mesh-networks`, when given, is the one (as istiod's mounted file).
                SourceUpdate::MeshNetworks { origin, text } => {
                    if !mesh.networks_from_file {
                        self.clone().mesh_networks(&origin, text.as_deref()).await;
                    }
                    continue;
                }
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
            // Even an update that changed nothing served (a rejected object) is recorded
            // at the end of the batch: its findings are news.
            last_change = Instant::now();
            first_change.get_or_insert(last_change);
            if !changes.is_empty() {
                counter!("shoal_config_changes_total").increment(changes.keys.len() as u64);
                pending.merge(changes);
            }
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
}

impl Pipeline {
    /// The view of `proxy` (with or without a workload certificate), built if needed.
    /// Proxies of the same class share the answer. Runs on a blocking thread.
    pub fn view_for(&self, proxy: &Proxy, workload_certs: bool) -> Arc<View> {
        let class = ProxyClass {
            proxy_type: proxy.proxy_type,
            generator: proxy.generator,
            interception: proxy.interception,
            namespace: proxy.namespace.clone(),
            labels: proxy.labels.clone(),
            locality: proxy.locality.clone(),
            gateway_topology: proxy.gateway_topology,
            ipv6_only: proxy.ipv6_only(),
            unprivileged: proxy.unprivileged,
        };
        let mut st = self.state.lock();
        let key = match st.classes.get(&class) {
            Some(k) => k.clone(),
            None => {
                let k = ViewKey::for_proxy(st.translator.model(), proxy);
                st.classes.insert(class, k.clone());
                k
            }
        };
        let key = ViewKey {
            workload_certs,
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
        view
    }
}
