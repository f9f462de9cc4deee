//! Validation of Istio's security objects (PeerAuthentication, AuthorizationPolicy) and of
//! a DestinationRule's client TLS settings, following Istio's own checks. What Istio accepts
//! but shoal cannot enforce as written is reported here, naming the field.

use std::collections::BTreeSet;

use super::Validator;
use super::policy_target::{self, policy_target};
use crate::istio::{
    Attached, AuthorizationPolicySpec, AuthzAction, ClientTlsMode, ClientTlsSettings, ConditionKey,
    Operation, PATH_TEMPLATE_ANY, PATH_TEMPLATE_ONE, PeerAuthenticationSpec, Source, TrafficPolicy,
    envoy_path_template, is_path_template,
};

pub(super) fn peer_authentication(v: &mut Validator, s: &PeerAuthenticationSpec) {
    let target = s.target();
    policy_target(v, target, policy_target::PEER_AUTHENTICATION);
    let workload = target.workload_labels().is_some();
    if !workload && !s.port_level_mtls.is_empty() {
        v.error(
            "spec.portLevelMtls",
            "port-level mTLS needs a workload selector (namespace and mesh policies apply to every port)",
        );
    }
    for key in s.port_level_mtls.keys() {
        let f = format!("spec.portLevelMtls.{key}");
        match key.parse::<i64>() {
            Ok(p) => {
                v.port(f, p);
            }
            Err(_) => v.error(f, format!("{key:?} is not a port number")),
        }
    }
}

/// A value of a string list that Istio matches exactly, by prefix (`x*`), by suffix (`*x`)
/// or as presence (`*`): a `*` anywhere else would be taken literally by Envoy.
fn wildcard_value(v: &mut Validator, f: &str, value: &str) {
    if value.is_empty() {
        v.error(f, "empty value");
        return;
    }
    let rest = value
        .strip_prefix('*')
        .or_else(|| value.strip_suffix('*'))
        .unwrap_or(value);
    if value != "*" && rest.contains('*') {
        v.error(
            f,
            format!("{value:?}: only a leading or a trailing \"*\" (or \"*\" alone) is supported"),
        );
    }
}

fn wildcard_list(v: &mut Validator, f: &str, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        wildcard_value(v, &format!("{f}[{i}]"), value);
    }
}

fn ip_list(v: &mut Validator, f: &str, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        v.ip_or_cidr(format!("{f}[{i}]"), value);
    }
}

fn port_list(v: &mut Validator, f: &str, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        let f = format!("{f}[{i}]");
        match value.parse::<i64>() {
            Ok(p) => {
                v.port(f, p);
            }
            Err(_) => v.error(f, format!("{value:?} is not a port number")),
        }
    }
}

/// Istio's bounds on `serviceAccounts` and `notServiceAccounts` (`CheckServiceAccount`).
const MAX_SERVICE_ACCOUNTS: usize = 16;
const MAX_SERVICE_ACCOUNT_LEN: usize = 320;

/// `NAMESPACE/NAME` or `NAME` (in the policy's namespace), matched exactly: no wildcards.
fn service_account_list(v: &mut Validator, f: &str, values: &[String]) {
    if values.len() > MAX_SERVICE_ACCOUNTS {
        v.error(
            f,
            format!(
                "at most {MAX_SERVICE_ACCOUNTS} values are allowed, found {}",
                values.len()
            ),
        );
    }
    for (i, value) in values.iter().enumerate() {
        let f = format!("{f}[{i}]");
        if value.is_empty() {
            v.error(f, "empty value");
        } else if value.contains('*') {
            v.error(f, format!("{value:?}: wildcards are not allowed"));
        } else if value.len() > MAX_SERVICE_ACCOUNT_LEN {
            v.error(
                f,
                format!("longer than {MAX_SERVICE_ACCOUNT_LEN} characters"),
            );
        } else if let Some((ns, sa)) = value.split_once('/')
            && (ns.is_empty() || sa.is_empty() || sa.contains('/'))
        {
            v.error(
                f,
                format!("{value:?}: expected NAMESPACE/SERVICE_ACCOUNT or SERVICE_ACCOUNT"),
            );
        }
    }
}

