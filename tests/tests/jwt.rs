//! RequestAuthentication and `requestPrincipals` through a real Envoy: a sidecar's ingress
//! listener (a bound listener with the inbound security chains, no capture needed) verifies
//! JWTs against an inline JWKS; a valid token of the required principal passes, a missing
//! one is denied by RBAC (403) and an invalid one rejected by `jwt_authn` (401).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use shoal_tests::backends;
use shoal_tests::proc::{Envoy, Shoal, http_get};
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": sub, "aud": "api", "iat": now, "exp": now + 3600,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key).unwrap()
    }
}

fn mesh(ingress: u16, app: u16, jwks: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: api, namespace: app}}
spec:
  selector: {{app: api}}
  ports: [{{name: http, port: 80, targetPort: {app}}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: api, namespace: app}}
spec:
  workloadSelector: {{labels: {{app: api}}}}
  ingress:
  - port: {{number: {ingress}, protocol: HTTP, name: http}}
    bind: 127.0.0.1
    captureMode: NONE
    defaultEndpoint: 127.0.0.1:{app}
  egress:
  - hosts: ["./*"]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: api, namespace: app}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  jwtRules:
  - issuer: {ISSUER}
    audiences: [api]
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api, namespace: app}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_and_principals_required() {
    let (ingress, app) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let _app = backends::http(format!("127.0.0.1:{app}").parse().unwrap(), "api")
        .await
        .unwrap();
    let signer = Signer::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.yaml"),
        mesh(ingress, app, &signer.jwks),
    )
    .unwrap();
    let shoal = Shoal::start(dir.path(), &[]).await.unwrap();
    let node = "sidecar~127.0.0.1~api-0.app~app.svc.cluster.local";
    let meta = serde_json::json!({
        "INTERCEPTION_MODE": "NONE",
        "NAMESPACE": "app",
        "LABELS": { "app": "api" },
    });
    let Some(envoy) = Envoy::start(shoal.xds, node, meta, true).await.unwrap() else {
        return;
    };
    let via: SocketAddr = format!("127.0.0.1:{ingress}").parse().unwrap();
    let get = |token: Option<String>| async move {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("host", "api.app")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        http_get(via, "/", &headers).await
    };

    let alice = signer.token("alice");
    let (status, body) = eventually(Duration::from_secs(20), "a request with a token", || {
        let t = alice.clone();
        async move { get(Some(t)).await.ok().filter(|(s, _)| *s == 200) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", envoy.proc.log(), shoal.proc.log()));
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
