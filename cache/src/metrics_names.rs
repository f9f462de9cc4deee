//! Metric names the cache records (exported by the server's Prometheus recorder).

pub const CONNECTED: &str = "shoal_xds_connected_streams";
pub const PUSHES: &str = "shoal_xds_pushes_total";
pub const PUSH_BYTES: &str = "shoal_xds_pushed_bytes_total";
pub const PUSHED_RESOURCES: &str = "shoal_xds_pushed_resources_total";
pub const PUSH_LATENCY: &str = "shoal_xds_push_latency_seconds";
pub const NACKS: &str = "shoal_xds_nacks_total";
pub const REJECTED_REQUESTS: &str = "shoal_xds_rejected_requests_total";
pub const STREAMS_OPENED: &str = "shoal_xds_streams_opened_total";
pub const STREAM_WAIT: &str = "shoal_xds_stream_admission_wait_seconds";
/// Response bodies encoded, by type and protocol: once per view, state and subscription.
pub const RESPONSES_ENCODED: &str = "shoal_xds_responses_encoded_total";
/// Responses a stream took already encoded by another stream in the same state.
pub const RESPONSES_SHARED: &str = "shoal_xds_responses_shared_total";
pub const DEBUG_REQUESTS: &str = "shoal_xds_debug_requests_total";

/// Istio's names for the same measurements (`pilot/pkg/xds/monitoring.go`), recorded beside
/// shoal's so that Istio's dashboards work unchanged. `type` is Istio's lower-case short
/// type (`cds`, `eds`, `lds`, `rds`, `sds`, …).
pub mod istio {
    /// Gauge: connected xDS clients, by `version` (the proxy's `ISTIO_VERSION`).
    pub const XDS_CLIENTS: &str = "pilot_xds";
    /// Counter: responses pushed, by `type`.
    pub const PUSHES: &str = "pilot_xds_pushes";
    /// Histogram (seconds): computing and sending one response, by `type`.
    pub const PUSH_TIME: &str = "pilot_xds_push_time";
    /// Histogram (seconds): from a config change to a proxy having been sent all of it.
    pub const CONVERGENCE: &str = "pilot_proxy_convergence_time";
    /// Counter: responses rejected by proxies, by `type`.
    pub const REJECTS: &str = "pilot_total_xds_rejects";
    /// Histogram (bytes): size of the responses pushed, by `type`.
    pub const CONFIG_SIZE: &str = "pilot_xds_config_size_bytes";
}
