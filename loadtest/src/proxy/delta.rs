//! The delta client (Envoy sidecars, ztunnel).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prost::Message;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{Ctx, Kind, Proxy, nack_detail};

#[derive(Default)]
struct State {
    /// Types subscribed by wildcard, and whether each got its first response.
    wildcard: Vec<(ResourceType, bool)>,
    eds: BTreeSet<Arc<str>>,
    rds: BTreeSet<Arc<str>>,
    /// Named resources asked for and not answered yet.
    pending: HashSet<(ResourceType, Arc<str>)>,
}

fn request(ty: ResourceType) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ty.type_url().to_string(),
        ..Default::default()
    }
}

type Tx = mpsc::Sender<DeltaDiscoveryRequest>;

async fn send(tx: &Tx, req: DeltaDiscoveryRequest) -> Result<(), String> {
    tx.send(req).await.map_err(|_| "stream closed".to_string())
}

/// Moves a named subscription to `want`, telling the server what changed.
async fn resubscribe(
    p: &Proxy,
    ctx: &Ctx,
    tx: &Tx,
    st_set: &mut BTreeSet<Arc<str>>,
    pending: &mut HashSet<(ResourceType, Arc<str>)>,
    ty: ResourceType,
    want: BTreeSet<Arc<str>>,
) -> Result<(), String> {
    let add: Vec<Arc<str>> = want.difference(st_set).cloned().collect();
    let drop: Vec<Arc<str>> = st_set.difference(&want).cloned().collect();
    if add.is_empty() && drop.is_empty() {
        return Ok(());
    }
    for n in &add {
        pending.insert((ty, n.clone()));
    }
    for n in &drop {
        pending.remove(&(ty, n.clone()));
    }
    // What is no longer watched is forgotten, as Envoy does.
    p.record(ctx, ty, &[], &drop, false);
    *st_set = want;
    let mut req = request(ty);
    req.resource_names_subscribe = add.iter().map(|n| n.to_string()).collect();
    req.resource_names_unsubscribe = drop.iter().map(|n| n.to_string()).collect();
    send(tx, req).await
}

pub(super) async fn run(
    p: &Arc<Proxy>,
    ctx: &Arc<Ctx>,
    channel: Channel,
    resume: bool,
) -> Result<(), String> {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(1 << 30);
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(64);
    let held = if resume {
        p.held.lock().clone()
    } else {
        super::Held::default()
    };
    if !resume {
        *p.held.lock() = super::Held::default();
        p.refs.lock().clear();
    }
    let wildcard: Vec<ResourceType> = match p.kind {
        Kind::Ztunnel => vec![ResourceType::Address, ResourceType::Authorization],
        _ => vec![ResourceType::Cluster, ResourceType::Listener],
    };
    let mut st = State {
        wildcard: wildcard.iter().map(|t| (*t, false)).collect(),
        ..State::default()
    };
    let initial = |ty: ResourceType| -> HashMap<String, String> {
        held.get(ty)
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    for (i, ty) in wildcard.iter().enumerate() {
        let mut req = request(*ty);
        if i == 0 {
            req.node = Some(p.node());
        }
        req.initial_resource_versions = initial(*ty);
        send(&tx, req).await?;
    }
    if resume {
        // Named subscriptions carry on, with what is held.
        for ty in [ResourceType::Endpoint, ResourceType::Route] {
            let names: BTreeSet<Arc<str>> = held.get(ty).keys().cloned().collect();
            if names.is_empty() {
                continue;
            }
            let mut req = request(ty);
            req.resource_names_subscribe = names.iter().map(|n| n.to_string()).collect();
            req.initial_resource_versions = initial(ty);
            send(&tx, req).await?;
            if ty == ResourceType::Endpoint {
                st.eds = names;
            } else {
                st.rds = names;
            }
        }
    }
    let mut stream = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    loop {
        let resp: DeltaDiscoveryResponse = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err("the server closed the stream".into()),
            Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
        };
        handle(p, ctx, &tx, &mut st, resp).await?;
    }
}

async fn handle(
    p: &Proxy,
    ctx: &Ctx,
    tx: &Tx,
    st: &mut State,
    resp: DeltaDiscoveryResponse,
) -> Result<(), String> {
    ctx.stats
        .bytes
        .fetch_add(resp.encoded_len() as u64, Ordering::Relaxed);
    ctx.stats.messages.fetch_add(1, Ordering::Relaxed);
    super::on_response(p, &resp);
    let Some(ty) = ResourceType::from_type_url(&resp.type_url) else {
        return Err(format!("response of unknown type {}", resp.type_url));
    };
    let mut upserts = Vec::with_capacity(resp.resources.len());
    let mut decoded = Vec::with_capacity(resp.resources.len());
    let mut error = None;
    for r in &resp.resources {
        let Some(any) = r.resource.as_ref() else {
            error = Some(format!("{}: no resource", r.name));
            break;
        };
        if any.type_url != resp.type_url {
            error = Some(format!(
                "{}: type {} in a {} response",
                r.name, any.type_url, resp.type_url
            ));
            break;
        }
        match ctx.decode.get(ty, &any.value, &ctx.names) {
            Ok(d) => {
                let name = ctx.names.get(&r.name);
                decoded.push((name.clone(), d));
                upserts.push((name, ctx.names.get(&r.version)));
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    if let Some(e) = error {
        ctx.stats.nacks.fetch_add(1, Ordering::Relaxed);
        let mut nack = request(ty);
        nack.response_nonce = resp.nonce;
        nack.error_detail = Some(nack_detail(e));
        return send(tx, nack).await;
    }
    ctx.stats.resources.fetch_add(
        (upserts.len() + resp.removed_resources.len()) as u64,
        Ordering::Relaxed,
    );
    let removed: Vec<Arc<str>> = resp
        .removed_resources
        .iter()
        .map(|n| ctx.names.get(n))
        .collect();
    p.record(ctx, ty, &upserts, &removed, false);
    for (t, got) in st.wildcard.iter_mut() {
        if *t == ty {
            *got = true;
        }
    }
    for (n, _) in &upserts {
        st.pending.remove(&(ty, n.clone()));
    }
    for n in &removed {
        st.pending.remove(&(ty, n.clone()));
    }
    // What this response asks for next.
    let follow = match ty {
        ResourceType::Cluster => Some(ResourceType::Endpoint),
        ResourceType::Listener => Some(ResourceType::Route),
        _ => None,
    };
    if let Some(f) = follow {
        // What each cluster and listener held makes the client ask for; kept by the proxy,
        // so it carries over a reconnect like Envoy's own clusters do.
        let want: BTreeSet<Arc<str>> = {
            let mut refs = p.refs.lock();
            for (name, d) in decoded {
                refs.insert((ty, name), d.refs);
            }
            for n in &removed {
                refs.remove(&(ty, n.clone()));
            }
            refs.iter()
                .filter(|((t, _), _)| *t == ty)
                .flat_map(|(_, r)| r.iter().cloned())
                .collect()
        };
        let set = if f == ResourceType::Endpoint {
            &mut st.eds
        } else {
            &mut st.rds
        };
        resubscribe(p, ctx, tx, set, &mut st.pending, f, want).await?;
    }
    let mut ack = request(ty);
    ack.response_nonce = resp.nonce;
    send(tx, ack).await?;
    ctx.stats.acks.fetch_add(1, Ordering::Relaxed);
    let converged = st.wildcard.iter().all(|(_, got)| *got) && st.pending.is_empty();
    p.set_converged(ctx, converged);
    Ok(())
}