/// Envoy's literal characters in a `uri_template` segment: RFC 3986 `pchar` without `*`
/// and `=` (and `/`, the separator).
fn template_literal(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@".contains(&b))
}

/// Envoy's limit on `UriTemplateMatchConfig.path_template`.
const MAX_PATH_TEMPLATE_LEN: usize = 256;

/// A path template (Istio 1.18+): segments are `{*}` (one segment), `{**}` (zero or more,
/// the last operator) or literals; it becomes Envoy's `uri_template` (`*`, `**`), which
/// must start with `/` and rejects any other form.
fn path_template(v: &mut Validator, f: &str, value: &str) {
    let Some(rest) = value.strip_prefix('/') else {
        v.error(
            f,
            format!("{value:?}: a path template must start with \"/\""),
        );
        return;
    };
    // One trailing slash is a segment of its own (empty) in Envoy's syntax.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut any_seen = false;
    for segment in rest.split('/') {
        let problem = match segment {
            PATH_TEMPLATE_ONE | PATH_TEMPLATE_ANY if any_seen => {
                Some(format!("{PATH_TEMPLATE_ANY} must be the last operator"))
            }
            PATH_TEMPLATE_ANY => {
                any_seen = true;
                None
            }
            PATH_TEMPLATE_ONE => None,
            s if s.contains(['{', '}']) => Some(format!(
                "segment {s:?}: {PATH_TEMPLATE_ONE} and {PATH_TEMPLATE_ANY} must be whole \
                 path segments (named variables are not supported)"
            )),
            s if s.contains('*') => Some(format!(
                "segment {s:?}: \"*\" wildcards cannot be mixed with path templates"
            )),
            "" => Some("empty path segment".to_string()),
            s if !template_literal(s) => Some(format!(
                "segment {s:?} has characters a path template cannot match literally"
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            v.error(f, format!("{value:?}: {problem}"));
            return;
        }
    }
    if envoy_path_template(value).len() > MAX_PATH_TEMPLATE_LEN {
        v.error(
            f,
            format!("a path template may have at most {MAX_PATH_TEMPLATE_LEN} characters"),
        );
    }
}

fn path_list(v: &mut Validator, f: &str, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        let pf = format!("{f}[{i}]");
        if is_path_template(value) {
            path_template(v, &pf, value);
        } else {
            wildcard_value(v, &pf, value);
        }
    }
}

fn source(v: &mut Validator, f: &str, s: &Source) {
    if s.is_empty() {
        v.error(f, "a source must set at least one field");
    }
    let identities = [
        &s.principals,
        &s.not_principals,
        &s.namespaces,
        &s.not_namespaces,
    ];
    if identities.iter().any(|l| !l.is_empty()) {
        let accounts = [
            ("serviceAccounts", &s.service_accounts),
            ("notServiceAccounts", &s.not_service_accounts),
        ];
        if let Some((name, _)) = accounts.iter().find(|(_, l)| !l.is_empty()) {
            v.error(
                format!("{f}.{name}"),
                "cannot be set together with principals or namespaces (or their not forms) in one source",
            );
        }
    }
    service_account_list(v, &format!("{f}.serviceAccounts"), &s.service_accounts);
    service_account_list(
        v,
        &format!("{f}.notServiceAccounts"),
        &s.not_service_accounts,
    );
    wildcard_list(v, &format!("{f}.principals"), &s.principals);
    wildcard_list(v, &format!("{f}.notPrincipals"), &s.not_principals);
    wildcard_list(v, &format!("{f}.namespaces"), &s.namespaces);
    wildcard_list(v, &format!("{f}.notNamespaces"), &s.not_namespaces);
    wildcard_list(v, &format!("{f}.requestPrincipals"), &s.request_principals);
    wildcard_list(
        v,
        &format!("{f}.notRequestPrincipals"),
        &s.not_request_principals,
    );
    ip_list(v, &format!("{f}.ipBlocks"), &s.ip_blocks);
    ip_list(v, &format!("{f}.notIpBlocks"), &s.not_ip_blocks);
    ip_list(v, &format!("{f}.remoteIpBlocks"), &s.remote_ip_blocks);
    ip_list(
        v,
        &format!("{f}.notRemoteIpBlocks"),
        &s.not_remote_ip_blocks,
    );
}

fn operation(v: &mut Validator, f: &str, o: &Operation) {
    if o.is_empty() {
        v.error(f, "an operation must set at least one field");
    }
    wildcard_list(v, &format!("{f}.hosts"), &o.hosts);
    wildcard_list(v, &format!("{f}.notHosts"), &o.not_hosts);
    wildcard_list(v, &format!("{f}.methods"), &o.methods);
    wildcard_list(v, &format!("{f}.notMethods"), &o.not_methods);
    port_list(v, &format!("{f}.ports"), &o.ports);
    port_list(v, &format!("{f}.notPorts"), &o.not_ports);
    path_list(v, &format!("{f}.paths"), &o.paths);
    path_list(v, &format!("{f}.notPaths"), &o.not_paths);
}

pub(super) fn authorization_policy(v: &mut Validator, s: &AuthorizationPolicySpec) {
    let action = s.action();
    match (action, &s.provider) {
        (AuthzAction::Custom, None) => v.error("spec.provider", "CUSTOM action needs a provider"),
        (AuthzAction::Custom, Some(_)) => v.warning(
            "spec.action",
            "CUSTOM (external authorization) is not supported by shoal: requests its rules \
             match are denied instead (fail closed)",
        ),
        (_, Some(_)) => v.error("spec.provider", "a provider is only allowed with CUSTOM"),
        _ => {}
    }
    policy_target(v, s.target(), policy_target::AUTHORIZATION_POLICY);
    for (i, rule) in s.rules.iter().enumerate() {
        let rf = format!("spec.rules[{i}]");
        for (j, from) in rule.from.iter().enumerate() {
            let f = format!("{rf}.from[{j}].source");
            match &from.source {
                Some(src) => source(v, &f, src),
                None => v.error(f, "required"),
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let f = format!("{rf}.to[{j}].operation");
            match &to.operation {
                Some(op) => operation(v, &f, op),
                None => v.error(f, "required"),
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            let f = format!("{rf}.when[{j}]");
            if c.values.is_empty() && c.not_values.is_empty() {
                v.error(&f, "at least one of values or notValues is required");
            }
            let Some(key) = ConditionKey::parse(&c.key) else {
                let msg = if c.key.is_empty() {
                    "required".to_string()
                } else {
                    format!("unknown attribute {:?}", c.key)
                };
                v.error(format!("{f}.key"), msg);
                continue;
            };
            for (name, values) in [("values", &c.values), ("notValues", &c.not_values)] {
                let vf = format!("{f}.{name}");
                match &key {
                    ConditionKey::SourceIp
                    | ConditionKey::RemoteIp
                    | ConditionKey::DestinationIp => ip_list(v, &vf, values),
                    ConditionKey::DestinationPort => port_list(v, &vf, values),
                    ConditionKey::SourceServiceAccount => service_account_list(v, &vf, values),
                    ConditionKey::Experimental => {}
                    _ => wildcard_list(v, &vf, values),
                }
            }
            match key {
                ConditionKey::Experimental => v.error(
                    format!("{f}.key"),
                    format!(
                        "{:?}: experimental attributes are not supported by shoal",
                        c.key
                    ),
                ),
                ConditionKey::RequestHeader(h) if h.bytes().any(|b| b.is_ascii_uppercase()) => {
                    // Envoy matches header names in lowercase; Istio accepts any case.
                    v.warning(
                        format!("{f}.key"),
                        "header names are matched case-insensitively (as lowercase)",
                    )
                }
                _ => {}
            }
        }
    }
}

/// The TLS settings of a traffic policy, its port-level settings included.
pub(super) fn traffic_policy_tls(v: &mut Validator, f: &str, p: &TrafficPolicy) {
    if let Some(tls) = &p.tls {
        client_tls(v, &format!("{f}.tls"), tls);
    }
    let mut ports = BTreeSet::new();
    for (i, pl) in p.port_level_settings.iter().enumerate() {
        let pf = format!("{f}.portLevelSettings[{i}]");
        match &pl.port {
            Some(port) => {
                if v.port(format!("{pf}.port.number"), i64::from(port.number))
                    && !ports.insert(port.number)
                {
                    v.error(
                        format!("{pf}.port.number"),
                        format!("duplicate port-level settings for port {}", port.number),
                    );
                }
            }
            None => v.error(format!("{pf}.port"), "required"),
        }
        if let Some(tls) = &pl.tls {
            client_tls(v, &format!("{pf}.tls"), tls);
        }
    }
}

/// Istio's checks of `ClientTLSSettings`, plus warnings for fields a mode ignores.
fn client_tls(v: &mut Validator, f: &str, t: &ClientTlsSettings) {
    let mode = t.mode();
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    let files = [
        ("clientCertificate", set(&t.client_certificate)),
        ("privateKey", set(&t.private_key)),
        ("caCertificates", set(&t.ca_certificates)),
        ("caCrl", set(&t.ca_crl)),
    ];
    let credential = set(&t.credential_name);
    match mode {
        ClientTlsMode::Disable | ClientTlsMode::IstioMutual => {
            let ignored = files
                .iter()
                .filter(|(_, s)| *s)
                .map(|(n, _)| *n)
                .chain(credential.then_some("credentialName"));
            for name in ignored {
                let what = if mode == ClientTlsMode::Disable {
                    "DISABLE"
                } else {
                    "ISTIO_MUTUAL (the workload's mesh certificate is used)"
                };
                v.warning(format!("{f}.{name}"), format!("ignored with mode {what}"));
            }
        }
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {
            let insecure = t.insecure_skip_verify == Some(true);
            if insecure && set(&t.ca_crl) {
                v.warning(
                    format!("{f}.caCrl"),
                    "ignored with insecureSkipVerify: the server's certificate is not verified",
                );
            }
            if insecure && (set(&t.ca_certificates) || !t.subject_alt_names.is_empty()) {
                v.error(
                    f,
                    "caCertificates and subjectAltNames cannot be set when insecureSkipVerify is true",
                );
            }
            if insecure && mode == ClientTlsMode::Simple && credential {
                v.error(
                    format!("{f}.credentialName"),
                    "cannot be set with SIMPLE when insecureSkipVerify is true",
                );
            }
            if credential {
                for (name, s) in files {
                    if s {
                        v.error(
                            format!("{f}.{name}"),
                            "cannot be set together with credentialName",
                        );
                    }
                }
            } else if mode == ClientTlsMode::Mutual {
                for (name, s) in &files[..2] {
                    if !s {
                        v.error(format!("{f}.{name}"), "required for MUTUAL");
                    }
                }
            } else if set(&t.client_certificate) || set(&t.private_key) {
                v.warning(f, "client certificate and key are ignored with mode SIMPLE");
            }
        }
    }
    if mode == ClientTlsMode::Disable {
        if !t.subject_alt_names.is_empty() {
            v.warning(format!("{f}.subjectAltNames"), "ignored with mode DISABLE");
        }
        if t.sni.is_some() {
            v.warning(format!("{f}.sni"), "ignored with mode DISABLE");
        }
    }
    for (i, san) in t.subject_alt_names.iter().enumerate() {
        if san.is_empty() {
            v.error(format!("{f}.subjectAltNames[{i}]"), "empty value");
        }
    }
}
