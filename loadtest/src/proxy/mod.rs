//! Simulated proxies. Each runs its own xDS stream and behaves like the real client:
//!
//! - `sidecar` (delta, as Envoy): clusters and listeners by wildcard, endpoints and routes by
//!   the names those carry; ACK after decoding, NACK on anything undecodable;
//! - `sidecar-sotw`: the same over state-of-the-world;
//! - `grpc` (proxyless, as gRPC's xDS client): the listener `HOST:PORT` by name, then its
//!   route config, the clusters its routes name, their endpoints;
//! - `ztunnel` (delta): Address and Authorization by wildcard;
//! - `waypoint` (delta, as Envoy): the waypoint of its namespace (node type `waypoint`,
//!   its Gateway named by label), clusters and listeners by wildcard;
//! - `mixed`: a fleet of the three a cluster in ambient mode runs — sidecars, with one
//!   ztunnel and one waypoint proxy in every twenty ([`Kind::member`]).

mod decode;
mod delta;
mod sotw;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind as VKind};
use tokio::sync::mpsc;
use tonic::transport::Channel;

pub use decode::{DecodeCache, Decoded};

/// The kinds of simulated proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An Envoy sidecar over delta xDS.
    Sidecar,
    /// An Envoy sidecar over state-of-the-world xDS.
    SidecarSotw,
    /// A proxyless gRPC client.
    Grpc,
    /// A ztunnel (delta Address and Authorization, by wildcard, decoded with shoal's own
    /// ztunnel protos).
    Ztunnel,
    /// A waypoint proxy (delta, as Envoy) of its namespace's waypoint `waypoint`.
    Waypoint,
    /// Sidecars, ztunnels and waypoints together (see [`Kind::member`]).
    Mixed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sidecar => "sidecar",
            Kind::SidecarSotw => "sidecar-sotw",
            Kind::Grpc => "grpc",
            Kind::Ztunnel => "ztunnel",
            Kind::Waypoint => "waypoint",
            Kind::Mixed => "mixed",
        }
    }

    /// The kind of proxy `index` of a fleet of this kind: itself, except in a mixed fleet,
    /// where of every twenty proxies one is a ztunnel, one a waypoint and the rest are
    /// sidecars.
    pub fn member(self, index: usize) -> Kind {
        match (self, index % 20) {
            (Kind::Mixed, 0) => Kind::Ztunnel,
            (Kind::Mixed, 1) => Kind::Waypoint,
            (Kind::Mixed, _) => Kind::Sidecar,
            (k, _) => k,
        }
    }
}

/// Interned names and versions: every proxy holds the same few thousand strings.
#[derive(Debug, Default)]
pub struct Names {
    set: RwLock<HashSet<Arc<str>>>,
}

impl Names {
    pub fn get(&self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.read().get(s) {
            return a.clone();
        }
        let mut w = self.set.write();
        if let Some(a) = w.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        w.insert(a.clone());
        a
    }
}

/// Per (type, name) of a held cluster or listener, the names it refers to.
pub type Refs = HashMap<(ResourceType, Arc<str>), Vec<Arc<str>>>;

/// What one proxy holds: per type, name → version.
#[derive(Debug, Default, Clone)]
pub struct Held {
    pub types: [HashMap<Arc<str>, Arc<str>>; ResourceType::ALL.len()],
}

impl Held {
    pub fn get(&self, ty: ResourceType) -> &HashMap<Arc<str>, Arc<str>> {
        &self.types[ty.index()]
    }
}

/// Counters shared by the fleet.
#[derive(Debug, Default)]
pub struct Stats {
    pub bytes: AtomicU64,
    pub messages: AtomicU64,
    pub resources: AtomicU64,
    pub acks: AtomicU64,
    pub nacks: AtomicU64,
    pub errors: AtomicU64,
    pub converged: AtomicUsize,
}

/// A resource update a watching scenario asked to hear about.
#[derive(Debug, Clone)]
pub struct Update {
    pub proxy: usize,
    pub name: Arc<str>,
    pub at: Instant,
}

