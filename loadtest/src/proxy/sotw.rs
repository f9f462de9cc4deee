//! The state-of-the-world client (Envoy sidecars over SotW, gRPC's proxyless client).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prost::Message;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use shoal_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{Ctx, Kind, Proxy, nack_detail};

#[derive(Default, Clone)]
struct TypeState {
    subscribed: bool,
    names: BTreeSet<Arc<str>>,
    version: String,
    nonce: String,
    /// A request went out that has not been answered yet.
    awaiting: bool,
}

type Tx = mpsc::Sender<DiscoveryRequest>;

fn request(ty: ResourceType, t: &TypeState) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: ty.type_url().to_string(),
        version_info: t.version.clone(),
        resource_names: t.names.iter().map(|n| n.to_string()).collect(),
        response_nonce: t.nonce.clone(),
        ..Default::default()
    }
}

async fn send(tx: &Tx, req: DiscoveryRequest) -> Result<(), String> {
    tx.send(req).await.map_err(|_| "stream closed".to_string())
}

pub(super) async fn run(
    p: &Arc<Proxy>,
    ctx: &Arc<Ctx>,
    channel: Channel,
    resume: bool,
) -> Result<(), String> {
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(1 << 30);
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(64);
    if !resume {
        *p.held.lock() = super::Held::default();
    }
    let versions = p.sotw_versions.lock().clone();
    let mut types: HashMap<ResourceType, TypeState> = HashMap::new();
    let mut first = true;
    let mut subscribe = |types: &mut HashMap<ResourceType, TypeState>,
                         ty: ResourceType,
                         names: BTreeSet<Arc<str>>| {
        let t = types.entry(ty).or_default();
        t.subscribed = true;
        t.names = names;
        t.awaiting = true;
        if resume {
            t.version = versions.get(&ty).cloned().unwrap_or_default();
        }
        let mut req = request(ty, t);
        if std::mem::take(&mut first) {
            req.node = Some(p.node());
        }
        req
    };
    let mut initial = Vec::new();
    match p.kind {
        Kind::Grpc => {
            let target = p.target.clone().ok_or("a gRPC client needs a target")?;
            initial.push(subscribe(
                &mut types,
                ResourceType::Listener,
                BTreeSet::from([ctx.names.get(&target)]),
            ));
        }
        _ => {
            initial.push(subscribe(
                &mut types,
                ResourceType::Cluster,
                BTreeSet::new(),
            ));
            initial.push(subscribe(
                &mut types,
                ResourceType::Listener,
                BTreeSet::new(),
            ));
        }
    }
    for req in initial {
        send(&tx, req).await?;
    }
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let mut derived: HashMap<ResourceType, HashMap<Arc<str>, Vec<Arc<str>>>> = HashMap::new();
    loop {
        let resp: DiscoveryResponse = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Err("the server closed the stream".into()),
            Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
        };
        handle(p, ctx, &tx, &mut types, &mut derived, resp).await?;
    }
}

async fn handle(
    p: &Proxy,
    ctx: &Ctx,
    tx: &Tx,
    types: &mut HashMap<ResourceType, TypeState>,
    derived: &mut HashMap<ResourceType, HashMap<Arc<str>, Vec<Arc<str>>>>,
    resp: DiscoveryResponse,
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
    let mut next: HashMap<Arc<str>, Vec<Arc<str>>> = HashMap::new();
    let mut error = None;
    for any in &resp.resources {
        if any.type_url != resp.type_url {
            error = Some(format!(
                "a {} in a {} response",
                any.type_url, resp.type_url
            ));
            break;
        }
        match ctx.decode.get(ty, &any.value, &ctx.names) {
            Ok(d) => {
                next.insert(d.name.clone(), d.refs);
                upserts.push((d.name, ctx.names.get(&resp.version_info)));
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let t = types.entry(ty).or_default().clone();
    if let Some(e) = error {
        ctx.stats.nacks.fetch_add(1, Ordering::Relaxed);
        let mut nack = request(ty, &t);
        nack.response_nonce = resp.nonce;
        nack.error_detail = Some(nack_detail(e));
        return send(tx, nack).await;
    }
    ctx.stats
        .resources
        .fetch_add(upserts.len() as u64, Ordering::Relaxed);
    p.record(ctx, ty, &upserts, &[], true);
    p.sotw_versions.lock().insert(ty, resp.version_info.clone());
    {
        let t = types.entry(ty).or_default();
        t.version = resp.version_info.clone();
        t.nonce = resp.nonce.clone();
        t.awaiting = false;
        send(tx, request(ty, t)).await?;
    }
    ctx.stats.acks.fetch_add(1, Ordering::Relaxed);
    derived.insert(ty, next);
    // What this response asks for next.
    let follow = match ty {
        ResourceType::Cluster => Some(ResourceType::Endpoint),
        ResourceType::Listener => Some(ResourceType::Route),
        ResourceType::Route if p.kind == Kind::Grpc => Some(ResourceType::Cluster),
        _ => None,
    };
    if let Some(f) = follow {
        let want: BTreeSet<Arc<str>> = derived
            .get(&ty)
            .into_iter()
            .flat_map(|m| m.values().flatten().cloned())
            .collect();
        let t = types.entry(f).or_default();
        if want != t.names || (!t.subscribed && !want.is_empty()) {
            t.subscribed = true;
            t.names = want;
            t.awaiting = true;
            send(tx, request(f, t)).await?;
        }
    }
    let converged = types.values().all(|t| !t.awaiting);
    p.set_converged(ctx, converged);
    Ok(())
}
