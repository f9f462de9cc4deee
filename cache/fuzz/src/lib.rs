//! The harness of the session fuzz targets: an arbitrary sequence of operations (requests,
//! ACKs and NACKs of what was sent, polls, snapshots published, view switches, reconnects)
//! against two streams on two views. Checked after every step, as the session tests state:
//! nothing panics; every response decodes as its protocol's response of its type with its
//! nonce; a poll right after a poll sends nothing; a plain ACK of the latest response is an
//! ACK and, when nothing changed since the last poll, is answered with nothing.

use std::sync::Arc;

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use prost::Message;
use shoal_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use shoal_api::pb::google::rpc::Status as RpcStatus;
use shoal_api::{Resource, ResourceType};
use shoal_cache::session::{
    DeltaSession, Limits, Outgoing, Reply, Session, SessionError, SotwSession,
};
use shoal_cache::status::{ClientMeta, StatusRegistry};
use shoal_cache::subscription::Interner;
use shoal_cache::{Resources, Snapshot, Trigger, View};

/// Small enough for the fuzzer to hit.
const MAX_NAMES: usize = 6;

/// A resource type by its index in [`ResourceType::ALL`]; out of range: an unknown type.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Ty(u8);

impl Ty {
    fn get(self) -> Option<ResourceType> {
        ResourceType::ALL.get(usize::from(self.0)).copied()
    }

    fn url(self) -> String {
        match self.get() {
            Some(t) => t.type_url().to_string(),
            None => format!("type.googleapis.com/unknown.{}", self.0),
        }
    }
}

/// A resource name: mostly from a small set (so subscriptions meet resources), `*`, or any.
#[derive(Arbitrary, Debug, Clone)]
pub enum Name {
    Known(u8),
    Star,
    Any(String),
}

impl Name {
    fn get(&self) -> String {
        match self {
            Name::Known(i) => ["a", "b", "c", "d"][usize::from(i % 4)].to_string(),
            Name::Star => "*".to_string(),
            Name::Any(s) => s.clone(),
        }
    }
}

fn names(n: &[Name]) -> Vec<String> {
    n.iter().map(Name::get).collect()
}

/// A request as a client might send it, fields arbitrary.
#[derive(Arbitrary, Debug, Clone)]
pub struct Req {
    pub ty: Ty,
    /// Delta: subscribe; SotW: the whole subscription.
    pub subscribe: Vec<Name>,
    /// Delta only.
    pub unsubscribe: Vec<Name>,
    /// Delta: `initial_resource_versions`.
    pub initial: Vec<(Name, String)>,
    /// SotW: `version_info`.
    pub version_info: String,
    /// `None`: no nonce; `Some(0)`: the latest nonce of the type; else that number.
    pub nonce: Option<u8>,
    pub error: bool,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    Request {
        stream: bool,
        req: Req,
    },
    /// ACK the latest response of a type, changing nothing else.
    Ack {
        stream: bool,
        ty: Ty,
    },
    /// NACK the latest response of a type.
    Nack {
        stream: bool,
        ty: Ty,
    },
    Poll {
        stream: bool,
    },
    /// A new snapshot of a view: (type, name, body) of every resource.
    Publish {
        view: bool,
        resources: Vec<(Ty, Name, u8)>,
    },
    /// The stream moves to the other view.
    Switch {
        stream: bool,
    },
    /// The stream ends; a new one starts on the same view.
    Reconnect {
        stream: bool,
    },
}

/// A protocol as the harness drives it.
pub trait Proto: Session {
    fn request(req: &Req, nonce: String) -> Self::Req;
    /// A plain ACK (or a NACK): the type's latest nonce and version, the same subscription.
    fn answer(ty: &str, last: &Last, nack: bool) -> Self::Req;
    /// Decodes a response: (type URL, nonce, version_info).
    fn decode(o: &Outgoing) -> (String, String, String);
    /// A reply the protocol owes an answer to the latest response: delta forgets a
    /// response once answered, SotW keeps the latest.
    const ANSWER_ONCE: bool;
}

fn with_nonce(o: &Outgoing) -> Bytes {
    let mut buf = BytesMut::from(&o.message.body[..]);
    if let Some(n) = &o.message.nonce {
        shoal_api::wire::put_nonce(n, &mut buf);
    }
    buf.freeze()
}

fn error(yes: bool) -> Option<RpcStatus> {
    yes.then(|| RpcStatus {
        code: 3,
        message: "rejected".into(),
        details: vec![],
    })
}

