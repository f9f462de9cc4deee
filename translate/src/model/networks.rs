//! Istio's multi-network model: which network a workload is on, and where each other
//! network's east-west gateway takes traffic — with mTLS passed on by SNI for sidecars
//! (Istio's 15443), with HBONE for ztunnels (15008).

use std::collections::BTreeMap;

use shoal_config::ConfigSnapshot;
use shoal_config::gateway_api::REMOTE_GATEWAY_CLASS;
use shoal_config::k8s::topology;

use crate::MeshOptions;

/// The port Istio's east-west gateways take sidecars' cross-network mTLS on.
const MTLS_PORT: u16 = 15443;
/// The port they take ztunnels' HBONE on.
const HBONE_PORT: u16 = 15008;
/// A gateway Service's annotation naming its mTLS port instead of 15443.
const GATEWAY_PORT_ANNOTATION: &str = "networking.istio.io/gatewayPort";

/// The east-west gateway of a network: an address and port for each kind of client it
/// takes. Each is the first found (see [`gateways`]), so a network may have one kind only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkGateway {
    /// Where sidecars reach the network: mTLS, passed on by SNI (`AUTO_PASSTHROUGH`).
    pub mtls: Option<(String, u16)>,
    /// Where ztunnels reach it: HBONE (double HBONE through the gateway).
    pub hbone: Option<(String, u16)>,
}

/// The network of a workload with these labels at `address`, as Istio places it: its
/// `topology.istio.io/network` label; else, for this cluster's workloads, `--network`;
/// else the network MeshNetworks gives its cluster (`fromRegistry`, the cluster from its
/// `topology.istio.io/cluster` label) or its address (`fromCidr`); else this cluster's.
pub fn network_of<'a>(
    labels: &'a shoal_config::Labels,
    address: &str,
    options: &'a MeshOptions,
) -> &'a str {
    if let Some(network) = labels.get(topology::NETWORK) {
        return network;
    }
    let cluster = topology::cluster_of(labels, &options.cluster_id);
    if cluster == options.cluster_id && !options.network.is_empty() {
        return &options.network;
    }
    let networks = &options.mesh_networks;
    networks
        .of_registry(cluster)
        .or_else(|| networks.of_address(address))
        .unwrap_or_else(|| options.own_network())
}

/// The load balancer address of a Service (its first ingress IP).
fn load_balancer_ip(svc: &shoal_config::k8s::Service) -> Option<String> {
    svc.status
        .load_balancer
        .ingress
        .iter()
        .find_map(|i| i.ip.clone())
}

/// What a Service labelled `topology.istio.io/network` offers as that network's gateway,
/// as Istio reads it: mTLS on the port its `networking.istio.io/gatewayPort` annotation
/// names (else 15443) and HBONE on 15008, each only where the Service has that port.
fn from_service(svc: &shoal_config::k8s::Service, ip: &str) -> NetworkGateway {
    let has = |port: u16| svc.spec.ports.iter().any(|p| p.port == i64::from(port));
    let mtls_port = svc
        .metadata
        .annotations
        .get(GATEWAY_PORT_ANNOTATION)
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(MTLS_PORT);
    NetworkGateway {
        mtls: has(mtls_port).then(|| (ip.to_string(), mtls_port)),
        hbone: has(HBONE_PORT).then(|| (ip.to_string(), HBONE_PORT)),
    }
}

/// What a Gateway API `Gateway` of class `istio-remote` labelled
/// `topology.istio.io/network` offers as that network's gateway, as Istio reads it: HBONE
/// at its first IP address, on its first `HBONE` listener's port.
fn from_remote_gateway(gw: &shoal_config::KubeGateway) -> Option<NetworkGateway> {
    if gw.spec.gateway_class_name != REMOTE_GATEWAY_CLASS {
        return None;
    }
    let address = gw.spec.addresses.iter().find(|a| {
        a.address_type.as_deref().unwrap_or("IPAddress") == "IPAddress"
            && a.value.parse::<std::net::IpAddr>().is_ok()
    })?;
    let listener = gw.spec.listeners.iter().find(|l| l.protocol == "HBONE")?;
    let port = u16::try_from(listener.port).ok()?;
    Some(NetworkGateway {
        mtls: None,
        hbone: Some((address.value.clone(), port)),
    })
}

