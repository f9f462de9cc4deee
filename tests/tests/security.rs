//! Workload identity end to end: a real Envoy reaches shoal's TLS xDS port, verifies the
//! serving certificate from shoal's CA, and authenticates with a service-account token;
//! forged tokens and tokens of another namespace get nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::proc::{Envoy, Shoal};
use shoal_tests::{env, eventually, free_port};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A signing key for the test's token issuer, and its public key in a file for shoal.
fn issuer() -> (rcgen::KeyPair, tempfile::NamedTempFile) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), key.public_key_pem()).unwrap();
    (key, file)
}

fn token(key: &rcgen::KeyPair, ns: &str, sa: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": ["istio-ca"],
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "iat": now,
        "exp": now + 3600,
        "kubernetes.io": { "namespace": ns, "serviceaccount": { "name": sa } },
    });
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &enc,
    )
    .unwrap()
}

/// Envoy with ADS over TLS to `xds` (trusting `root_pem` and checking the server's name)
/// and a bearer token. (A static cluster asking for SDS over ADS crashes Envoy 1.40 at
/// start, so SDS delivery to Envoy waits for translated clusters that reference it.)
fn bootstrap(
    xds: SocketAddr,
    admin: u16,
    root_pem: &str,
    token: &str,
    ns: &str,
) -> serde_json::Value {
    serde_json::json!({
        "node": {
            "id": format!("sidecar~10.0.0.9~productpage-v1-abc.{ns}~{ns}.svc.cluster.local"),
            "cluster": "productpage",
            "metadata": { "NAMESPACE": ns, "SERVICE_ACCOUNT": "bookinfo-productpage" }
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{
                    "envoy_grpc": { "cluster_name": "xds" },
                    "initial_metadata": [{ "key": "authorization", "value": format!("Bearer {token}") }]
                }]
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
            "lds_config": { "ads": {}, "resource_api_version": "V3" }
        },
        "static_resources": { "clusters": [
            {
                "name": "xds",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                },
                "transport_socket": { "name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": "localhost",
                    "common_tls_context": {
                        "alpn_protocols": ["h2"],
                        "validation_context": {
                            "trusted_ca": { "inline_string": root_pem },
                            "match_typed_subject_alt_names": [{ "san_type": "DNS", "matcher": { "exact": "localhost" } }]
                        }
                    }
                } },
                "load_assignment": { "cluster_name": "xds", "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                    "socket_address": { "address": xds.ip().to_string(), "port_value": xds.port() }
                } } }] }] }
            }
        ] },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin } } }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_authenticates_with_a_token_on_the_tls_port() {
    let Some(bin) = env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    let (key, keyfile) = issuer();
    let issuer_arg = format!("{ISSUER}={}", keyfile.path().display());
    let mesh = env::workspace_root().join("examples/mesh");
    let shoal = Shoal::start(&mesh, &["--jwt-issuer", &issuer_arg])
        .await
        .unwrap();
    let root =
        std::fs::read_to_string(shoal.data.path().join("ca/shoal-root/root-cert.pem")).unwrap();

    let admin = free_port("127.0.0.1");
    let tok = token(&key, "bookinfo", "bookinfo-productpage");
    let envoy = Envoy::start_bootstrap(
        bin.clone(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
        bootstrap(shoal.xds_tls, admin, &root, &tok, "bookinfo"),
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(20),
        "Envoy to get listeners over TLS",
        || async { (!envoy.listeners().await.ok()?.is_empty()).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- envoy ---\n{}", envoy.proc.log()));
    drop(envoy);

    // A token for another namespace than the node claims is refused: no config, no secret.
    let admin2 = free_port("127.0.0.1");
    let other = token(&key, "default", "sleep");
    let envoy2 = Envoy::start_bootstrap(
        bin.clone(),
        format!("127.0.0.1:{admin2}").parse().unwrap(),
        bootstrap(shoal.xds_tls, admin2, &root, &other, "bookinfo"),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(envoy2.listeners().await.unwrap().is_empty());
    drop(envoy2);

    // A forged token (signed by another key) is refused as well.
    let (forger, _f) = issuer();
    let forged = token(&forger, "bookinfo", "bookinfo-productpage");
    let admin3 = free_port("127.0.0.1");
    let envoy3 = Envoy::start_bootstrap(
        bin,
        format!("127.0.0.1:{admin3}").parse().unwrap(),
        bootstrap(shoal.xds_tls, admin3, &root, &forged, "bookinfo"),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(envoy3.listeners().await.unwrap().is_empty());
    let log = shoal.proc.log();
    assert!(log.contains("refused stream"), "{log}");
}