impl Proto for DeltaSession {
    fn request(req: &Req, nonce: String) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: req.ty.url(),
            resource_names_subscribe: names(&req.subscribe),
            resource_names_unsubscribe: names(&req.unsubscribe),
            initial_resource_versions: req
                .initial
                .iter()
                .map(|(n, v)| (n.get(), v.clone()))
                .collect(),
            response_nonce: nonce,
            error_detail: error(req.error),
            ..Default::default()
        }
    }

    fn answer(ty: &str, last: &Last, nack: bool) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: ty.to_string(),
            response_nonce: last.nonce.clone(),
            error_detail: error(nack),
            ..Default::default()
        }
    }

    fn decode(o: &Outgoing) -> (String, String, String) {
        let r = DeltaDiscoveryResponse::decode(with_nonce(o))
            .unwrap_or_else(|e| panic!("a delta response that does not decode: {e}"));
        for res in &r.resources {
            assert!(res.resource.is_some(), "a delta resource without a body");
        }
        (r.type_url, r.nonce, r.system_version_info)
    }

    const ANSWER_ONCE: bool = true;
}

impl Proto for SotwSession {
    fn request(req: &Req, nonce: String) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: req.ty.url(),
            resource_names: names(&req.subscribe),
            version_info: req.version_info.clone(),
            response_nonce: nonce,
            error_detail: error(req.error),
            ..Default::default()
        }
    }

    fn answer(ty: &str, last: &Last, nack: bool) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: ty.to_string(),
            resource_names: last.names.clone(),
            version_info: last.version_info.clone(),
            response_nonce: last.nonce.clone(),
            error_detail: error(nack),
            ..Default::default()
        }
    }

    fn decode(o: &Outgoing) -> (String, String, String) {
        let r = DiscoveryResponse::decode(with_nonce(o))
            .unwrap_or_else(|e| panic!("a SotW response that does not decode: {e}"));
        (r.type_url, r.nonce, r.version_info)
    }

    const ANSWER_ONCE: bool = false;
}

/// What the harness knows of a type on a stream.
#[derive(Debug, Default, Clone)]
pub struct Last {
    /// The latest response's nonce (empty: none yet) and version_info.
    pub nonce: String,
    pub version_info: String,
    /// Whether the latest response was ACKed or NACKed already.
    pub answered: bool,
    /// SotW: the names of the latest request the session took.
    pub names: Vec<String>,
    /// A request of the type was sent.
    pub requested: bool,
}

struct Stream<S> {
    session: S,
    view: usize,
    last: Vec<Last>,
    /// Nothing changed since the last poll (so a plain ACK must be answered by nothing).
    quiet: bool,
    /// A request was refused (too many names): the driver ends such a stream.
    ended: bool,
}

struct Harness<S> {
    views: [Arc<View>; 2],
    interner: Arc<Interner>,
    registry: StatusRegistry,
    streams: [Stream<S>; 2],
}

fn snapshot_resources(resources: &[(Ty, Name, u8)]) -> Resources {
    let mut out = Resources::default();
    for ty in ResourceType::ALL {
        let list: Vec<Resource> = resources
            .iter()
            .filter(|(t, _, _)| t.get() == Some(ty))
            .map(|(_, n, b)| {
                let name = n.get();
                let body = Bytes::from(format!("{name}={b}"));
                Resource::from_body(name, body)
            })
            .collect();
        out.wildcard.push((ty, list));
    }
    out
}

impl<S: Proto> Harness<S> {
    fn new() -> Self {
        let views = [
            View::new(
                "a",
                Snapshot::initial(&Resources::default(), Trigger::default()),
            ),
            View::new(
                "b",
                Snapshot::initial(&Resources::default(), Trigger::default()),
            ),
        ];
        let interner = Arc::new(Interner::default());
        let registry = StatusRegistry::default();
        let streams = [0, 1].map(|i| Self::stream(&views[i], &interner, &registry, i));
        Harness {
            views,
            interner,
            registry,
            streams,
        }
    }

