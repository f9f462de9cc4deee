//! DestinationRule traffic policies on outbound clusters, as Istio applies them: which
//! settings apply to a cluster (rule, port level, subset, subset port level), consistent
//! hashing, connection pool limits and outlier detection.

use std::collections::HashMap;

use shoal_api::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier, UpstreamConnectionOptions,
    circuit_breakers::Thresholds,
    cluster::{
        CommonLbConfig, LbConfig, LbPolicy, MaglevLbConfig, RingHashLbConfig,
        ring_hash_lb_config::HashFunction,
    },
};
use shoal_api::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttpOptions,
    TcpKeepalive,
};
use shoal_api::pb::envoy::config::route::v3::route_action::{
    HashPolicy,
    hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter},
};
use shoal_api::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig,
        explicit_http_config::ProtocolConfig,
    },
};
use shoal_api::pb::envoy::r#type::v3::Percent;
use shoal_api::pb::google::protobuf::{Any, Duration, UInt64Value};
use shoal_config::istio::{
    ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb, H2UpgradePolicy,
    LoadBalancerSettings, OutlierDetection, PortTrafficPolicy, TrafficPolicy,
};

use super::{duration, filters, u32v};
use crate::model::Protocol;

/// The settings that apply to one cluster.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings<'a> {
    pub lb: Option<&'a LoadBalancerSettings>,
    pub pool: Option<&'a ConnectionPoolSettings>,
    pub outlier: Option<&'a OutlierDetection>,
    pub tls: Option<&'a ClientTlsSettings>,
}

impl<'a> Settings<'a> {
    fn of_policy(p: &'a TrafficPolicy) -> Self {
        Settings {
            lb: p.load_balancer.as_ref(),
            pool: p.connection_pool.as_ref(),
            outlier: p.outlier_detection.as_ref(),
            tls: p.tls.as_ref(),
        }
    }

    fn of_port(p: &'a PortTrafficPolicy) -> Self {
        Settings {
            lb: p.load_balancer.as_ref(),
            pool: p.connection_pool.as_ref(),
            outlier: p.outlier_detection.as_ref(),
            tls: p.tls.as_ref(),
        }
    }

    /// A policy's settings for `port`: its port-level settings replace the whole policy.
    fn at_port(p: &'a TrafficPolicy, port: u32) -> Self {
        match p
            .port_level_settings
            .iter()
            .find(|pl| pl.port.is_some_and(|s| s.number == port))
        {
            Some(pl) => Settings::of_port(pl),
            None => Settings::of_policy(p),
        }
    }

    /// Istio's `MergeTrafficPolicy`: the rule's settings for the port, then the subset's
    /// where it sets them (a subset's port-level settings replace its policy, and then
    /// override the rule field by field as well).
    pub fn merged(
        rule: Option<&'a TrafficPolicy>,
        subset: Option<&'a TrafficPolicy>,
        port: u32,
    ) -> Self {
        let base = rule.map(|p| Settings::at_port(p, port)).unwrap_or_default();
        let Some(sub) = subset.map(|p| Settings::at_port(p, port)) else {
            return base;
        };
        Settings {
            lb: sub.lb.or(base.lb),
            pool: sub.pool.or(base.pool),
            outlier: sub.outlier.or(base.outlier),
            tls: sub.tls.or(base.tls),
        }
    }

    pub fn consistent_hash(&self) -> Option<&'a ConsistentHashLb> {
        self.lb.and_then(|l| l.consistent_hash.as_ref())
    }
}

fn parse_duration(d: &str) -> Option<Duration> {
    shoal_config::duration::parse(d).ok().map(duration)
}

/// A `tcp_proxy`'s timeouts from a DestinationRule's top-level TCP pool settings (Istio
/// reads neither port-level nor subset settings here): `idleTimeout` (Envoy's default is an
/// hour; `0s` disables it) and `maxConnectionDuration`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct TcpTimeouts {
    pub idle: Option<Duration>,
    pub max_duration: Option<Duration>,
}

