//! Sessions against simulated clients that behave like Envoy: wildcard clusters, endpoints
//! by name for the clusters they hold, ACK after applying, NACK on request.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use prost::Message;
use shoal_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use shoal_api::pb::google::rpc::Status as RpcStatus;
use shoal_api::{Resource, type_url};

use super::*;
use crate::snapshot::{Resources, Snapshot, Trigger};
use crate::status::StatusRegistry;

fn decode_delta(o: &Outgoing) -> DeltaDiscoveryResponse {
    let mut buf = BytesMut::from(&o.message.body[..]);
    if let Some(n) = &o.message.nonce {
        shoal_api::wire::put_nonce(n, &mut buf);
    }
    DeltaDiscoveryResponse::decode(buf.freeze()).expect("valid delta response")
}

fn decode_sotw(o: &Outgoing) -> DiscoveryResponse {
    let mut buf = BytesMut::from(&o.message.body[..]);
    if let Some(n) = &o.message.nonce {
        shoal_api::wire::put_nonce(n, &mut buf);
    }
    DiscoveryResponse::decode(buf.freeze()).expect("valid sotw response")
}

fn res(name: &str, body: u32) -> Resource {
    Resource::from_body(name, Bytes::from(format!("{name}={body}")))
}

/// A snapshot's content: clusters, and endpoints for some of them.
fn resources(clusters: &BTreeMap<String, u32>, endpoints: &BTreeMap<String, u32>) -> Resources {
    Resources {
        wildcard: vec![
            (
                ResourceType::Cluster,
                clusters.iter().map(|(n, b)| res(n, *b)).collect(),
            ),
            (
                ResourceType::Endpoint,
                endpoints.iter().map(|(n, b)| res(n, *b)).collect(),
            ),
        ],
        on_demand: vec![],
    }
}

fn new_session(view: &Arc<View>) -> (DeltaSession, Arc<Interner>) {
    let interner = Arc::new(Interner::default());
    let reg = StatusRegistry::default();
    let status = reg.register(
        "sidecar~1~a.b~b.svc.cluster.local",
        Default::default(),
        "delta",
    );
    (
        DeltaSession::new(view, interner.clone(), Limits::default(), status),
        interner,
    )
}

fn req(ty: &str, sub: &[&str], unsub: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ty.into(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn one_cluster_view() -> Arc<View> {
    let c: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
    View::new(
        "v",
        Snapshot::initial(&resources(&c, &c), Trigger::default()),
    )
}

#[test]
fn wildcard_gets_a_first_response_even_when_empty() {
    let view = View::new(
        "v",
        Snapshot::initial(&Resources::default(), Trigger::default()),
    );
    let (mut s, _) = new_session(&view);
    s.on_request(req(type_url::LISTENER, &[], &[], "")).unwrap();
    let out = s.poll();
    assert_eq!(out.len(), 1);
    assert!(decode_delta(&out[0]).resources.is_empty());
    // Its ACK gets no reply.
    let nonce = out[0].message.nonce.clone().unwrap();
    assert!(matches!(
        s.on_request(req(type_url::LISTENER, &[], &[], &nonce))
            .unwrap(),
        Some(Reply::Ack { .. })
    ));
    assert!(s.poll().is_empty());
}

#[test]
fn unknown_types_and_oversized_subscriptions_are_errors() {
    let view = one_cluster_view();
    let (mut s, _) = new_session(&view);
    assert!(matches!(
        s.on_request(req("type.googleapis.com/nope", &[], &[], "")),
        Err(SessionError::UnknownType(_))
    ));
    let names: Vec<String> = (0..100_001).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(matches!(
        s.on_request(req(type_url::ENDPOINT, &refs, &[], "")),
        Err(SessionError::TooManyNames { .. })
    ));
}

#[test]
fn unsubscribe_and_explicit_wildcard() {
    let view = one_cluster_view();
    let (mut s, _) = new_session(&view);
    s.on_request(req(type_url::ENDPOINT, &["a", "zz"], &[], ""))
        .unwrap();
    let r = decode_delta(&s.poll()[0]);
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.removed_resources, vec!["zz".to_string()]);
    s.on_request(req(type_url::ENDPOINT, &[], &["a"], &r.nonce))
        .unwrap();
    assert!(s.poll().is_empty(), "unsubscribing needs no response");
    s.on_request(req(type_url::ENDPOINT, &["*"], &[], ""))
        .unwrap();
    let r = decode_delta(&s.poll()[0]);
    assert_eq!(r.resources[0].name, "a");
}

#[test]
fn nack_holds_until_a_new_version() {
    let view = one_cluster_view();
    let (mut s, _) = new_session(&view);
    s.on_request(req(type_url::CLUSTER, &[], &[], "")).unwrap();
    let out = s.poll();
    let mut nack = req(
        type_url::CLUSTER,
        &[],
        &[],
        out[0].message.nonce.as_deref().unwrap(),
    );
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "bad cluster".into(),
        details: vec![],
    });
    assert!(matches!(
        s.on_request(nack).unwrap(),
        Some(Reply::Nack { .. })
    ));
    assert!(s.poll().is_empty(), "no resend of the rejected version");
    let c: BTreeMap<String, u32> = [("a".to_string(), 2)].into();
    view.publish(
        view.current()
            .replaced(&resources(&c, &c), Trigger::default()),
    );
    let out = s.poll();
    assert_eq!(decode_delta(&out[0]).resources[0].name, "a");
}

