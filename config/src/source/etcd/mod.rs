//! The etcd source: every key below a prefix is one object (`serve --etcd`).
//!
//! Keys are `PREFIX/KIND/NAMESPACE/NAME` (`PREFIX/KIND/NAME` for cluster-scoped kinds,
//! [`key`]); a value is one object as YAML or JSON, parsed and validated as a file's
//! documents and the API server's objects are ([`value`]), under the source id `etcd:KEY`.
//! A value that is invalid, or names another object than its key, is rejected alone with
//! an issue naming the key and the field, and the last good version of that key's object
//! stays; a key under no kind shoal reads is reported once, not fatal.
//!
//! Consistency: a ranged read of the whole prefix at one revision is delivered, then
//! `Synced`, then a watch from the next revision sends each change as it happens (a put
//! only when the value changed). When the watch is cancelled (its revision compacted) or
//! the connection is lost, the prefix is read again and diffed against what was delivered
//! ([`tracker`]): only keys really gone are removed and only changed values sent, so a
//! re-read costs the proxies nothing. While etcd is unreachable nothing is removed; the
//! source retries with exponential backoff and jitter ([`backoff`]) and says it is stale
//! ([`status`]).

pub mod key;
pub mod status;
pub mod tracker;
pub mod value;

// The IO half (etcd-client), behind the `etcd` feature; the rest is pure and always built.
#[cfg(feature = "etcd")]
mod client;
#[cfg(feature = "etcd")]
mod watch;
#[cfg(feature = "etcd")]
pub use client::{ConnectError, Connection};
#[cfg(feature = "etcd")]
pub use watch::{EtcdSource, Options, load};

pub use key::Prefix;
