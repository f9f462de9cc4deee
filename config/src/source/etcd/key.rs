//! Where an object lives in etcd: `PREFIX/KIND/NAMESPACE/NAME` for namespaced kinds,
//! `PREFIX/KIND/NAME` for cluster-scoped ones. `KIND` is shoal's name of the kind as its
//! reports write it ([`Kind::as_str`]: `VirtualService`, `Service`, `Namespace`, and
//! `Gateway.gateway.networking.k8s.io` for the Gateway API's Gateway, which Istio's
//! `Gateway` would otherwise shadow). Pure: no IO.

use std::fmt;

use thiserror::Error;

use crate::meta::{Kind, ObjectKey};

/// The prefix every key of the source starts with, normalized: it starts with `/` when the
/// flag did, never ends with one, and the keys below it are `PREFIX/…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// `--etcd-prefix`'s value; trailing slashes are dropped (`/shoal/config/` and
    /// `/shoal/config` are one prefix). The empty prefix (or `/`) is the whole key space
    /// under `/`.
    pub fn new(prefix: &str) -> Prefix {
        Prefix(prefix.trim_end_matches('/').to_string())
    }

    /// The prefix as given (normalized), for reports.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What every key of the source starts with: the prefix and a `/`, so that
    /// `/shoal/config` does not take `/shoal/configuration/…`.
    pub fn range(&self) -> Vec<u8> {
        format!("{}/", self.0).into_bytes()
    }

    /// The end of [`Prefix::range`] (exclusive): the first key after every key below the
    /// prefix, for range reads and watches.
    pub fn range_end(&self) -> Vec<u8> {
        range_end(&self.range())
    }

    /// The key of the object `kind`/`namespace`/`name` (`namespace` is ignored for
    /// cluster-scoped kinds).
    pub fn key(&self, kind: Kind, namespace: &str, name: &str) -> String {
        if kind.namespaced() {
            format!("{}/{kind}/{namespace}/{name}", self.0)
        } else {
            format!("{}/{kind}/{name}", self.0)
        }
    }

    /// The object a key names, or why it names none.
    pub fn parse(&self, key: &[u8]) -> Result<ObjectKey, KeyError> {
        let range = self.range();
        let rest = key
            .strip_prefix(range.as_slice())
            .ok_or(KeyError::Outside)?;
        let rest = std::str::from_utf8(rest).map_err(|_| KeyError::NotUtf8)?;
        let mut segments = rest.split('/');
        let kind_segment = segments.next().unwrap_or_default();
        let kind = kind_named(kind_segment).ok_or_else(|| KeyError::UnknownKind {
            segment: kind_segment.to_string(),
        })?;
        let parts: Vec<&str> = segments.collect();
        let (namespace, name) = match (kind.namespaced(), parts.as_slice()) {
            (true, [namespace, name]) => (*namespace, *name),
            (false, [name]) => ("", *name),
            _ => return Err(KeyError::Shape { kind }),
        };
        if kind.namespaced() && namespace.is_empty() {
            return Err(KeyError::Empty {
                kind,
                part: "namespace",
            });
        }
        if name.is_empty() {
            return Err(KeyError::Empty { kind, part: "name" });
        }
        Ok(ObjectKey::new(kind, namespace, name))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first key after every key that starts with `start` (etcd's prefix range end):
/// `start` with its last byte below 0xff incremented and what follows dropped; `\0` (every
/// key to the end) when there is no such byte.
pub fn range_end(start: &[u8]) -> Vec<u8> {
    let mut end = start.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The kind a key's `KIND` segment names (exactly as [`Kind::as_str`] spells it).
pub fn kind_named(segment: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == segment)
}

/// Why a key names no object.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Not below the prefix (the source never reads such keys; a guard).
    #[error("not below the prefix")]
    Outside,
    #[error("the key is not UTF-8")]
    NotUtf8,
    /// The first segment names no kind shoal reads: someone else's key, or a typo.
    #[error(
        "{segment:?} is not a kind shoal reads (keys are PREFIX/KIND/NAMESPACE/NAME, or PREFIX/KIND/NAME for cluster-scoped kinds; KIND as in VirtualService, Service, Namespace)"
    )]
    UnknownKind { segment: String },
    #[error("{kind} objects are keyed {shape}", shape = if kind.namespaced() { "PREFIX/KIND/NAMESPACE/NAME" } else { "PREFIX/KIND/NAME (cluster-scoped)" })]
    Shape { kind: Kind },
    #[error("the {part} segment is empty")]
    Empty { kind: Kind, part: &'static str },
}

