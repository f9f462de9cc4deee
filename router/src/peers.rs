//! One multiplexed HTTP/2 connection per peer replica.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    /// The channel to a peer's xDS address (created lazily, shared by every stream).
    pub fn channel(&self, addr: &str) -> Channel {
        let mut c = self.channels.lock();
        if let Some(ch) = c.get(addr) {
            return ch.clone();
        }
        let ch = match Endpoint::from_shared(format!("http://{addr}")) {
            Ok(ep) => ep
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(64 << 20)
                .connect_lazy(),
            Err(_) => Endpoint::from_static("http://127.0.0.1:9").connect_lazy(),
        };
        c.insert(addr.to_string(), ch.clone());
        ch
    }
}