impl TcpTimeouts {
    /// The timeouts for traffic to `h` as the proxy of `scope` sees its DestinationRule.
    pub fn for_host(scope: &crate::scope::Scope<'_>, h: &str) -> TcpTimeouts {
        let service_ns = scope
            .model
            .service_for(h, scope.namespace())
            .map(|s| s.namespace.clone());
        let dr = scope.destination_rule(h, service_ns.as_deref().unwrap_or(scope.namespace()));
        let tcp = dr
            .and_then(|d| d.spec.traffic_policy.as_deref())
            .and_then(|p| p.connection_pool.as_ref())
            .and_then(|p| p.tcp.as_ref());
        TcpTimeouts {
            idle: tcp
                .and_then(|t| t.idle_timeout.as_deref())
                .and_then(parse_duration),
            max_duration: tcp
                .and_then(|t| t.max_connection_duration.as_deref())
                .and_then(parse_duration),
        }
    }
}

/// Slow start (`warmup`, else `warmupDurationSecs`) for round robin and least request
/// clusters: new endpoints' share ramps up over the window, as Istio configures it.
pub(crate) fn apply_slow_start(cluster: &mut Cluster, lb: &LoadBalancerSettings) {
    use shoal_api::pb::envoy::config::cluster::v3::cluster::{
        LeastRequestLbConfig, RoundRobinLbConfig, SlowStartConfig,
    };
    use shoal_api::pb::envoy::config::core::v3::RuntimeDouble;
    let config = match (&lb.warmup, &lb.warmup_duration_secs) {
        (Some(w), _) => SlowStartConfig {
            slow_start_window: w.duration.as_deref().and_then(parse_duration),
            aggression: w
                .aggression
                .as_ref()
                .and_then(|a| a.as_f64())
                .map(|a| RuntimeDouble {
                    default_value: a,
                    runtime_key: "upstream.slow_start.aggression".into(),
                }),
            min_weight_percent: w
                .minimum_percent
                .as_ref()
                .and_then(|p| p.as_f64())
                .map(|value| Percent { value }),
        },
        (None, Some(d)) => SlowStartConfig {
            slow_start_window: parse_duration(d),
            ..Default::default()
        },
        (None, None) => return,
    };
    if config.slow_start_window.is_none() {
        return;
    }
    cluster.lb_config = if cluster.lb_policy == LbPolicy::RoundRobin as i32 {
        Some(LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
            slow_start_config: Some(config),
        }))
    } else if cluster.lb_policy == LbPolicy::LeastRequest as i32 {
        Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
            slow_start_config: Some(config),
            ..Default::default()
        }))
    } else {
        return;
    };
}

/// Ring hash (default) or Maglev for a consistent-hash DestinationRule.
pub(crate) fn apply_consistent_hash(cluster: &mut Cluster, ch: &ConsistentHashLb) {
    if let Some(m) = &ch.maglev {
        cluster.lb_policy = LbPolicy::Maglev as i32;
        cluster.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
            table_size: m.table_size.map(|t| UInt64Value { value: t }),
        }));
        return;
    }
    cluster.lb_policy = LbPolicy::RingHash as i32;
    let min = ch
        .ring_hash
        .as_ref()
        .and_then(|r| r.minimum_ring_size)
        .or(ch.minimum_ring_size);
    cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
        minimum_ring_size: min.map(|v| UInt64Value { value: v }),
        hash_function: HashFunction::XxHash as i32,
        ..Default::default()
    }));
}