    fn stream(
        view: &Arc<View>,
        interner: &Arc<Interner>,
        reg: &StatusRegistry,
        i: usize,
    ) -> Stream<S> {
        let limits = Limits {
            max_names: MAX_NAMES,
        };
        Stream {
            session: S::new(
                view,
                interner.clone(),
                limits,
                reg.register("n", ClientMeta::default(), S::PROTOCOL),
            ),
            view: i,
            last: vec![Last::default(); ResourceType::ALL.len()],
            quiet: false,
            ended: false,
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Request { stream, req } => {
                let s = &mut self.streams[usize::from(*stream)];
                if s.ended {
                    return;
                }
                let last = req.ty.get().map(|t| &mut s.last[t.index()]);
                let nonce = match (req.nonce, &last) {
                    (None, _) => String::new(),
                    (Some(0), Some(l)) => l.nonce.clone(),
                    (Some(n), _) => n.to_string(),
                };
                if let Some(l) = last {
                    // SotW ignores a request answering anything but the latest response.
                    if !l.requested || nonce.is_empty() || nonce == l.nonce {
                        l.names = names(&req.subscribe);
                    }
                    l.requested = true;
                    if !nonce.is_empty() && nonce == l.nonce {
                        l.answered = true;
                    }
                }
                s.quiet = false;
                match s.session.on_request(S::request(req, nonce)) {
                    Ok(_) => assert!(req.ty.get().is_some(), "a request of an unknown type taken"),
                    Err(SessionError::UnknownType(_)) => {
                        assert!(req.ty.get().is_none(), "a known type refused")
                    }
                    Err(SessionError::TooManyNames { count, limit, .. }) => {
                        assert!(count > limit);
                        s.ended = true;
                    }
                }
            }
            Op::Ack { stream, ty } | Op::Nack { stream, ty } => {
                let nack = matches!(op, Op::Nack { .. });
                let s = &mut self.streams[usize::from(*stream)];
                let Some(t) = ty.get() else { return };
                let last = &mut s.last[t.index()];
                if s.ended || last.nonce.is_empty() {
                    return;
                }
                let owed = !(S::ANSWER_ONCE && last.answered);
                last.answered = true;
                let reply = s
                    .session
                    .on_request(S::answer(t.type_url(), last, nack))
                    .unwrap_or_else(|e| panic!("an answer refused: {e}"));
                match reply {
                    Some(Reply::Ack { ty: got, .. }) => {
                        assert!(owed && !nack && got == t, "unexpected ACK of {got:?}")
                    }
                    Some(Reply::Nack { ty: got, .. }) => {
                        assert!(owed && nack && got == t, "unexpected NACK of {got:?}")
                    }
                    None => assert!(!owed, "the answer to the latest {t:?} response was ignored"),
                }
                if nack {
                    s.quiet = false;
                } else if s.quiet {
                    let out = s.session.poll();
                    assert!(
                        out.is_empty(),
                        "a plain ACK was answered with {} responses",
                        out.len()
                    );
                }
            }
            Op::Poll { stream } => {
                let s = &mut self.streams[usize::from(*stream)];
                if s.ended {
                    return;
                }
                let out = s.session.poll();
                let mut seen = [false; ResourceType::ALL.len()];
                for o in &out {
                    assert!(
                        !std::mem::replace(&mut seen[o.ty.index()], true),
                        "two {:?} responses in one poll",
                        o.ty
                    );
                    let (url, nonce, version_info) = S::decode(o);
                    assert_eq!(url, o.ty.type_url());
                    assert_eq!(Some(&nonce), o.message.nonce.as_ref());
                    assert!(!nonce.is_empty(), "a response without a nonce");
                    let last = &mut s.last[o.ty.index()];
                    last.nonce = nonce;
                    last.version_info = version_info;
                    last.answered = false;
                }
                let again = s.session.poll();
                assert!(
                    again.is_empty(),
                    "a poll right after a poll sent {} responses",
                    again.len()
                );
                s.quiet = true;
            }
            Op::Publish { view, resources } => {
                let v = &self.views[usize::from(*view)];
                let before = v.current().version;
                let next = v
                    .current()
                    .replaced(&snapshot_resources(resources), Trigger::default());
                if v.publish(next) {
                    assert!(v.current().version > before, "a view's version went back");
                }
                for s in &mut self.streams {
                    s.quiet = false;
                }
            }
            Op::Switch { stream } => {
                let s = &mut self.streams[usize::from(*stream)];
                s.view = 1 - s.view;
                s.session.switch_view(&self.views[s.view]);
                s.quiet = false;
            }
            Op::Reconnect { stream } => {
                let i = usize::from(*stream);
                let view = self.streams[i].view;
                self.streams[i] =
                    Self::stream(&self.views[view], &self.interner, &self.registry, view);
            }
        }
    }
}

/// Runs the operations on a fresh pair of streams and views; panics on a broken invariant.
pub fn run<S: Proto>(ops: &[Op]) {
    let mut h = Harness::<S>::new();
    for op in ops.iter().take(64) {
        h.step(op);
    }
}
