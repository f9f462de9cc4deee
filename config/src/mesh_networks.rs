//! Istio's MeshNetworks (`meshNetworks` in the `istio` ConfigMap, istiod's
//! `--meshNetworks` file): which network an endpoint is on when nothing closer says so, and
//! the east-west gateways through which other networks are reached.
//!
//! ```yaml
//! networks:
//!   network2:
//!     endpoints:
//!     - fromRegistry: cluster2        # every endpoint of that cluster
//!     - fromCidr: 10.20.0.0/16        # endpoints whose address is in the range
//!     gateways:
//!     - registryServiceName: istio-eastwestgateway.istio-system.svc.cluster.local
//!       port: 15443                   # the Service's load balancer address, in that cluster
//!     - address: 192.0.2.20
//!       port: 15443
//! ```
//!
//! Parsing is strict about shape (an entry names exactly one source) and reports each bad
//! entry as a warning, keeping the rest: a typo in one network does not cut the others off.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Issue;

/// An address range, `ADDRESS/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?;
        Ok(Cidr { address, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> Option<(u128, u32)> {
            match ip {
                IpAddr::V4(v4) => Some((u128::from(u32::from(v4)), 32)),
                IpAddr::V6(v6) => Some((u128::from(v6), 128)),
            }
        };
        let (Some((net, width)), Some((addr, w))) = (bits(self.address), bits(ip)) else {
            return false;
        };
        if width != w {
            return false;
        }
        let host_bits = width - u32::from(self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            (u128::MAX >> host_bits) << host_bits
        };
        // Only the low `width` bits count for IPv4.
        let mask = if width == 32 {
            mask & u128::from(u32::MAX)
        } else {
            mask
        };
        net & mask == addr & mask
    }
}

/// Where a network's gateway is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum GatewayAddress {
    /// A fixed address.
    Address(String),
    /// The load balancer address of the Service with this hostname, in the cluster the
    /// network's `fromRegistry` names.
    Service(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct NetworkGateway {
    pub address: GatewayAddress,
    pub port: u16,
}

/// One network: the clusters and ranges its endpoints come from, and its gateways.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Network {
    pub registries: Vec<String>,
    pub cidrs: Vec<Cidr>,
    pub gateways: Vec<NetworkGateway>,
}

/// Every network of the mesh, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MeshNetworks {
    pub networks: BTreeMap<String, Network>,
}

impl MeshNetworks {
    /// The network `fromRegistry` assigns the endpoints of `cluster` (the first by name
    /// when several claim it).
    pub fn of_registry(&self, cluster: &str) -> Option<&str> {
        self.networks
            .iter()
            .find(|(_, n)| n.registries.iter().any(|r| r == cluster))
            .map(|(name, _)| name.as_str())
    }