/// The route-side half of consistent hashing: what the request is hashed on.
pub(crate) fn hash_policies(ch: &ConsistentHashLb) -> Vec<HashPolicy> {
    let spec = if let Some(h) = &ch.http_header_name {
        PolicySpecifier::Header(Header {
            header_name: h.clone(),
            regex_rewrite: None,
        })
    } else if let Some(c) = &ch.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: c.name.clone(),
            path: c.path.clone().unwrap_or_default(),
            ttl: c.ttl.as_deref().and_then(parse_duration),
            ..Default::default()
        })
    } else if ch.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
    } else if let Some(q) = &ch.http_query_parameter_name {
        PolicySpecifier::QueryParameter(QueryParameter { name: q.clone() })
    } else {
        return Vec::new();
    };
    vec![HashPolicy {
        policy_specifier: Some(spec),
        terminal: false,
    }]
}

/// Connection pool limits: circuit breaker thresholds, connect timeout, TCP keepalive.
/// HTTP options go through [`http_protocol_options`].
pub(crate) fn apply_connection_pool(cluster: &mut Cluster, pool: &ConnectionPoolSettings) {
    let mut t = Thresholds {
        max_connections: Some(u32v(u32::MAX)),
        max_pending_requests: Some(u32v(u32::MAX)),
        max_requests: Some(u32v(u32::MAX)),
        max_retries: Some(u32v(u32::MAX)),
        track_remaining: true,
        ..Default::default()
    };
    let limit = |v: Option<i32>| v.filter(|n| *n > 0).map(|n| u32v(n as u32));
    if let Some(tcp) = &pool.tcp {
        if let Some(v) = limit(tcp.max_connections) {
            t.max_connections = Some(v);
        }
        if let Some(d) = tcp.connect_timeout.as_deref().and_then(parse_duration) {
            cluster.connect_timeout = Some(d);
        }
        if let Some(k) = &tcp.tcp_keepalive {
            let secs = |d: &Option<String>| {
                d.as_deref()
                    .and_then(|d| shoal_config::duration::parse(d).ok())
                    .map(|d| u32v(d.as_secs().min(u64::from(u32::MAX)) as u32))
            };
            cluster.upstream_connection_options = Some(UpstreamConnectionOptions {
                tcp_keepalive: Some(TcpKeepalive {
                    keepalive_probes: k.probes.map(u32v),
                    keepalive_time: secs(&k.time),
                    keepalive_interval: secs(&k.interval),
                }),
                ..Default::default()
            });
        }
    }
    if let Some(http) = &pool.http {
        if let Some(v) = limit(http.http1_max_pending_requests) {
            t.max_pending_requests = Some(v);
        }
        if let Some(v) = limit(http.http2_max_requests) {
            t.max_requests = Some(v);
        }
        if let Some(v) = limit(http.max_retries) {
            t.max_retries = Some(v);
        }
    }
    cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![t],
        ..Default::default()
    });
}

/// Outlier detection as Istio configures it: only the detectors the rule sets are enforced
/// (success-rate ejection off), and `minHealthPercent` (default 0) as the panic threshold.
pub(crate) fn apply_outlier_detection(cluster: &mut Cluster, o: &OutlierDetection) {
    let mut out = EnvoyOutlier {
        enforcing_success_rate: Some(u32v(0)),
        ..Default::default()
    };
    // The deprecated `consecutiveErrors` is ignored, as Istio ignores it (validation warns).
    if let Some(n) = o.consecutive_5xx_errors {
        out.consecutive_5xx = Some(u32v(n));
        out.enforcing_consecutive_5xx = Some(u32v(if n > 0 { 100 } else { 0 }));
    }
    if let Some(n) = o.consecutive_gateway_errors {
        out.consecutive_gateway_failure = Some(u32v(n));
        out.enforcing_consecutive_gateway_failure = Some(u32v(if n > 0 { 100 } else { 0 }));
    }
    if o.split_external_local_origin_errors == Some(true) {
        out.split_external_local_origin_errors = true;
        if let Some(n) = o.consecutive_local_origin_failures {
            out.consecutive_local_origin_failure = Some(u32v(n));
            out.enforcing_consecutive_local_origin_failure =
                Some(u32v(if n > 0 { 100 } else { 0 }));
        }
    }
    out.interval = o.interval.as_deref().and_then(parse_duration);
    out.base_ejection_time = o.base_ejection_time.as_deref().and_then(parse_duration);
    if let Some(p) = o.max_ejection_percent {
        out.max_ejection_percent = Some(u32v(p.clamp(0, 100) as u32));
    }
    // Istio always sets the panic threshold with outlier detection (0 unless
    // `minHealthPercent` says otherwise): with few endpoints per service, Envoy's default
    // of 50 % would send traffic to ejected hosts, and never fail over to other localities.
    let common = cluster
        .common_lb_config
        .get_or_insert_with(CommonLbConfig::default);
    common.healthy_panic_threshold = Some(Percent {
        value: f64::from(o.min_health_percent.unwrap_or(0).clamp(0, 100)),
    });
    cluster.outlier_detection = Some(out);
}

