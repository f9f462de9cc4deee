//! The library API: [`Emulator`] and its options.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::error::{ApiError, Error};
use crate::resources::ResourceDef;
use crate::store::{Deleted, Part, Store};
use crate::tls::{self, Tls};

/// How to start an [`Emulator`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The bearer token clients must send (written into the kubeconfig).
    pub token: String,
    /// The user that token authenticates as (named in 403 messages).
    pub user: String,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Events kept for watches and exact lists; older ones are compacted away (410).
    pub max_history: usize,
    /// Largest request body accepted (413 above); the real server's is 3 MiB.
    pub max_body_bytes: usize,
    /// `gitVersion` reported by `/version`.
    pub server_version: String,
    /// Context, cluster and user name in the kubeconfig.
    pub context: String,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            token: "shoal-kube-emulator-token".to_string(),
            user: "system:serviceaccount:istio-system:shoal".to_string(),
            bookmark_interval: Duration::from_secs(1),
            max_history: 10_000,
            max_body_bytes: 3 * 1024 * 1024,
            server_version: "v1.32.0".to_string(),
            context: "shoal-emulator".to_string(),
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// A Kubernetes API verb, as RBAC names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user a TokenReview reports for a token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReviewUser {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// `user.extra` (a bound token's `authentication.kubernetes.io/pod-name`, `node-name`).
    pub extra: BTreeMap<String, Vec<String>>,
    /// The audiences the token was issued for (empty: any audience).
    pub audiences: Vec<String>,
}

/// State shared by the HTTP handlers and the in-process API.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub rv_rx: tokio::sync::watch::Receiver<u64>,
    pub opts: Options,
    pub addr: SocketAddr,
    /// `(verb, "pods" | "pods/status" | "virtualservices.networking.istio.io")`.
    pub forbidden: Mutex<HashSet<(Verb, String)>>,
    pub counts: Mutex<BTreeMap<(Verb, String), u64>>,
    pub token_reviews: Mutex<HashMap<String, ReviewUser>>,
    /// `(namespace, name, port)` of a webhook's service to the address serving it.
    pub service_endpoints: Mutex<HashMap<(String, String, u16), SocketAddr>>,
    /// Admission webhook calls made, by webhook name.
    pub admission_calls: Mutex<BTreeMap<String, u64>>,
}

struct Inner {
    shared: Arc<Shared>,
    tls: Tls,
    server: Mutex<Option<JoinHandle<()>>>,
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    inner: Arc<Inner>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(h) = self.inner.server.lock().take() {
            h.abort();
        }
    }
}

