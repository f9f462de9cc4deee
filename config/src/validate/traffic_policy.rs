//! DestinationRule traffic policies beyond TLS: load balancing, connection pools and
//! outlier detection, checked as Istio's validation does.

use std::time::Duration;

use super::Validator;
use crate::istio::{
    ConnectionPoolSettings, LoadBalancerSettings, LocalityLbSetting, OutlierDetection,
    PortTrafficPolicy, TrafficPolicy,
};

/// A traffic policy at `f` (top level or a subset's), with its port-level settings.
pub(super) fn traffic_policy(v: &mut Validator, f: &str, p: &TrafficPolicy) {
    settings(
        v,
        f,
        p.load_balancer.as_ref(),
        p.connection_pool.as_ref(),
        p.outlier_detection.as_ref(),
    );
    for (i, pl) in p.port_level_settings.iter().enumerate() {
        port_level(v, &format!("{f}.portLevelSettings[{i}]"), pl);
    }
}

/// Port selectors are checked with the TLS settings (`security.rs`).
fn port_level(v: &mut Validator, f: &str, p: &PortTrafficPolicy) {
    settings(
        v,
        f,
        p.load_balancer.as_ref(),
        p.connection_pool.as_ref(),
        p.outlier_detection.as_ref(),
    );
}

fn settings(
    v: &mut Validator,
    f: &str,
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&OutlierDetection>,
) {
    if let Some(lb) = lb {
        load_balancer(v, &format!("{f}.loadBalancer"), lb);
        if let Some(l) = &lb.locality_lb_setting {
            let f = format!("{f}.loadBalancer.localityLbSetting");
            locality_lb(v, &f, l);
            let fails_over = l.distribute.is_empty() && l.enabled();
            if fails_over
                && outlier.is_none()
                && !(l.failover.is_empty() && l.failover_priority.is_empty())
            {
                v.warning(
                    f,
                    "failover has no effect without outlierDetection (unhealthy endpoints are never ejected)",
                );
            }
        }
    }
    if let Some(pool) = pool {
        connection_pool(v, &format!("{f}.connectionPool"), pool);
    }
    if let Some(o) = outlier {
        outlier_detection(v, &format!("{f}.outlierDetection"), o);
    }
}

fn load_balancer(v: &mut Validator, f: &str, lb: &LoadBalancerSettings) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        v.error(f, "only one of simple and consistentHash may be set");
    }
    warmup(v, f, lb);
    let Some(ch) = &lb.consistent_hash else {
        return;
    };
    let f = format!("{f}.consistentHash");
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip.unwrap_or(false),
        ch.http_query_parameter_name.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if keys != 1 {
        v.error(
            &f,
            "exactly one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName must be set",
        );
    }
    if ch.http_header_name.as_deref() == Some("") {
        v.error(format!("{f}.httpHeaderName"), "must not be empty");
    }
    if ch.http_query_parameter_name.as_deref() == Some("") {
        v.error(format!("{f}.httpQueryParameterName"), "must not be empty");
    }
    if let Some(c) = &ch.http_cookie {
        if c.name.is_empty() {
            v.error(format!("{f}.httpCookie.name"), "required");
        }
        if let Some(ttl) = &c.ttl {
            v.duration(format!("{f}.httpCookie.ttl"), ttl, Duration::ZERO);
        }
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        v.error(&f, "only one of ringHash and maglev may be set");
    }
    if ch.minimum_ring_size.is_some() {
        v.warning(
            format!("{f}.minimumRingSize"),
            "deprecated: use ringHash.minimumRingSize",
        );
    }
    if ch.maglev.as_ref().and_then(|m| m.table_size) == Some(0) {
        v.error(format!("{f}.maglev.tableSize"), "must be positive");
    }
}

fn non_negative(v: &mut Validator, f: String, n: Option<i32>) {
    if let Some(n) = n
        && n < 0
    {
        v.error(f, format!("{n} must not be negative"));
    }
}