/// The east-west gateways of other networks, as Istio finds them. For each kind of client,
/// the first of: `--network-gateway` (mTLS); MeshNetworks' gateways (mTLS: a fixed
/// address, or the load balancer address of the Service a `registryServiceName` names, in
/// a cluster the network's `fromRegistry` lists); a Service labelled
/// `topology.istio.io/network: NETWORK` with a load balancer address (see
/// [`from_service`]), by namespace and name; a Gateway of class `istio-remote` so labelled
/// (HBONE, see [`from_remote_gateway`]). This cluster's own network has none.
pub(super) fn gateways(
    config: &ConfigSnapshot,
    options: &MeshOptions,
) -> BTreeMap<String, NetworkGateway> {
    use shoal_config::mesh_networks::GatewayAddress;
    let own = options.own_network();
    let services = || {
        config
            .of_kind(shoal_config::Kind::Service)
            .filter_map(|(_, e)| match e.object.as_ref() {
                shoal_config::Object::Service(svc) => Some(svc),
                _ => None,
            })
    };
    let mut out: BTreeMap<String, NetworkGateway> = BTreeMap::new();
    let mut offer = |network: &str, found: NetworkGateway| {
        if network == own {
            return;
        }
        let gateway = out.entry(network.to_string()).or_default();
        if gateway.mtls.is_none() {
            gateway.mtls = found.mtls;
        }
        if gateway.hbone.is_none() {
            gateway.hbone = found.hbone;
        }
    };
    for (network, address) in &options.network_gateways {
        offer(
            network,
            NetworkGateway {
                mtls: Some(address.clone()),
                hbone: None,
            },
        );
    }
    for (network, n) in &options.mesh_networks.networks {
        let found = n.gateways.iter().find_map(|g| match &g.address {
            GatewayAddress::Address(a) => Some((a.clone(), g.port)),
            GatewayAddress::Service(host) => services()
                .filter(|svc| {
                    let m = &svc.metadata;
                    let cluster = topology::cluster_of(&m.labels, &options.cluster_id);
                    n.registries.iter().any(|r| r == cluster)
                        && *host
                            == format!(
                                "{}.{}.svc.{}",
                                m.name,
                                m.namespace.as_deref().unwrap_or("default"),
                                options.domain_suffix
                            )
                })
                .find_map(load_balancer_ip)
                .map(|ip| (ip, g.port)),
        });
        offer(
            network,
            NetworkGateway {
                mtls: found,
                hbone: None,
            },
        );
    }
    for svc in services() {
        let Some(network) = svc.metadata.labels.get(topology::NETWORK) else {
            continue;
        };
        if let Some(ip) = load_balancer_ip(svc) {
            offer(network, from_service(svc, &ip));
        }
    }
    for (_, e) in config.of_kind(shoal_config::Kind::KubeGateway) {
        let shoal_config::Object::KubeGateway(gw) = e.object.as_ref() else {
            continue;
        };
        if let (Some(network), Some(found)) = (
            gw.metadata.labels.get(topology::NETWORK),
            from_remote_gateway(gw),
        ) {
            offer(network, found);
        }
    }
    out.retain(|_, g| g.mtls.is_some() || g.hbone.is_some());
    out
}

#[cfg(test)]
mod tests {
    use shoal_config::ConfigStore;
    use shoal_config::parse::parse_yaml;

    use super::*;

