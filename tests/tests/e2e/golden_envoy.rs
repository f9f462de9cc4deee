//! Every golden case, served to a real Envoy: each proxy of `translate/tests/golden/CASE/`
//! connects to shoal running on the case's `config.yaml`, and every resource type its
//! golden file (`PROXY.json`) holds must be acknowledged (SYNCED in `/debug/syncz`, never
//! NACKed, never left unsent) with every one of the golden's resources in Envoy's config
//! dump. The golden files pin what shoal generates; this pins that Envoy received and took
//! it.
//!
//! One proxy at a time (sidecars bind 15001/15006, gateways their server ports), over
//! plaintext xDS: proxies get no workload certificate, so resources waiting for SDS
//! secrets stay warming, which is not a rejection. Certificate files a case names under
//! `/etc/certs/` are generated into a temporary directory the config is pointed at. A case
//! with a `not-for-envoy.txt` (its reason) is for other clients only and skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_tests::eventually;
use shoal_tests::{Envoy, Shoal, start_shoal};

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../translate/tests/golden")
}

/// The bootstrap `node` of a golden proxy entry.
fn node(p: &Value) -> Value {
    let mut node = json!({
        "id": p["id"],
        "cluster": "golden",
        "metadata": p.get("metadata").cloned().unwrap_or(json!({})),
    });
    if let Some(l) = p["locality"].as_str() {
        let mut parts = l.split('/');
        node["locality"] = json!({
            "region": parts.next().unwrap_or_default(),
            "zone": parts.next().unwrap_or_default(),
            "sub_zone": parts.next().unwrap_or_default(),
        });
    }
    node
}

/// Per type (`CDS`, `EDS`, `LDS`, `RDS`), the names of the resources a golden proxy file
/// holds; types it holds none of are left out.
fn golden_names(file: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let mut out = BTreeMap::new();
    for (ty, resources) in golden["output"]["resources"]
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("{}: no output.resources", file.display()))?
    {
        let names: BTreeSet<String> = resources
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().or_else(|| r["cluster_name"].as_str()))
            .map(str::to_string)
            .collect();
        if !names.is_empty() {
            out.insert(ty.clone(), names);
        }
    }
    Ok(out)
}

/// What keeps the stream of `id` from holding its golden: per golden type, not
/// acknowledged in `/debug/syncz` (rejected: `ERROR`, or `STALE`, `NOT SENT`, absent), and
/// golden resources missing from Envoy's config dump. Empty: Envoy took all of it.
async fn lacking(
    shoal: &Shoal,
    envoy: &Envoy,
    id: &str,
    golden: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let syncz = shoal.json("/debug/syncz").await.unwrap_or_default();
    let stream = syncz
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["node_id"] == id);
    let Some(stream) = stream else {
        return vec!["no stream in /debug/syncz".into()];
    };
    let received = match envoy.received().await {
        Ok(r) => r,
        Err(e) => return vec![format!("no config dump: {e}")],
    };
    let mut out = Vec::new();
    for (ty, names) in golden {
        let status = stream["types"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == ty.as_str());
        match status.map(|t| (t["state"].as_str().unwrap_or_default(), t)) {
            Some(("SYNCED", _)) => {}
            Some(("ERROR", t)) => out.push(format!(
                "{ty} rejected: {}",
                t["last_nack"].as_str().unwrap_or_default()
            )),
            Some((state, _)) => out.push(format!("{ty} {state}")),
            None => out.push(format!("{ty} never subscribed")),
        }
        let held = received.get(ty.as_str());
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !held.is_some_and(|h| h.contains(*n)))
            .collect();
        if !missing.is_empty() {
            out.push(format!("{ty} not in Envoy's config dump: {missing:?}"));
        }
    }
    out
}

/// Waits (bounded) until the stream of `id` holds its golden; what it still lacks if not
/// (at once when something was rejected: that will not change).
async fn took_golden(
    shoal: &Shoal,
    envoy: &Envoy,
    id: &str,
    golden: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let done = eventually(
        Duration::from_secs(30),
        "the golden acknowledged",
        || async {
            let l = lacking(shoal, envoy, id, golden).await;
            (l.is_empty() || l.iter().any(|p| p.contains(" rejected: "))).then_some(l)
        },
    )
    .await;
    match done {
        Ok(l) => l,
        Err(_) => lacking(shoal, envoy, id, golden).await,
    }
}

const CERTS: &str = "/etc/certs/";

