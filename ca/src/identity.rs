//! SPIFFE workload identities in Istio's form, `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`.
//!
//! The parser is deliberately strict: an identity ends up as the only URI SAN of a certificate
//! that other proxies authorize against, so anything that two parsers might read differently
//! (percent-encoding, empty or dot segments, ports, user info, queries, upper-case trust
//! domains, extra path segments) is refused rather than normalised.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Longest URI accepted, as recommended by the SPIFFE ID specification.
const MAX_URI_LEN: usize = 2048;
/// Longest trust domain accepted (SPIFFE: 255 bytes).
const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// Longest namespace or service-account name accepted (Kubernetes DNS subdomain limit).
const MAX_SEGMENT_LEN: usize = 253;

/// Why a string is not an acceptable identity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    #[error("identity URI is longer than {MAX_URI_LEN} bytes")]
    TooLong,
    #[error("identity must start with \"spiffe://\"")]
    NotSpiffe,
    #[error("invalid trust domain {0:?}: expected lower-case letters, digits, '.', '-' or '_'")]
    InvalidTrustDomain(String),
    #[error("identity path must be /ns/NAMESPACE/sa/SERVICE_ACCOUNT, got {0:?}")]
    InvalidPath(String),
    #[error("invalid {field} {value:?}: expected letters, digits, '.', '-' or '_'")]
    InvalidSegment { field: &'static str, value: String },
}

/// A workload identity: the Kubernetes service account a workload runs as, in a trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl Identity {
    /// Builds an identity, validating every part with the same rules as [`Identity::parse`].
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Self, IdentityError> {
        let id = Identity {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        validate_trust_domain(&id.trust_domain)?;
        validate_segment("namespace", &id.namespace)?;
        validate_segment("service account", &id.service_account)?;
        Ok(id)
    }

    /// The SPIFFE URI, `spiffe://TD/ns/NS/sa/SA`.
    pub fn spiffe_uri(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    /// Parses a SPIFFE URI of exactly the form `spiffe://TD/ns/NS/sa/SA`.
    pub fn parse(uri: &str) -> Result<Self, IdentityError> {
        if uri.len() > MAX_URI_LEN {
            return Err(IdentityError::TooLong);
        }
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or(IdentityError::NotSpiffe)?;
        let (trust_domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => return Err(IdentityError::InvalidPath(String::new())),
        };
        validate_trust_domain(trust_domain)?;
        let mut parts = path.split('/');
        // `path` starts with '/', so the first piece is always empty.
        let (Some(""), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(IdentityError::InvalidPath(path.to_string()));
        };
        Identity::new(trust_domain, ns, sa)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spiffe_uri())
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::parse(s)
    }
}

/// SPIFFE trust domains: lower-case letters, digits, dots, dashes and underscores. A port,
/// user info or upper case would make two spellings of one domain compare unequal.
fn validate_trust_domain(td: &str) -> Result<(), IdentityError> {
    let ok = !td.is_empty()
        && td.len() <= MAX_TRUST_DOMAIN_LEN
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidTrustDomain(truncate(td)))
    }
}

/// SPIFFE path segments: letters, digits, dots, dashes and underscores, never `.` or `..`
/// (which a URI normaliser would collapse), never percent-encoded.
fn validate_segment(field: &'static str, value: &str) -> Result<(), IdentityError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_SEGMENT_LEN
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidSegment {
            field,
            value: truncate(value),
        })
    }
}

/// Keeps error messages bounded when the input is hostile.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip() {
        let id = Identity::new("cluster.local", "default", "bookinfo-productpage").unwrap();
        assert_eq!(
            id.spiffe_uri(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        );
        assert_eq!(Identity::parse(&id.spiffe_uri()).unwrap(), id);
        assert_eq!(id.to_string().parse::<Identity>().unwrap(), id);
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "spiffe://",
            "https://cluster.local/ns/a/sa/b",
            "SPIFFE://cluster.local/ns/a/sa/b",
            "spiffe://Cluster.local/ns/a/sa/b",
            "spiffe://cluster.local:443/ns/a/sa/b",
            "spiffe://user@cluster.local/ns/a/sa/b",
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe://cluster.local/ns/a/sa/b/",
            "spiffe://cluster.local/ns/a/sa/b/c",
            "spiffe://cluster.local/ns/a/sa",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/ns/./sa/b",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://cluster.local/ns/a%2Fb/sa/b",
            "spiffe://cluster.local/ns/a/sa/b?x=1",
            "spiffe://cluster.local/ns/a/sa/b#frag",
            "spiffe://cluster.local/sa/b/ns/a",
            "spiffe://cluster.local/ns/a/sa/é",
            "spiffe:///ns/a/sa/b",
        ] {
            assert!(Identity::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("spiffe://td/ns/{}/sa/b", "a".repeat(3000));
        assert_eq!(Identity::parse(&long), Err(IdentityError::TooLong));
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(
            Identity::parse("http://x/ns/a/sa/b"),
            Err(IdentityError::NotSpiffe)
        );
        assert!(matches!(
            Identity::parse("spiffe://X/ns/a/sa/b"),
            Err(IdentityError::InvalidTrustDomain(_))
        ));
        assert!(matches!(
            Identity::parse("spiffe://x/ns/a/b/c"),
            Err(IdentityError::InvalidPath(_))
        ));
        assert!(matches!(
            Identity::parse("spiffe://x/ns/a b/sa/c"),
            Err(IdentityError::InvalidSegment {
                field: "namespace",
                ..
            })
        ));
    }
}