pub(super) fn connection_pool(v: &mut Validator, f: &str, p: &ConnectionPoolSettings) {
    if let Some(t) = &p.tcp {
        non_negative(v, format!("{f}.tcp.maxConnections"), t.max_connections);
        if let Some(d) = &t.connect_timeout {
            v.duration(
                format!("{f}.tcp.connectTimeout"),
                d,
                Duration::from_millis(1),
            );
        }
        if let Some(d) = &t.max_connection_duration {
            v.duration(
                format!("{f}.tcp.maxConnectionDuration"),
                d,
                Duration::from_millis(1),
            );
        }
        if let Some(d) = &t.idle_timeout {
            // `0s` disables the timeout.
            v.duration(format!("{f}.tcp.idleTimeout"), d, Duration::ZERO);
        }
        if let Some(k) = &t.tcp_keepalive {
            for (name, d) in [("time", &k.time), ("interval", &k.interval)] {
                if let Some(d) = d {
                    v.duration(
                        format!("{f}.tcp.tcpKeepalive.{name}"),
                        d,
                        Duration::from_secs(1),
                    );
                }
            }
        }
    }
    if let Some(h) = &p.http {
        non_negative(
            v,
            format!("{f}.http.http1MaxPendingRequests"),
            h.http1_max_pending_requests,
        );
        non_negative(
            v,
            format!("{f}.http.http2MaxRequests"),
            h.http2_max_requests,
        );
        non_negative(
            v,
            format!("{f}.http.maxRequestsPerConnection"),
            h.max_requests_per_connection,
        );
        non_negative(v, format!("{f}.http.maxRetries"), h.max_retries);
        non_negative(
            v,
            format!("{f}.http.maxConcurrentStreams"),
            h.max_concurrent_streams,
        );
        if let Some(d) = &h.idle_timeout {
            v.duration(format!("{f}.http.idleTimeout"), d, Duration::from_millis(1));
        }
    }
}

fn outlier_detection(v: &mut Validator, f: &str, o: &OutlierDetection) {
    if o.consecutive_errors.is_some() {
        v.warning(
            format!("{f}.consecutiveErrors"),
            "deprecated and ignored, as Istio ignores it: use consecutive5xxErrors",
        );
    }
    for (name, d) in [
        ("interval", &o.interval),
        ("baseEjectionTime", &o.base_ejection_time),
    ] {
        if let Some(d) = d {
            v.duration(format!("{f}.{name}"), d, Duration::from_millis(1));
        }
    }
    for (name, pct) in [
        ("maxEjectionPercent", o.max_ejection_percent),
        ("minHealthPercent", o.min_health_percent),
    ] {
        if let Some(p) = pct
            && !(0..=100).contains(&p)
        {
            v.error(
                format!("{f}.{name}"),
                format!("{p} is not a percentage (0-100)"),
            );
        }
    }
}

/// A locality pattern: `region[/zone[/subzone]]`, where `*` may only stand for a whole
/// trailing part.
fn locality_pattern(v: &mut Validator, f: String, p: &str) {
    let parts: Vec<&str> = p.split('/').collect();
    if p.is_empty() || parts.len() > 3 || parts.iter().any(|s| s.is_empty()) {
        v.error(f, format!("{p:?} is not a locality (region/zone/subzone)"));
        return;
    }
    if let Some(i) = parts.iter().position(|s| s.contains('*'))
        && (parts[i] != "*" || i + 1 != parts.len())
    {
        v.error(
            f,
            format!("{p:?}: a wildcard must be a whole part and the last one"),
        );
    }
}