/// Writes every `/etc/certs/NAME.pem` the config names into `dir`: `NAME.pem` with a
/// `NAME-key.pem` is a certificate and its key, any other a CA certificate. Returns the
/// config pointed at `dir`.
fn with_certs(config: &str, dir: &Path) -> String {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = config;
    while let Some(i) = rest.find(CERTS) {
        let tail = &rest[i + CERTS.len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    for name in &names {
        if name.ends_with("-key.pem") {
            continue;
        }
        let stem = name.trim_end_matches(".pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![format!("{stem}.test")]).unwrap();
        let key_name = format!("{stem}-key.pem");
        if !names.contains(&key_name) {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(name), cert.pem()).unwrap();
        if names.contains(&key_name) {
            std::fs::write(dir.join(&key_name), key.serialize_pem()).unwrap();
        }
    }
    config.replace(CERTS, &format!("{}/", dir.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_accepts_every_golden_view() {
    let Some(bin) = shoal_tests::env::envoy() else {
        eprintln!("SKIP: Envoy not installed (run ./scripts/test)");
        return;
    };
    let _fixed = shoal_tests::FIXED_PORTS.lock().await;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_root())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.yaml").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "{cases:?}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        // Resources only another client takes (gRPC's certificate-provider TLS) say so.
        if let Ok(reason) = std::fs::read_to_string(case.join("not-for-envoy.txt")) {
            eprintln!("{name}: not served to Envoy: {}", reason.trim());
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let certs = tempfile::tempdir().unwrap();
        let config = std::fs::read_to_string(case.join("config.yaml")).unwrap();
        std::fs::write(
            dir.path().join("mesh.yaml"),
            with_certs(&config, certs.path()),
        )
        .unwrap();
        let mut extra = Vec::new();
        if let Ok(mesh) = std::fs::read_to_string(case.join("mesh.yaml")) {
            let mesh: Value = serde_saphyr::from_str(&mesh).unwrap();
            if let Some(td) = mesh["trust_domain"].as_str() {
                extra.extend(["--trust-domain".to_string(), td.to_string()]);
            }
            if let Some(mode) = mesh["jwks_fetch"].as_str() {
                extra.extend(["--jwks-fetch".to_string(), mode.to_string()]);
            }
            if let Some(root) = mesh["root_namespace"].as_str() {
                extra.extend(["--root-namespace".to_string(), root.to_string()]);
            }
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let shoal = start_shoal(dir.path(), &extra).await.unwrap();
        let proxies: BTreeMap<String, Value> =
            serde_saphyr::from_str(&std::fs::read_to_string(case.join("proxies.yaml")).unwrap())
                .unwrap();
        for (proxy, p) in proxies {
            let id = p["id"].as_str().unwrap().to_string();
            if id.starts_with("ztunnel~") {
                continue;
            }
            // Not waiting for Envoy to be ready: resources waiting for secrets keep it
            // initializing, and shoal's view of the stream is what is checked.
            let admin: std::net::SocketAddr =
                // Not on 127.0.0.1: views without capture bind fixed ports there (15500...),
                // and a free port picked at random could be one of them.
                format!("127.0.0.2:{}", shoal_tests::free_port("127.0.0.2"))
                    .parse()
                    .unwrap();
            let bootstrap = Envoy::ads_bootstrap(shoal.xds, node(&p), true, admin);
            let envoy = match Envoy::start_bootstrap(bin.clone(), admin, bootstrap).await {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{name}/{proxy}: Envoy did not start: {e}"));
                    continue;
                }
            };
            let golden = match golden_names(&case.join(format!("{proxy}.json"))) {
                Ok(g) if !g.is_empty() => g,
                Ok(_) => {
                    failures.push(format!("{name}/{proxy}: the golden holds nothing"));
                    continue;
                }
                Err(e) => {
                    failures.push(format!("{name}/{proxy}: {e}"));
                    continue;
                }
            };
            let lacking = took_golden(&shoal, &envoy, &id, &golden).await;
            if !lacking.is_empty() {
                failures.push(format!(
                    "{name}/{proxy}: {lacking:#?}\n{}\n{}",
                    shoal.get("/debug/syncz").await.unwrap_or_default(),
                    envoy.proc.log()
                ));
            }
            checked += 1;
            drop(envoy);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!("{checked} proxies of {} cases accepted", cases.len());
    assert!(checked >= 10, "only {checked} proxies checked");
}
