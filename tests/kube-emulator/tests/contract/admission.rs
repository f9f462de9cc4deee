//! Admission webhooks as kube-apiserver calls them: matching (rules, namespace and object
//! selectors), the AdmissionReview sent, JSON patches, denials, warnings, failure policies and
//! certificate checks, against in-test HTTPS webhook servers.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use serde_json::{Value, json};
use shoal_kube_emulator::{Emulator, Options};

use crate::common::webhook::{Ca, WebhookServer, add_label, closed_port, patch_response};
use crate::{CMS, start};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn service(ns: &str, name: &str, path: &str, ca: &str) -> Value {
    json!({"service": {"namespace": ns, "name": name, "path": path, "port": 443}, "caBundle": ca})
}

fn rule(resources: &[&str], operations: &[&str]) -> Value {
    json!([{"apiGroups": ["", "apps"], "apiVersions": ["v1"], "resources": resources,
            "operations": operations}])
}

/// A webhook entry; `extra` adds or overrides fields.
fn webhook(name: &str, client: Value, rules: Value, extra: Value) -> Value {
    let mut w = json!({"name": name, "clientConfig": client, "rules": rules,
        "sideEffects": "None", "admissionReviewVersions": ["v1"]});
    if let (Some(w), Some(extra)) = (w.as_object_mut(), extra.as_object()) {
        w.extend(extra.clone());
    }
    w
}

fn mutating(name: &str, hooks: Vec<Value>) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": hooks})
}

fn validating(name: &str, hooks: Vec<Value>) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": hooks})
}

fn pod(name: &str, labels: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}})
    .to_string()
}

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

