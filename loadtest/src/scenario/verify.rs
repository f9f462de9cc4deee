//! Checks what simulated proxies hold against the servers' own view of them.

use super::*;

/// Compares what every proxy holds with the server's view of it (`/debug/config_dump`):
/// names and versions per type, for the types the proxy subscribed to.
pub async fn verify(fleet: &Fleet, servers: &[Server]) -> anyhow::Result<Vec<String>> {
    verify_some(fleet, &servers.iter().collect::<Vec<_>>()).await
}

/// Fetches a proxy's config dump from whichever replica serves it.
async fn dump_of(servers: &[&Server], id: &str) -> anyhow::Result<serde_json::Value> {
    let mut last = anyhow::anyhow!("no server");
    for s in servers {
        match crate::server::get(s.admin, &format!("/debug/config_dump?proxy={id}")).await {
            Ok(body) => return Ok(serde_json::from_str(&body)?),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Proxies checked by [`verify`] at most (spread over the fleet): a config dump per proxy is
/// a full rendering of its view.
const VERIFY_SAMPLE: usize = 100;

/// [`verify`] against the replicas given.
pub async fn verify_some(fleet: &Fleet, servers: &[&Server]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let step = fleet.proxies.len().div_ceil(VERIFY_SAMPLE).max(1);
    for p in fleet.proxies.iter().step_by(step) {
        let dump = match dump_of(servers, &p.id).await {
            Ok(d) => d,
            Err(e) => {
                out.push(format!("{}: no config dump: {e}", p.id));
                continue;
            }
        };
        let held = p.held.lock().clone();
        for ty in [
            ResourceType::Cluster,
            ResourceType::Endpoint,
            ResourceType::Listener,
            ResourceType::Route,
        ] {
            let mine = held.get(ty);
            let section = &dump["types"][ty.short_name()];
            let mut server_side: BTreeMap<String, String> = BTreeMap::new();
            for list in ["resources", "on_demand"] {
                for r in section[list].as_array().into_iter().flatten() {
                    let name = r["name"].as_str().unwrap_or_default();
                    if mine.contains_key(name) || list == "resources" {
                        server_side.insert(
                            name.to_string(),
                            r["version"].as_str().unwrap_or_default().to_string(),
                        );
                    }
                }
            }
            let wildcard = matches!(
                (p.kind, ty),
                (
                    Kind::Sidecar | Kind::SidecarSotw | Kind::Waypoint,
                    ResourceType::Cluster | ResourceType::Listener
                )
            );
            let sotw = matches!(p.kind, Kind::SidecarSotw | Kind::Grpc);
            for (name, version) in mine {
                match server_side.get(name.as_ref()) {
                    None => out.push(format!(
                        "{}: holds {} {name} the server does not have",
                        p.id,
                        ty.short_name()
                    )),
                    Some(v) if !sotw && v != version.as_ref() => out.push(format!(
                        "{}: {} {name} at {version}, server at {v}",
                        p.id,
                        ty.short_name()
                    )),
                    _ => {}
                }
            }
            if wildcard {
                for name in server_side.keys() {
                    if !mine.contains_key(name.as_str()) {
                        out.push(format!("{}: misses {} {name}", p.id, ty.short_name()));
                    }
                }
            }
            // The endpoints of every EDS cluster it holds, too.
            if ty == ResourceType::Endpoint && matches!(p.kind, Kind::Sidecar | Kind::SidecarSotw) {
                let clusters = held.get(ResourceType::Cluster);
                for name in server_side.keys() {
                    if clusters.contains_key(name.as_str()) && !mine.contains_key(name.as_str()) {
                        out.push(format!("{}: misses EDS {name} of a cluster it holds", p.id));
                    }
                }
            }
        }
    }
    Ok(out)
}
