//! RequestAuthentication and `requestPrincipals` through a real Envoy: a sidecar's ingress
//! listener (a bound listener with the inbound security chains, no capture needed) verifies
//! JWTs against an inline JWKS; a valid token of the required principal passes, a missing
//! one is denied by RBAC (403) and an invalid one rejected by `jwt_authn` (401).
//!
//! Keys shoal fetches itself (Istio's default): from a `jwksUri` and from an issuer's
//! OpenID configuration, served by a local identity provider, refreshed when it rotates
//! them and kept while it is down.
//!
//! The same at the edge: an ingress gateway enforces the RequestAuthentication and
//! AuthorizationPolicies that select it, and a `remoteIpBlocks` DENY judges the client
//! address its `numTrustedProxies` trusts in X-Forwarded-For.

use std::net::SocketAddr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use shoal_tests::backends;
use shoal_tests::ingress::IngressApi;
use shoal_tests::{Envoy, http_get, start_shoal};
use shoal_tests::{eventually, free_port};

const ISSUER: &str = "https://issuer.shoal.test";

/// An ES256 signing key and its public JWKS.
struct Signer {
    key: EncodingKey,
    jwks: String,
}

impl Signer {
    fn new() -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        Signer { key, jwks }
    }

    fn token(&self, sub: &str) -> String {
        self.token_of(ISSUER, sub)
    }

    fn token_of(&self, issuer: &str, sub: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "iss": issuer, "sub": sub, "aud": "api", "iat": now, "exp": now + 3600,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key).unwrap()
    }
}

/// The RequestAuthentication (`rules`) of `api` and a policy requiring any principal of it
/// (or `principal` only).
fn api_policies(rules: &str, principal: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: api, namespace: app}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  jwtRules:
{rules}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api, namespace: app}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["{principal}"]}}}}]
"#
    )
}

