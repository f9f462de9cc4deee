//! The names Envoy knows the extensions shoal configures by: filters, transport sockets,
//! access loggers, retry plugins, and the keys of typed options and metadata. Every builder
//! names them from here, so that one spelling serves the filter, the per-route config that
//! refers to it, and the code that looks a filter up again.

// HTTP filters (in an HTTP connection manager).
pub(crate) const HTTP_ROUTER: &str = "envoy.filters.http.router";
pub(crate) const HTTP_FAULT: &str = "envoy.filters.http.fault";
pub(crate) const HTTP_CORS: &str = "envoy.filters.http.cors";
pub(crate) const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// A second RBAC filter, for DENY policies, where one filter cannot hold both actions
/// (proxyless gRPC servers).
pub(crate) const HTTP_RBAC_DENY: &str = "envoy.filters.http.rbac.DENY";
/// Also the key of the verified JWT payload in dynamic metadata.
pub(crate) const HTTP_JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

/// Sets filter state from request headers (a waypoint's tunnel terminator).
pub(crate) const HTTP_SET_FILTER_STATE: &str = "envoy.filters.http.set_filter_state";

// Network filters.
pub(crate) const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
pub(crate) const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
pub(crate) const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
pub(crate) const NETWORK_SET_FILTER_STATE: &str = "envoy.filters.network.set_filter_state";

// Listener filters.
pub(crate) const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub(crate) const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
pub(crate) const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
pub(crate) const PROXY_PROTOCOL: &str = "envoy.filters.listener.proxy_protocol";

// Other extensions.
pub(crate) const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
pub(crate) const RAW_BUFFER_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.raw_buffer";
/// Connects to an internal listener, passing endpoint metadata along.
pub(crate) const INTERNAL_UPSTREAM_TRANSPORT_SOCKET: &str =
    "envoy.transport_sockets.internal_upstream";
pub(crate) const FILE_ACCESS_LOGGER: &str = "envoy.access_loggers.file";
pub(crate) const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
pub(crate) const PREVIOUS_PRIORITIES: &str = "envoy.retry_priorities.previous_priorities";
/// The key of a cluster's `typed_extension_protocol_options` for HTTP upstreams.
pub(crate) const HTTP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// The endpoint metadata filter a cluster's `transport_socket_matches` compare.
pub(crate) const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