#[test]
fn changed_clusters_are_followed_by_their_endpoints() {
    let view = one_cluster_view();
    let (mut s, _) = new_session(&view);
    s.on_request(req(type_url::CLUSTER, &[], &[], "")).unwrap();
    s.on_request(req(type_url::ENDPOINT, &["a"], &[], ""))
        .unwrap();
    assert_eq!(s.poll().len(), 2);
    let clusters: BTreeMap<String, u32> = [("a".to_string(), 2)].into();
    let endpoints: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
    view.publish(
        view.current()
            .replaced(&resources(&clusters, &endpoints), Trigger::default()),
    );
    let out = s.poll();
    assert_eq!(
        out.iter().map(|o| o.ty).collect::<Vec<_>>(),
        [ResourceType::Cluster, ResourceType::Endpoint]
    );
    assert_eq!(decode_delta(&out[1]).resources[0].name, "a");
}

#[test]
fn sotw_stale_nonces_are_ignored_and_reconnects_with_current_versions_get_nothing() {
    let view = one_cluster_view();
    let reg = StatusRegistry::default();
    let interner = Arc::new(Interner::default());
    let mut s = SotwSession::new(
        &view,
        interner.clone(),
        Limits::default(),
        reg.register("n", Default::default(), "sotw"),
    );
    s.on_request(DiscoveryRequest {
        type_url: type_url::CLUSTER.into(),
        ..Default::default()
    })
    .unwrap();
    let out = s.poll();
    let first = decode_sotw(&out[0]);
    assert_eq!(first.resources.len(), 1);
    // A request with an unknown nonce changes nothing.
    s.on_request(DiscoveryRequest {
        type_url: type_url::CLUSTER.into(),
        response_nonce: "999".into(),
        resource_names: vec!["x".into()],
        ..Default::default()
    })
    .unwrap();
    assert!(s.poll().is_empty());
    // A new stream whose client already holds this version gets no resend.
    let mut again = SotwSession::new(
        &view,
        interner,
        Limits::default(),
        reg.register("n", Default::default(), "sotw"),
    );
    again
        .on_request(DiscoveryRequest {
            type_url: type_url::CLUSTER.into(),
            version_info: first.version_info,
            ..Default::default()
        })
        .unwrap();
    assert!(again.poll().is_empty());
}

/// An Envoy-like delta client.
#[derive(Default, Debug)]
struct DeltaClient {
    clusters: BTreeMap<String, String>,
    endpoints: BTreeMap<String, String>,
    eds_subscribed: BTreeSet<String>,
}