#[tokio::test]
async fn mutating_then_validating_webhooks_see_and_shape_the_write() -> Result<()> {
    let (emu, c) = start().await?;
    let ca = Ca::new("webhook-ca")?;
    let server = WebhookServer::start(
        &ca,
        &["injector.istio-system.svc"],
        |path, req| match path {
            "/inject" => patch_response(
                &add_label(&req["object"], "sidecar.istio.io/status", "injected"),
                &["injected a \"sidecar\""],
            ),
            _ => json!({"allowed": true}),
        },
    )
    .await?;
    emu.set_service_endpoint("istio-system", "injector", 443, server.addr);
    let svc = |path: &str| service("istio-system", "injector", path, &ca.bundle());
    emu.apply(mutating(
        "injector",
        vec![webhook(
            "inject.example.com",
            svc("/inject"),
            rule(&["pods"], &["CREATE"]),
            json!({}),
        )],
    ))?;
    emu.apply(validating(
        "checker",
        vec![webhook(
            "check.example.com",
            svc("/validate"),
            rule(&["pods"], &["CREATE", "UPDATE"]),
            json!({}),
        )],
    ))?;

    let (code, headers, created) = c
        .req_headers(
            "POST",
            PODS,
            "application/json",
            &pod("web", json!({"app": "web"})),
        )
        .await?;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["metadata"]["labels"]["sidecar.istio.io/status"],
        "injected"
    );
    let stored = emu.get("pods", Some("default"), "web")?.context("stored")?;
    assert_eq!(
        stored["metadata"]["labels"],
        json!({"app": "web", "sidecar.istio.io/status": "injected"})
    );
    let warnings: Vec<&str> = headers
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(warnings, [r#"299 - "injected a \"sidecar\"""#]);

    let reviews = server.requests();
    assert_eq!(reviews.len(), 2, "{reviews:?}");
    let (path, req) = &reviews[0];
    assert_eq!(path, "/inject?timeout=10s");
    assert!(req["uid"].as_str().is_some_and(|u| u.len() == 36), "{req}");
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(
        req["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert_eq!(req["requestKind"], req["kind"]);
    assert_eq!(req["requestResource"], req["resource"]);
    assert!(req.get("subResource").is_none());
    assert_eq!(
        (req["name"].as_str(), req["namespace"].as_str()),
        (Some("web"), Some("default"))
    );
    assert_eq!(req["operation"], "CREATE");
    assert_eq!(req["userInfo"]["username"], Options::default().user);
    assert_eq!(req["object"]["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(req["object"]["apiVersion"], "v1");
    assert!(req["oldObject"].is_null());
    assert_eq!(req["dryRun"], false);
    assert_eq!(
        req["options"],
        json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"})
    );
    let (path, req) = &reviews[1];
    assert_eq!(path, "/validate?timeout=10s");
    assert_eq!(
        req["object"]["metadata"]["labels"]["sidecar.istio.io/status"], "injected",
        "validating webhooks see the mutated object"
    );
    assert_eq!(
        (
            emu.admission_calls("inject.example.com"),
            emu.admission_calls("check.example.com")
        ),
        (1, 1)
    );

    // An update goes to the validating webhook only (its rules), with the old object.
    let (code, patched) = c
        .patch(
            &format!("{PODS}/web"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"tier":"front"}}}"#,
        )
        .await?;
    assert_eq!(code, 200, "{patched}");
    let (_, req) = server.requests().pop().context("update review")?;
    assert_eq!(req["operation"], "UPDATE");
    assert_eq!(req["object"]["metadata"]["labels"]["tier"], "front");
    assert!(req["oldObject"]["metadata"]["labels"].get("tier").is_none());
    assert_eq!(req["options"]["kind"], "UpdateOptions");
    // Neither `pods/status` (not in the rules) nor the configurations themselves go to webhooks.
    let (code, _) = c
        .patch(
            &format!("{PODS}/web/status"),
            "application/merge-patch+json",
            r#"{"status":{"phase":"Running"}}"#,
        )
        .await?;
    assert_eq!(code, 200);
    let (code, _) = c
        .post(
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            &validating("other", vec![]),
        )
        .await?;
    assert_eq!(code, 201);
    assert_eq!(server.requests().len(), 3);
    Ok(())
}

#[tokio::test]
async fn namespace_and_object_selectors_choose_the_writes() -> Result<()> {
    let (emu, c) = start().await?;
    let ca = Ca::new("webhook-ca")?;
    let server = WebhookServer::start(&ca, &["hooks.default.svc"], |path, req| {
        let label = path.trim_start_matches('/');
        patch_response(&add_label(&req["object"], label, "yes"), &[])
    })
    .await?;
    emu.set_service_endpoint("default", "hooks", 443, server.addr);
    let svc = |path: &str| service("default", "hooks", path, &ca.bundle());
    emu.apply_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh-on, labels: {istio-injection: enabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: mesh-off}\n",
    )?;
    emu.apply(mutating("selectors", vec![
        webhook("labelled.example.com", svc("/labelled"), rule(&["pods"], &["CREATE"]), json!({
            "namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}},
            "objectSelector": {"matchExpressions": [
                {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]},
        })),
        webhook("byname.example.com", svc("/byname"), rule(&["pods"], &["CREATE"]), json!({
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["mesh-off"]}]},
        })),
        webhook("namespaces.example.com", svc("/team"), rule(&["namespaces"], &["CREATE"]), json!({
            "namespaceSelector": {"matchLabels": {"team": "mesh"}},
        })),
    ]))?;

    let create = async |ns: &str, body: String| -> Result<Value> {
        let (code, v) = c
            .req(
                "POST",
                &format!("/api/v1/namespaces/{ns}/pods"),
                "application/json",
                &body,
            )
            .await?;
        anyhow::ensure!(code == 201, "{v}");
        Ok(v["metadata"]["labels"].clone())
    };
    assert_eq!(
        create("mesh-on", pod("a", json!({"app": "a"}))).await?,
        json!({"app": "a", "labelled": "yes"})
    );
    assert_eq!(
        create(
            "mesh-on",
            pod("b", json!({"sidecar.istio.io/inject": "false"}))
        )
        .await?,
        json!({"sidecar.istio.io/inject": "false"})
    );
    assert_eq!(
        create("mesh-off", pod("c", json!({}))).await?,
        json!({"byname": "yes"})
    );
    let (code, _) = c
        .post("/api/v1/namespaces/mesh-on/configmaps", &cm("x", json!({})))
        .await?;
    assert_eq!(code, 201);
    // A Namespace is matched against its own labels.
    let (_, meshy) = c
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "meshy", "labels": {"team": "mesh"}}}),
        )
        .await?;
    assert_eq!(meshy["metadata"]["labels"]["team"], "yes", "{meshy}");
    let (_, plain) = c
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}}),
        )
        .await?;
    assert!(plain["metadata"]["labels"].get("team").is_none(), "{plain}");
    assert_eq!(
        ["labelled", "byname", "namespaces"]
            .map(|n| emu.admission_calls(&format!("{n}.example.com"))),
        [1, 1, 1]
    );
    // Writes into a namespace that does not exist are refused before any webhook is called.
    let (code, s) = c
        .post(
            "/api/v1/namespaces/nope/pods",
            &serde_json::from_str(&pod("d", json!({})))?,
        )
        .await?;
    assert_eq!(
        (code, s["message"].as_str()),
        (404, Some("namespaces \"nope\" not found"))
    );
    assert_eq!(server.requests().len(), 3);
    Ok(())
}

