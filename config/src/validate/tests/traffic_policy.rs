//! Validation of DestinationRule load balancing, connection pools and outlier detection.

use super::support::{findings, has};

fn dr(policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: ns}}\nspec:\n  host: a\n  trafficPolicy:\n{policy}"
    )
}

#[test]
fn a_full_policy_is_accepted_without_findings() {
    let f = findings(&dr(
        "    loadBalancer:\n      consistentHash:\n        httpCookie: {name: s, ttl: 10s}\n        maglev: {tableSize: 65537}\n    connectionPool:\n      tcp: {maxConnections: 10, connectTimeout: 2s, tcpKeepalive: {probes: 3, time: 60s, interval: 10s}}\n      http: {http1MaxPendingRequests: 1, http2MaxRequests: 2, maxRetries: 3, idleTimeout: 5s, h2UpgradePolicy: UPGRADE}\n    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 100, minHealthPercent: 0}\n",
    ));
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn consistent_hash_needs_exactly_one_key() {
    let none = findings(&dr(
        "    loadBalancer:\n      consistentHash: {minimumRingSize: 10}\n",
    ));
    assert!(
        has(
            &none,
            "error spec.trafficPolicy.loadBalancer.consistentHash: exactly one"
        ),
        "{none:#?}"
    );
    assert!(
        has(
            &none,
            "warning spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize: deprecated"
        ),
        "{none:#?}"
    );
    let two = findings(&dr(
        "    loadBalancer:\n      consistentHash: {httpHeaderName: x, useSourceIp: true}\n",
    ));
    assert!(
        has(
            &two,
            "error spec.trafficPolicy.loadBalancer.consistentHash: exactly one"
        ),
        "{two:#?}"
    );
    let both = findings(&dr(
        "    loadBalancer:\n      simple: RANDOM\n      consistentHash: {httpHeaderName: x}\n",
    ));
    assert!(
        has(
            &both,
            "error spec.trafficPolicy.loadBalancer: only one of simple"
        ),
        "{both:#?}"
    );
    let cookie = findings(&dr(
        "    loadBalancer:\n      consistentHash: {httpCookie: {ttl: soon}}\n",
    ));
    assert!(
        has(
            &cookie,
            "error spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: required"
        ),
        "{cookie:#?}"
    );
    assert!(
        has(
            &cookie,
            "error spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl"
        ),
        "{cookie:#?}"
    );
}

#[test]
fn locality_slow_start_and_tcp_idle_timeout_are_translated() {
    let f = findings(&dr(
        "    loadBalancer:\n      simple: ROUND_ROBIN\n      localityLbSetting: {enabled: true}\n      warmupDurationSecs: 10s\n    connectionPool:\n      tcp: {idleTimeout: 1h}\n",
    ));
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn slow_start_is_checked() {
    let f = findings(&dr(
        "    loadBalancer:\n      simple: RANDOM\n      warmupDurationSecs: soon\n      warmup: {minimumPercent: 120, aggression: 0.5}\n",
    ));
    for want in [
        "error spec.trafficPolicy.loadBalancer.warmupDurationSecs",
        "error spec.trafficPolicy.loadBalancer.warmup.duration: required",
        "error spec.trafficPolicy.loadBalancer.warmup.minimumPercent: 120 is not a percentage",
        "error spec.trafficPolicy.loadBalancer.warmup.aggression: 0.5 is less than 1",
        "warning spec.trafficPolicy.loadBalancer.warmupDurationSecs: ignored: warmup is set",
        "warning spec.trafficPolicy.loadBalancer.warmup: has no effect",
    ] {
        assert!(has(&f, want), "{want}\n{f:#?}");
    }
}

#[test]
fn limits_and_durations_are_checked_at_every_level() {
    let f = findings(&dr(
        "    connectionPool:\n      tcp: {maxConnections: -1, connectTimeout: 0s}\n    outlierDetection: {maxEjectionPercent: 101, interval: forever}\n    portLevelSettings:\n    - port: {number: 80}\n      outlierDetection: {minHealthPercent: -5}\n",
    ));
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.connectionPool.tcp.maxConnections"
        ),
        "{f:#?}"
    );
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.connectionPool.tcp.connectTimeout"
        ),
        "{f:#?}"
    );
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.outlierDetection.maxEjectionPercent"
        ),
        "{f:#?}"
    );
    assert!(
        has(&f, "error spec.trafficPolicy.outlierDetection.interval"),
        "{f:#?}"
    );
    assert!(
        has(
            &f,
            "error spec.trafficPolicy.portLevelSettings[0].outlierDetection.minHealthPercent"
        ),
        "{f:#?}"
    );
}

#[test]
fn locality_settings_are_checked_as_istio_does() {
    let f = findings(&dr(
        "    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - from: us-west/*\n          to: {us-west/z1/*: 60, us-east/*: 30}\n        - from: us-west/*\n          to: {\"*/z2\": 100}\n        failover:\n        - {from: us-west, to: us-west}\n        - {from: us-west, to: eu/z1}\n",
    ));
    for want in [
        "error spec.trafficPolicy.loadBalancer.localityLbSetting: distribute cannot be combined",
        "error spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: weights add up to 90",
        "error spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[1].from: \"us-west/*\" appears twice",
        "error spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[1].to[*/z2]",
        "error spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: region \"us-west\" cannot fail over to itself",
        "error spec.trafficPolicy.loadBalancer.localityLbSetting.failover[1]: from and to are regions",
        "error spec.trafficPolicy.loadBalancer.localityLbSetting.failover[1].from: region \"us-west\" has more than one failover",
    ] {
        assert!(has(&f, want), "{want}\n{f:#?}");
    }
    assert_eq!(f.len(), 7, "{f:#?}");
    let w = findings(&dr(
        "    loadBalancer:\n      localityLbSetting:\n        failover: [{from: us-west, to: us-east}]\n",
    ));
    assert!(
        has(
            &w,
            "warning spec.trafficPolicy.loadBalancer.localityLbSetting: failover has no effect without outlierDetection"
        ),
        "{w:#?}"
    );
    let ok = findings(&dr(
        "    loadBalancer:\n      localityLbSetting:\n        failover: [{from: us-west, to: us-east}]\n        failoverPriority: [topology.kubernetes.io/region, \"custom=a\"]\n    outlierDetection: {consecutive5xxErrors: 1}\n",
    ));
    assert!(ok.is_empty(), "{ok:#?}");
}