    /// The network whose `fromCidr` ranges hold `address` (the most specific range).
    pub fn of_address(&self, address: &str) -> Option<&str> {
        let ip: IpAddr = address.parse().ok()?;
        self.networks
            .iter()
            .flat_map(|(name, n)| n.cidrs.iter().map(move |c| (c, name)))
            .filter(|(c, _)| c.contains(ip))
            .max_by_key(|(c, _)| c.prefix)
            .map(|(_, name)| name.as_str())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNetworks {
    #[serde(default)]
    networks: BTreeMap<String, RawNetwork>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNetwork {
    #[serde(default)]
    endpoints: Vec<RawEndpoints>,
    #[serde(default)]
    gateways: Vec<RawGateway>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEndpoints {
    from_cidr: Option<String>,
    from_registry: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawGateway {
    #[serde(alias = "registry_service_name")]
    registry_service_name: Option<String>,
    address: Option<String>,
    port: Option<i64>,
}

/// Why a MeshNetworks document was not read at all.
#[derive(Debug, thiserror::Error)]
#[error("MeshNetworks: {0}")]
pub struct ParseError(String);

/// Parses a MeshNetworks document (YAML or JSON); entries that make no sense are left out
/// and reported as warnings, by field.
pub fn parse(text: &str) -> Result<(MeshNetworks, Vec<Issue>), ParseError> {
    let yaml = |t: &str| -> Result<serde_json::Value, ParseError> {
        serde_saphyr::from_str(t).map_err(|e| ParseError(e.to_string()))
    };
    let mut doc = yaml(text)?;
    // The `istio` ConfigMap as a whole: its `meshNetworks` key.
    match crate::mesh_config::config_map_text(&doc, "meshNetworks") {
        Some(Some(inner)) => doc = yaml(inner)?,
        Some(None) => doc = serde_json::Value::Null,
        None => {}
    }
    let raw: Option<RawNetworks> = if doc.is_null() {
        None
    } else {
        Some(serde_json::from_value(doc).map_err(|e| ParseError(e.to_string()))?)
    };
    let mut warnings = Vec::new();
    let mut out = MeshNetworks::default();
    for (name, raw) in raw.map(|r| r.networks).unwrap_or_default() {
        let mut network = Network::default();
        for (i, e) in raw.endpoints.iter().enumerate() {
            let at = format!("networks.{name}.endpoints[{i}]");
            match (&e.from_cidr, &e.from_registry) {
                (Some(c), None) => match Cidr::parse(c) {
                    Ok(c) => network.cidrs.push(c),
                    Err(err) => warnings.push(Issue::warning(format!("{at}.fromCidr"), err)),
                },
                (None, Some(r)) if !r.is_empty() => network.registries.push(r.clone()),
                _ => warnings.push(Issue::warning(
                    at,
                    "exactly one of fromCidr and fromRegistry must be set",
                )),
            }
        }
        for (i, g) in raw.gateways.iter().enumerate() {
            let at = format!("networks.{name}.gateways[{i}]");
            let Some(port) = g
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
            else {
                warnings.push(Issue::warning(format!("{at}.port"), "must be 1 to 65535"));
                continue;
            };
            let address = match (&g.registry_service_name, &g.address) {
                (Some(s), None) if !s.is_empty() => GatewayAddress::Service(s.clone()),
                (None, Some(a)) if !a.is_empty() => GatewayAddress::Address(a.clone()),
                _ => {
                    warnings.push(Issue::warning(
                        at,
                        "exactly one of registryServiceName and address must be set",
                    ));
                    continue;
                }
            };
            network.gateways.push(NetworkGateway { address, port });
        }
        out.networks.insert(name, network);
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
networks:
  network1:
    endpoints:
    - fromRegistry: Kubernetes
    gateways:
    - registry_service_name: istio-eastwestgateway.istio-system.svc.cluster.local
      port: 15443
  network2:
    endpoints:
    - fromRegistry: cluster2
    - fromCidr: 10.20.0.0/16
    - fromCidr: 10.20.5.0/24
    - fromCidr: not-a-range
    - {}
    gateways:
    - address: 192.0.2.20
      port: 15443
    - address: 192.0.2.21
      port: 0
"#;

    #[test]
    fn networks_are_read_and_bad_entries_reported_alone() {
        let (m, warnings) = parse(DOC).unwrap();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "networks.network2.endpoints[3].fromCidr",
                "networks.network2.endpoints[4]",
                "networks.network2.gateways[1].port",
            ]
        );
        assert!(
            warnings[1].message.starts_with("exactly one"),
            "{warnings:?}"
        );
        assert!(warnings.iter().all(|w| !w.is_error()), "{warnings:?}");
        assert_eq!(
            m.networks["network1"].gateways,
            [NetworkGateway {
                address: GatewayAddress::Service(
                    "istio-eastwestgateway.istio-system.svc.cluster.local".into()
                ),
                port: 15443
            }]
        );
        assert_eq!(m.of_registry("cluster2"), Some("network2"));
        assert_eq!(m.of_registry("Kubernetes"), Some("network1"));
        assert_eq!(m.of_registry("cluster3"), None);
        assert_eq!(m.of_address("10.20.1.1"), Some("network2"));
        assert_eq!(m.of_address("10.21.1.1"), None);
        assert_eq!(m.of_address("not an ip"), None);
    }

    #[test]
    fn ranges_hold_what_their_prefix_covers() {
        let c = Cidr::parse("10.20.0.0/16").unwrap();
        assert!(c.contains("10.20.255.1".parse().unwrap()));
        assert!(!c.contains("10.21.0.1".parse().unwrap()));
        assert!(
            !c.contains("::ffff:10.20.0.1".parse().unwrap()),
            "families differ"
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("203.0.113.9".parse().unwrap())
        );
        let v6 = Cidr::parse("fd00:20::/32").unwrap();
        assert!(v6.contains("fd00:20:1::5".parse().unwrap()));
        assert!(!v6.contains("fd00:21::5".parse().unwrap()));
        assert!(
            Cidr::parse("fd00::/128")
                .unwrap()
                .contains("fd00::".parse().unwrap())
        );
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_or_broken_document() {
        assert_eq!(parse("").unwrap().0, MeshNetworks::default());
        assert!(parse("networks: [").is_err());
        assert!(parse("networks: [1, 2]").is_err());
    }

    #[test]
    fn the_istio_config_map_is_read_by_its_mesh_networks_key() {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |-\n    trustDomain: x\n  meshNetworks: |-\n{}",
            DOC.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        );
        let (m, _) = parse(&cm).unwrap();
        assert_eq!(m, parse(DOC).unwrap().0);
        let without = "kind: ConfigMap\ndata: {mesh: 'trustDomain: x'}\n";
        assert_eq!(parse(without).unwrap().0, MeshNetworks::default());
    }
}