#[tokio::test]
async fn validating_denials_read_like_kube_apiserver() -> Result<()> {
    let (emu, c) = start().await?;
    let ca = Ca::new("webhook-ca")?;
    let server = WebhookServer::start(&ca, &["127.0.0.1"], |_, req| {
        let data = |o: &str| req[o]["data"].clone();
        if data("object").get("forbidden").is_some() {
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "forbidden key"}})
        } else if data("object").get("silent").is_some() {
            json!({"allowed": false, "status": {"code": 200}})
        } else if req["operation"] == "DELETE" && req["oldObject"]["metadata"]["labels"]["protected"] == "yes" {
            json!({"allowed": false, "status": {"message": "protected"}})
        } else {
            json!({"allowed": true})
        }
    })
    .await?;
    let url = format!("https://127.0.0.1:{}/validate", server.addr.port());
    emu.apply(validating(
        "deny",
        vec![webhook(
            "deny.example.com",
            json!({"url": url, "caBundle": ca.bundle()}),
            rule(&["configmaps"], &["*"]),
            json!({"timeoutSeconds": 5}),
        )],
    ))?;

    let (code, s) = c.post(CMS, &cm("bad", json!({"forbidden": "1"}))).await?;
    assert_eq!(
        (code, s["reason"].as_str(), s["kind"].as_str()),
        (403, Some("Forbidden"), Some("Status")),
        "{s}"
    );
    assert_eq!(
        s["message"],
        "admission webhook \"deny.example.com\" denied the request: forbidden key"
    );
    assert!(emu.get("configmaps", Some("default"), "bad")?.is_none());
    let (code, s) = c.post(CMS, &cm("quiet", json!({"silent": "1"}))).await?;
    assert_eq!(code, 400, "codes below 400 become 400");
    assert_eq!(
        s["message"],
        "admission webhook \"deny.example.com\" denied the request without explanation"
    );

    let mut ok = cm("ok", json!({"k": "v"}));
    ok["metadata"]["labels"] = json!({"protected": "yes"});
    assert_eq!(c.post(CMS, &ok).await?.0, 201);
    let (code, s) = c
        .patch(
            &format!("{CMS}/ok"),
            "application/merge-patch+json",
            r#"{"data":{"forbidden":"1"}}"#,
        )
        .await?;
    assert_eq!(code, 403, "{s}");
    let stored = emu
        .get("configmaps", Some("default"), "ok")?
        .context("kept")?;
    assert_eq!(stored["data"], json!({"k": "v"}));
    let (code, s) = c.delete(&format!("{CMS}/ok")).await?;
    assert_eq!(code, 400, "{s}");
    assert_eq!(
        s["message"],
        "admission webhook \"deny.example.com\" denied the request: protected"
    );
    assert!(emu.get("configmaps", Some("default"), "ok")?.is_some());
    let (path, req) = server.requests().pop().context("delete review")?;
    assert_eq!(path, "/validate?timeout=5s");
    assert!(
        req["object"].is_null() && req["oldObject"]["metadata"]["name"] == "ok",
        "{req}"
    );
    assert_eq!(req["options"]["kind"], "DeleteOptions");
    assert_eq!(emu.admission_calls("deny.example.com"), 5);
    Ok(())
}

async fn post_cm(c: &crate::common::Client, name: &str) -> Result<(u16, Value)> {
    c.post(CMS, &cm(name, json!({}))).await
}

