//! The "resolve again" signal of xDS streams: bumped when a proxy may belong to another
//! view (a full config change) or be entitled to other secrets (a gateway workload came or
//! went). Shared by the pipeline and identity, read by every stream through
//! [`shoal_cache::ViewSource::epoch`].

use tokio::sync::watch;

#[derive(Debug)]
pub struct Epoch(watch::Sender<u64>);

impl Default for Epoch {
    fn default() -> Self {
        Epoch(watch::Sender::new(0))
    }
}

impl Epoch {
    /// Every stream resolves its view (and secrets) again.
    pub fn bump(&self) {
        self.0.send_modify(|e| *e += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
