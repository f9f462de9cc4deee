//! Gateway API status, from YAML snapshots.

use serde_json::{Value, json};
use shoal_config::parse::parse_yaml;
use shoal_config::{ConfigSnapshot, ConfigStore, Kind, Severity};

use super::{CONTROLLER_NAME, ObjectStatus, gateway_api_status};

const SUFFIX: &str = "cluster.local";

/// Gateway `edge/gw` of class istio: `http` (port 80, `*.example.com`, routes of its own
/// namespace) and `open` (port 8080, any host, routes of every namespace).
const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: '*.example.com'}
  - {name: open, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
";

const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAwQF\n-----END PRIVATE KEY-----\n";

fn snapshot(docs: &[&str]) -> ConfigSnapshot {
    let mut store = ConfigStore::new();
    store.apply("c.yaml", parse_yaml("c.yaml", &docs.concat()));
    // Warnings are expected: a backend of another kind, a certificate of another namespace.
    let errors: Vec<_> = store
        .issues()
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    store.snapshot()
}

fn service(ns: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{ports: [{{port: 80}}]}}\n{extra}---\n"
    )
}

fn route(ns: &str, name: &str, parents: &str, hostnames: &str, backends: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: {parents}\n  hostnames: {hostnames}\n  rules: [{{backendRefs: {backends}}}]\n---\n"
    )
}

fn status<'a>(out: &'a [ObjectStatus], kind: Kind, ns: &str, name: &str) -> Option<&'a Value> {
    out.iter()
        .find(|s| s.key.kind == kind && &*s.key.namespace == ns && &*s.key.name == name)
        .map(|s| &s.status)
}

/// (status, reason) of the condition of type `t`.
fn condition<'a>(conditions: &'a Value, t: &str) -> (&'a str, &'a str) {
    let c = conditions
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .unwrap_or_else(|| panic!("no {t} in {conditions}"));
    (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())
}

/// The only parent entry of route `ns/name`.
fn parent<'a>(out: &'a [ObjectStatus], ns: &str, name: &str) -> &'a Value {
    let parents = status(out, Kind::HttpRoute, ns, name).expect("route status")["parents"]
        .as_array()
        .expect("parents");
    assert_eq!(parents.len(), 1, "{parents:?}");
    &parents[0]
}

fn listener<'a>(gw: &'a Value, name: &str) -> &'a Value {
    gw["listeners"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == name))
        .expect("listener")
}