impl KeyError {
    /// Whether the key may simply not be meant for shoal (reported as a warning, not an
    /// error): it is not under a kind shoal reads.
    pub fn foreign(&self) -> bool {
        matches!(self, KeyError::UnknownKind { .. } | KeyError::Outside)
    }
}

/// The source id of a key (`etcd:KEY`): what the store keeps its objects under and every
/// report names. A key that is not UTF-8 is shown with its bytes escaped.
pub fn source_id(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(k) => format!("etcd:{k}"),
        Err(_) => format!("etcd:{}", key.escape_ascii()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(key: &str) -> Result<ObjectKey, KeyError> {
        Prefix::new("/shoal/config/").parse(key.as_bytes())
    }

    #[test]
    fn namespaced_and_cluster_scoped_keys_name_their_object() {
        assert_eq!(
            parse("/shoal/config/VirtualService/default/reviews"),
            Ok(ObjectKey::new(Kind::VirtualService, "default", "reviews"))
        );
        assert_eq!(
            parse("/shoal/config/Namespace/shop"),
            Ok(ObjectKey::new(Kind::Namespace, "", "shop"))
        );
        assert_eq!(
            parse("/shoal/config/Gateway.gateway.networking.k8s.io/infra/edge"),
            Ok(ObjectKey::new(Kind::KubeGateway, "infra", "edge"))
        );
        assert_eq!(
            parse("/shoal/config/Gateway/infra/edge"),
            Ok(ObjectKey::new(Kind::Gateway, "infra", "edge"))
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_key() {
        let prefix = Prefix::new("/p");
        for kind in Kind::ALL {
            let key = prefix.key(kind, "ns", "n");
            let want = ObjectKey::new(kind, if kind.namespaced() { "ns" } else { "" }, "n");
            assert_eq!(prefix.parse(key.as_bytes()), Ok(want), "{key}");
        }
    }

    #[test]
    fn malformed_keys_say_why() {
        assert!(matches!(
            parse("/shoal/config/VirtualServices/default/r"),
            Err(KeyError::UnknownKind { segment }) if segment == "VirtualServices"
        ));
        assert_eq!(
            parse("/shoal/config/VirtualService/r"),
            Err(KeyError::Shape {
                kind: Kind::VirtualService
            })
        );
        assert_eq!(
            parse("/shoal/config/Namespace/default/shop"),
            Err(KeyError::Shape {
                kind: Kind::Namespace
            })
        );
        assert_eq!(
            parse("/shoal/config/Service/default/a/b"),
            Err(KeyError::Shape {
                kind: Kind::Service
            })
        );
        assert_eq!(
            parse("/shoal/config/Service//a"),
            Err(KeyError::Empty {
                kind: Kind::Service,
                part: "namespace"
            })
        );
        assert_eq!(
            parse("/shoal/config/Service/default/"),
            Err(KeyError::Empty {
                kind: Kind::Service,
                part: "name"
            })
        );
        assert_eq!(
            parse("/shoal/configuration/Service/a/b"),
            Err(KeyError::Outside)
        );
        assert_eq!(
            Prefix::new("/p").parse(b"/p/Service/\xff/a"),
            Err(KeyError::NotUtf8)
        );
        assert!(
            KeyError::UnknownKind {
                segment: "x".into()
            }
            .foreign()
        );
        assert!(
            !KeyError::Shape {
                kind: Kind::Service
            }
            .foreign()
        );
    }

    #[test]
    fn source_ids_name_the_key_and_escape_binary_ones() {
        assert_eq!(source_id(b"/p/Service/a/b"), "etcd:/p/Service/a/b");
        assert_eq!(source_id(b"/p/\xff"), "etcd:/p/\\xff");
    }

    #[test]
    fn a_range_ends_after_every_key_below_it() {
        assert_eq!(Prefix::new("/shoal/config").range_end(), b"/shoal/config0");
        assert_eq!(range_end(b"a\xff\xff"), b"b");
        assert_eq!(range_end(b"\xff"), b"\0");
        assert_eq!(range_end(b""), b"\0");
    }

    #[test]
    fn the_prefix_is_normalized() {
        assert_eq!(Prefix::new("/shoal/config/").as_str(), "/shoal/config");
        assert_eq!(Prefix::new("/shoal/config").range(), b"/shoal/config/");
        assert_eq!(Prefix::new("/").range(), b"/");
    }
}
