//! Recording of the ADS service's measurements, once each, under shoal's names and Istio's.
//! The stream driver calls these; nothing else computes the same figures.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Instant;

use metrics::{counter, gauge, histogram};
use parking_lot::Mutex;
use shoal_api::ResourceType;

use crate::metrics_names::{self as m, istio};
use crate::session::Outgoing;

/// Istio's lower-case metric label of a type (its `GetMetricType`).
pub fn istio_type(ty: ResourceType) -> &'static str {
    match ty {
        ResourceType::Cluster => "cds",
        ResourceType::Endpoint => "eds",
        ResourceType::Listener => "lds",
        ResourceType::Route => "rds",
        ResourceType::Secret => "sds",
        ResourceType::Address => "wads",
        ResourceType::Authorization => "wdsauthz",
        ResourceType::Federation => "fds",
    }
}

/// Distinct `version` labels `pilot_xds` takes before the rest count as `other`: the value is
/// the client's own claim, and must not grow the metric without bound.
const MAX_VERSIONS: usize = 32;
static VERSIONS: LazyLock<Mutex<BTreeSet<String>>> = LazyLock::new(Default::default);

/// The `version` label for a client's `ISTIO_VERSION` (empty when it sent none, as Istio).
pub fn version_label(version: Option<&str>) -> String {
    let Some(v) = version else {
        return String::new();
    };
    let plausible = v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
    if !plausible {
        return "other".into();
    }
    let mut known = VERSIONS.lock();
    if known.contains(v) || known.len() < MAX_VERSIONS {
        known.insert(v.to_string());
        v.to_string()
    } else {
        "other".into()
    }
}

/// A stream was admitted and connected (`+1`) or ended (`-1`).
pub fn connected(protocol: &'static str, version: &str, delta: f64) {
    gauge!(m::CONNECTED, "protocol" => protocol).increment(delta);
    gauge!(istio::XDS_CLIENTS, "version" => version.to_string()).increment(delta);
}

/// One response was sent; `started` is when this push began computing.
pub fn pushed(o: &Outgoing, bytes: u64, protocol: &'static str, started: Instant) {
    let ty = o.ty.short_name();
    counter!(m::PUSHES, "type" => ty, "protocol" => protocol, "trigger" => o.trigger).increment(1);
    counter!(m::PUSH_BYTES, "type" => ty, "protocol" => protocol).increment(bytes);
    counter!(m::PUSHED_RESOURCES, "type" => ty).increment((o.resources + o.removed) as u64);
    histogram!(m::PUSH_LATENCY, "stage" => "sent", "type" => ty, "protocol" => protocol)
        .record(o.since.elapsed().as_secs_f64());
    let ity = istio_type(o.ty);
    counter!(istio::PUSHES, "type" => ity).increment(1);
    histogram!(istio::PUSH_TIME, "type" => ity).record(started.elapsed().as_secs_f64());
    histogram!(istio::CONFIG_SIZE, "type" => ity).record(bytes as f64);
}

/// Everything one push computed was sent: the proxy has the change that started the oldest
/// of it (`since`).
pub fn converged(since: Instant) {
    histogram!(istio::CONVERGENCE).record(since.elapsed().as_secs_f64());
}

/// The client acknowledged a response carrying a change first seen at `since`.
pub fn acked(ty: ResourceType, protocol: &'static str, since: Instant) {
    histogram!(m::PUSH_LATENCY, "stage" => "acked", "type" => ty.short_name(), "protocol" => protocol)
        .record(since.elapsed().as_secs_f64());
}

/// The client rejected a response.
pub fn rejected(ty: ResourceType) {
    counter!(m::NACKS, "type" => ty.short_name()).increment(1);
    counter!(istio::REJECTS, "type" => istio_type(ty)).increment(1);
}
