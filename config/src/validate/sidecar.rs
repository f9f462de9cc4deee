//! Sidecar settings beyond its egress listeners.

use std::collections::BTreeSet;

use super::Validator;
use crate::istio::{IstioIngressListener, OutboundMode, OutboundTrafficPolicy, ServerTlsMode};

/// `outboundTrafficPolicy`: an `egressProxy` needs a host and only applies to `ALLOW_ANY`.
pub(super) fn outbound_traffic_policy(v: &mut Validator, p: Option<&OutboundTrafficPolicy>) {
    let Some(p) = p else { return };
    let f = "spec.outboundTrafficPolicy";
    let Some(e) = &p.egress_proxy else { return };
    if p.mode == Some(OutboundMode::RegistryOnly) {
        v.error(
            format!("{f}.egressProxy"),
            "only applies with mode ALLOW_ANY (REGISTRY_ONLY drops unknown traffic)",
        );
    }
    if e.host.is_empty() {
        v.error(format!("{f}.egressProxy.host"), "required");
    } else {
        v.host(format!("{f}.egressProxy.host"), &e.host);
    }
    if e.port.is_none_or(|p| p.number == 0) {
        v.error(
            format!("{f}.egressProxy.port"),
            "required: the egress proxy's port",
        );
    }
}

/// `ingress`: each listener a distinct valid port with a reachable default endpoint, and
/// TLS terminated with certificate files (Istio's rules for sidecar ingress).
pub(super) fn ingress(v: &mut Validator, listeners: &[IstioIngressListener]) {
    let mut ports = BTreeSet::new();
    for (i, l) in listeners.iter().enumerate() {
        let f = format!("spec.ingress[{i}]");
        match &l.port {
            None => v.error(format!("{f}.port"), "required"),
            Some(p) => {
                if v.port(format!("{f}.port.number"), p.number) && !ports.insert(p.number) {
                    v.error(
                        format!("{f}.port.number"),
                        format!("port {} has another ingress listener", p.number),
                    );
                }
                if let Some(proto) = &p.protocol
                    && !super::istio::known_protocol(proto)
                {
                    v.error(
                        format!("{f}.port.protocol"),
                        format!("unknown protocol {proto:?}"),
                    );
                }
            }
        }
        if let Some(b) = &l.bind {
            if b.starts_with("unix://") {
                v.error(
                    format!("{f}.bind"),
                    "ingress listeners cannot bind a unix domain socket",
                );
            } else {
                v.ip(format!("{f}.bind"), b);
            }
        }
        if let Some(e) = &l.default_endpoint {
            default_endpoint(v, &format!("{f}.defaultEndpoint"), e);
        }
        if let Some(t) = &l.tls {
            let tf = format!("{f}.tls");
            match t.mode() {
                ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {}
                other => v.error(
                    format!("{tf}.mode"),
                    format!(
                        "{other:?} is not allowed on a sidecar (SIMPLE, MUTUAL or OPTIONAL_MUTUAL)"
                    ),
                ),
            }
            if t.credential_name.is_some() {
                v.error(
                    format!("{tf}.credentialName"),
                    "not allowed on a sidecar: use serverCertificate and privateKey files",
                );
            }
            if t.server_certificate.is_none() || t.private_key.is_none() {
                v.error(&tf, "serverCertificate and privateKey are required");
            }
            if t.mode() != ServerTlsMode::Simple && t.ca_certificates.is_none() {
                v.error(
                    format!("{tf}.caCertificates"),
                    "required to verify client certificates",
                );
            }
        }
        if let Some(p) = &l.connection_pool {
            super::traffic_policy::connection_pool(v, &format!("{f}.connectionPool"), p);
        }
    }
}

/// `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT`, `[::]:PORT` or `unix:///path`.
fn default_endpoint(v: &mut Validator, f: &str, e: &str) {
    if let Some(path) = e.strip_prefix("unix://") {
        if !path.starts_with('/') && !path.starts_with('@') {
            v.error(f, format!("{e:?}: a unix socket path must be absolute"));
        }
        return;
    }
    let ok = e
        .rsplit_once(':')
        .filter(|(ip, _)| ["127.0.0.1", "0.0.0.0", "[::1]", "[::]"].contains(ip))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .is_some_and(|p| p != 0);
    if !ok {
        v.error(
            f,
            format!(
                "{e:?} is not 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT or unix:///path"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::support::{findings, has};

    fn sidecar(policy: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s, namespace: ns}}\nspec:\n  egress: [{{hosts: [\"./*\"]}}]\n  outboundTrafficPolicy: {policy}\n"
        )
    }

    #[test]
    fn outbound_traffic_policies_are_checked() {
        assert!(findings(&sidecar("{mode: REGISTRY_ONLY}")).is_empty());
        let ok = findings(&sidecar(
            "{mode: ALLOW_ANY, egressProxy: {host: egress.istio-system.svc.cluster.local, port: {number: 443}}}",
        ));
        assert!(ok.is_empty(), "{ok:#?}");
        let f = findings(&sidecar("{mode: REGISTRY_ONLY, egressProxy: {host: \"\"}}"));
        for want in [
            "error spec.outboundTrafficPolicy.egressProxy: only applies with mode ALLOW_ANY",
            "error spec.outboundTrafficPolicy.egressProxy.host: required",
            "error spec.outboundTrafficPolicy.egressProxy.port: required",
        ] {
            assert!(has(&f, want), "{want}\n{f:#?}");
        }
        let bad = findings(&sidecar("{mode: SOMETIMES}"));
        assert!(bad.iter().any(|l| l.starts_with("error")), "{bad:#?}");
    }

    #[test]
    fn ingress_listeners_are_checked() {
        let sidecar = |ingress: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s, namespace: ns}}\nspec:\n  egress: [{{hosts: [\"./*\"]}}]\n  ingress:\n{ingress}"
            )
        };
        let ok = findings(&sidecar(
            "  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n  - port: {number: 9443, protocol: HTTPS, name: https}\n    defaultEndpoint: unix:///var/run/app.sock\n    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}\n",
        ));
        assert!(ok.is_empty(), "{ok:#?}");
        let f = findings(&sidecar(
            "  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 10.0.0.1:8080\n    bind: unix:///x\n  - port: {number: 9080, protocol: BOGUS, name: b}\n    tls: {mode: ISTIO_MUTUAL, credentialName: c}\n  - port: {number: 9443, name: m}\n    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}\n",
        ));
        for want in [
            "error spec.ingress[0].defaultEndpoint: \"10.0.0.1:8080\" is not",
            "error spec.ingress[0].bind: ingress listeners cannot bind a unix domain socket",
            "error spec.ingress[1].port.number: port 9080 has another ingress listener",
            "error spec.ingress[1].port.protocol: unknown protocol",
            "error spec.ingress[1].tls.mode: IstioMutual is not allowed",
            "error spec.ingress[1].tls.credentialName: not allowed on a sidecar",
            "error spec.ingress[1].tls: serverCertificate and privateKey are required",
            "error spec.ingress[2].tls.caCertificates: required",
        ] {
            assert!(has(&f, want), "{want}\n{f:#?}");
        }
    }
}
