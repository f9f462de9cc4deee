//! The server side of the tests of inbound policies: the application `api` of namespace
//! `app` (an HTTP backend answering `api`), shoal serving its Service and Sidecar ingress
//! listener ([`crate::ingress_workload`]) plus the test's own YAML, and the real Envoy
//! sidecar of `api` (node `api-0.app`, no traffic capture) whose ingress listener is at
//! [`IngressApi::via`].

use std::net::SocketAddr;

use crate::backends::{self, Backend};
use crate::{Envoy, Shoal, free_port, http_get, start_shoal};

pub struct IngressApi {
    pub shoal: Shoal,
    pub envoy: Envoy,
    /// The sidecar's ingress listener.
    pub via: SocketAddr,
    _app: Backend,
    _config: tempfile::TempDir,
}

impl IngressApi {
    /// Starts everything; `None` when Envoy is not installed (the test then skips).
    pub async fn start(policies: &str, shoal_args: &[&str]) -> anyhow::Result<Option<IngressApi>> {
        let (ingress, app) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        let backend = backends::http(format!("127.0.0.1:{app}").parse()?, "api").await?;
        let config = tempfile::tempdir()?;
        std::fs::write(
            config.path().join("mesh.yaml"),
            crate::ingress_workload("HTTP", 80, app, ingress, app) + policies,
        )?;
        let shoal = start_shoal(config.path(), shoal_args).await?;
        let node = "sidecar~127.0.0.1~api-0.app~app.svc.cluster.local";
        let meta = serde_json::json!({
            "INTERCEPTION_MODE": "NONE",
            "NAMESPACE": "app",
            "LABELS": { "app": "api" },
        });
        let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await? else {
            return Ok(None);
        };
        Ok(Some(IngressApi {
            shoal,
            envoy,
            via: format!("127.0.0.1:{ingress}").parse()?,
            _app: backend,
            _config: config,
        }))
    }

    /// GETs `path` (host `api.app`) with extra headers: the status and body.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
        let mut all = vec![("host", "api.app")];
        all.extend_from_slice(headers);
        http_get(self.via, path, &all).await
    }

    /// Both processes' logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- envoy ---\n{}\n--- shoal ---\n{}",
            self.envoy.proc.log(),
            self.shoal.log()
        )
    }
}
