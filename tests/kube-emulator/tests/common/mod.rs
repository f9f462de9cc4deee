//! A small HTTPS client for the contract tests (one connection per request), trusting only
//! the emulator's CA.

#![allow(dead_code)]

pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use shoal_kube_emulator::Emulator;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, RootCertStore, pki_types::CertificateDer};

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    addr: std::net::SocketAddr,
    tls: TlsConnector,
    pub token: String,
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
}

impl Client {
    pub fn new(emu: &Emulator) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(pem_to_der(emu.ca_pem())?))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            addr: emu.addr(),
            tls: TlsConnector::from(Arc::new(config)),
            token: emu.token().to_string(),
        })
    }

    /// Sends one request; returns the status and the raw response body stream.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, Incoming)> {
        let resp = self.send_response(method, path, headers, body).await?;
        Ok((resp.status().as_u16(), resp.into_body()))
    }

    /// Sends one request; returns the response (headers and body stream).
    pub async fn send_response(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<hyper::Response<Incoming>> {
        let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(self.addr))
            .await
            .context("connect timed out")??;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        let tls = tokio::time::timeout(TIMEOUT, self.tls.connect(name, tcp))
            .await
            .context("TLS timed out")??;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if !self.token.is_empty() {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let resp = tokio::time::timeout(TIMEOUT, sender.send_request(req))
            .await
            .context("request timed out")??;
        Ok(resp)
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Result<(u16, Value)> {
        let (code, _, v) = self.req_headers(method, path, content_type, body).await?;
        Ok((code, v))
    }

    /// Like [`Self::req`], with the response headers.
    pub async fn req_headers(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Result<(u16, hyper::HeaderMap, Value)> {
        let headers: Vec<(&str, &str)> = if content_type.is_empty() {
            vec![]
        } else {
            vec![("content-type", content_type)]
        };
        let resp = self
            .send_response(method, path, &headers, body.as_bytes().to_vec())
            .await?;
        let code = resp.status().as_u16();
        let response_headers = resp.headers().clone();
        let body = resp.into_body();
        let bytes = tokio::time::timeout(TIMEOUT, body.collect())
            .await
            .context("body timed out")??
            .to_bytes();
        let v = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{method} {path}: not JSON: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        Ok((code, response_headers, v))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.req("GET", path, "", "").await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.req("POST", path, "application/json", &body.to_string())
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.req("PUT", path, "application/json", &body.to_string())
            .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &str) -> Result<(u16, Value)> {
        self.req("PATCH", path, content_type, body).await
    }

    pub async fn delete(&self, path: &str) -> Result<(u16, Value)> {
        self.req("DELETE", path, "", "").await
    }

    pub async fn watch(&self, path: &str) -> Result<Watch> {
        let (code, body) = self.send("GET", path, &[], Vec::new()).await?;
        anyhow::ensure!(code == 200, "watch {path}: HTTP {code}");
        Ok(Watch {
            body,
            buf: Vec::new(),
        })
    }
}

/// The event lines of a watch response.
pub struct Watch {
    body: Incoming,
    buf: Vec<u8>,
}

impl Watch {
    /// The next event, or `None` when the server ended the stream. Errors on timeout.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(Some(serde_json::from_slice(&line)?));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .map_err(|_| anyhow!("no watch event within {timeout:?}"))?;
            match frame {
                None => return Ok(None),
                Some(f) => {
                    if let Ok(data) = f?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event that is not a BOOKMARK.
    pub async fn next_change(&mut self, timeout: Duration) -> Result<Value> {
        loop {
            let e = self
                .next(timeout)
                .await?
                .ok_or_else(|| anyhow!("watch ended"))?;
            if e["type"] != "BOOKMARK" {
                return Ok(e);
            }
        }
    }
}

pub fn cm(name: &str, labels: Value) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    })
}

pub fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
