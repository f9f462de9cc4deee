//! The Prometheus recorder and what each metric means.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds) for push and build histograms.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Installs the global recorder (the first call in a process; later calls, e.g. a second
/// app in one test process, share it) and returns its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    describe_gauge!(
        "shoal_xds_connected_streams",
        "Connected xDS streams, by protocol (delta, sotw)."
    );
    describe_counter!(
        "shoal_xds_streams_opened_total",
        "xDS streams admitted, by protocol."
    );
    describe_histogram!(
        "shoal_xds_stream_admission_wait_seconds",
        Unit::Seconds,
        "Time new streams waited for admission (--stream-rate)."
    );
    describe_counter!(
        "shoal_xds_responses_encoded_total",
        "Response bodies encoded, by type and protocol: one per view, state and subscription."
    );
    describe_counter!(
        "shoal_xds_responses_shared_total",
        "Responses a stream sent as already encoded by another stream in the same state."
    );
    describe_counter!(
        "shoal_xds_pushes_total",
        "Responses sent, by type, protocol and trigger (config, endpoints, new-view, initial)."
    );
    describe_counter!(
        "shoal_xds_pushed_bytes_total",
        Unit::Bytes,
        "Bytes of responses sent, by type and protocol."
    );
    describe_counter!(
        "shoal_xds_pushed_resources_total",
        "Resources (and removals) sent, by type."
    );
    describe_histogram!(
        "shoal_xds_push_latency_seconds",
        Unit::Seconds,
        "From the config change to the response being sent (stage=sent) or acknowledged (stage=acked)."
    );
    describe_counter!(
        "shoal_xds_nacks_total",
        "Responses a proxy rejected, by type."
    );
    describe_counter!(
        "shoal_xds_rejected_requests_total",
        "Requests refused (reason: node, unknown_type, too_many_names)."
    );
    describe_gauge!(
        "shoal_views",
        "Live views (groups of proxies that see the same config)."
    );
    describe_counter!(
        "shoal_builds_total",
        "Snapshot builds, by trigger (config: full rebuild, endpoints: endpoints only)."
    );
    describe_histogram!(
        "shoal_build_seconds",
        Unit::Seconds,
        "Time to translate and publish every live view after a change."
    );
    describe_gauge!("shoal_config_objects", "Config objects in force, by kind.");
    describe_gauge!(
        "shoal_config_rejected_objects",
        "Config documents rejected (an object's last good version stays in force)."
    );
    describe_counter!(
        "shoal_config_changes_total",
        "Config objects added, changed or removed."
    );
}
