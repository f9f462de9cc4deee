//! An HTTPS client for tests that verifies the server against given roots under a given
//! name (what the API server does when it calls a webhook).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// A TLS client configuration trusting the certificates of `root_pem`, without a client
/// certificate.
pub fn client_config(root_pem: &str) -> anyhow::Result<rustls::ClientConfig> {
    Ok(client_builder(root_pem)?.with_no_client_auth())
}

/// As [`client_config`], presenting the client certificate `chain_pem` (leaf first) with
/// `key_pem`.
pub fn client_config_with_cert(
    root_pem: &str,
    chain_pem: &str,
    key_pem: &str,
) -> anyhow::Result<rustls::ClientConfig> {
    let chain =
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    Ok(client_builder(root_pem)?.with_client_auth_cert(chain, key)?)
}

/// A TLS client configuration trusting the certificates of `root_pem`, up to the choice of
/// a client certificate.
fn client_builder(
    root_pem: &str,
) -> anyhow::Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots),
    )
}

/// An HTTPS connector that verifies the server against `root_pem` under `server_name`,
/// whatever address it dials, speaking HTTP/2 (`http2`) or HTTP/1.1.
pub fn connector(
    root_pem: &str,
    server_name: &str,
    http2: bool,
) -> anyhow::Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>>
{
    connector_with(client_config(root_pem)?, server_name, http2)
}

/// As [`connector`], with the TLS client configuration `tls` (e.g. presenting a client
/// certificate).
pub fn connector_with(
    tls: rustls::ClientConfig,
    server_name: &str,
    http2: bool,
) -> anyhow::Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>>
{
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            ServerName::try_from(server_name.to_string())?,
        ));
    Ok(if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    })
}

/// POSTs `body` (JSON) to `https://ADDR PATH`, verifying the certificate against
/// `root_pem` for `server_name`. Returns the status and body.
pub async fn post_json(
    addr: SocketAddr,
    server_name: &str,
    root_pem: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let https = connector(root_pem, server_name, false)?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(https);
    let request = http::Request::post(format!("https://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request)).await??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
