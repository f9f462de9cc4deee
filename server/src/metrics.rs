//! The Prometheus recorder and what each metric means.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds) for push and build histograms.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Istio's buckets for its histograms (`pilot/pkg/xds/monitoring.go`), so that its dashboards'
/// quantiles read the same.
const ISTIO_PUSH_TIME_BUCKETS: &[f64] = &[0.01, 0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
const ISTIO_CONVERGENCE_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
const ISTIO_CONFIG_SIZE_BUCKETS: &[f64] = &[1.0, 10e3, 1e6, 4e6, 10e6, 40e6];

static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Installs the global recorder (the first call in a process; later calls, e.g. a second
/// app in one test process, share it) and returns its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    // Apps built concurrently (tests) must not both try to install a recorder.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("pilot_xds_push_time".into()),
            ISTIO_PUSH_TIME_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("pilot_proxy_convergence_time".into()),
            ISTIO_CONVERGENCE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("pilot_xds_config_size_bytes".into()),
            ISTIO_CONFIG_SIZE_BUCKETS,
        )?
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
    describe_counter!(
        "shoal_xds_debug_requests_total",
        "Debug xDS requests answered or refused (istioctl), by type (syncz, config_dump, unknown)."
    );
    describe_istio();
    describe_gauge!(
        "shoal_etcd_connected",
        "1 while etcd answers and the watch of the prefix is open (serve --etcd), else 0."
    );
    describe_gauge!(
        "shoal_etcd_revision",
        "The etcd revision the config delivered from etcd is at."
    );
    describe_gauge!(
        "shoal_etcd_keys",
        "Keys below the etcd prefix (objects, and keys only reported)."
    );
    describe_counter!(
        "shoal_etcd_resyncs_total",
        "Reads of the whole etcd prefix after the first (a compaction, a lost connection), each diffed against what was delivered."
    );
    describe_counter!(
        "shoal_etcd_events_total",
        "Watch events from etcd, by event (put, delete)."
    );
    describe_counter!(
        "shoal_etcd_errors_total",
        "Failed attempts to read or watch etcd (each retried with backoff)."
    );
}

/// Istio's metric names, recorded beside shoal's (same events, Istio's names, labels and
/// buckets) so that Istio's Grafana dashboards work unchanged. `type` is Istio's short type:
/// cds, eds, lds, rds, sds. No unit is declared: the names must stay Istio's exactly.
fn describe_istio() {
    describe_gauge!(
        "pilot_xds",
        "Number of endpoints connected to this pilot using XDS, by version (the proxy's ISTIO_VERSION)."
    );
    describe_counter!(
        "pilot_xds_pushes",
        "Pilot build and send errors for lds, rds, cds and eds: here, responses pushed, by type."
    );
    describe_histogram!(
        "pilot_xds_push_time",
        "Total time in seconds Pilot takes to push lds, rds, cds and eds (compute and send one response), by type."
    );
    describe_histogram!(
        "pilot_proxy_convergence_time",
        "Delay in seconds between config change and a proxy receiving all required configuration."
    );
    describe_counter!(
        "pilot_total_xds_rejects",
        "Total number of XDS responses from pilot rejected by proxy, by type."
    );
    describe_histogram!(
        "pilot_xds_config_size_bytes",
        "Distribution of configuration sizes pushed to clients, by type."
    );
    describe_counter!(
        "citadel_server_csr_count",
        "The number of CSRs received by Citadel server."
    );
    describe_counter!(
        "citadel_server_authentication_failure_count",
        "The number of authentication failures."
    );
    describe_counter!(
        "citadel_server_csr_parsing_err_count",
        "The number of errors occurred when parsing the CSR."
    );
    describe_counter!(
        "citadel_server_id_extraction_err_count",
        "The number of errors occurred when extracting the ID from CSR."
    );
    describe_counter!(
        "citadel_server_csr_sign_err_count",
        "The number of errors occurred when signing the CSR, by error (TTL_ERROR, CERT_GEN_ERROR)."
    );
    describe_counter!(
        "citadel_server_success_cert_issuance_count",
        "The number of certificates issuances that have succeeded."
    );
}
