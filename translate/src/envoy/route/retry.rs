//! Retry policies as Istio builds them (`retry.ConvertPolicy`): a default policy when the
//! VirtualService sets none, `attempts: 0` to disable, status codes in `retryOn` moved to
//! `retriable_status_codes`.

use shoal_api::pb::envoy::config::route::v3::{
    RetryPolicy,
    retry_policy::{
        RetryBackOff, RetryHostPredicate, RetryPriority, retry_host_predicate, retry_priority,
    },
};
use shoal_api::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use shoal_api::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use shoal_config::duration;
use shoal_config::istio::HttpRetry;

use super::super::{duration, filters, u32v};
use crate::proxy::Generator;

/// Istio's retry conditions when a VirtualService does not set `retryOn`.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Retry conditions gRPC's xDS client understands (gRPC status names).
const GRPC_RETRY_ON: &[&str] = &[
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Prefer hosts not tried yet (Istio's default host predicate).
fn previous_hosts() -> RetryHostPredicate {
    RetryHostPredicate {
        name: filters::PREVIOUS_HOSTS.into(),
        config_type: Some(retry_host_predicate::ConfigType::TypedConfig(
            shoal_api::pack(&PreviousHostsPredicate::default()),
        )),
    }
}

/// Istio's default: 2 retries on connection failures, refused streams, gRPC
/// `unavailable`/`cancelled` and HTTP 503, preferring other hosts.
fn default_policy() -> RetryPolicy {
    RetryPolicy {
        num_retries: Some(u32v(2)),
        retry_on: DEFAULT_RETRY_ON.into(),
        retriable_status_codes: vec![503],
        retry_host_predicate: vec![previous_hosts()],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

/// Splits `retryOn` into Envoy conditions and HTTP status codes, adding
/// `retriable-status-codes` when codes were given without it (as Istio does).
fn parse_retry_on(s: &str) -> (String, Vec<u32>) {
    let mut codes = Vec::new();
    let mut on = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u32>() {
            Ok(c) if (100..600).contains(&c) => codes.push(c),
            _ => on.push(part),
        }
    }
    let mut on = on.join(",");
    if !codes.is_empty() && !on.contains("retriable-status-codes") {
        if !on.is_empty() {
            on.push(',');
        }
        on.push_str("retriable-status-codes");
    }
    (on, codes)
}

pub(super) fn retry_policy(retries: Option<&HttpRetry>, flavor: Generator) -> Option<RetryPolicy> {
    if flavor == Generator::Grpc {
        return grpc_retry_policy(retries?);
    }
    let mut out = default_policy();
    let Some(r) = retries else {
        return Some(out);
    };
    if r.attempts <= 0 {
        // `attempts: 0` explicitly disables retries.
        return None;
    }
    out.num_retries = Some(u32v(u32::try_from(r.attempts).unwrap_or(u32::MAX)));
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
        (out.retry_on, out.retriable_status_codes) = parse_retry_on(on);
    }
    out.per_try_timeout = r
        .per_try_timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .map(duration);
    match r.retry_ignore_previous_hosts {
        Some(true) => out.retry_host_predicate = vec![previous_hosts()],
        Some(false) => out.retry_host_predicate = Vec::new(),
        None => {}
    }
    if r.retry_remote_localities == Some(true) {
        out.retry_priority = Some(RetryPriority {
            name: filters::PREVIOUS_PRIORITIES.into(),
            config_type: Some(retry_priority::ConfigType::TypedConfig(shoal_api::pack(
                &PreviousPrioritiesConfig {
                    update_frequency: 2,
                },
            ))),
        });
    }
    if let Some(b) = r.backoff.as_deref().and_then(|b| duration::parse(b).ok()) {
        out.retry_back_off = Some(RetryBackOff {
            base_interval: Some(duration(b)),
            ..Default::default()
        });
    }
    Some(out)
}

/// gRPC's xDS client: only an explicit policy, restricted to the gRPC status conditions it
/// understands.
fn grpc_retry_policy(r: &HttpRetry) -> Option<RetryPolicy> {
    if r.attempts <= 0 {
        return None;
    }
    let retry_on = r.retry_on.as_deref().unwrap_or(DEFAULT_RETRY_ON);
    let codes: Vec<&str> = retry_on
        .split(',')
        .map(str::trim)
        .filter(|c| GRPC_RETRY_ON.contains(c))
        .collect();
    if codes.is_empty() {
        return None;
    }
    Some(RetryPolicy {
        retry_on: codes.join(","),
        num_retries: Some(u32v(u32::try_from(r.attempts).unwrap_or(u32::MAX))),
        per_try_timeout: r
            .per_try_timeout
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
            .map(duration),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_codes_are_split_out() {
        assert_eq!(
            parse_retry_on("5xx, 503,gateway-error"),
            (
                "5xx,gateway-error,retriable-status-codes".to_string(),
                vec![503]
            )
        );
        assert_eq!(
            parse_retry_on("retriable-status-codes,429"),
            ("retriable-status-codes".to_string(), vec![429])
        );
        assert_eq!(parse_retry_on("reset"), ("reset".to_string(), vec![]));
    }

    #[test]
    fn zero_attempts_disable_and_unset_is_istio_default() {
        let off = HttpRetry {
            attempts: 0,
            ..Default::default()
        };
        assert!(retry_policy(Some(&off), Generator::Envoy).is_none());
        let d = retry_policy(None, Generator::Envoy).unwrap_or_default();
        assert_eq!(d.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(d.retriable_status_codes, vec![503]);
        assert_eq!(d.num_retries, Some(u32v(2)));
    }

    /// Not in the golden cases: the JSON renderer's descriptor subset lacks
    /// `PreviousPrioritiesConfig`.
    #[test]
    fn remote_localities_add_previous_priorities() {
        let r = HttpRetry {
            attempts: 1,
            retry_remote_localities: Some(true),
            retry_ignore_previous_hosts: Some(false),
            ..Default::default()
        };
        let p = retry_policy(Some(&r), Generator::Envoy).unwrap_or_default();
        let prio = p.retry_priority.unwrap_or_default();
        assert_eq!(prio.name, "envoy.retry_priorities.previous_priorities");
        assert!(p.retry_host_predicate.is_empty());
        assert_eq!(p.num_retries, Some(u32v(1)));
    }
}
