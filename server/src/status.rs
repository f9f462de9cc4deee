//! `shoal status`: a proxy-status table (like `istioctl proxy-status`) from a running
//! server's `/debug/syncz`.

use std::process::ExitCode;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::StatusArgs;

/// Fetches a path from the admin server.
pub async fn fetch(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<Vec<u8>> {
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("http://{addr}{path}").parse()?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.get(uri))
        .await
        .context("timed out")?
        .with_context(|| format!("connecting to the admin server at {addr}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    if !status.is_success() {
        anyhow::bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

fn cell(report: &serde_json::Value, ty: &str) -> String {
    report["types"]
        .as_array()
        .and_then(|types| types.iter().find(|t| t["type"] == ty))
        .map_or("-".to_string(), |t| {
            t["state"].as_str().unwrap_or("?").to_string()
        })
}

pub fn table(reports: &[serde_json::Value]) -> String {
    let header = [
        "NAME", "PROTOCOL", "CDS", "LDS", "EDS", "RDS", "VERSION", "VIEW",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in reports {
        rows.push(vec![
            r["node_id"].as_str().unwrap_or_default().to_string(),
            r["replica"].as_u64().map_or("-".into(), |v| v.to_string()),
            r["protocol"].as_str().unwrap_or_default().to_string(),
            cell(r, "CDS"),
            cell(r, "LDS"),
            cell(r, "EDS"),
            cell(r, "RDS"),
            r["view_version"]
                .as_u64()
                .map_or("-".into(), |v| v.to_string()),
            r["view"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = runtime.block_on(fetch(args.admin_addr, "/debug/syncz?fleet=1"))?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(ExitCode::SUCCESS);
    }
    let reports: Vec<serde_json::Value> =
        serde_json::from_slice(&body).context("decoding /debug/syncz")?;
    print!("{}", table(&reports));
    Ok(ExitCode::SUCCESS)
}