/// Envoy honours the weights of localities (set by `distribute`, or the priorities of
/// failover rules) only with `locality_weighted_lb_config`.
pub(crate) fn weigh_localities(cluster: &mut Cluster) {
    use shoal_api::pb::envoy::config::cluster::v3::cluster::common_lb_config::{
        LocalityConfigSpecifier, LocalityWeightedLbConfig,
    };
    cluster
        .common_lb_config
        .get_or_insert_with(CommonLbConfig::default)
        .locality_config_specifier = Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
        LocalityWeightedLbConfig::default(),
    ));
}

/// Upstream HTTP protocol options: the protocol to speak (HTTP/2 for gRPC and HTTP/2
/// ports, the client's for sniffed ports, or HTTP/2 when the rule upgrades), plus the
/// connection pool's HTTP settings. Empty when nothing differs from Envoy's defaults.
pub(crate) fn http_protocol_options(
    protocol: Protocol,
    pool: Option<&ConnectionPoolSettings>,
) -> HashMap<String, Any> {
    let http = pool.and_then(|p| p.http.as_ref());
    let h2 = Http2ProtocolOptions {
        max_concurrent_streams: http
            .and_then(|h| h.max_concurrent_streams)
            .filter(|n| *n > 0)
            .map(|n| u32v(n as u32)),
        ..Default::default()
    };
    let upgrade = http.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade)
        && protocol.is_http();
    let config = if http.and_then(|h| h.use_client_protocol) == Some(true)
        || protocol == Protocol::Unknown
    {
        // Sniffed traffic (or a rule asking for it) keeps the protocol the client spoke.
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(h2),
                ..Default::default()
            },
        ))
    } else if protocol.is_http2() || upgrade {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(h2)),
            },
        ))
    } else {
        None
    };
    let mut common = CommonHttpOptions::default();
    let mut set = false;
    if let Some(h) = http {
        if let Some(d) = h.idle_timeout.as_deref().and_then(parse_duration) {
            common.idle_timeout = Some(d);
            set = true;
        }
        if let Some(n) = h.max_requests_per_connection.filter(|n| *n > 0) {
            common.max_requests_per_connection = Some(u32v(n as u32));
            set = true;
        }
    }
    if let Some(d) = pool
        .and_then(|p| p.tcp.as_ref())
        .and_then(|t| t.max_connection_duration.as_deref())
        .and_then(parse_duration)
    {
        common.max_connection_duration = Some(d);
        set = true;
    }
    if config.is_none() && !set {
        return HashMap::new();
    }
    // Envoy requires the upstream protocol whenever these options are present. A TCP port
    // has no HTTP connection to tune (its connection limits live on the tcp_proxy).
    let config = match config {
        Some(c) => c,
        None if protocol.is_http() => {
            UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                    Http1ProtocolOptions::default(),
                )),
            })
        }
        None => return HashMap::new(),
    };
    let opts = HttpProtocolOptions {
        common_http_protocol_options: set.then_some(common),
        upstream_protocol_options: Some(config),
        ..Default::default()
    };
    HashMap::from([(
        filters::HTTP_PROTOCOL_OPTIONS.to_string(),
        shoal_api::pack(&opts),
    )])
}
