use serde_json::Value;
use shoal_api::ResourceType;
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;

use crate::proxy::{Proxy, ProxyType};
use crate::{MeshOptions, Translator, ViewKey};

const MESH: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: shop}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp-db, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: shop, labels: {istio.io/use-waypoint: none}}
spec:
  clusterIP: 10.96.0.11
  selector: {app: other}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-1, namespace: shop, labels: {app: echo}}
spec: {serviceAccountName: echo}
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-2, namespace: shop, labels: {app: echo, istio.io/dataplane-mode: none}}
spec: {serviceAccountName: echo}
status: {phase: Running, podIP: 10.1.0.2}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: shop, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: tcp-db, port: 5432}]
endpoints: [{addresses: [10.1.0.1]}, {addresses: [10.1.0.2]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-selector, namespace: shop}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules: [{to: [{operation: {paths: [/selector]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-service, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: echo}]
  action: DENY
  rules: [{to: [{operation: {paths: [/service]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-waypoint, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/sleep]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: every-waypoint, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  action: DENY
  rules: [{to: [{operation: {paths: [/class]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: class-not-root, namespace: shop}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  action: DENY
  rules: [{to: [{operation: {paths: [/not-root]}}]}]
"#;

fn translator(extra: &str) -> Translator {
    let mut store = ConfigStore::new();
    store.apply(
        "m.yaml",
        parse_yaml("m.yaml", &format!("{MESH}---\n{extra}")),
    );
    Translator::new(store.snapshot(), MeshOptions::default())
}

fn proxy(id: &str, gateway: &str) -> Proxy {
    use shoal_api::pb::envoy::config::core::v3::Node;
    use shoal_api::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
    let string = |s: &str| PbValue {
        kind: Some(Kind::StringValue(s.into())),
    };
    let labels = Struct {
        fields: [(
            "gateway.networking.k8s.io/gateway-name".to_string(),
            string(gateway),
        )]
        .into(),
    };
    let node = Node {
        id: id.into(),
        metadata: Some(Struct {
            fields: [(
                "LABELS".to_string(),
                PbValue {
                    kind: Some(Kind::StructValue(labels)),
                },
            )]
            .into(),
        }),
        ..Default::default()
    };
    Proxy::from_node(Some(&node)).expect("a valid node")
}

/// The resources of a type, rendered as JSON, by name.
fn rendered(t: &mut Translator, key: &ViewKey, ty: ResourceType) -> Vec<(String, Value)> {
    let out = t.build(key);
    out.resources
        .get(&ty)
        .into_iter()
        .flatten()
        .map(|r| {
            let json = shoal_api::json::to_json(ty.type_url(), &r.body).expect("renders");
            (r.name.to_string(), json)
        })
        .collect()
}

fn waypoint_key() -> ViewKey {
    ViewKey::waypoint("shop", Some("waypoint"))
}

#[test]
fn waypoint_proxies_are_recognized_by_type_or_by_their_gateway() {
    let t = translator("");
    let by_type = proxy(
        "waypoint~10.1.0.9~wp-1.shop~shop.svc.cluster.local",
        "waypoint",
    );
    let by_label = proxy(
        "router~10.1.0.9~wp-1.shop~shop.svc.cluster.local",
        "waypoint",
    );
    for p in [&by_type, &by_label] {
        assert_eq!(ViewKey::for_proxy(t.model(), p), waypoint_key(), "{}", p.id);
    }
    let ingress = proxy(
        "router~10.1.0.8~in-1.shop~shop.svc.cluster.local",
        "ingress",
    );
    assert_eq!(
        ViewKey::for_proxy(t.model(), &ingress).proxy_type,
        ProxyType::Router
    );
}

#[test]
fn listeners_chain_tunnel_termination_services_and_origination() {
    let mut t = translator("");
    let listeners = rendered(&mut t, &waypoint_key(), ResourceType::Listener);
    let names: Vec<&str> = listeners.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["connect_originate", "connect_terminate", "main_internal"]
    );
    let terminate = &listeners[1].1;
    assert_eq!(terminate["address"]["socket_address"]["port_value"], 15008);
    let main = &listeners[2].1;
    assert!(main.get("internal_listener").is_some(), "{main}");
    let chains: Vec<(&str, &Value)> = main["filter_chains"]
        .as_array()
        .expect("chains")
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or(""), &c["filter_chain_match"]))
        .collect();
    // `other` opted out of the waypoint; the pod has no workload waypoint.
    assert_eq!(
        chains.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [
            "inbound-vip|80|http|echo.shop.svc.cluster.local",
            "inbound-vip|5432|tcp|echo.shop.svc.cluster.local",
        ]
    );
    assert_eq!(chains[0].1["destination_port"], 80);
    assert_eq!(
        chains[0].1["prefix_ranges"][0]["address_prefix"],
        "10.96.0.10"
    );
}

/// The RBAC policies' names of a chain's HTTP connection manager.
fn rbac_policies(listener: &Value, chain: &str) -> Vec<String> {
    let chain = listener["filter_chains"]
        .as_array()
        .expect("chains")
        .iter()
        .find(|c| c["name"] == chain)
        .unwrap_or_else(|| panic!("no chain {chain}"));
    let hcm = &chain["filters"]
        .as_array()
        .expect("filters")
        .iter()
        .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .expect("an HTTP connection manager")["typed_config"];
    let mut out = Vec::new();
    for f in hcm["http_filters"].as_array().expect("filters") {
        if let Some(policies) = f["typed_config"]["rules"]["policies"].as_object() {
            out.extend(policies.keys().cloned());
        }
    }
    out.sort();
    out
}

#[test]
fn policies_attach_by_reference_only() {
    let mut t = translator("");
    let listeners = rendered(&mut t, &waypoint_key(), ResourceType::Listener);
    let main = &listeners[2].1;
    assert_eq!(
        rbac_policies(main, "inbound-vip|80|http|echo.shop.svc.cluster.local"),
        [
            "ns[istio-system]-policy[every-waypoint]-rule[0]",
            "ns[shop]-policy[on-service]-rule[0]",
            "ns[shop]-policy[on-waypoint]-rule[0]",
        ],
        "no selector policy, no GatewayClass reference from outside the root namespace"
    );
    // The client's identity comes with the tunnel.
    let text = main.to_string();
    assert!(text.contains("io.istio.peer_principal"), "{text}");
    assert!(!text.contains("\"authenticated\""), "{text}");
}

#[test]
fn ambient_endpoints_are_reached_through_a_new_tunnel() {
    let mut t = translator("");
    let clusters = rendered(&mut t, &waypoint_key(), ResourceType::Cluster);
    let names: Vec<&str> = clusters.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "connect_originate",
            "encap",
            "inbound-vip|5432|tcp|echo.shop.svc.cluster.local",
            "inbound-vip|80|http|echo.shop.svc.cluster.local",
            "main_internal",
        ]
    );
    let (_, http) = &clusters[3];
    let endpoints = http["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_array()
        .expect("endpoints");
    let addresses: Vec<&Value> = endpoints
        .iter()
        .map(|e| &e["endpoint"]["address"])
        .collect();
    assert_eq!(
        addresses[0]["envoy_internal_address"]["server_listener_name"],
        "connect_originate"
    );
    assert_eq!(
        addresses[0]["envoy_internal_address"]["endpoint_id"],
        "10.1.0.1:8080"
    );
    assert_eq!(
        endpoints[0]["metadata"]["filter_metadata"]["envoy.filters.listener.original_dst"]["local"],
        "10.1.0.1:8080"
    );
    // The pod outside ambient is reached directly.
    assert_eq!(addresses[1]["socket_address"]["address"], "10.1.0.2");
    assert_eq!(http["transport_socket_matches"][0]["name"], "hbone");
    let (_, originate) = &clusters[0];
    assert_eq!(
        originate["original_dst_lb_config"]["upstream_port_override"],
        15008
    );
}

#[test]
fn routes_follow_the_services_virtual_service() {
    let mut t = translator(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: shop}
spec:
  host: echo.shop.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: shop}
spec:
  hosts: [echo.shop.svc.cluster.local]
  http: [{route: [{destination: {host: echo.shop.svc.cluster.local, subset: v1}}]}]
"#,
    );
    let key = waypoint_key();
    let listeners = rendered(&mut t, &key, ResourceType::Listener);
    let text = listeners[2].1.to_string();
    assert!(
        text.contains("inbound-vip|80|http/v1|echo.shop.svc.cluster.local"),
        "{text}"
    );
    let clusters = rendered(&mut t, &key, ResourceType::Cluster);
    assert!(
        clusters
            .iter()
            .any(|(n, _)| n == "inbound-vip|80|http/v1|echo.shop.svc.cluster.local")
    );
}

#[test]
fn workload_addressed_traffic_goes_through_a_waypoint_for_workloads() {
    let mesh = MESH.replace(
        "metadata: {name: waypoint, namespace: shop}",
        "metadata: {name: waypoint, namespace: shop, labels: {istio.io/waypoint-for: all}}",
    );
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", &mesh));
    let mut t = Translator::new(store.snapshot(), MeshOptions::default());
    let listeners = rendered(&mut t, &waypoint_key(), ResourceType::Listener);
    let main = &listeners[2].1;
    let direct = main["filter_chains"]
        .as_array()
        .expect("chains")
        .iter()
        .find(|c| c["name"] == "direct-tcp")
        .expect("a direct chain");
    // Only the ambient pod: the other is not captured by a ztunnel.
    let ranges = &direct["filter_chain_match"]["prefix_ranges"];
    assert_eq!(ranges.as_array().map(Vec::len), Some(1), "{ranges}");
    assert_eq!(ranges[0]["address_prefix"], "10.1.0.1");
    assert_eq!(
        rbac_policies(main, "direct-http"),
        [
            "ns[istio-system]-policy[every-waypoint]-rule[0]",
            "ns[shop]-policy[on-waypoint]-rule[0]",
        ]
    );
}

#[test]
fn the_enrolment_kept_between_builds_follows_every_change() {
    // The translator keeps the enrolment from one waypoint build to the next; a pod
    // change (an endpoint-only update) is seen by the next build.
    let mesh = MESH.replace(
        "metadata: {name: waypoint, namespace: shop}",
        "metadata: {name: waypoint, namespace: shop, labels: {istio.io/waypoint-for: all}}",
    );
    let direct_ranges = |t: &mut Translator, key: &ViewKey| -> Vec<String> {
        let listeners = rendered(t, key, ResourceType::Listener);
        let main = &listeners[2].1;
        main["filter_chains"]
            .as_array()
            .expect("chains")
            .iter()
            .filter(|c| c["name"] == "direct-tcp")
            .flat_map(|c| c["filter_chain_match"]["prefix_ranges"].as_array().cloned())
            .flatten()
            .filter_map(|r| r["address_prefix"].as_str().map(String::from))
            .collect()
    };
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", &mesh));
    let mut t = Translator::new(store.snapshot(), MeshOptions::default());
    assert_eq!(direct_ranges(&mut t, &waypoint_key()), ["10.1.0.1"]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: echo-3, namespace: shop, labels: {app: echo}}\nspec: {serviceAccountName: echo}\nstatus: {phase: Running, podIP: 10.1.0.3}\n";
    let changes = store.apply("p.yaml", parse_yaml("p.yaml", pod));
    let delta = t.update(store.snapshot(), &changes);
    assert!(!delta.full, "a pod is an endpoint-only change");
    assert_eq!(
        direct_ranges(&mut t, &waypoint_key()),
        ["10.1.0.1", "10.1.0.3"]
    );
    let changes = store.apply("p.yaml", Vec::new());
    t.update(store.snapshot(), &changes);
    assert_eq!(direct_ranges(&mut t, &waypoint_key()), ["10.1.0.1"]);
}

#[test]
fn a_waypoint_without_a_gateway_serves_nothing() {
    let mut t = translator("");
    let out = t.build(&ViewKey::waypoint("shop", None));
    assert!(out.resources.is_empty(), "{:?}", out.resources.keys());
}

#[test]
fn request_authentication_attached_to_the_waypoint_verifies_tokens() {
    let mut t = translator(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  jwtRules:
  - issuer: https://issuer.shop.example
    jwks: JWKS
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: by-selector, namespace: shop}
spec:
  selector: {matchLabels: {app: echo}}
  jwtRules: [{issuer: https://selector.example, jwks: JWKS}]
"#
        .replace("JWKS", r#"'{"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "shoal-test", "n": "pOy7fMLZHKDMdBGFRgOCheIV5t1Cz0cLFljQAVvAJH_oF7juZdNlzf-4SimNuqyvDU--jeMGcuCvWxrsAL8m66q636Az-kaRnqobRf98bc-T1rqIrYUWvW3F57YfcN04HyH47bnFTQUiFbEe41UlvNNEcgK6MpA4fSRwRgAkR8tCj-ScI2j0uKYUsv2Le56hEAqjERZtAQ-gqCRQtP7qxwBdAG8Tj00cYDB9jnPAs-wYrrKZQYlt7pKrZXjT7zpIxuaV-BRbdw2SrsgKgYXJPY5ElZmXyb0Vog6WL2WAIWDcUBtltyPAPDHTkbv3kUZ_8zXoET500ZHviaFRxRu9gw", "e": "AQAB"}]}'"#)
        .as_str(),
    );
    let listeners = rendered(&mut t, &waypoint_key(), ResourceType::Listener);
    let text = listeners[2].1.to_string();
    assert!(text.contains("envoy.filters.http.jwt_authn"), "{text}");
    assert!(text.contains("https://issuer.shop.example"), "{text}");
    assert!(!text.contains("https://selector.example"), "{text}");
}

#[test]
fn the_mesh_access_log_covers_every_waypoint_listener() {
    let mut store = ConfigStore::new();
    store.apply("m.yaml", parse_yaml("m.yaml", MESH));
    let options = MeshOptions {
        access_log: Some(crate::AccessLogOptions {
            path: "/dev/stdout".into(),
            json: false,
            format: None,
        }),
        ..MeshOptions::default()
    };
    let mut t = Translator::new(store.snapshot(), options);
    for (name, l) in rendered(&mut t, &waypoint_key(), ResourceType::Listener) {
        let text = l.to_string();
        assert!(
            text.contains("envoy.access_loggers.file"),
            "{name}: no access log"
        );
    }
}

#[test]
fn an_httproute_attached_to_the_service_routes_at_the_waypoint() {
    let mut t = translator(
        r#"apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: shop, labels: {istio.io/use-waypoint: none}}
spec:
  clusterIP: 10.96.0.12
  selector: {app: echo, version: v2}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: echo-v2, port: 80}]
  - backendRefs: [{name: echo, port: 80}]
"#,
    );
    let key = waypoint_key();
    let listeners = rendered(&mut t, &key, ResourceType::Listener);
    let text = listeners[2].1.to_string();
    assert!(
        text.contains("inbound-vip|80|http|echo-v2.shop.svc.cluster.local"),
        "{text}"
    );
    let clusters = rendered(&mut t, &key, ResourceType::Cluster);
    assert!(
        clusters
            .iter()
            .any(|(n, _)| n == "inbound-vip|80|http|echo-v2.shop.svc.cluster.local"),
        "the route's backend gets a cluster even though it uses no waypoint"
    );
}