/// Everything the proxies share.
pub struct Ctx {
    pub channels: Vec<Channel>,
    pub decode: DecodeCache,
    pub names: Names,
    pub stats: Stats,
    /// Names whose updates are reported on `updates` (set by the churn scenario).
    pub watched: RwLock<HashSet<Arc<str>>>,
    pub updates: mpsc::UnboundedSender<Update>,
}

/// One simulated proxy.
pub struct Proxy {
    pub index: usize,
    pub id: String,
    pub namespace: String,
    pub kind: Kind,
    /// `HOST:PORT` a gRPC client dials.
    pub target: Option<String>,
    pub held: Mutex<Held>,
    /// SotW `version_info` last accepted per type (sent again on a resumed stream).
    pub sotw_versions: Mutex<HashMap<ResourceType, String>>,
    converged: AtomicBool,
    pub converged_at: Mutex<Option<Instant>>,
    pub error: Mutex<Option<String>>,
    /// What each cluster and listener held refers to (endpoint assignments, route configs).
    pub refs: Mutex<Refs>,
    /// Every response received, re-encoded, while recording (for the wire baseline).
    pub recording: Mutex<Option<Vec<bytes::Bytes>>>,
    /// When the first response arrived since this was last cleared (the failover clears it
    /// at the kill: a stream that never broke and gets a response after it was re-opened by
    /// a router on the shard's new owner).
    pub first_response: Mutex<Option<Instant>>,
    /// Streams of this proxy that failed (each one reconnected).
    pub breaks: AtomicU64,
}

impl Proxy {
    pub fn new(index: usize, kind: Kind, namespace: &str, target: Option<String>) -> Proxy {
        let ip = format!(
            "10.{}.{}.{}",
            200 + (index >> 16) % 50,
            (index >> 8) & 255,
            index & 255
        );
        let id = match kind {
            Kind::Ztunnel => {
                format!("ztunnel~{ip}~ztunnel-{index}.istio-system~istio-system.svc.cluster.local")
            }
            Kind::Waypoint => {
                format!("waypoint~{ip}~waypoint-{index}.{namespace}~{namespace}.svc.cluster.local")
            }
            _ => format!(
                "sidecar~{ip}~{}-{index}.{namespace}~{namespace}.svc.cluster.local",
                kind.as_str()
            ),
        };
        Proxy {
            index,
            id,
            namespace: namespace.to_string(),
            kind,
            target,
            held: Mutex::new(Held::default()),
            sotw_versions: Mutex::new(HashMap::new()),
            converged: AtomicBool::new(false),
            converged_at: Mutex::new(None),
            error: Mutex::new(None),
            refs: Mutex::new(HashMap::new()),
            recording: Mutex::new(None),
            first_response: Mutex::new(None),
            breaks: AtomicU64::new(0),
        }
    }

    pub fn is_converged(&self) -> bool {
        self.converged.load(Ordering::Acquire)
    }

