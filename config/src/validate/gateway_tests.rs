//! Validation of `Gateway`: each malformed field is reported by path, as Istio rejects it,
//! and what shoal does not serve is a warning naming the field.

use super::test_support::{findings, has};

fn gw(servers: &str) -> Vec<String> {
    findings(&format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {{name: gw, namespace: ns}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}"
    ))
}

#[test]
fn valid_gateways_are_accepted_cleanly() {
    for servers in [
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*/a.example.com', './b.example.com', 'c.example.com', '*']\n",
        "  - port: {number: 80, name: http, protocol: http}\n    hosts: ['*.example.com']\n    tls: {httpsRedirect: true}\n",
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [ns/a.example.com]\n    bind: 127.0.0.1\n    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, minProtocolVersion: TLSV1_2, maxProtocolVersion: TLSV1_3, cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256]}\n",
        // Every terminating mode, on HTTPS and on TLS (then routed by tcp routes).
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: MUTUAL, credentialName: web, subjectAltNames: [client.example.com]}\n",
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: OPTIONAL_MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, caCrl: /crl, verifyCertificateHash: ['df:6f:f7:2f:e9:11:65:21:26:8f:6f:2d:d4:96:6f:51:df:47:98:83:fe:71:4d:d6:1f:b0:1c:f2:2f:db:aa:34'], verifyCertificateSpki: [AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]}\n",
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: ISTIO_MUTUAL}\n",
        "  - port: {number: 9443, name: tls, protocol: TLS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE, credentialName: db}\n",
        "  - port: {number: 9443, name: tls, protocol: TLS}\n    hosts: [a.com]\n    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ['spiffe://cluster.local/ns/a/sa/b']}\n",
    ] {
        assert_eq!(gw(servers), Vec::<String>::new(), "{servers}");
    }
}

#[test]
fn malformed_servers_are_rejected_by_field() {
    let f = findings(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {selector: {a: b}}\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers: a gateway must have at least one server"
        ),
        "{f:?}"
    );
    let f = gw("  - hosts: [a.com]\n");
    assert!(
        has(&f, "error spec.servers[0].port: port is required"),
        "{f:?}"
    );
    let f = gw("  - port: {number: 0, name: a, protocol: HTTP}\n    hosts: []\n");
    assert!(
        has(
            &f,
            "error spec.servers[0].port.number: port 0 is out of range"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].hosts: server config must contain at least one host"
        ),
        "{f:?}"
    );
    let f = gw("  - port: {number: 80, name: a, protocol: SPDY}\n    hosts: [a.com]\n");
    assert!(
        has(&f, "error spec.servers[0].port.protocol: invalid protocol"),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 80, name: a, protocol: HTTP}\n    hosts: ['bad_ns!/a.com', 'x/a.*.com']\n    bind: not-an-ip\n",
    );
    assert!(has(&f, "error spec.servers[0].hosts[0]:"), "{f:?}");
    assert!(has(&f, "error spec.servers[0].hosts[1]:"), "{f:?}");
    assert!(has(&f, "error spec.servers[0].bind:"), "{f:?}");
    let f = gw(
        "  - port: {number: 80, name: a, protocol: HTTP}\n    hosts: [a.com]\n  - port: {number: 81, name: a, protocol: HTTP}\n    hosts: [a.com]\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers[1].port.name: port names in servers must be unique"
        ),
        "{f:?}"
    );
}

#[test]
fn tls_settings_are_checked() {
    let f = gw("  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n");
    assert!(
        has(
            &f,
            "error spec.servers[0].tls: server must have TLS settings"
        ),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE}\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].tls.serverCertificate: SIMPLE TLS requires"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].tls.privateKey: SIMPLE TLS requires"
        ),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].tls.caCertificates: MUTUAL TLS requires"
        ),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: ISTIO_MUTUAL, credentialName: x}\n",
    );
    assert!(
        has(&f, "error spec.servers[0].tls.credentialName: ISTIO_MUTUAL"),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2, cipherSuites: [NOPE]}\n",
    );
    assert!(
        has(&f, "error spec.servers[0].tls.minProtocolVersion:"),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "warning spec.servers[0].tls.cipherSuites[0]: unknown cipher suite"
        ),
        "{f:?}"
    );
    // credentialName secrets are served (to gateways of the Secret's namespace).
    assert!(
        !has(&f, "warning spec.servers[0].tls.credentialName"),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: WHATEVER}\n",
    );
    assert!(has(&f, "error spec.servers[0].tls.mode:"), "{f:?}");
}

#[test]
fn unsupported_bits_are_warnings_naming_the_field() {
    let f = gw(
        "  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [a.com]\n    tls: {mode: PASSTHROUGH}\n",
    );
    // PASSTHROUGH and TCP servers are served (from tls and tcp routes): no finding.
    assert!(f.is_empty(), "{f:?}");
    let f = gw("  - port: {number: 9000, name: tcp, protocol: TCP}\n    hosts: [a.com]\n");
    assert!(f.is_empty(), "{f:?}");
    let f = gw(
        "  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: ['*.local']\n    tls: {mode: AUTO_PASSTHROUGH}\n",
    );
    // AUTO_PASSTHROUGH is served (SNI-DNAT clusters): no finding.
    assert!(f.is_empty(), "{f:?}");
    let f = gw(
        "  - port: {number: 31400, name: tcp, protocol: TCP, targetPort: 8080}\n    hosts: [a.com]\n    defaultEndpoint: 127.0.0.1:80\n",
    );
    assert!(has(&f, "warning spec.servers[0].port.targetPort:"), "{f:?}");
    assert!(
        has(
            &f,
            "warning spec.servers[0].defaultEndpoint: field is not supported"
        ),
        "{f:?}"
    );
    let f = gw(
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [a.com]\n    tls: {mode: SIMPLE}\n",
    );
    assert!(
        has(
            &f,
            "warning spec.servers[0].tls: TLS settings on a plain text port"
        ),
        "{f:?}"
    );
}

#[test]
fn client_verification_settings_are_checked() {
    // Client checks outside the modes that ask for a client certificate do nothing.
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE, credentialName: c, subjectAltNames: [x.com], caCertificates: /ca}\n",
    );
    assert!(
        has(
            &f,
            "warning spec.servers[0].tls.subjectAltNames: applies to MUTUAL"
        ),
        "{f:?}"
    );
    assert!(
        has(
            &f,
            "warning spec.servers[0].tls.caCertificates: applies to MUTUAL"
        ),
        "{f:?}"
    );
    // Pins that Envoy would reject are errors.
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: MUTUAL, credentialName: c, verifyCertificateHash: [abc], verifyCertificateSpki: [not-base64]}\n",
    );
    assert!(
        has(&f, "error spec.servers[0].tls.verifyCertificateHash[0]:"),
        "{f:?}"
    );
    assert!(
        has(&f, "error spec.servers[0].tls.verifyCertificateSpki[0]:"),
        "{f:?}"
    );
    // OPTIONAL_MUTUAL from files needs a CA as MUTUAL does.
    let f = gw(
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: OPTIONAL_MUTUAL, serverCertificate: /c, privateKey: /k}\n",
    );
    assert!(
        has(
            &f,
            "error spec.servers[0].tls.caCertificates: OPTIONAL_MUTUAL TLS requires"
        ),
        "{f:?}"
    );
}