/// Istio's `validateLocalityLbSetting`.
pub(crate) fn locality_lb(v: &mut Validator, f: &str, l: &LocalityLbSetting) {
    let failover_rules = !l.failover.is_empty() || !l.failover_priority.is_empty();
    if !l.distribute.is_empty() && failover_rules {
        v.error(
            f,
            "distribute cannot be combined with failover or failoverPriority",
        );
    }
    let mut froms = std::collections::BTreeSet::new();
    for (i, d) in l.distribute.iter().enumerate() {
        let f = format!("{f}.distribute[{i}]");
        locality_pattern(v, format!("{f}.from"), &d.from);
        if !froms.insert(d.from.as_str()) {
            v.error(format!("{f}.from"), format!("{:?} appears twice", d.from));
        }
        if d.to.is_empty() {
            v.error(format!("{f}.to"), "required");
            continue;
        }
        for to in d.to.keys() {
            locality_pattern(v, format!("{f}.to[{to}]"), to);
        }
        let total: u64 = d.to.values().map(|w| u64::from(*w)).sum();
        if total != 100 {
            v.error(
                format!("{f}.to"),
                format!("weights add up to {total}, not 100"),
            );
        }
    }
    let mut regions = std::collections::BTreeSet::new();
    for (i, fo) in l.failover.iter().enumerate() {
        let f = format!("{f}.failover[{i}]");
        if fo.from.is_empty() || fo.to.is_empty() {
            v.error(&f, "from and to are required");
            continue;
        }
        if fo.from.contains('/') || fo.to.contains('/') {
            v.error(&f, "from and to are regions, without zones");
        }
        if fo.from == fo.to {
            v.error(
                &f,
                format!("region {:?} cannot fail over to itself", fo.from),
            );
        }
        if !regions.insert(fo.from.as_str()) {
            v.error(
                format!("{f}.from"),
                format!("region {:?} has more than one failover", fo.from),
            );
        }
    }
    for (i, label) in l.failover_priority.iter().enumerate() {
        let key = label.split_once('=').map_or(label.as_str(), |(k, _)| k);
        if key.is_empty() {
            v.error(
                format!("{f}.failoverPriority[{i}]"),
                format!("{label:?} names no label"),
            );
        }
    }
}

/// Slow start: Envoy has it for round robin and least request (the default) only.
fn warmup(v: &mut Validator, f: &str, lb: &LoadBalancerSettings) {
    use crate::istio::SimpleLb;
    if let Some(d) = &lb.warmup_duration_secs {
        v.duration(
            format!("{f}.warmupDurationSecs"),
            d,
            Duration::from_millis(1),
        );
    }
    if let Some(w) = &lb.warmup {
        match &w.duration {
            Some(d) => v.duration(format!("{f}.warmup.duration"), d, Duration::from_millis(1)),
            None => v.error(format!("{f}.warmup.duration"), "required"),
        }
        if let Some(p) = w.minimum_percent.as_ref().and_then(|n| n.as_f64())
            && !(0.0..=100.0).contains(&p)
        {
            v.error(
                format!("{f}.warmup.minimumPercent"),
                format!("{p} is not a percentage (0-100)"),
            );
        }
        if let Some(a) = w.aggression.as_ref().and_then(|n| n.as_f64())
            && a < 1.0
        {
            v.error(
                format!("{f}.warmup.aggression"),
                format!("{a} is less than 1"),
            );
        }
        if lb.warmup_duration_secs.is_some() {
            v.warning(
                format!("{f}.warmupDurationSecs"),
                "ignored: warmup is set as well and takes precedence",
            );
        }
    }
    let slow_start = lb.warmup.is_some() || lb.warmup_duration_secs.is_some();
    let supported = lb.consistent_hash.is_none()
        && matches!(
            lb.simple,
            None | Some(
                SimpleLb::RoundRobin
                    | SimpleLb::LeastRequest
                    | SimpleLb::LeastConn
                    | SimpleLb::Unspecified
            )
        );
    if slow_start && !supported {
        v.warning(
            format!("{f}.warmup"),
            "has no effect: slow start applies to ROUND_ROBIN and LEAST_REQUEST only",
        );
    }
}
