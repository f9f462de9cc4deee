//! Validation of `Gateway` as Istio's `ValidateGateway` does it: every server needs a port
//! with a known protocol and at least one `[NAMESPACE/]HOST`, port names are unique, TLS
//! protocols need TLS settings and SIMPLE/MUTUAL need a certificate (files or a
//! `credentialName`), MUTUAL also a CA (`caCertificates` or a `credentialName`, whose
//! Secret holds it), ISTIO_MUTUAL nothing of its own.

use std::collections::BTreeSet;

use super::Validator;
use super::istio::PROTOCOLS;
use crate::host;
use crate::istio::{GatewaySpec, Server, ServerTlsMode, ServerTlsSettings, TlsProtocolVersion};

/// Protocols a gateway server terminates as HTTP (HTTPS after TLS termination).
pub const GATEWAY_HTTP_PROTOCOLS: &[&str] = &["HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTPS"];

/// Cipher suites Envoy's BoringSSL accepts in `cipher_suites` (Istio's list).
const CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "PSK-AES128-CBC-SHA",
    "AES256-SHA",
    "PSK-AES256-CBC-SHA",
    "DES-CBC3-SHA",
];

pub(super) fn gateway(v: &mut Validator, spec: &GatewaySpec) {
    if spec.servers.is_empty() {
        v.error("spec.servers", "a gateway must have at least one server");
    }
    let mut names = BTreeSet::new();
    for (i, s) in spec.servers.iter().enumerate() {
        let f = format!("spec.servers[{i}]");
        server(v, &f, s);
        if let Some(p) = &s.port
            && !p.name.is_empty()
            && !names.insert(p.name.as_str())
        {
            v.error(
                format!("{f}.port.name"),
                format!(
                    "port names in servers must be unique: duplicate name {:?}",
                    p.name
                ),
            );
        }
    }
}

fn server(v: &mut Validator, f: &str, s: &Server) {
    if s.hosts.is_empty() {
        v.error(
            format!("{f}.hosts"),
            "server config must contain at least one host",
        );
    }
    for (i, h) in s.hosts.iter().enumerate() {
        server_host(v, &format!("{f}.hosts[{i}]"), h);
    }
    if let Some(b) = &s.bind {
        v.ip(format!("{f}.bind"), b);
    }
    let Some(port) = &s.port else {
        v.error(format!("{f}.port"), "port is required");
        return;
    };
    v.port(format!("{f}.port.number"), port.number);
    let protocol = port.protocol.to_ascii_uppercase();
    if !PROTOCOLS.contains(&protocol.as_str()) {
        v.error(
            format!("{f}.port.protocol"),
            format!("invalid protocol {:?}", port.protocol),
        );
        return;
    }
    if port.target_port.is_some() {
        v.warning(
            format!("{f}.port.targetPort"),
            "ignored: a gateway listens on port.number, or on the targetPort of the Service \
             selecting the gateway proxy",
        );
    }
    let is_tls = protocol == "HTTPS" || protocol == "TLS";
    match &s.tls {
        None if is_tls => v.error(
            format!("{f}.tls"),
            "server must have TLS settings for HTTPS/TLS protocols",
        ),
        None => {}
        Some(t) if !is_tls => {
            if t.https_redirect {
                if !GATEWAY_HTTP_PROTOCOLS.contains(&protocol.as_str()) {
                    v.warning(
                        format!("{f}.tls.httpsRedirect"),
                        "applies to HTTP servers only; ignored",
                    );
                }
            } else {
                v.warning(
                    format!("{f}.tls"),
                    "TLS settings on a plain text port are ignored",
                );
            }
        }
        Some(t) => tls(v, &format!("{f}.tls"), t),
    }
    let l4 = ["TCP", "MONGO", "MYSQL", "REDIS"].contains(&protocol.as_str());
    if !is_tls && !l4 && !GATEWAY_HTTP_PROTOCOLS.contains(&protocol.as_str()) {
        v.warning(
            format!("{f}.port.protocol"),
            format!("{protocol} servers are not served by shoal yet; the server is left out"),
        );
    }
}

