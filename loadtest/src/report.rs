//! Results as a table, JSON, and an SVG plot of latency CDFs.

use std::fmt::Write as _;

use crate::scenario::{Percentiles, Results};

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn pct(p: &Percentiles) -> String {
    format!(
        "p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n={})",
        p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
    )
}

/// The results table printed at the end of a run.
pub fn table(r: &Results) -> String {
    let mut rows: Vec<(String, String)> = vec![
        (
            "proxies".into(),
            format!(
                "{} {} over {} connections",
                r.proxies,
                r.kind.as_str(),
                r.connections
            ),
        ),
        (
            "mesh".into(),
            format!(
                "{} services × {} endpoints in {} namespaces",
                r.mesh.services, r.mesh.endpoints, r.mesh.namespaces
            ),
        ),
    ];
    if let Some(c) = &r.connect {
        rows.push((
            "connect: converged".into(),
            format!("{}/{} in {:.2} s", c.converged, c.proxies, c.seconds),
        ));
        rows.push(("connect: per proxy".into(), pct(&c.convergence)));
        for (kind, p) in &c.by_kind {
            rows.push((format!("connect: {kind}s"), pct(p)));
        }
        rows.push((
            "connect: received".into(),
            format!("{} in {} messages", mib(c.bytes), c.messages),
        ));
        if let (Some(b), Some(n)) = (c.server_pushed_bytes, c.server_pushes) {
            rows.push((
                "connect: server says sent".into(),
                format!("{} in {n:.0} messages", mib(b as u64)),
            ));
        }
        if let (Some(b), Some(a)) = (c.server_before, c.server_after) {
            rows.push((
                "server RSS".into(),
                format!(
                    "{} idle → {} with the fleet",
                    mib(b.rss_bytes),
                    mib(a.rss_bytes)
                ),
            ));
        }
        if let Some(m) = c.memory_per_proxy_bytes {
            rows.push((
                "server memory per proxy".into(),
                format!("{:.1} KiB", m / 1024.0),
            ));
        }
        if let Some(cpu) = c.server_cpu_seconds {
            rows.push(("server CPU for connect".into(), format!("{cpu:.2} s")));
        }
    }
    if let Some(ch) = &r.churn {
        for c in &ch.changes {
            rows.push((
                format!("change: {}", c.change),
                format!(
                    "{}/{} proxies, first {:.0} ms, last {:.0} ms, {} in {} messages",
                    c.receivers,
                    c.expected,
                    c.first_ms,
                    c.last_ms,
                    mib(c.bytes),
                    c.messages
                ),
            ));
        }
        rows.push(("churn: write → proxy update".into(), pct(&ch.latency)));
        rows.push(("churn: write → last proxy".into(), pct(&ch.last)));
        if let (Some(d), Some(f)) = (&ch.direct, &ch.forwarded) {
            rows.push(("churn: served directly".into(), pct(d)));
            rows.push(("churn: forwarded to the owner".into(), pct(f)));
            rows.push((
                "forwarding overhead (p50, p99)".into(),
                format!("×{:.2}, ×{:.2}", f.p50_ms / d.p50_ms, f.p99_ms / d.p99_ms),
            ));
        }
        rows.push((
            "churn: per change".into(),
            format!(
                "{:.1} KiB in {:.0} messages",
                ch.bytes_per_change / 1024.0,
                ch.messages_per_change
            ),
        ));
    }
    for s in &r.storms {
        rows.push((
            format!(
                "storm ({})",
                if s.resume {
                    "resume with versions"
                } else {
                    "no versions"
                }
            ),
            format!(
                "{} converged in {:.2} s, {} resent ({:.1} % of the initial push)",
                s.converged,
                s.seconds,
                mib(s.bytes_resent),
                s.resent_ratio * 100.0
            ),
        ));
    }
    if let Some(f) = &r.failover {
        rows.push((
            format!("failover (killed replica {}{})", f.killed, if f.was_leader { ", the leader" } else { "" }),
            format!(
                "{} streams broke; all {} proxies served and converged {:.2} s after the kill (marked down at {:.2} s, every shard served at {:.2} s); {} resent ({:.1} % of the initial push)",
                f.disconnected, f.converged, f.seconds, f.detected_seconds, f.served_seconds, mib(f.bytes_resent), f.resent_ratio * 100.0
            ),
        ));
        rows.push((
            "failover: forwarded streams re-opened, kill → first response".into(),
            format!(
                "{} ({} re-establishing attempts by the routers)",
                pct(&f.forwarded_recovery),
                f.reestablished.map_or("?".into(), |n| format!("{n:.0}"))
            ),
        ));
    }
    if let Some(b) = &r.baseline {
        rows.push((
            "wire baseline".into(),
            format!("{:.2} s; efficiency {:.2}", b.seconds, b.efficiency),
        ));
    }
    rows.push(("NACKs".into(), r.nacks.to_string()));
    rows.push((
        "errors".into(),
        if r.errors.is_empty() {
            "none".into()
        } else {
            r.errors.join("; ")
        },
    ));
    if !r.mismatches.is_empty() {
        rows.push((
            "view mismatches".into(),
            format!("{} (first: {})", r.mismatches.len(), r.mismatches[0]),
        ));
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}

/// An SVG plot of cumulative distributions (seconds on x, share of proxies on y).
pub fn cdf_svg(title: &str, series: &[(&str, &[f64])]) -> String {
    let (w, h, ml, mb, mt, mr) = (720.0, 420.0, 60.0, 50.0, 40.0, 20.0);
    let max_x = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.05;
    let px = |x: f64| ml + x / max_x * (w - ml - mr);
    let py = |y: f64| h - mb - y * (h - mb - mt);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect width="{w}" height="{h}" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>"#,
        w / 2.0
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let (x, y) = (px(max_x * f), py(f));
        let _ = write!(
            s,
            r##"<line x1="{ml}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{:.0}%</text>"##,
            w - mr,
            ml - 6.0,
            y + 4.0,
            f * 100.0
        );
        let _ = write!(
            s,
            r##"<line x1="{x}" y1="{mt}" x2="{x}" y2="{}" stroke="#eee"/><text x="{x}" y="{}" text-anchor="middle">{:.0} ms</text>"##,
            h - mb,
            h - mb + 16.0,
            max_x * f * 1000.0
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{ml}" y1="{mt}" x2="{ml}" y2="{}" stroke="black"/>"#,
        h - mb,
        w - mr,
        h - mb,
        h - mb
    );
    for (i, (name, values)) in series.iter().enumerate() {
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let mut pts = format!("{},{}", px(0.0), py(0.0));
        for (k, x) in v.iter().enumerate() {
            let _ = write!(
                pts,
                " {},{} {},{}",
                px(*x),
                py(k as f64 / n),
                px(*x),
                py((k + 1) as f64 / n)
            );
        }
        let c = colors[i % colors.len()];
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>"#
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{c}">{name} (n={})</text>"#,
            ml + 10.0,
            mt + 16.0 + 16.0 * i as f64,
            values.len()
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">latency</text></svg>"#,
        w / 2.0,
        h - 10.0
    );
    s
}

/// The plot of a run: convergence of the fleet and, after churn, update latencies.
pub fn plot(r: &Results) -> String {
    let mut series: Vec<(&str, &[f64])> = Vec::new();
    if let Some(c) = &r.connect {
        series.push(("connect: proxy converged", &c.cdf));
    }
    if let Some(ch) = &r.churn {
        series.push(("churn: file write → proxy updated", &ch.cdf));
    }
    cdf_svg(
        &format!("shoal-loadtest: {} {} proxies", r.proxies, r.kind.as_str()),
        &series,
    )
}
