//! Encoded, content-addressed resources.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::canonical;

/// A resource's version: a hash of its canonical encoding. Equal bytes, equal version, in
/// every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u64);

impl Version {
    pub fn of(bytes: &[u8]) -> Self {
        Version(xxh3_64(bytes))
    }

    /// Parses the wire form written by `Display`; anything else (empty, foreign) is `None`,
    /// which callers treat as "unknown, send it".
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One encoded resource, shared by every snapshot and stream that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: Arc<str>,
    pub version: Version,
    /// Canonical encoding of the resource message itself (the `Any` payload).
    pub body: Bytes,
}

impl Resource {
    /// Encodes a message canonically and derives its version.
    pub fn encode<M: prost::Name>(name: impl Into<Arc<str>>, msg: &M) -> Self {
        let raw = prost::Message::encode_to_vec(msg);
        // prost output is always well formed, so canonicalization cannot fail on it; keep the
        // raw bytes as a fallback rather than panicking.
        let body = canonical::canonicalize(&M::full_name(), &raw).unwrap_or(raw);
        Self::from_body(name, Bytes::from(body))
    }

    /// Wraps bytes that are already canonical.
    pub fn from_body(name: impl Into<Arc<str>>, body: Bytes) -> Self {
        Resource {
            name: name.into(),
            version: Version::of(&body),
            body,
        }
    }
}