impl DeltaClient {
    fn apply(&mut self, resp: &DeltaDiscoveryResponse) {
        let eds = resp.type_url == type_url::ENDPOINT;
        let map = if eds {
            &mut self.endpoints
        } else {
            &mut self.clusters
        };
        for r in &resp.resources {
            // Like Envoy, ignore resources nobody watches (any more).
            if eds && !self.eds_subscribed.contains(&r.name) {
                continue;
            }
            map.insert(r.name.clone(), r.version.clone());
        }
        for n in &resp.removed_resources {
            map.remove(n);
        }
    }

    /// The EDS (un)subscriptions that follow the clusters it holds.
    fn eds_request(&mut self, nonce: &str) -> DeltaDiscoveryRequest {
        let want: BTreeSet<String> = self.clusters.keys().cloned().collect();
        let sub: Vec<String> = want.difference(&self.eds_subscribed).cloned().collect();
        let unsub: Vec<String> = self.eds_subscribed.difference(&want).cloned().collect();
        for n in &unsub {
            self.endpoints.remove(n);
        }
        self.eds_subscribed = want;
        DeltaDiscoveryRequest {
            type_url: type_url::ENDPOINT.into(),
            resource_names_subscribe: sub,
            resource_names_unsubscribe: unsub,
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn initial(&self, ty: &str) -> DeltaDiscoveryRequest {
        let (map, sub) = if ty == type_url::CLUSTER {
            (&self.clusters, vec![])
        } else {
            (
                &self.endpoints,
                self.eds_subscribed.iter().cloned().collect(),
            )
        };
        DeltaDiscoveryRequest {
            type_url: ty.into(),
            resource_names_subscribe: sub,
            initial_resource_versions: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ..Default::default()
        }
    }
}

fn expected(
    snap: &Snapshot,
    ty: ResourceType,
    names: Option<&BTreeSet<String>>,
) -> BTreeMap<String, String> {
    snap.get(ty)
        .wildcard
        .iter()
        .filter(|(n, _)| names.is_none_or(|s| s.contains(n.as_ref())))
        .map(|(n, r)| (n.to_string(), r.version.to_string()))
        .collect()
}

/// Runs a session until the client has nothing left to ask for.
fn drive(s: &mut DeltaSession, c: &mut DeltaClient, nack_first: bool) {
    let mut nacked = !nack_first;
    for _ in 0..20 {
        let out = s.poll();
        if out.is_empty() {
            return;
        }
        for o in out {
            let resp = decode_delta(&o);
            if !nacked {
                nacked = true;
                let mut n = req(&resp.type_url, &[], &[], &resp.nonce);
                n.error_detail = Some(RpcStatus {
                    code: 3,
                    message: "rejected".into(),
                    details: vec![],
                });
                s.on_request(n).unwrap();
                continue;
            }
            c.apply(&resp);
            if resp.type_url == type_url::CLUSTER {
                s.on_request(req(type_url::CLUSTER, &[], &[], &resp.nonce))
                    .unwrap();
                let eds = c.eds_request("");
                s.on_request(eds).unwrap();
            } else {
                s.on_request(req(&resp.type_url, &[], &[], &resp.nonce))
                    .unwrap();
            }
        }
    }
    panic!("the session did not settle");
}

fn arb_state() -> impl Strategy<Value = (BTreeMap<String, u32>, BTreeMap<String, u32>)> {
    proptest::collection::btree_map("[a-f]", 0u32..3, 0..6).prop_flat_map(|clusters| {
        let names: Vec<String> = clusters.keys().cloned().collect();
        let eps = proptest::collection::btree_map(
            proptest::sample::select(if names.is_empty() {
                vec!["a".to_string()]
            } else {
                names
            }),
            0u32..3,
            0..6,
        );
        (Just(clusters), eps)
    })
}

proptest! {
    /// Any sequence of snapshots, with reconnects (resuming with initial_resource_versions)
    /// and rejected responses along the way, leaves a delta client holding exactly the last
    /// snapshot.
    #[test]
    fn delta_clients_converge(states in proptest::collection::vec((arb_state(), 0u8..4), 1..8)) {
        let ((c0, e0), _) = &states[0];
        let view = View::new("v", Snapshot::initial(&resources(c0, e0), Trigger::default()));
        let (mut s, _) = new_session(&view);
        let mut client = DeltaClient::default();
        s.on_request(req(type_url::CLUSTER, &[], &[], "")).unwrap();
        drive(&mut s, &mut client, false);
        for ((clusters, endpoints), action) in states.iter().skip(1) {
            view.publish(view.current().replaced(&resources(clusters, endpoints), Trigger::default()));
            match action {
                // Reconnect: a new stream resuming from what the client holds.
                0 => {
                    let (mut fresh, _) = new_session(&view);
                    fresh.on_request(client.initial(type_url::CLUSTER)).unwrap();
                    if !client.eds_subscribed.is_empty() {
                        fresh.on_request(client.initial(type_url::ENDPOINT)).unwrap();
                    }
                    s = fresh;
                    drive(&mut s, &mut client, false);
                }
                1 => drive(&mut s, &mut client, true),
                _ => drive(&mut s, &mut client, false),
            }
        }
        // A rejected response is retried only with the next version: publish a final one.
        let last = view.current();
        let (clusters, endpoints) = (&states.last().unwrap().0.0, &states.last().unwrap().0.1);
        let mut bumped = clusters.clone();
        bumped.insert("z".into(), 9);
        view.publish(last.replaced(&resources(&bumped, endpoints), Trigger::default()));
        drive(&mut s, &mut client, false);
        let snap = view.current();
        prop_assert_eq!(&client.clusters, &expected(&snap, ResourceType::Cluster, None));
        prop_assert_eq!(&client.endpoints, &expected(&snap, ResourceType::Endpoint, Some(&client.eds_subscribed)));
    }

    /// The same for SotW clients.
    #[test]
    fn sotw_clients_converge(states in proptest::collection::vec(arb_state(), 1..8)) {
        let view = View::new("v", Snapshot::initial(&resources(&states[0].0, &states[0].1), Trigger::default()));
        let reg = StatusRegistry::default();
        let mut s = SotwSession::new(&view, Arc::new(Interner::default()), Limits::default(), reg.register("n", Default::default(), "sotw"));
        let mut clusters: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut endpoints: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        s.on_request(DiscoveryRequest { type_url: type_url::CLUSTER.into(), ..Default::default() }).unwrap();
        for (i, (c, e)) in states.iter().enumerate() {
            if i > 0 {
                view.publish(view.current().replaced(&resources(c, e), Trigger::default()));
            }
            for _ in 0..10 {
                let out = s.poll();
                if out.is_empty() { break; }
                for o in out {
                    let resp = decode_sotw(&o);
                    let map: BTreeMap<String, Vec<u8>> = resp.resources.iter().map(|a| {
                        let name = String::from_utf8_lossy(&a.value).split('=').next().unwrap_or_default().to_string();
                        (name, a.value.clone())
                    }).collect();
                    if resp.type_url == type_url::CLUSTER {
                        clusters = map;
                        s.on_request(DiscoveryRequest { type_url: resp.type_url.clone(), version_info: resp.version_info.clone(), response_nonce: resp.nonce.clone(), ..Default::default() }).unwrap();
                        s.on_request(DiscoveryRequest { type_url: type_url::ENDPOINT.into(), resource_names: clusters.keys().cloned().collect(), ..Default::default() }).unwrap();
                    } else {
                        endpoints = map;
                        s.on_request(DiscoveryRequest { type_url: resp.type_url.clone(), version_info: resp.version_info.clone(), response_nonce: resp.nonce.clone(), resource_names: clusters.keys().cloned().collect(), ..Default::default() }).unwrap();
                    }
                }
            }
        }
        let snap = view.current();
        let want_c: BTreeMap<String, Vec<u8>> = snap.get(ResourceType::Cluster).wildcard.iter().map(|(n, r)| (n.to_string(), r.body.to_vec())).collect();
        let want_e: BTreeMap<String, Vec<u8>> = snap.get(ResourceType::Endpoint).wildcard.iter().filter(|(n, _)| want_c.contains_key(n.as_ref())).map(|(n, r)| (n.to_string(), r.body.to_vec())).collect();
        prop_assert_eq!(clusters, want_c);
        prop_assert_eq!(endpoints, want_e);
    }
}