#[tokio::test]
async fn failure_policy_decides_when_the_webhook_cannot_be_called() -> Result<()> {
    let (emu, c) = start().await?;
    let ca = Ca::new("webhook-ca")?;
    let down = closed_port().await?;
    emu.set_service_endpoint("default", "down", 443, down);
    let config = |policy: &str, service_name: &str, extra: Value| {
        let mut extra = extra;
        extra["failurePolicy"] = json!(policy);
        mutating(
            "down",
            vec![webhook(
                "down.example.com",
                service("default", service_name, "/mutate", &ca.bundle()),
                rule(&["configmaps"], &["CREATE"]),
                extra,
            )],
        )
    };
    emu.apply(config("Fail", "down", json!({})))?;
    let (code, s) = post_cm(&c, "a").await?;
    assert_eq!(
        (code, s["reason"].as_str()),
        (500, Some("InternalError")),
        "{s}"
    );
    let want = format!(
        "Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: Post \"https://down.default.svc:443/mutate?timeout=10s\": dial tcp {down}: connect: connection refused"
    );
    assert_eq!(s["message"], want);
    assert_eq!(
        s["details"]["causes"][0]["message"],
        want.trim_start_matches("Internal error occurred: ")
    );
    assert!(emu.get("configmaps", Some("default"), "a")?.is_none());

    emu.apply(config("Ignore", "down", json!({})))?;
    assert_eq!(
        post_cm(&c, "a").await?.0,
        201,
        "Ignore lets the write through"
    );
    assert_eq!(emu.admission_calls("down.example.com"), 2);

    emu.apply(config("Fail", "nowhere", json!({})))?;
    let (code, s) = post_cm(&c, "b").await?;
    assert_eq!(code, 500);
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(": no endpoints available for service \"nowhere\"")),
        "{s}"
    );

    // A webhook that accepts the connection and never answers: the timeout ends the call.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    emu.set_service_endpoint("default", "silent", 443, silent.local_addr()?);
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            conns.push(tcp);
        }
    });
    emu.apply(config("Fail", "silent", json!({"timeoutSeconds": 1})))?;
    let began = Instant::now();
    let (code, s) = post_cm(&c, "c").await?;
    held.abort();
    assert_eq!(code, 500);
    assert!(began.elapsed() >= Duration::from_millis(900));
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("/mutate?timeout=1s\": context deadline exceeded")),
        "{s}"
    );
    Ok(())
}

#[tokio::test]
async fn the_webhook_certificate_must_match_ca_bundle_and_service_name() -> Result<()> {
    let emu = Emulator::start(Options::default()).await?;
    let c = crate::common::Client::new(&emu)?;
    let (good, other) = (Ca::new("good")?, Ca::new("other")?);
    let allow = |_: &str, _: &Value| json!({"allowed": true});
    let right = WebhookServer::start(&good, &["hook.default.svc"], allow).await?;
    let wrong_name = WebhookServer::start(&good, &["other.default.svc"], allow).await?;
    emu.set_service_endpoint("default", "hook", 443, right.addr);
    let config = |bundle: &str| {
        mutating(
            "tls",
            vec![webhook(
                "tls.example.com",
                service("default", "hook", "/", bundle),
                rule(&["configmaps"], &["CREATE"]),
                json!({}),
            )],
        )
    };
    let failure = async |name: &str| -> Result<String> {
        let (code, s) = post_cm(&c, name).await?;
        anyhow::ensure!(code == 500, "{s}");
        Ok(s["message"].as_str().unwrap_or("").to_string())
    };
    emu.apply(config(&other.bundle()))?;
    let m = failure("a").await?;
    assert!(m.contains("failed to call webhook: Post \"https://hook.default.svc:443/?timeout=10s\": tls: failed to verify certificate"), "{m}");
    emu.apply(config(
        &base64::engine::general_purpose::STANDARD.encode("not a certificate"),
    ))?;
    let m = failure("b").await?;
    assert!(
        m.contains("could not get REST client: unable to load root certificates"),
        "{m}"
    );
    emu.set_service_endpoint("default", "hook", 443, wrong_name.addr);
    emu.apply(config(&good.bundle()))?;
    let m = failure("c").await?;
    assert!(m.contains("tls: failed to verify certificate"), "{m}");
    emu.set_service_endpoint("default", "hook", 443, right.addr);
    assert_eq!(post_cm(&c, "d").await?.0, 201);
    assert_eq!(
        (right.requests().len(), wrong_name.requests().len()),
        (1, 0)
    );
    Ok(())
}
