//! The API server contract as the emulator serves it over HTTPS: resourceVersions, conflicts,
//! errors, selectors, paging, watches, the status subresource, CRDs, patches, auth, restarts.

mod admission;
#[path = "../common/mod.rs"]
mod common;
mod watches;

use std::time::Duration;

use anyhow::Result;
use common::{Client, TIMEOUT, cm, rv};
use serde_json::{Value, json};
use shoal_kube_emulator::{Emulator, Options, ReviewUser, Verb};

pub(crate) const CMS: &str = "/api/v1/namespaces/default/configmaps";

pub(crate) async fn start() -> Result<(Emulator, Client)> {
    let emu = Emulator::start(Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await?;
    let c = Client::new(&emu)?;
    Ok((emu, c))
}

pub(crate) fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1beta1", "served": true, "storage": false, "subresources": {"status": {}},
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })
}

#[tokio::test]
async fn writes_stamp_metadata_and_bump_one_global_resource_version() -> Result<()> {
    let (_emu, c) = start().await?;
    let (code, a) = c.post(CMS, &cm("a", json!({}))).await?;
    assert_eq!(code, 201, "{a}");
    let (_, b) = c
        .post(
            "/api/v1/namespaces/kube-system/configmaps",
            &cm("b", json!({})),
        )
        .await?;
    assert!(rv(&b) > rv(&a));
    assert_eq!(a["metadata"]["namespace"], "default");
    assert_eq!(a["metadata"]["generation"], 1);
    assert!(a["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(
        a["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let mut a2 = a.clone();
    a2["data"]["k"] = json!("changed");
    let (code, a2) = c.put(&format!("{CMS}/a"), &a2).await?;
    assert_eq!(code, 200);
    assert!(rv(&a2) > rv(&b));
    assert_eq!(a2["metadata"]["uid"], a["metadata"]["uid"]);
    // An unchanged write is a no-op: same resourceVersion.
    let (_, a3) = c.put(&format!("{CMS}/a"), &a2).await?;
    assert_eq!(rv(&a3), rv(&a2));
    let (_, list) = c.get(CMS).await?;
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(
        list["metadata"]["resourceVersion"],
        b["metadata"]["resourceVersion"]
            .as_str()
            .map(|_| rv(&a2).to_string())
            .unwrap_or_default()
    );
    Ok(())
}

#[tokio::test]
async fn conflicts_and_not_found_are_statuses() -> Result<()> {
    let (_emu, c) = start().await?;
    let (_, a) = c.post(CMS, &cm("a", json!({}))).await?;
    let (code, s) = c.post(CMS, &cm("a", json!({}))).await?;
    assert_eq!((code, s["reason"].as_str()), (409, Some("AlreadyExists")));
    assert_eq!(s["message"], "configmaps \"a\" already exists");
    let mut stale = a.clone();
    c.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        r#"{"data":{"x":"y"}}"#,
    )
    .await?;
    stale["data"]["k"] = json!("lost update");
    let (code, s) = c.put(&format!("{CMS}/a"), &stale).await?;
    assert_eq!((code, s["reason"].as_str()), (409, Some("Conflict")), "{s}");
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["status"], "Failure");
    let (code, s) = c.get(&format!("{CMS}/missing")).await?;
    assert_eq!((code, s["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(s["message"], "configmaps \"missing\" not found");
    assert_eq!(
        s["details"],
        json!({"name": "missing", "kind": "configmaps"})
    );
    let (code, _) = c.delete(&format!("{CMS}/missing")).await?;
    assert_eq!(code, 404);
    let (code, s) = c
        .post("/api/v1/namespaces/nope/configmaps", &cm("a", json!({})))
        .await?;
    assert_eq!(code, 404, "{s}");
    assert_eq!(s["message"], "namespaces \"nope\" not found");
    let (code, s) = c
        .post(
            CMS,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        )
        .await?;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    Ok(())
}

#[tokio::test]
async fn bad_requests_never_panic() -> Result<()> {
    let emu = Emulator::start(Options {
        max_body_bytes: 1024,
        ..Options::default()
    })
    .await?;
    let c = Client::new(&emu)?;
    for (method, path, ct, body, want) in [
        ("POST", CMS, "application/json", "{not json", 400),
        ("POST", CMS, "application/json", "[1,2]", 400),
        ("POST", CMS, "application/json", "\"str\"", 400),
        ("POST", CMS, "application/yaml", "a: [unclosed", 400),
        (
            "POST",
            CMS,
            "application/json",
            r#"{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"x"}}"#,
            400,
        ),
        (
            "POST",
            CMS,
            "application/json",
            r#"{"metadata":"str"}"#,
            400,
        ),
        (
            "POST",
            CMS,
            "application/vnd.kubernetes.protobuf",
            "k8s\0",
            415,
        ),
        (
            "PUT",
            &format!("{CMS}/x"),
            "application/json",
            r#"{"metadata":{"name":"y"}}"#,
            400,
        ),
        ("PATCH", &format!("{CMS}/x"), "text/plain", "{}", 415),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/a/b/c/d",
            "",
            "",
            404,
        ),
        ("GET", "/api/v1/widgets", "", "", 404),
        ("GET", "/apis/nope.io/v1/things", "", "", 404),
        ("GET", "/nonsense", "", "", 404),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/x/status",
            "",
            "",
            404,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps/x",
            "application/json",
            "{}",
            405,
        ),
        ("PUT", CMS, "application/json", "{}", 405),
        ("POST", "/api", "application/json", "{}", 405),
        (
            "GET",
            &format!("{CMS}?labelSelector=a%20in%20b"),
            "",
            "",
            400,
        ),
        ("GET", &format!("{CMS}?fieldSelector=nonsense"), "", "", 400),
        ("GET", &format!("{CMS}?limit=-1"), "", "", 400),
        ("GET", &format!("{CMS}?continue=%%%"), "", "", 400),
        ("GET", &format!("{CMS}?continue=bm90IGpzb24"), "", "", 400),
        ("GET", &format!("{CMS}?resourceVersion=abc"), "", "", 400),
        (
            "GET",
            &format!("{CMS}?resourceVersion=1&resourceVersionMatch=Sometimes"),
            "",
            "",
            400,
        ),
        (
            "GET",
            &format!("{CMS}?watch=1&timeoutSeconds=x"),
            "",
            "",
            400,
        ),
        (
            "GET",
            &format!("{CMS}?watch=1&resourceVersion=-5"),
            "",
            "",
            400,
        ),
    ] {
        let (code, s) = c.req(method, path, ct, body).await?;
        assert_eq!(code, want, "{method} {path} {body:?}: {s}");
        assert_eq!(s["kind"], "Status", "{method} {path}");
        assert_eq!(s["code"], want);
    }
    let big = format!(
        r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let (code, s) = c.req("POST", CMS, "application/json", &big).await?;
    assert_eq!(
        (code, s["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );
    // Still serving.
    assert_eq!(c.get(CMS).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn authentication_and_forbidden() -> Result<()> {
    let (emu, mut c) = start().await?;
    let token = c.token.clone();
    c.token = String::new();
    let (code, s) = c.get(CMS).await?;
    assert_eq!(
        (code, s["reason"].as_str(), s["message"].as_str()),
        (401, Some("Unauthorized"), Some("Unauthorized"))
    );
    c.token = "wrong".into();
    assert_eq!(c.get("/api").await?.0, 401);
    assert_eq!(
        c.get("/version").await?.0,
        200,
        "version is public, as with anonymous auth"
    );
    c.token = token;
    emu.forbid("pods", Verb::List)?;
    let (code, s) = c.get("/api/v1/pods").await?;
    assert_eq!(code, 403);
    assert_eq!(s["reason"], "Forbidden");
    assert_eq!(
        s["message"],
        "pods is forbidden: User \"system:serviceaccount:istio-system:shoal\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    );
    let (_, s) = c.get("/api/v1/namespaces/default/pods").await?;
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("in the namespace \"default\"")),
        "{s}"
    );
    emu.forbid("leases", Verb::Get)?;
    let (_, s) = c
        .get("/apis/coordination.k8s.io/v1/namespaces/default/leases/l")
        .await?;
    assert_eq!(
        s["message"],
        "leases.coordination.k8s.io \"l\" is forbidden: User \"system:serviceaccount:istio-system:shoal\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
    );
    emu.allow("pods", Verb::List)?;
    assert_eq!(c.get("/api/v1/pods").await?.0, 200);
    assert_eq!(emu.requests(Verb::List, "pods")?, 3);
    assert_eq!(emu.requests(Verb::Get, "leases")?, 1);
    assert_eq!(emu.request_counts().get("list pods"), Some(&3));
    Ok(())
}

#[tokio::test]
async fn selectors_paging_and_exact_lists() -> Result<()> {
    let (emu, c) = start().await?;
    for (i, tier) in ["web", "web", "db", "web", "cache"].iter().enumerate() {
        c.post(
            CMS,
            &cm(&format!("c{i}"), json!({"tier": tier, "n": i.to_string()})),
        )
        .await?;
    }
    let names = |l: &Value| -> Vec<String> {
        l["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
            .collect()
    };
    for (sel, want) in [
        ("tier%3Dweb", vec!["c0", "c1", "c3"]),
        ("tier%3D%3Dweb%2Cn!%3D1", vec!["c0", "c3"]),
        ("tier%20in%20(db%2Ccache)", vec!["c2", "c4"]),
        ("tier%20notin%20(web)", vec!["c2", "c4"]),
        ("tier", vec!["c0", "c1", "c2", "c3", "c4"]),
        ("!tier", vec![]),
    ] {
        let (code, l) = c.get(&format!("{CMS}?labelSelector={sel}")).await?;
        assert_eq!(code, 200);
        assert_eq!(names(&l), want, "{sel}");
    }
    let (_, l) = c
        .get(&format!("{CMS}?fieldSelector=metadata.name%3Dc2"))
        .await?;
    assert_eq!(names(&l), ["c2"]);
    let (_, l) = c
        .get("/api/v1/configmaps?fieldSelector=metadata.namespace!%3Ddefault")
        .await?;
    assert_eq!(names(&l), Vec::<String>::new());

    // Paging: a consistent snapshot across pages, even as objects change in between.
    let (_, p1) = c.get(&format!("{CMS}?limit=2")).await?;
    assert_eq!(names(&p1), ["c0", "c1"]);
    assert_eq!(p1["metadata"]["remainingItemCount"], 3);
    let token = p1["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.delete(&format!("{CMS}/c2")).await?;
    c.post(CMS, &cm("c10", json!({}))).await?;
    let (_, p2) = c.get(&format!("{CMS}?limit=2&continue={token}")).await?;
    assert_eq!(
        names(&p2),
        ["c2", "c3"],
        "page 2 is of the first page's snapshot"
    );
    assert_eq!(
        p2["metadata"]["resourceVersion"],
        p1["metadata"]["resourceVersion"]
    );
    let token2 = p2["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (_, p3) = c.get(&format!("{CMS}?limit=2&continue={token2}")).await?;
    assert_eq!(names(&p3), ["c4"]);
    assert!(p3["metadata"].get("continue").is_none());

    // Exact lists see the past; compaction makes that 410.
    let old = p1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (code, l) = c
        .get(&format!(
            "{CMS}?resourceVersion={old}&resourceVersionMatch=Exact"
        ))
        .await?;
    assert_eq!(code, 200);
    assert_eq!(names(&l), ["c0", "c1", "c2", "c3", "c4"]);
    let (_, l) = c.get(&format!("{CMS}?resourceVersion=0")).await?;
    assert_eq!(names(&l), ["c0", "c1", "c10", "c3", "c4"]);
    emu.compact();
    let (code, s) = c.get(&format!("{CMS}?limit=2&continue={token}")).await?;
    assert_eq!((code, s["reason"].as_str()), (410, Some("Expired")));
    let (code, _) = c
        .get(&format!(
            "{CMS}?resourceVersion={old}&resourceVersionMatch=Exact"
        ))
        .await?;
    assert_eq!(code, 410);
    let (code, _) = c
        .get(&format!(
            "{CMS}?resourceVersion={old}&resourceVersionMatch=NotOlderThan"
        ))
        .await?;
    assert_eq!(code, 200);
    Ok(())
}

#[tokio::test]
async fn patches_of_every_type() -> Result<()> {
    let (_emu, c) = start().await?;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
        "spec": {"containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]},
                                {"name": "side", "image": "side:1"}]}});
    c.post(pods, &pod).await?;
    let (code, p) = c.patch(&format!("{pods}/p"), "application/strategic-merge-patch+json",
        r#"{"metadata":{"labels":{"a":null,"b":"2"}},"spec":{"containers":[{"name":"side","image":"side:2"}]}}"#).await?;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(p["spec"]["containers"][0]["image"], "app:1");
    assert_eq!(p["spec"]["containers"][1]["image"], "side:2");
    assert_eq!(p["metadata"]["generation"], 2);
    let (_, p) = c.patch(&format!("{pods}/p"), "application/json-patch+json",
        r#"[{"op":"replace","path":"/spec/containers/0/image","value":"app:2"},{"op":"add","path":"/metadata/annotations","value":{"x":"y"}}]"#).await?;
    assert_eq!(p["spec"]["containers"][0]["image"], "app:2");
    assert_eq!(p["metadata"]["annotations"]["x"], "y");
    let (code, s) = c
        .patch(
            &format!("{pods}/p"),
            "application/json-patch+json",
            r#"[{"op":"test","path":"/metadata/name","value":"q"}]"#,
        )
        .await?;
    assert_eq!(code, 422, "{s}");
    let (_, p) = c
        .patch(
            &format!("{pods}/p"),
            "application/merge-patch+json",
            r#"{"spec":{"containers":[{"name":"only","image":"o"}]}}"#,
        )
        .await?;
    assert_eq!(
        p["spec"]["containers"].as_array().map(Vec::len),
        Some(1),
        "merge patch replaces lists"
    );
    // A stale resourceVersion in a patch is a conflict.
    let (code, _) = c
        .patch(
            &format!("{pods}/p"),
            "application/merge-patch+json",
            r#"{"metadata":{"resourceVersion":"1"}}"#,
        )
        .await?;
    assert_eq!(code, 409);
    // Server-side apply: needs a fieldManager; creates when absent, merges when present.
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n    name: http\n";
    let (code, _) = c
        .patch(
            "/api/v1/namespaces/default/services/s",
            "application/apply-patch+yaml",
            svc,
        )
        .await?;
    assert_eq!(code, 400);
    let (code, s) = c
        .patch(
            "/api/v1/namespaces/default/services/s?fieldManager=test",
            "application/apply-patch+yaml",
            svc,
        )
        .await?;
    assert_eq!(code, 201, "{s}");
    assert!(
        s["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    let (code, s) = c.patch("/api/v1/namespaces/default/services/s?fieldManager=test", "application/apply-patch+yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels: {x: z}\nspec:\n  ports:\n  - port: 443\n    name: https\n").await?;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["spec"]["ports"].as_array().map(Vec::len), Some(2));
    assert_eq!(s["metadata"]["labels"]["x"], "z");
    Ok(())
}

#[tokio::test]
async fn finalizers_namespaces_tables_and_token_reviews() -> Result<()> {
    let (emu, c) = start().await?;
    c.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .await?;
    let mut f = cm("f", json!({}));
    f["metadata"]["finalizers"] = json!(["example.com/hold"]);
    c.post("/api/v1/namespaces/team/configmaps", &f).await?;
    c.post("/api/v1/namespaces/team/configmaps", &cm("g", json!({})))
        .await?;
    let (code, held) = c.delete("/api/v1/namespaces/team/configmaps/f").await?;
    assert_eq!(code, 202);
    assert!(held["metadata"]["deletionTimestamp"].as_str().is_some());
    let (_, gone) = c
        .patch(
            "/api/v1/namespaces/team/configmaps/f",
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await?;
    assert_eq!(gone["metadata"]["name"], "f");
    assert_eq!(c.get("/api/v1/namespaces/team/configmaps/f").await?.0, 404);
    let (code, s) = c.delete("/api/v1/namespaces/team").await?;
    assert_eq!((code, s["status"].as_str()), (200, Some("Success")));
    assert!(
        emu.list("configmaps", Some("team"))?.is_empty(),
        "namespace deletion takes its objects"
    );
    // Tables, as kubectl asks for them.
    let (code, body) = c
        .send(
            "GET",
            CMS,
            &[(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
            vec![],
        )
        .await?;
    assert_eq!(code, 200);
    let _ = body;
    emu.apply(cm("t", json!({})))?;
    let (_, t) = {
        let (code, body) = c
            .send(
                "GET",
                CMS,
                &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
                vec![],
            )
            .await?;
        use http_body_util::BodyExt;
        (
            code,
            serde_json::from_slice::<Value>(&body.collect().await?.to_bytes())?,
        )
    };
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["columnDefinitions"][0]["name"], "Name");
    assert_eq!(t["rows"][0]["cells"][0], "t");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    // TokenReview answers from the table the test sets up.
    emu.add_token_review(
        "good",
        ReviewUser {
            username: "alice".into(),
            uid: "1".into(),
            groups: vec!["devs".into()],
            ..Default::default()
        },
    );
    let review = |t: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t, "audiences": ["istio-ca"]}});
    let (code, r) = c
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review("good"),
        )
        .await?;
    assert_eq!(code, 201);
    assert_eq!(r["status"]["authenticated"], true);
    assert_eq!(r["status"]["user"]["username"], "alice");
    let (_, r) = c
        .post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            &review("bad"),
        )
        .await?;
    assert_eq!(r["status"]["authenticated"], false);
    assert_eq!(
        c.get("/apis/authentication.k8s.io/v1/tokenreviews")
            .await?
            .0,
        405
    );
    Ok(())
}

#[tokio::test]
async fn in_process_api() -> Result<()> {
    let (emu, _c) = start().await?;
    emu.apply_yaml(shoal_kube_emulator::ISTIO_CRDS)?;
    emu.apply_yaml(shoal_kube_emulator::GATEWAY_API_CRDS)?;
    let vs = emu.apply(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "default"}, "spec": {"hosts": ["r"]}, "status": {"x": 1}}))?;
    assert_eq!(vs["status"]["x"], 1, "in-process writes may set status");
    let vs2 = emu.apply(
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "default"}, "spec": {"hosts": ["r2"]}}),
    )?;
    assert_eq!(vs2["status"]["x"], 1, "status kept when not given");
    assert_eq!(vs2["metadata"]["generation"], 2);
    assert!(matches!(
        emu.get("gateways", None, "x"),
        Err(shoal_kube_emulator::Error::AmbiguousResource(..))
    ));
    assert!(
        emu.get("gateways.gateway.networking.k8s.io", Some("default"), "x")?
            .is_none()
    );
    assert_eq!(
        emu.list("virtualservices.networking.istio.io", None)?.len(),
        1
    );
    let waiter = emu.wait_for("vs", Some("default"), "r", TIMEOUT, |o| {
        o["status"]["ready"] == true
    });
    let setter = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        emu.set_status("vs", Some("default"), "r", json!({"ready": true}))
    };
    let (got, set) = tokio::join!(waiter, setter);
    set?;
    assert_eq!(got?["spec"]["hosts"], json!(["r2"]));
    assert!(
        emu.wait_for(
            "vs",
            Some("default"),
            "nope",
            Duration::from_millis(100),
            |_| true
        )
        .await
        .is_err()
    );
    assert!(emu.delete("vs", Some("default"), "r")?.is_some());
    assert!(emu.delete("vs", Some("default"), "r")?.is_none());
    let kc = emu.kubeconfig_yaml();
    assert!(
        kc.contains(&emu.url())
            && kc.contains("certificate-authority-data: ")
            && kc.contains(emu.token())
    );
    Ok(())
}