#[test]
fn an_accepted_gateway_with_its_service_is_programmed_at_its_address() {
    let cfg = snapshot(&[GATEWAY, &service("edge", "gw-istio", "")]);
    let out = gateway_api_status(&cfg, SUFFIX);
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").expect("gateway status");
    assert_eq!(
        condition(&gw["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(
        condition(&gw["conditions"], "Programmed"),
        ("True", "Programmed")
    );
    assert_eq!(
        gw["addresses"],
        json!([{"type": "Hostname", "value": "gw-istio.edge.svc.cluster.local"}])
    );
    let http = listener(gw, "http");
    assert_eq!(http["attachedRoutes"], 0);
    assert_eq!(
        http["supportedKinds"],
        json!([
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
            {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"},
        ])
    );
    let types: Vec<_> = http["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].clone())
        .collect();
    assert_eq!(
        types,
        ["Accepted", "Conflicted", "Programmed", "ResolvedRefs"]
    );
    assert_eq!(
        condition(&http["conditions"], "Conflicted"),
        ("False", "NoConflicts")
    );
    assert_eq!(
        condition(&http["conditions"], "ResolvedRefs"),
        ("True", "ResolvedRefs")
    );
    for c in http["conditions"].as_array().unwrap() {
        assert!(c.get("lastTransitionTime").is_none() && c.get("observedGeneration").is_none());
    }

    // A load balancer's addresses win over the Service's hostname.
    let lb = "status: {loadBalancer: {ingress: [{ip: 203.0.113.7}, {hostname: lb.example.com}]}}\n";
    let cfg = snapshot(&[GATEWAY, &service("edge", "gw-istio", lb)]);
    let out = gateway_api_status(&cfg, SUFFIX);
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
    assert_eq!(
        gw["addresses"],
        json!([{"type": "IPAddress", "value": "203.0.113.7"}, {"type": "Hostname", "value": "lb.example.com"}])
    );
    // A Service labelled with the Gateway's name serves it too.
    let labelled = service("edge", "ingress", "").replace(
        "namespace: edge}",
        "namespace: edge, labels: {gateway.networking.k8s.io/gateway-name: gw}}",
    );
    let out = gateway_api_status(&snapshot(&[GATEWAY, &labelled]), SUFFIX);
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
    assert_eq!(
        gw["addresses"][0]["value"],
        "ingress.edge.svc.cluster.local"
    );
}

#[test]
fn a_gateway_without_an_address_is_not_programmed() {
    let out = gateway_api_status(&snapshot(&[GATEWAY]), SUFFIX);
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
    assert_eq!(
        condition(&gw["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(
        condition(&gw["conditions"], "Programmed"),
        ("False", "AddressNotAssigned")
    );
    assert_eq!(gw["addresses"], json!([]));

    // A load balancer still waiting for its address.
    let pending = "  type: LoadBalancer\n";
    let svc = service("edge", "gw-istio", "").replace(
        "spec: {ports: [{port: 80}]}\n",
        &format!("spec:\n  ports: [{{port: 80}}]\n{pending}"),
    );
    let out = gateway_api_status(&snapshot(&[GATEWAY, &svc]), SUFFIX);
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
    assert_eq!(
        condition(&gw["conditions"], "Programmed"),
        ("False", "AddressNotAssigned")
    );
    assert_eq!(gw["addresses"], json!([]));

    // A manual deployment: the Hostname address names the Service, which must exist.
    let manual = GATEWAY.replace(
        "  listeners:",
        "  addresses: [{type: Hostname, value: ingress}]\n  listeners:",
    );
    let out = gateway_api_status(&snapshot(&[&manual]), SUFFIX);
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
    assert_eq!(
        condition(&gw["conditions"], "Programmed"),
        ("False", "AddressNotUsable")
    );
    let out = gateway_api_status(
        &snapshot(&[&manual, &service("edge", "ingress", "")]),
        SUFFIX,
    );
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
    assert_eq!(
        condition(&gw["conditions"], "Programmed"),
        ("True", "Programmed")
    );
    assert_eq!(
        gw["addresses"][0]["value"],
        "ingress.edge.svc.cluster.local"
    );
}

#[test]
fn listeners_count_each_accepted_route_once() {
    let backend = "[{name: web, port: 80}]";
    let cfg = snapshot(&[
        GATEWAY,
        &service("edge", "web", ""),
        &route("edge", "a", "[{name: gw}]", "[a.example.com]", backend),
        &route("edge", "b", "[{name: gw}]", "[]", backend),
        // Two references to the same listener: one attachment.
        &route(
            "edge",
            "c",
            "[{name: gw, sectionName: open}, {name: gw, port: 8080}]",
            "[]",
            backend,
        ),
        // Another namespace: only `open` takes it.
        &route(
            "apps",
            "d",
            "[{name: gw, namespace: edge}]",
            "[a.example.com]",
            "[]",
        ),
    ]);
    let out = gateway_api_status(&cfg, SUFFIX);
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
    assert_eq!(listener(gw, "http")["attachedRoutes"], 2);
    assert_eq!(listener(gw, "open")["attachedRoutes"], 4);
    let a = parent(&out, "edge", "a");
    assert_eq!(a["controllerName"], CONTROLLER_NAME);
    assert_eq!(a["parentRef"], json!({"name": "gw"}));
    assert_eq!(
        condition(&a["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(
        condition(&a["conditions"], "ResolvedRefs"),
        ("True", "ResolvedRefs")
    );
    let d = parent(&out, "apps", "d");
    assert_eq!(
        condition(&d["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    let c = status(&out, Kind::HttpRoute, "edge", "c").unwrap();
    assert_eq!(c["parents"].as_array().unwrap().len(), 2);
}

#[test]
fn routes_no_listener_takes_say_why() {
    let cfg = snapshot(&[
        GATEWAY,
        // A namespace the listener does not admit.
        &route(
            "apps",
            "ns",
            "[{name: gw, namespace: edge, sectionName: http}]",
            "[]",
            "[]",
        ),
        // A hostname the listener does not serve.
        &route(
            "edge",
            "host",
            "[{name: gw, sectionName: http}]",
            "[www.example.org]",
            "[]",
        ),
        // A listener the Gateway does not have.
        &route(
            "edge",
            "section",
            "[{name: gw, sectionName: https}]",
            "[]",
            "[]",
        ),
        // Every listener refuses (`http` the namespace, `open` the port): the most relevant
        // reason wins.
        &route(
            "apps",
            "both",
            "[{name: gw, namespace: edge, port: 80}]",
            "[]",
            "[]",
        ),
    ]);
    let out = gateway_api_status(&cfg, SUFFIX);
    let accepted = |ns, name| condition(&parent(&out, ns, name)["conditions"], "Accepted");
    assert_eq!(accepted("apps", "ns"), ("False", "NotAllowedByListeners"));
    assert_eq!(
        accepted("edge", "host"),
        ("False", "NoMatchingListenerHostname")
    );
    assert_eq!(accepted("edge", "section"), ("False", "NoMatchingParent"));
    let both = parent(&out, "apps", "both");
    assert_eq!(
        condition(&both["conditions"], "Accepted"),
        ("False", "NotAllowedByListeners")
    );
    let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
    assert_eq!(listener(gw, "http")["attachedRoutes"], 0);
    assert_eq!(listener(gw, "open")["attachedRoutes"], 0);
}

#[test]
fn backends_are_resolved_or_reported() {
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: data}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: edge}]\n  to: [{group: '', kind: Service}]\n---\n";
    let docs = |with_grant: bool| {
        let mut docs = vec![
            GATEWAY.to_string(),
            service("edge", "web", ""),
            service("data", "db", ""),
            route(
                "edge",
                "missing",
                "[{name: gw}]",
                "[]",
                "[{name: gone, port: 80}]",
            ),
            route(
                "edge",
                "cross",
                "[{name: gw}]",
                "[]",
                "[{name: db, namespace: data, port: 80}]",
            ),
            route(
                "edge",
                "kind",
                "[{name: gw}]",
                "[]",
                "[{group: example.com, kind: Bucket, name: b}]",
            ),
            route(
                "edge",
                "fine",
                "[{name: gw}]",
                "[]",
                "[{name: web, port: 80}]",
            ),
        ];
        if with_grant {
            docs.push(grant.to_string());
        }
        docs
    };
    let resolved = |docs: Vec<String>, name: &str| {
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let out = gateway_api_status(&snapshot(&refs), SUFFIX);
        let p = parent(&out, "edge", name);
        // A bad backend never un-accepts the route.
        assert_eq!(
            condition(&p["conditions"], "Accepted"),
            ("True", "Accepted")
        );
        let (s, r) = condition(&p["conditions"], "ResolvedRefs");
        (s.to_string(), r.to_string())
    };
    let pair = |s: &str, r: &str| (s.to_string(), r.to_string());
    assert_eq!(
        resolved(docs(false), "missing"),
        pair("False", "BackendNotFound")
    );
    assert_eq!(
        resolved(docs(false), "cross"),
        pair("False", "RefNotPermitted")
    );
    assert_eq!(resolved(docs(true), "cross"), pair("True", "ResolvedRefs"));
    assert_eq!(resolved(docs(false), "kind"), pair("False", "InvalidKind"));
    assert_eq!(resolved(docs(false), "fine"), pair("True", "ResolvedRefs"));
}

#[test]
fn routes_of_other_controllers_get_no_entry() {
    let other = GATEWAY
        .replace("name: gw,", "name: other,")
        .replace("gatewayClassName: istio", "gatewayClassName: cilium");
    let cfg = snapshot(&[
        GATEWAY,
        &other,
        &route("edge", "theirs", "[{name: other}]", "[]", "[]"),
        &route("edge", "nowhere", "[{name: absent}]", "[]", "[]"),
        &route(
            "edge",
            "mixed",
            "[{name: other}, {name: gw, sectionName: open}]",
            "[]",
            "[]",
        ),
    ]);
    let out = gateway_api_status(&cfg, SUFFIX);
    assert!(status(&out, Kind::HttpRoute, "edge", "theirs").is_none());
    assert!(status(&out, Kind::HttpRoute, "edge", "nowhere").is_none());
    assert!(status(&out, Kind::KubeGateway, "edge", "other").is_none());
    let mixed = parent(&out, "edge", "mixed");
    assert_eq!(
        mixed["parentRef"],
        json!({"name": "gw", "sectionName": "open"})
    );
}

#[test]
fn service_parents_are_reported_for_mesh_routes() {
    let cfg = snapshot(&[
        &service("shop", "reviews", ""),
        &route(
            "shop",
            "mesh",
            "[{group: '', kind: Service, name: reviews}]",
            "[]",
            "[{name: reviews, port: 80}]",
        ),
        &route(
            "shop",
            "gone",
            "[{group: '', kind: Service, name: ratings}]",
            "[]",
            "[]",
        ),
    ]);
    let out = gateway_api_status(&cfg, SUFFIX);
    let mesh = parent(&out, "shop", "mesh");
    assert_eq!(
        mesh["parentRef"],
        json!({"group": "", "kind": "Service", "name": "reviews"})
    );
    assert_eq!(
        condition(&mesh["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    let gone = parent(&out, "shop", "gone");
    assert_eq!(
        condition(&gone["conditions"], "Accepted"),
        ("False", "NoMatchingParent")
    );
}

#[test]
fn service_entry_parents_and_istio_backends_are_reported() {
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api, namespace: egress}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n---\n";
    let cfg = snapshot(&[
        se,
        &service("egress", "egress-istio", ""),
        &route(
            "egress",
            "to-gateway",
            "[{group: networking.istio.io, kind: ServiceEntry, name: api}]",
            "[]",
            "[{name: egress-istio, port: 80}, {group: networking.istio.io, kind: Hostname, name: api.example.com, port: 80}]",
        ),
        &route(
            "egress",
            "gone",
            "[{group: networking.istio.io, kind: ServiceEntry, name: other}]",
            "[]",
            "[{group: networking.istio.io, kind: ServiceEntry, name: other, port: 80}]",
        ),
    ]);
    let out = gateway_api_status(&cfg, SUFFIX);
    let ok = parent(&out, "egress", "to-gateway");
    assert_eq!(
        ok["parentRef"],
        json!({"group": "networking.istio.io", "kind": "ServiceEntry", "name": "api"})
    );
    assert_eq!(
        condition(&ok["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(
        condition(&ok["conditions"], "ResolvedRefs"),
        ("True", "ResolvedRefs")
    );
    let gone = parent(&out, "egress", "gone");
    assert_eq!(
        condition(&gone["conditions"], "Accepted"),
        ("False", "NoMatchingParent")
    );
    assert_eq!(
        condition(&gone["conditions"], "ResolvedRefs"),
        ("False", "BackendNotFound")
    );
}

#[test]
fn terminate_listeners_need_a_certificate_they_may_use() {
    let gateway = |cert_ref: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: edge}}\nspec:\n  gatewayClassName: istio\n  listeners:\n  - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{cert_ref}]}}}}\n---\n"
        )
    };
    let secret = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: {ns}}}\nstringData:\n  tls.crt: {CERT:?}\n  tls.key: {KEY:?}\n---\n"
        )
    };
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: certs}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: edge}]\n  to: [{group: '', kind: Secret, name: cert}]\n---\n";
    let check = |docs: &[&str]| {
        let out = gateway_api_status(&snapshot(docs), SUFFIX);
        let gw = status(&out, Kind::KubeGateway, "edge", "gw").unwrap();
        let l = listener(gw, "https");
        ["ResolvedRefs", "Programmed"].map(|t| {
            let (s, r) = condition(&l["conditions"], t);
            format!("{s}/{r}")
        })
    };
    let same = gateway("{name: cert}");
    assert_eq!(
        check(&[&same, &secret("edge")]),
        ["True/ResolvedRefs", "True/Programmed"]
    );
    assert_eq!(
        check(&[&same]),
        ["False/InvalidCertificateRef", "False/Invalid"]
    );
    let cross = gateway("{name: cert, namespace: certs}");
    assert_eq!(
        check(&[&cross, &secret("certs")]),
        ["False/RefNotPermitted", "False/Invalid"]
    );
    // Allowed, but not served by shoal yet: said so, not hidden.
    assert_eq!(
        check(&[&cross, &secret("certs"), grant]),
        ["False/InvalidCertificateRef", "False/Invalid"]
    );
}

