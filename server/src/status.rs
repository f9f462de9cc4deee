//! `shoal status`: a proxy-status table (like `istioctl proxy-status`) from a running
//! server's `/debug/syncz`.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::StatusArgs;
use crate::http_client::{HttpClient, Limits};

/// Fetches a path from an admin server (a fleet's status can be tens of MiB).
pub async fn fetch(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<Vec<u8>> {
    let client = HttpClient::plaintext(Limits {
        max_body: 256 << 20,
        ..Limits::default()
    })?;
    let body = client
        .get(&format!("http://{addr}{path}"), "application/json")
        .await?;
    Ok(body.to_vec())
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
        "NAME", "REPLICA", "PROTOCOL", "CDS", "LDS", "EDS", "RDS", "VERSION", "VIEW",
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_column_has_its_header() {
        let report = serde_json::json!({
            "node_id": "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
            "replica": 2,
            "protocol": "delta",
            "types": [{"type": "CDS", "state": "SYNCED"}, {"type": "LDS", "state": "STALE"}],
            "view_version": 7,
            "view": "sidecar/ns",
        });
        let table = super::table(&[report]);
        let lines: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec![
                    "NAME", "REPLICA", "PROTOCOL", "CDS", "LDS", "EDS", "RDS", "VERSION", "VIEW"
                ],
                vec![
                    "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
                    "2",
                    "delta",
                    "SYNCED",
                    "STALE",
                    "-",
                    "-",
                    "7",
                    "sidecar/ns"
                ]
            ]
        );
    }
}