/// GETs `/` of `api` with `token` as a bearer token, if any.
async fn get_with(api: &IngressApi, token: Option<String>) -> anyhow::Result<(u16, String)> {
    match token {
        Some(t) => {
            let auth = format!("Bearer {t}");
            api.get("/", &[("authorization", &auth)]).await
        }
        None => api.get("/", &[]).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_and_principals_required() {
    let signer = Signer::new();
    let rules = format!(
        "  - issuer: {ISSUER}\n    audiences: [api]\n    jwks: '{}'",
        signer.jwks
    );
    let policies = api_policies(&rules, &format!("{ISSUER}/alice"));
    let Some(api) = IngressApi::start(&policies, &[]).await.unwrap() else {
        return;
    };
    let get = |token: Option<String>| get_with(&api, token);

    let alice = signer.token("alice");
    let (status, body) = eventually(Duration::from_secs(20), "a request with a token", || {
        let t = alice.clone();
        async move { get(Some(t)).await.ok().filter(|(s, _)| *s == 200) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", api.logs()));
    assert_eq!((status, body.as_str()), (200, "api"));

    // No token: RequestAuthentication lets it through, the policy requires a principal.
    assert_eq!(get(None).await.unwrap().0, 403);
    // A valid token of another principal: denied by the policy.
    assert_eq!(get(Some(signer.token("bob"))).await.unwrap().0, 403);
    // A token signed by another key: rejected by jwt_authn.
    let forged = Signer::new().token("alice");
    assert_eq!(get(Some(forged)).await.unwrap().0, 401);
    assert_eq!(get(Some("not-a-jwt".into())).await.unwrap().0, 401);
}

fn gateway_mesh(http_port: u16, backend: u16, jwks: &str) -> String {
    shoal_tests::service_with_endpoint("web", "app", "http", 8000, "127.0.0.2", backend)
        + &format!(
            r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {http_port}, name: http, protocol: HTTP}}
    hosts: ["app/web.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: app}}
spec:
  hosts: [web.example.com]
  gateways: [istio-system/ingress]
  http:
  - route:
    - destination: {{host: web.app.svc.cluster.local, port: {{number: 8000}}}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: edge, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: edge, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
    to: [{{operation: {{paths: ["/api/*"]}}}}]
  - to: [{{operation: {{notPaths: ["/api/*"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: blocklist, namespace: istio-system}}
spec:
  action: DENY
  rules:
  - from: [{{source: {{remoteIpBlocks: [203.0.113.0/24]}}}}]
"#
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_enforces_the_policies_that_select_it() {
    let (http_port, backend) = (free_port("127.0.0.1"), free_port("127.0.0.2"));
    let _web = backends::http(format!("127.0.0.2:{backend}").parse().unwrap(), "web")
        .await
        .unwrap();
    let signer = Signer::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        gateway_mesh(http_port, backend, &signer.jwks),
    )
    .unwrap();
    let shoal = start_shoal(dir.path(), &[]).await.unwrap();
    let node = "router~127.0.0.1~ingress-0.istio-system~istio-system.svc.cluster.local";
    let meta = serde_json::json!({
        "LABELS": { "istio": "ingressgateway" },
        "PROXY_CONFIG": { "gatewayTopology": { "numTrustedProxies": 1 } },
    });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    let via: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let get = |path: &'static str, token: Option<String>, xff: Option<&'static str>| async move {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("host", "web.example.com")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        if let Some(x) = xff {
            headers.push(("x-forwarded-for", x));
        }
        http_get(via, path, &headers).await.map(|(s, _)| s).ok()
    };

    eventually(Duration::from_secs(20), "the gateway route", || async {
        (get("/", None, None).await == Some(200)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.log()));

    let alice = signer.token("alice");
    assert_eq!(
        get("/api/orders", Some(alice.clone()), None).await,
        Some(200)
    );
    // No token, or another principal: the ALLOW policy does not match /api/*.
    assert_eq!(get("/api/orders", None, None).await, Some(403));
    assert_eq!(
        get("/api/orders", Some(signer.token("bob")), None).await,
        Some(403)
    );
    // A token from another key: rejected by jwt_authn before RBAC.
    let forged = Signer::new().token("alice");
    assert_eq!(get("/", Some(forged), None).await, Some(401));
    // The client X-Forwarded-For names (one trusted hop) is blocked; another is not.
    assert_eq!(get("/", None, Some("203.0.113.7")).await, Some(403));
    assert_eq!(get("/", None, Some("198.51.100.7")).await, Some(200));
    assert_eq!(
        get("/api/orders", Some(alice), Some("203.0.113.7")).await,
        Some(403)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_fetches_keys_and_follows_their_rotation() {
    let idp_addr: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let (_idp, docs) = backends::documents(idp_addr).await.unwrap();
    let (first, discovered, rotated) = (Signer::new(), Signer::new(), Signer::new());
    let set = |path: &str, body: Option<String>| {
        let mut d = docs.lock().unwrap();
        match body {
            Some(b) => d.insert(path.to_string(), b),
            None => d.remove(path),
        };
    };
    set("/keys", Some(first.jwks.clone()));
    set(
        "/.well-known/openid-configuration",
        Some(
            serde_json::json!({ "jwks_uri": format!("http://{idp_addr}/discovered") }).to_string(),
        ),
    );
    set("/discovered", Some(discovered.jwks.clone()));

    let rules = format!(
        "  - issuer: {ISSUER}\n    jwksUri: http://{idp_addr}/keys\n  - issuer: http://{idp_addr}"
    );
    let policies = api_policies(&rules, "*");
    let Some(api) = IngressApi::start(&policies, &["--jwks-refresh", "500ms"])
        .await
        .unwrap()
    else {
        return;
    };
    let status = |token: String| {
        let api = &api;
        async move { get_with(api, Some(token)).await.map(|(s, _)| s).ok() }
    };
    let until = |what: &'static str, token: String, want: u16| {
        let api = &api;
        async move {
            eventually(Duration::from_secs(20), what, || {
                let t = token.clone();
                async move { (status(t).await == Some(want)).then_some(()) }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", api.logs()));
        }
    };

    until("keys from jwksUri", first.token("alice"), 200).await;
    let idp_issuer = format!("http://{idp_addr}");
    until(
        "keys discovered from the issuer",
        discovered.token_of(&idp_issuer, "bob"),
        200,
    )
    .await;
    // Neither key set verifies a token of the other issuer, nor a forged one.
    assert_eq!(status(discovered.token("alice")).await, Some(401));
    assert_eq!(status(Signer::new().token("alice")).await, Some(401));

    // The provider rotates its keys: shoal's next refresh moves Envoy to the new set.
    set("/keys", Some(rotated.jwks.clone()));
    until("rotated keys", rotated.token("alice"), 200).await;
    assert_eq!(status(first.token("alice")).await, Some(401));

    // The provider goes away: the last keys fetched stay in force.
    set("/keys", None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status(rotated.token("alice")).await, Some(200));
    assert!(
        api.shoal.log().contains("JWKS fetch failed"),
        "{}",
        api.logs()
    );
    // The operator's view: both key sets, the jwksUri one failing but still served.
    let status = api.shoal.json("/debug/jwksz").await.unwrap();
    let list = status.as_array().unwrap();
    assert_eq!(list.len(), 2, "{status}");
    let by_uri = list
        .iter()
        .find(|e| e["jwksUri"] == format!("http://{idp_addr}/keys"))
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(by_uri["keys"], 1, "{status}");
    assert_eq!(by_uri["serving"], "fetched keys", "{status}");
    assert!(
        by_uri["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("404")),
        "{status}"
    );
    let discovered = list
        .iter()
        .find(|e| e["issuer"] == idp_issuer)
        .unwrap_or_else(|| panic!("{status}"));
    assert!(discovered["last_error"].is_null(), "{status}");
}
