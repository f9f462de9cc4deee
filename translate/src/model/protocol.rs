//! Istio's protocol selection: explicit `appProtocol`/`protocol`, then the port name prefix
//! (`http-`, `grpc-`, …); anything else is detected at runtime (sniffed).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Mongo,
    Redis,
    Mysql,
    Udp,
    /// Not declared: HTTP is detected by inspecting the first bytes, TCP otherwise.
    Unknown,
}

impl Protocol {
    /// Parses a protocol name as Istio writes it (case-insensitive).
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "http" | "http1" | "http/1.1" => Protocol::Http,
            "http2" | "h2c" | "kubernetes.io/h2c" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" => Protocol::Tcp,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::Mysql,
            "udp" => Protocol::Udp,
            _ => Protocol::Unknown,
        }
    }

    /// Selects the protocol of a port: `appProtocol`, then the explicit protocol (when it is
    /// not the L4 default), then the name prefix (`http-web`, `grpc`).
    pub fn select(app_protocol: Option<&str>, protocol: Option<&str>, name: &str) -> Protocol {
        if let Some(p) = app_protocol
            .map(Protocol::parse)
            .filter(|p| *p != Protocol::Unknown)
        {
            return p;
        }
        if let Some(p) = protocol
            .map(Protocol::parse)
            .filter(|p| !matches!(p, Protocol::Unknown | Protocol::Tcp))
        {
            return p;
        }
        let prefix = name.split('-').next().unwrap_or_default();
        match Protocol::parse(prefix) {
            Protocol::Unknown => match protocol.map(Protocol::parse) {
                Some(Protocol::Udp) => Protocol::Udp,
                _ => Protocol::Unknown,
            },
            p => p,
        }
    }

    /// Served by an HTTP connection manager.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// Upstream connections use HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-WEB",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Mongo => "MONGO",
            Protocol::Redis => "REDIS",
            Protocol::Mysql => "MYSQL",
            Protocol::Udp => "UDP",
            Protocol::Unknown => "UNKNOWN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_order() {
        assert_eq!(
            Protocol::select(Some("grpc"), Some("TCP"), "http"),
            Protocol::Grpc
        );
        assert_eq!(
            Protocol::select(None, Some("TCP"), "http-web"),
            Protocol::Http
        );
        assert_eq!(Protocol::select(None, Some("TCP"), "grpc"), Protocol::Grpc);
        assert_eq!(Protocol::select(None, Some("TCP"), "db"), Protocol::Unknown);
        assert_eq!(Protocol::select(None, Some("HTTP"), ""), Protocol::Http);
        assert_eq!(Protocol::select(None, Some("UDP"), "dns"), Protocol::Udp);
        assert_eq!(
            Protocol::select(Some("kubernetes.io/h2c"), None, ""),
            Protocol::Http2
        );
    }
}