    fn set_converged(&self, ctx: &Ctx, now: bool) {
        let was = self.converged.swap(now, Ordering::AcqRel);
        if now {
            // A proxy that converged after a failed attempt is fine now.
            self.error.lock().take();
        }
        if now && !was {
            ctx.stats.converged.fetch_add(1, Ordering::AcqRel);
            *self.converged_at.lock() = Some(Instant::now());
        } else if !now && was {
            ctx.stats.converged.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Forget convergence (before a reconnect).
    pub fn reset(&self, ctx: &Ctx) {
        self.set_converged(ctx, false);
        *self.converged_at.lock() = None;
        *self.error.lock() = None;
    }

    /// The node a real proxy of this kind would send.
    pub fn node(&self) -> Node {
        let s = |v: &str| Value {
            kind: Some(VKind::StringValue(v.to_string())),
        };
        let mut fields = HashMap::from([("NAMESPACE".to_string(), s(&self.namespace))]);
        match self.kind {
            Kind::Grpc => {
                fields.insert("GENERATOR".into(), s("grpc"));
            }
            Kind::Sidecar | Kind::SidecarSotw => {
                let labels = Struct {
                    fields: HashMap::from([(
                        "app".to_string(),
                        s(&format!("client-{}", self.index % 10)),
                    )]),
                };
                fields.insert(
                    "LABELS".into(),
                    Value {
                        kind: Some(VKind::StructValue(labels)),
                    },
                );
            }
            Kind::Waypoint => {
                let labels = Struct {
                    fields: HashMap::from([(
                        "gateway.networking.k8s.io/gateway-name".to_string(),
                        s(crate::mesh::WAYPOINT),
                    )]),
                };
                fields.insert(
                    "LABELS".into(),
                    Value {
                        kind: Some(VKind::StructValue(labels)),
                    },
                );
            }
            Kind::Ztunnel | Kind::Mixed => {}
        }
        Node {
            id: self.id.clone(),
            cluster: "loadtest".into(),
            metadata: Some(Struct { fields }),
            ..Default::default()
        }
    }

    fn record(
        &self,
        ctx: &Ctx,
        ty: ResourceType,
        upserts: &[(Arc<str>, Arc<str>)],
        removed: &[Arc<str>],
        replace: bool,
    ) {
        let mut held = self.held.lock();
        let map = &mut held.types[ty.index()];
        if replace {
            map.clear();
        }
        for (n, v) in upserts {
            map.insert(n.clone(), v.clone());
        }
        for n in removed {
            map.remove(n);
        }
        drop(held);
        let watched = ctx.watched.read();
        if !watched.is_empty() {
            let at = Instant::now();
            for (n, _) in upserts {
                if watched.contains(n) {
                    let _ = ctx.updates.send(Update {
                        proxy: self.index,
                        name: n.clone(),
                        at,
                    });
                }
            }
            for n in removed {
                if watched.contains(n) {
                    let _ = ctx.updates.send(Update {
                        proxy: self.index,
                        name: n.clone(),
                        at,
                    });
                }
            }
        }
    }

    /// Runs the proxy's stream, reconnecting like Envoy does when it fails (with backoff,
    /// resuming with what it holds), until the fleet stops it. `resume`: the first stream
    /// already sends the versions held (`initial_resource_versions`, or SotW `version_info`).
    /// Refusals (unimplemented, invalid argument) are final.
    pub async fn run(self: Arc<Self>, ctx: Arc<Ctx>, resume: bool) {
        let mut resume = resume;
        let mut attempt = 0usize;
        let mut backoff = std::time::Duration::from_millis(250);
        loop {
            // A failed stream reconnects through the next connection (the next address).
            let channel = ctx.channels[(self.index + attempt) % ctx.channels.len()].clone();
            attempt += 1;
            let result = match self.kind {
                Kind::Sidecar | Kind::Ztunnel | Kind::Waypoint | Kind::Mixed => {
                    delta::run(&self, &ctx, channel, resume).await
                }
                Kind::SidecarSotw | Kind::Grpc => sotw::run(&self, &ctx, channel, resume).await,
            };
            let Err(e) = result else { return };
            ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
            self.breaks.fetch_add(1, Ordering::Relaxed);
            let permanent = e.starts_with("Unimplemented") || e.starts_with("InvalidArgument");
            *self.error.lock() = Some(e);
            if permanent {
                return;
            }
            self.set_converged(&ctx, false);
            // Jitter spreads the reconnects of a fleet that failed at once.
            let jitter = (self.index as u64 * 7919) % 250;
            tokio::time::sleep(backoff + std::time::Duration::from_millis(jitter)).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            resume = true;
        }
    }
}

/// Notes a response's arrival, and keeps a copy of it when the proxy is recording.
fn on_response(p: &Proxy, msg: &impl prost::Message) {
    p.first_response.lock().get_or_insert_with(Instant::now);
    if let Some(r) = p.recording.lock().as_mut() {
        r.push(bytes::Bytes::from(msg.encode_to_vec()));
    }
}

/// The error detail of a NACK.
fn nack_detail(message: String) -> shoal_api::pb::google::rpc::Status {
    shoal_api::pb::google::rpc::Status {
        code: 3,
        message,
        details: Vec::new(),
    }
}