impl Emulator {
    /// Serves HTTPS on 127.0.0.1 (`opts.port`, 0 for a free one). Needs a Tokio runtime.
    pub async fn start(opts: Options) -> Result<Emulator, Error> {
        let tls = tls::generate()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::watch::channel(0);
        let mut store = Store::new(opts.max_history, tx);
        let ns_def = store.registry.resolve("namespaces")?.0.clone();
        for ns in &opts.namespaces {
            store.create(
                &ns_def,
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                Part::All,
            )?;
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            rv_rx: rx,
            opts,
            addr,
            forbidden: Mutex::new(HashSet::new()),
            counts: Mutex::new(BTreeMap::new()),
            token_reviews: Mutex::new(HashMap::new()),
            service_endpoints: Mutex::new(HashMap::new()),
            admission_calls: Mutex::new(BTreeMap::new()),
        });
        let server = tokio::spawn(crate::server::serve(
            listener,
            tls.server.clone(),
            shared.clone(),
        ));
        Ok(Emulator {
            inner: Arc::new(Inner {
                shared,
                tls,
                server: Mutex::new(Some(server)),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared().addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr())
    }

    /// The CA that signed the serving certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.inner.tls.ca_pem
    }

    pub fn token(&self) -> &str {
        &self.shared().opts.token
    }

    /// A kubeconfig (YAML) for this emulator: server URL, `certificate-authority-data`, token,
    /// and a current context named [`Options::context`].
    pub fn kubeconfig_yaml(&self) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        let name = &self.shared().opts.context;
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\ncurrent-context: {name}\npreferences: {{}}\n",
            url = self.url(),
            token = self.token(),
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig_yaml())?;
        Ok(())
    }

    fn def(&self, resource: &str) -> Result<(ResourceDef, Option<String>), Error> {
        let store = self.shared().store.lock();
        let (d, sub) = store.registry.resolve(resource)?;
        Ok((d.clone(), sub))
    }

    /// Creates the object, or replaces it if it exists (whatever its resourceVersion). Its
    /// `status` is written too when given, and kept from storage when absent. Namespaced
    /// objects without a namespace go to `default`. Returns the stored object.
    pub fn apply(&self, obj: Value) -> Result<Value, Error> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut store = self.shared().store.lock();
        let def = store
            .registry
            .find_kind(api_version, kind)
            .map(|(d, _)| d.clone())
            .ok_or_else(|| Error::UnknownResource(format!("{api_version} {kind}")))?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let ns = ns.as_deref().or(Some("default"));
        let stored = if store.get(&def, ns, &name).is_some() {
            let mut obj = obj;
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let keep_status = obj.get("status").is_none();
            let mut o = obj;
            if keep_status
                && let Some(s) = store
                    .get(&def, ns, &name)
                    .and_then(|c| c.get("status").cloned())
            {
                o["status"] = s;
            }
            store.update(&def, ns, &name, o, Part::All)?
        } else {
            store.create(&def, ns, obj, Part::All)?
        };
        Ok((*stored).clone())
    }

    /// [`Self::apply`] of every document of a (multi-document) YAML stream.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, Error> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(yaml).map_err(|e| Error::BadObject(e.to_string()))?;
        docs.into_iter()
            .filter(|d| !d.is_null())
            .map(|d| self.apply(d))
            .collect()
    }

    /// An object by resource name (`pods`, `po`, `Pod`, `vs`, `gateways.networking.istio.io`).
    pub fn get(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let (def, _) = self.def(resource)?;
        Ok(self
            .shared()
            .store
            .lock()
            .get(&def, ns, name)
            .map(|o| (*o).clone()))
    }

    /// All objects of a resource, in one namespace or (`None`) all.
    pub fn list(&self, resource: &str, ns: Option<&str>) -> Result<Vec<Value>, Error> {
        let (def, _) = self.def(resource)?;
        let store = self.shared().store.lock();
        let (items, _) = store
            .snapshot(&def, ns, None)
            .ok_or_else(|| Error::Api(ApiError::internal("no current snapshot")))?;
        Ok(items.into_iter().map(|(_, o)| (*o).clone()).collect())
    }

    /// Deletes an object; returns its last state, or `None` if it did not exist. An object
    /// with finalizers is only marked for deletion (and returned).
    pub fn delete(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let (def, _) = self.def(resource)?;
        match self.shared().store.lock().delete(&def, ns, name, None) {
            Ok(Deleted::Gone(o) | Deleted::Terminating(o)) => Ok(Some((*o).clone())),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an object's `.status`, as a controller's `PUT .../status` would.
    pub fn set_status(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        status: Value,
    ) -> Result<Value, Error> {
        let (def, _) = self.def(resource)?;
        let stored = self.shared().store.lock().update(
            &def,
            ns,
            name,
            json!({ "status": status }),
            Part::Status,
        )?;
        Ok((*stored).clone())
    }

    /// Waits until the object exists and `pred` holds for it (e.g. a client wrote its status).
    pub async fn wait_for(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, Error> {
        let mut rx = self.shared().rv_rx.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(o) = self.get(resource, ns, name)?
                && pred(&o)
            {
                return Ok(o);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(Error::Timeout(
                        timeout,
                        format!("{resource} {}/{name}", ns.unwrap_or("")),
                    ));
                }
            }
        }
    }

    fn forbid_key(&self, resource: &str) -> Result<String, Error> {
        let (def, sub) = self.def(resource)?;
        Ok(match sub {
            Some(s) => format!("{}/{s}", def.qualified()),
            None => def.qualified(),
        })
    }

    /// Denies `verb` on `resource` (`pods/status` for the subresource) with a 403 like RBAC's.
    pub fn forbid(&self, resource: &str, verb: Verb) -> Result<(), Error> {
        let key = self.forbid_key(resource)?;
        self.shared().forbidden.lock().insert((verb, key));
        Ok(())
    }

    /// Undoes [`Self::forbid`].
    pub fn allow(&self, resource: &str, verb: Verb) -> Result<(), Error> {
        let key = self.forbid_key(resource)?;
        self.shared().forbidden.lock().remove(&(verb, key));
        Ok(())
    }

    /// Requests served (or denied) so far for `verb` on `resource` (`pods/status` counts the
    /// subresource separately).
    pub fn requests(&self, verb: Verb, resource: &str) -> Result<u64, Error> {
        let key = self.forbid_key(resource)?;
        Ok(self
            .shared()
            .counts
            .lock()
            .get(&(verb, key))
            .copied()
            .unwrap_or(0))
    }

    /// Every counter, keyed `"list pods"`, `"watch virtualservices.networking.istio.io"`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared()
            .counts
            .lock()
            .iter()
            .map(|((v, r), n)| (format!("{v} {r}"), *n))
            .collect()
    }

    pub fn reset_request_counts(&self) {
        self.shared().counts.lock().clear();
    }

    /// TokenReviews of `token` will report it authenticated as `user`; others unauthenticated.
    pub fn add_token_review(&self, token: &str, user: ReviewUser) {
        self.shared()
            .token_reviews
            .lock()
            .insert(token.to_string(), user);
    }

    /// Drops the event history, as etcd compaction does: watches and exact lists from any
    /// earlier resourceVersion get 410 Expired. Running watches keep going.
    pub fn compact(&self) {
        self.shared().store.lock().compact();
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared().store.lock().rv
    }

    /// Stops serving: the port refuses connections, open connections and watches are cut.
    pub async fn stop(&self) {
        stop(&self.inner).await;
    }

    /// Serves again on the same port after [`Self::stop`], with the objects kept and the
    /// history compacted, like an API server restart.
    pub async fn restart(&self) -> Result<(), Error> {
        restart(&self.inner).await
    }

    /// Stops now and restarts (as [`Self::restart`]) after `d`, in the background.
    pub async fn pause(&self, d: Duration) {
        stop(&self.inner).await;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            if let Some(inner) = weak.upgrade()
                && let Err(e) = restart(&inner).await
            {
                tracing::warn!("kube-emulator: restart after pause failed: {e}");
            }
        });
    }
}

async fn stop(inner: &Inner) {
    let handle = inner.server.lock().take();
    if let Some(h) = handle {
        h.abort();
        let _ = h.await;
    }
}

async fn restart(inner: &Arc<Inner>) -> Result<(), Error> {
    stop(inner).await;
    inner.shared.store.lock().compact();
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(inner.shared.addr).await {
            Ok(l) => break l,
            Err(e) if tries < 50 => {
                tracing::debug!("kube-emulator: rebinding {}: {e}", inner.shared.addr);
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let server = tokio::spawn(crate::server::serve(
        listener,
        inner.tls.server.clone(),
        inner.shared.clone(),
    ));
    *inner.server.lock() = Some(server);
    Ok(())
}
