//! One multiplexed HTTP/2 connection per peer replica, over mTLS when this router has a
//! replica certificate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use shoal_shard::Node;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    /// Client configuration for replica links (certificate and peer verification).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Peers {
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Peers {
            channels: Mutex::new(HashMap::new()),
            tls,
        }
    }

    /// Where to reach a peer's xDS server: its TLS port when both sides have TLS.
    pub fn url(&self, node: &Node) -> String {
        match (&self.tls, node.xds_tls_addr.is_empty()) {
            (Some(_), false) => format!("https://{}", node.xds_tls_addr),
            _ => format!("http://{}", node.xds_addr),
        }
    }

    /// The channel to a peer's xDS `url` (created lazily, shared by every stream).
    pub fn channel(&self, url: &str) -> Channel {
        let mut c = self.channels.lock();
        if let Some(ch) = c.get(url) {
            return ch.clone();
        }
        let ch = channel(url, self.tls.as_ref());
        c.insert(url.to_string(), ch.clone());
        ch
    }
}

/// A lazily connected HTTP/2 channel to `url`: over TLS with `tls` (client certificate and
/// peer verification) when the URL is `https://`, else plaintext. An unparsable URL gives
/// a channel whose calls fail.
pub fn channel(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Channel {
    let Ok(ep) = Endpoint::from_shared(url.to_string()) else {
        return Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    };
    let ep = ep
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(64 << 20);
    match (tls, url.starts_with("https://")) {
        (Some(tls), true) => {
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(Duration::from_secs(2)));
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((**tls).clone())
                .https_only()
                .enable_http2()
                .wrap_connector(http);
            ep.connect_with_connector_lazy(https)
        }
        _ => ep.connect_lazy(),
    }
}
