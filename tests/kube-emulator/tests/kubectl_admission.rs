//! Admission webhooks met by kubectl (path from SHOAL_KUBECTL, several separated by ':', else
//! `kubectl` on PATH; skipped, saying so, when there is none): an applied Pod comes back mutated
//! by the injection webhook, with its warning printed, and a denied object makes kubectl print
//! kube-apiserver's denial.

#[path = "common/kubectl.rs"]
mod kubectl;
#[path = "common/webhook.rs"]
mod webhook;

use std::path::Path;

use anyhow::{Context, Result, ensure};
use kubectl::{Kubectl, with_each_kubectl};
use serde_json::{Value, json};
use shoal_kube_emulator::{Emulator, Options};

const ADMISSION_CONFIGS: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: shoal-sidecar-injector
webhooks:
- name: inject.example.com
  clientConfig:
    service: {namespace: istio-system, name: shoal, path: /inject}
    caBundle: CA_BUNDLE
  rules:
  - {operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: shoal-validator
webhooks:
- name: validate.example.com
  clientConfig:
    service: {namespace: istio-system, name: shoal, path: /validate}
    caBundle: CA_BUNDLE
  rules:
  - {operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
"#;

async fn kubectl_admission(bin: &Path) -> Result<()> {
    let emu = Emulator::start(Options::default()).await?;
    let k = Kubectl::new(bin, &emu)?;
    let ca = webhook::Ca::new("webhook-ca")?;
    let server = webhook::WebhookServer::start(&ca, &["shoal.istio-system.svc"], |path, req| {
        if path == "/inject" {
            webhook::patch_response(
                &webhook::add_label(&req["object"], "sidecar.istio.io/status", "injected"),
                &["sidecar injected"],
            )
        } else if req["object"]["data"].get("forbidden").is_some() {
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden",
                "message": "configuration is invalid: forbidden key"}})
        } else {
            json!({"allowed": true})
        }
    })
    .await?;
    emu.set_service_endpoint("istio-system", "shoal", 443, server.addr);
    let configs = ADMISSION_CONFIGS.replace("CA_BUNDLE", &ca.bundle());
    k.ok(&["apply", "-f", &k.write("webhooks.yaml", &configs)?])
        .await?;

    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\nspec:\n  containers: [{name: app, image: app:1}]\n";
    let out = k
        .run(&["apply", "-f", &k.write("pod.yaml", pod)?, "-o", "json"])
        .await?;
    ensure!(out.ok, "kubectl apply of a pod failed: {}", out.stderr);
    let applied: Value = serde_json::from_str(&out.stdout).with_context(|| out.stdout.clone())?;
    ensure!(
        applied["metadata"]["labels"]["sidecar.istio.io/status"] == "injected",
        "{applied}"
    );
    ensure!(
        out.stderr.contains("Warning: sidecar injected"),
        "{}",
        out.stderr
    );
    let listed = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "sidecar.istio.io/status=injected",
            "-o",
            "name",
        ])
        .await?;
    ensure!(listed.trim() == "pod/web", "{listed}");

    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {forbidden: 'yes'}\n";
    let denied = k.run(&["apply", "-f", &k.write("bad.yaml", bad)?]).await?;
    ensure!(!denied.ok, "a denied object must fail");
    eprintln!("kubectl {}: {}", bin.display(), denied.stderr.trim());
    ensure!(
        denied.stderr.contains("Error from server (Forbidden)")
            && denied.stderr.contains(
                r#"admission webhook "validate.example.com" denied the request: configuration is invalid: forbidden key"#
            ),
        "{}",
        denied.stderr
    );
    ensure!(emu.get("configmaps", Some("default"), "bad")?.is_none());
    ensure!(emu.admission_calls("inject.example.com") == 1);
    Ok(())
}

#[tokio::test]
async fn kubectl_meets_admission_webhooks() -> Result<()> {
    with_each_kubectl(async |bin| kubectl_admission(bin).await).await
}
