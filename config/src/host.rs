//! Host names: short-name resolution, syntax and wildcard matching, as Istio does them.

/// The cluster's DNS domain suffix.
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// Resolves a host as written in an Istio object of `namespace`: a name without dots is a
/// Kubernetes service of that namespace (`reviews` → `reviews.NS.svc.cluster.local`);
/// anything with a dot or a wildcard is taken as written. Host names are case-insensitive.
pub fn resolve(host: &str, namespace: &str, domain_suffix: &str) -> String {
    if host.contains('.') || host.contains('*') || host.is_empty() {
        host.to_ascii_lowercase()
    } else {
        format!(
            "{}.{namespace}.svc.{domain_suffix}",
            host.to_ascii_lowercase()
        )
    }
}

/// A DNS label: letters, digits and hyphens, not starting or ending with a hyphen, 1–63 chars.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes object name (DNS-1123 subdomain): lowercase labels joined by dots.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.')
            .all(|l| is_dns_label(l) && !l.bytes().any(|b| b.is_ascii_uppercase()))
}

/// Checks a host as Istio accepts it in `hosts` lists: an optional leading `*.` (or a lone
/// `*`), then DNS labels; at most 255 characters.
pub fn validate_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host must not be empty".into());
    }
    if host == "*" {
        return Ok(());
    }
    if host.len() > 255 {
        return Err(format!("host {host:?} is longer than 255 characters"));
    }
    let rest = host.strip_prefix("*.").unwrap_or(host);
    if rest.contains('*') {
        return Err(format!(
            "host {host:?}: a wildcard is only allowed as the leading label"
        ));
    }
    let trimmed = rest.strip_suffix('.').unwrap_or(rest);
    for label in trimmed.split('.') {
        if !is_dns_label(label) {
            return Err(format!("host {host:?}: {label:?} is not a valid DNS label"));
        }
    }
    Ok(())
}

/// Whether a host pattern (`*`, `*.example.com` or an exact name) matches a host. Both are
/// expected lowercase. A wildcard pattern also matches a more specific wildcard host.
pub fn matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        // "*.example.com" matches "a.example.com" and "*.b.example.com".
        let host_tail = host.strip_prefix('*').unwrap_or(host);
        return host_tail.ends_with(suffix) && host_tail.len() >= suffix.len();
    }
    pattern == host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_namespace() {
        assert_eq!(
            resolve("reviews", "bookinfo", DEFAULT_DOMAIN_SUFFIX),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(
            resolve("reviews.other", "bookinfo", DEFAULT_DOMAIN_SUFFIX),
            "reviews.other"
        );
        assert_eq!(
            resolve("*.example.com", "x", DEFAULT_DOMAIN_SUFFIX),
            "*.example.com"
        );
        assert_eq!(
            resolve("API.Example.com", "x", DEFAULT_DOMAIN_SUFFIX),
            "api.example.com"
        );
    }

    #[test]
    fn host_syntax() {
        assert!(validate_host("reviews").is_ok());
        assert!(validate_host("*.example.com").is_ok());
        assert!(validate_host("*").is_ok());
        assert!(validate_host("a.*.com").is_err());
        assert!(validate_host("bad_host").is_err());
        assert!(validate_host("-x.com").is_err());
        assert!(validate_host("").is_err());
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches("*", "a.b"));
        assert!(matches("*.example.com", "api.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(matches("*.example.com", "*.api.example.com"));
        assert!(matches("a.com", "a.com"));
        assert!(!matches("a.com", "b.com"));
    }
}