/// `[NAMESPACE/]HOST` where NAMESPACE is `*`, `.` or a namespace and HOST a (wildcard) DNS name.
fn server_host(v: &mut Validator, f: &str, h: &str) {
    let (ns, name) = match h.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, h),
    };
    if let Some(ns) = ns
        && !(ns == "*" || ns == "." || host::is_dns_label(ns))
    {
        v.error(
            f,
            format!("{h:?}: namespace {ns:?} is not \"*\", \".\" or a namespace"),
        );
    }
    v.host(f, name);
}

fn tls(v: &mut Validator, f: &str, t: &ServerTlsSettings) {
    if t.https_redirect {
        v.warning(
            format!("{f}.httpsRedirect"),
            "applies to plain HTTP servers only; ignored",
        );
    }
    let has = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    let credential = has(&t.credential_name);
    let mode = t.mode();
    match mode {
        ServerTlsMode::IstioMutual => {
            for (name, set) in [
                ("serverCertificate", has(&t.server_certificate)),
                ("privateKey", has(&t.private_key)),
                ("caCertificates", has(&t.ca_certificates)),
                ("credentialName", credential),
            ] {
                if set {
                    v.error(
                        format!("{f}.{name}"),
                        "ISTIO_MUTUAL TLS mode takes the workload certificate; must be empty",
                    );
                }
            }
        }
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
            if !credential =>
        {
            let label = match mode {
                ServerTlsMode::Simple => "SIMPLE",
                ServerTlsMode::Mutual => "MUTUAL",
                _ => "OPTIONAL_MUTUAL",
            };
            if !has(&t.server_certificate) {
                v.error(
                    format!("{f}.serverCertificate"),
                    format!("{label} TLS requires a server certificate (or credentialName)"),
                );
            }
            if !has(&t.private_key) {
                v.error(
                    format!("{f}.privateKey"),
                    format!("{label} TLS requires a private key (or credentialName)"),
                );
            }
            if mode != ServerTlsMode::Simple && !has(&t.ca_certificates) {
                v.error(
                    format!("{f}.caCertificates"),
                    format!("{label} TLS requires a client CA bundle (or credentialName)"),
                );
            }
        }
        _ => {}
    }
    if let (Some(min), Some(max)) = (t.min_protocol_version, t.max_protocol_version)
        && max != TlsProtocolVersion::Auto
        && min > max
    {
        v.error(
            format!("{f}.minProtocolVersion"),
            "the minimum TLS version must not be greater than the maximum",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, c) in t.cipher_suites.iter().enumerate() {
        if !CIPHER_SUITES.contains(&c.as_str()) {
            v.warning(
                format!("{f}.cipherSuites[{i}]"),
                format!("unknown cipher suite {c:?}"),
            );
        } else if !seen.insert(c.as_str()) {
            v.warning(
                format!("{f}.cipherSuites[{i}]"),
                format!("duplicate cipher suite {c:?}"),
            );
        }
    }
    let verifies_clients = matches!(
        mode,
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual | ServerTlsMode::IstioMutual
    );
    if !verifies_clients {
        for (name, set) in [
            ("subjectAltNames", !t.subject_alt_names.is_empty()),
            (
                "verifyCertificateSpki",
                !t.verify_certificate_spki.is_empty(),
            ),
            (
                "verifyCertificateHash",
                !t.verify_certificate_hash.is_empty(),
            ),
            ("caCertificates", has(&t.ca_certificates)),
            ("caCrl", has(&t.ca_crl)),
        ] {
            if set {
                v.warning(
                    format!("{f}.{name}"),
                    "applies to MUTUAL and OPTIONAL_MUTUAL TLS only; ignored",
                );
            }
        }
    }
    if credential && has(&t.ca_crl) {
        v.warning(
            format!("{f}.caCrl"),
            "with credentialName, the CA comes from the Secret; caCrl is ignored",
        );
    }
    for (i, h) in t.verify_certificate_hash.iter().enumerate() {
        let hex: String = h.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            v.error(
                format!("{f}.verifyCertificateHash[{i}]"),
                format!("{h:?} is not a hex SHA-256 hash"),
            );
        }
    }
    for (i, h) in t.verify_certificate_spki.iter().enumerate() {
        let ok = h.len() == 44
            && h.ends_with('=')
            && h[..43]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
        if !ok {
            v.error(
                format!("{f}.verifyCertificateSpki[{i}]"),
                format!("{h:?} is not a base64 SHA-256 hash"),
            );
        }
    }
}
