//! Config sources. Each source delivers units of config (a file, an object, a key) as
//! [`SourceUpdate`]s; the store ([`crate::store::ConfigStore`]) merges them.

pub mod backoff;
pub mod etcd;
pub mod file;
pub mod kubernetes;

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;
use tokio::sync::mpsc;

use crate::parse::ParsedDoc;
use crate::store::Precedence;

/// One change reported by a source.
#[derive(Debug)]
pub enum SourceUpdate {
    /// Everything `source` (a file path, an object id, an etcd key) defines now.
    Apply {
        source: String,
        docs: Vec<ParsedDoc>,
    },
    /// As `Apply`, ranked at `precedence` against other sources' definitions of the same
    /// keys (see [`crate::store`]): what a source discovers elsewhere (a remote cluster, a
    /// federated peer) is [`Precedence::Fallback`] and yields quietly to config proper.
    ApplyAt {
        source: String,
        docs: Vec<ParsedDoc>,
        precedence: Precedence,
    },
    /// `source` is gone; forget what it defined.
    Remove { source: String },
    /// The source has delivered its complete initial state.
    Synced { source_kind: &'static str },
    /// The MeshConfig text the source holds now (Kubernetes: the `istio` ConfigMap's
    /// `mesh` key), unchecked; `None` when it holds none any more (the defaults apply).
    /// Sent in order with the objects, so that the initial sync comes with it.
    MeshConfig {
        origin: String,
        text: Option<String>,
    },
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("watching {path}: {message}")]
    Watch { path: String, message: String },
    #[error("the config pipeline has stopped")]
    Closed,
}

/// A config source: runs until the receiver goes away or it fails.
pub trait ConfigSource: Send {
    /// Short name for logs and metrics (`files`, `kubernetes`, `etcd`).
    fn kind(&self) -> &'static str;

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<SourceUpdate>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;
}
