//! AuthorizationPolicy path templates through a real Envoy: a sidecar's ingress listener (a
//! bound listener with the inbound security chains, no capture needed) allows only the
//! paths an ALLOW policy's templates match. `{*}` is exactly one path segment, `{**}` zero
//! or more; the query string is not part of the path.

use std::time::Duration;

use shoal_tests::eventually;
use shoal_tests::ingress::IngressApi;

const POLICY: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: app}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - to:
    - operation:
        paths: ["/api/{*}/orders", "/files/{**}"]
        notPaths: ["/files/{*}/secret"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_templates_allow_only_the_segments_they_name() {
    let Some(api) = IngressApi::start(POLICY, &[]).await.unwrap() else {
        return;
    };
    let status = |path: &'static str| {
        let api = &api;
        async move { api.get(path, &[]).await.map(|(s, _)| s) }
    };

    let (code, body) = eventually(Duration::from_secs(20), "an allowed path", || async {
        api.get("/api/x/orders", &[])
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", api.logs()));
    assert_eq!((code, body.as_str()), (200, "api"));

    for (path, want) in [
        // `{*}`: exactly one segment.
        ("/api/42/orders", 200),
        ("/api/x/orders?page=2", 200),
        ("/api/x/y/orders", 403),
        ("/api/orders", 403),
        ("/api//orders", 403),
        ("/api/x/orders/1", 403),
        // `{**}`: any number of segments, not the parent itself.
        ("/files/", 200),
        ("/files/a", 200),
        ("/files/a/b/c.txt", 200),
        ("/files", 403),
        // notPaths: a template excluded from the allowed ones.
        ("/files/a/secret", 403),
        ("/files/a/b/secret", 200),
        ("/other", 403),
    ] {
        assert_eq!(status(path).await.unwrap(), want, "{path}");
    }
}