#[test]
fn equal_inputs_give_equal_status() {
    let docs = [
        GATEWAY.to_string(),
        service("edge", "gw-istio", ""),
        route(
            "edge",
            "a",
            "[{name: gw, sectionName: open}, {name: gw, sectionName: http}]",
            "[a.example.com]",
            "[{name: x, port: 1}, {name: y, port: 2}]",
        ),
        route("apps", "b", "[{name: gw, namespace: edge}]", "[]", "[]"),
    ];
    let forward: Vec<&str> = docs.iter().map(String::as_str).collect();
    let backward: Vec<&str> = docs.iter().rev().map(String::as_str).collect();
    let one = gateway_api_status(&snapshot(&forward), SUFFIX);
    let two = gateway_api_status(&snapshot(&backward), SUFFIX);
    assert_eq!(
        serde_json::to_string(&one).unwrap(),
        serde_json::to_string(&two).unwrap()
    );
    assert_eq!(one, gateway_api_status(&snapshot(&forward), SUFFIX));
    let keys: Vec<_> = one.iter().map(|s| s.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Parents are sorted, whatever order the route names them in.
    let a = status(&one, Kind::HttpRoute, "edge", "a").unwrap();
    let sections: Vec<_> = a["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["parentRef"]["sectionName"].clone())
        .collect();
    assert_eq!(sections, [json!("http"), json!("open")]);
}

#[test]
fn a_waypoint_is_programmed_at_its_services_cluster_ip() {
    let waypoint = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - {name: mesh, port: 15008, protocol: HBONE}
  - {name: http, port: 80, protocol: HTTP}
---
";
    let out = gateway_api_status(&snapshot(&[waypoint]), SUFFIX);
    let s = status(&out, Kind::KubeGateway, "shop", "waypoint").expect("a status");
    assert_eq!(
        condition(&s["conditions"], "Programmed"),
        ("False", "AddressNotAssigned")
    );
    // Istio's waypoint deployment names its Service as the Gateway.
    let svc = service("shop", "waypoint", "").replace(
        "spec: {ports: [{port: 80}]}",
        "spec: {clusterIP: 10.96.0.20, ports: [{port: 15008}]}",
    );
    let out = gateway_api_status(&snapshot(&[waypoint, &svc]), SUFFIX);
    let s = status(&out, Kind::KubeGateway, "shop", "waypoint").expect("a status");
    assert_eq!(
        condition(&s["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(
        condition(&s["conditions"], "Programmed"),
        ("True", "Programmed")
    );
    assert_eq!(
        s["addresses"],
        json!([{"type": "IPAddress", "value": "10.96.0.20"}])
    );
    assert_eq!(
        condition(&s["listeners"][0]["conditions"], "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(
        condition(&s["listeners"][1]["conditions"], "Accepted"),
        ("False", "UnsupportedProtocol"),
        "a waypoint speaks HBONE only"
    );
}