    /// An east-west gateway Service of `network` with `ports` and annotations `extra`.
    fn gateway_service(name: &str, network: &str, ip: &str, ports: &[u16], extra: &str) -> String {
        // Its cluster IP: the load balancer's, a different range.
        let cluster_ip = ip.replace("192.0.2.", "10.96.0.");
        let ports: Vec<String> = ports
            .iter()
            .map(|p| format!("{{name: p{p}, port: {p}}}"))
            .collect();
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: istio-system\n  labels: {{topology.istio.io/network: {network}}}\n  annotations: {{{extra}}}\nspec:\n  type: LoadBalancer\n  clusterIP: {cluster_ip}\n  ports: [{}]\nstatus:\n  loadBalancer: {{ingress: [{{ip: {ip}}}]}}\n---\n",
            ports.join(", ")
        )
    }

    /// The gateways found in `yaml`, and the objects it has issues with.
    fn found_with_issues(
        yaml: &str,
        options: &MeshOptions,
    ) -> (BTreeMap<String, NetworkGateway>, Vec<String>) {
        let mut store = ConfigStore::new();
        store.apply("gw.yaml", parse_yaml("gw.yaml", yaml));
        let issues = store
            .issues()
            .iter()
            .map(|i| format!("{:?} {}: {}", i.object, i.field, i.message))
            .collect();
        (gateways(&store.snapshot(), options), issues)
    }

    fn found(yaml: &str, options: &MeshOptions) -> BTreeMap<String, NetworkGateway> {
        let (got, issues) = found_with_issues(yaml, options);
        assert!(issues.is_empty(), "{issues:?}");
        got
    }

    fn at(ip: &str, port: u16) -> Option<(String, u16)> {
        Some((ip.to_string(), port))
    }

    #[test]
    fn a_gateway_service_offers_the_ports_it_has() {
        let options = MeshOptions {
            network: "net-west".into(),
            ..MeshOptions::default()
        };
        let yaml = gateway_service("both", "net-a", "192.0.2.1", &[15021, 15443, 15008], "")
            + &gateway_service("hbone", "net-b", "192.0.2.2", &[15008], "")
            + &gateway_service("mtls", "net-c", "192.0.2.3", &[15443], "")
            + &gateway_service(
                "moved",
                "net-d",
                "192.0.2.4",
                &[16443],
                "networking.istio.io/gatewayPort: \"16443\"",
            )
            + &gateway_service("neither", "net-e", "192.0.2.5", &[80], "")
            + &gateway_service("own", "net-west", "192.0.2.6", &[15443, 15008], "");
        let got = found(&yaml, &options);
        let gw = |mtls, hbone| NetworkGateway { mtls, hbone };
        let want: BTreeMap<String, NetworkGateway> = [
            ("net-a", gw(at("192.0.2.1", 15443), at("192.0.2.1", 15008))),
            ("net-b", gw(None, at("192.0.2.2", 15008))),
            ("net-c", gw(at("192.0.2.3", 15443), None)),
            ("net-d", gw(at("192.0.2.4", 16443), None)),
        ]
        .into_iter()
        .map(|(n, g)| (n.to_string(), g))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_istio_remote_gateway_offers_hbone() {
        let options = MeshOptions {
            network: "net-west".into(),
            ..MeshOptions::default()
        };
        let gateway = |name: &str, class: &str, address: &str, protocol: &str| {
            format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: istio-system\n  labels: {{topology.istio.io/network: {name}}}\nspec:\n  gatewayClassName: {class}\n  addresses: [{address}]\n  listeners: [{{name: mesh, port: 15008, protocol: {protocol}}}]\n---\n"
            )
        };
        let yaml = gateway(
            "net-a",
            "istio-remote",
            "{type: IPAddress, value: 192.0.2.1}",
            "HBONE",
        ) + &gateway("net-b", "istio-remote", "{value: 192.0.2.2}", "HBONE")
            + &gateway("net-c", "istio", "{value: 192.0.2.3}", "HBONE")
            + &gateway(
                "net-d",
                "istio-remote",
                "{type: Hostname, value: ew.example.com}",
                "HBONE",
            )
            + &gateway("net-e", "istio-remote", "{value: 192.0.2.5}", "TCP");
        let (got, issues) = found_with_issues(&yaml, &options);
        // Only the `istio` Gateway is warned that it listens on every address.
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].contains("net-c"), "{issues:?}");
        let hbone = |ip| NetworkGateway {
            mtls: None,
            hbone: at(ip, 15008),
        };
        let want: BTreeMap<String, NetworkGateway> = [
            ("net-a".to_string(), hbone("192.0.2.1")),
            ("net-b".to_string(), hbone("192.0.2.2")),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn each_kind_of_gateway_is_the_first_found() {
        // The flag names net-a's mTLS gateway; its Service still gives ztunnels HBONE,
        // and the first Service by name wins over a later one.
        let options = MeshOptions {
            network: "net-west".into(),
            network_gateways: [("net-a".to_string(), ("198.51.100.1".to_string(), 15443))].into(),
            ..MeshOptions::default()
        };
        let yaml = gateway_service("a-first", "net-a", "192.0.2.1", &[15443, 15008], "")
            + &gateway_service("b-second", "net-a", "192.0.2.9", &[15443, 15008], "");
        let got = found(&yaml, &options);
        assert_eq!(
            got["net-a"],
            NetworkGateway {
                mtls: at("198.51.100.1", 15443),
                hbone: at("192.0.2.1", 15008),
            }
        );
    }
}
