//! MeshConfig `accessLogFile`: Envoy's file access logger on every HTTP connection manager
//! and TCP proxy of a sidecar's or gateway's listeners, in Istio's default format (or
//! `accessLogFormat`), as text or JSON (`accessLogEncoding`).

use std::collections::BTreeMap;

use prost::Message;
use shoal_api::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use shoal_api::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source::Specifier, substitution_format_string,
};
use shoal_api::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use shoal_api::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log::AccessLogFormat,
};
use shoal_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use shoal_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use shoal_api::pb::google::protobuf::{Struct, Value, value::Kind};

use super::filters;
use crate::AccessLogOptions;

/// Istio's default text format (its documented `accessLogFormat` default).
const DEFAULT_TEXT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// The fields of Istio's default JSON format, with the command operator of each.
const DEFAULT_JSON: [(&str, &str); 24] = [
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("route_name", "%ROUTE_NAME%"),
];

fn format(options: &AccessLogOptions) -> SubstitutionFormatString {
    let format = if options.json {
        // A custom format in JSON encoding is a JSON object of operators, as in Istio.
        let fields: BTreeMap<String, String> = options
            .format
            .as_deref()
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or_else(|| {
                DEFAULT_JSON
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            });
        substitution_format_string::Format::JsonFormat(Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        Value {
                            kind: Some(Kind::StringValue(v)),
                        },
                    )
                })
                .collect(),
        })
    } else {
        let mut text = options
            .format
            .clone()
            .unwrap_or_else(|| DEFAULT_TEXT.to_string());
        if !text.ends_with('\n') {
            text.push('\n');
        }
        substitution_format_string::Format::TextFormatSource(DataSource {
            specifier: Some(Specifier::InlineString(text)),
            ..Default::default()
        })
    };
    SubstitutionFormatString {
        format: Some(format),
        ..Default::default()
    }
}

/// The file access logger of `options`.
pub(crate) fn logger(options: &AccessLogOptions) -> AccessLog {
    AccessLog {
        name: filters::FILE_ACCESS_LOGGER.into(),
        config_type: Some(access_log::ConfigType::TypedConfig(shoal_api::pack(
            &FileAccessLog {
                path: options.path.clone(),
                access_log_format: Some(AccessLogFormat::LogFormat(format(options))),
            },
        ))),
        ..Default::default()
    }
}

fn log_filter(f: &mut Filter, log: &AccessLog) {
    let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
        return;
    };
    match f.name.as_str() {
        filters::HTTP_CONNECTION_MANAGER => {
            if let Ok(mut hcm) = HttpConnectionManager::decode(any.value.as_slice()) {
                hcm.access_log.push(log.clone());
                *any = shoal_api::pack(&hcm);
            }
        }
        filters::TCP_PROXY => {
            if let Ok(mut tcp) = TcpProxy::decode(any.value.as_slice()) {
                tcp.access_log.push(log.clone());
                *any = shoal_api::pack(&tcp);
            }
        }
        _ => {}
    }
}

/// Logs what every HTTP connection manager and TCP proxy of `l` handles.
pub(crate) fn apply(l: &mut Listener, options: &AccessLogOptions) {
    let log = logger(options);
    for chain in l
        .filter_chains
        .iter_mut()
        .chain(l.default_filter_chain.iter_mut())
    {
        for f in &mut chain.filters {
            log_filter(f, &log);
        }
    }
}
