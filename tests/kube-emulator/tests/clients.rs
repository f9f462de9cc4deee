//! The emulator driven by clients nobody here wrote: kubectl (path from SHOAL_KUBECTL, several
//! separated by ':' to test more than one version, else `kubectl` on PATH) and the Python
//! `kubernetes` client (interpreter from SHOAL_PYTHON). Each skips, saying so, when its client
//! is missing.

#[path = "common/kubectl.rs"]
mod kubectl;

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail, ensure};
use kubectl::{Kubectl, STEP, with_each_kubectl};
use serde_json::{Value, json};
use shoal_kube_emulator::{Emulator, Options, Verb};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

fn objects(subset: &str, image: &str, port_name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: demo
  labels: {{app: reviews}}
spec:
  hosts: [reviews]
  gateways: [bookinfo]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
  namespace: demo
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {{version: v1}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: bookinfo
  namespace: demo
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: demo
  labels: {{app: reviews}}
spec:
  selector: {{app: reviews}}
  ports:
  - name: {port_name}
    port: 9080
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1
  namespace: demo
  labels: {{app: reviews, version: v1}}
spec:
  containers:
  - name: reviews
    image: {image}
    ports:
    - containerPort: 9080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc
  namespace: demo
  labels: {{kubernetes.io/service-name: reviews}}
addressType: IPv4
ports:
- name: {port_name}
  port: 9080
  protocol: TCP
endpoints:
- addresses: ["10.0.0.7"]
  conditions: {{ready: true}}
"#
    )
}

async fn kubectl_flows(bin: &Path) -> Result<()> {
    let emu = Emulator::start(Options::default()).await?;
    let k = Kubectl::new(bin, &emu)?;
    let version = k.ok(&["version", "--client"]).await.unwrap_or_default();
    eprintln!(
        "kubectl flows with {} ({})",
        bin.display(),
        version.lines().next().unwrap_or("")
    );

    // CRDs, then Istio objects and built-ins.
    let out = k
        .ok(&[
            "apply",
            "-f",
            &format!("{CRATE}/crds/istio.yaml"),
            "-f",
            &format!("{CRATE}/crds/gateway-api.yaml"),
        ])
        .await?;
    ensure!(out.contains("customresourcedefinition.apiextensions.k8s.io/virtualservices.networking.istio.io created"), "{out}");
    k.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=10s",
        "crd/virtualservices.networking.istio.io",
    ])
    .await?;
    let file = k.write("objects.yaml", &objects("v1", "reviews:1", "http"))?;
    let out = k.ok(&["apply", "-f", &file]).await?;
    for what in [
        "namespace/demo created",
        "virtualservice.networking.istio.io/reviews created",
        "destinationrule.networking.istio.io/reviews created",
        "gateway.networking.istio.io/bookinfo created",
        "service/reviews created",
        "pod/reviews-v1 created",
        "endpointslice.discovery.k8s.io/reviews-abc created",
    ] {
        ensure!(out.contains(what), "missing {what:?} in:\n{out}");
    }
    let vs = emu
        .get("vs", Some("demo"), "reviews")?
        .context("vs stored")?;
    ensure!(
        vs["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // Client-side apply of an edit: GET, then a three-way PATCH (merge for CRs, strategic for
    // built-ins).
    emu.reset_request_counts();
    let edited = k.write("objects.yaml", &objects("v2", "reviews:2", "http-web"))?;
    let out = k.ok(&["apply", "-f", &edited]).await?;
    ensure!(
        out.contains("virtualservice.networking.istio.io/reviews configured"),
        "{out}"
    );
    ensure!(out.contains("namespace/demo unchanged"), "{out}");
    ensure!(emu.requests(Verb::Patch, "virtualservices.networking.istio.io")? == 1);
    ensure!(emu.requests(Verb::Patch, "pods")? == 1);
    let vs = emu.get("vs", Some("demo"), "reviews")?.context("vs")?;
    ensure!(
        vs["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2",
        "{vs}"
    );
    ensure!(vs["metadata"]["generation"] == 2);
    let pod = emu
        .get("pods", Some("demo"), "reviews-v1")?
        .context("pod")?;
    ensure!(pod["spec"]["containers"][0]["image"] == "reviews:2");
    ensure!(
        pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 9080,
        "{pod}"
    );
    let svc = emu.get("svc", Some("demo"), "reviews")?.context("svc")?;
    ensure!(
        svc["spec"]["ports"].as_array().map(Vec::len) == Some(1),
        "{svc}"
    );
    ensure!(svc["spec"]["ports"][0]["name"] == "http-web", "{svc}");

    // get: tables, short names, JSON, YAML, label selectors.
    let table = k.ok(&["get", "vs", "-n", "demo"]).await?;
    ensure!(
        table.starts_with("NAME") && table.contains("reviews") && table.contains("HOSTS"),
        "{table}"
    );
    let all = k
        .ok(&["get", "gw,dr,svc,endpointslices", "-n", "demo"])
        .await?;
    ensure!(
        all.contains("bookinfo") && all.contains("reviews-abc"),
        "{all}"
    );
    let json: Value = serde_json::from_str(
        &k.ok(&["get", "vs", "reviews", "-n", "demo", "-o", "json"])
            .await?,
    )?;
    ensure!(
        json["kind"] == "VirtualService" && json["apiVersion"] == "networking.istio.io/v1",
        "{json}"
    );
    let list: Value = serde_json::from_str(&k.ok(&["get", "dr", "-A", "-o", "json"]).await?)?;
    ensure!(list["items"].as_array().map(Vec::len) == Some(1), "{list}");
    let yaml = k
        .ok(&[
            "get",
            "gateways.networking.istio.io",
            "bookinfo",
            "-n",
            "demo",
            "-o",
            "yaml",
        ])
        .await?;
    ensure!(
        yaml.contains("kind: Gateway") && yaml.contains("ingressgateway"),
        "{yaml}"
    );
    let sel = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "demo",
            "-l",
            "app=reviews,version in (v1,v2)",
            "-o",
            "name",
        ])
        .await?;
    ensure!(sel.trim() == "pod/reviews-v1", "{sel}");
    let none = k
        .run(&["get", "pods", "-n", "demo", "-l", "app!=reviews"])
        .await?;
    ensure!(
        none.ok && none.stderr.contains("No resources found"),
        "{}",
        none.stderr
    );

    // replace, label, patch.
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: demo\nspec:\n  host: reviews.demo.svc.cluster.local\n";
    let out = k.ok(&["replace", "-f", &k.write("dr.yaml", dr)?]).await?;
    ensure!(
        out.contains("destinationrule.networking.istio.io/reviews replaced"),
        "{out}"
    );
    ensure!(
        emu.get("dr", Some("demo"), "reviews")?.context("dr")?["spec"]
            == json!({"host": "reviews.demo.svc.cluster.local"})
    );
    k.ok(&["label", "ns", "demo", "env=prod"]).await?;
    ensure!(emu.get("ns", None, "demo")?.context("ns")?["metadata"]["labels"]["env"] == "prod");
    let out = k.ok(&["get", "ns", "-l", "env=prod", "-o", "name"]).await?;
    ensure!(out.trim() == "namespace/demo", "{out}");
    k.ok(&[
        "patch",
        "vs",
        "reviews",
        "-n",
        "demo",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"hosts":["reviews","reviews.demo"]}}"#,
    ])
    .await?;
    ensure!(
        emu.get("vs", Some("demo"), "reviews")?.context("vs")?["spec"]["hosts"]
            == json!(["reviews", "reviews.demo"])
    );

    // edit: GET, the editor, then a PATCH.
    let mut edit = k.command(&["edit", "pod", "reviews-v1", "-n", "demo"]);
    edit.env("KUBE_EDITOR", "sed -i s/reviews:2/reviews:3/");
    let out = tokio::time::timeout(STEP, edit.output()).await??;
    ensure!(
        out.status.success(),
        "kubectl edit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod = emu
        .get("pods", Some("demo"), "reviews-v1")?
        .context("pod")?;
    ensure!(
        pod["spec"]["containers"][0]["image"] == "reviews:3",
        "{pod}"
    );

    // get --watch sees a change made meanwhile.
    let mut watch = k
        .command(&[
            "get",
            "vs",
            "-n",
            "demo",
            "--watch",
            "--request-timeout=20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(watch.stdout.take().context("stdout")?).lines();
    let seen = tokio::time::timeout(STEP, async {
        let mut changed = false;
        while let Some(line) = lines.next_line().await? {
            if line.contains("reviews") && !changed {
                let mut vs = emu.get("vs", Some("demo"), "reviews")?.context("vs")?;
                vs["spec"]["hosts"] = json!(["watched.example"]);
                emu.apply(vs)?;
                changed = true;
            } else if line.contains("watched.example") {
                return Ok::<_, anyhow::Error>(line);
            }
        }
        bail!("kubectl get --watch ended without showing the change")
    })
    .await
    .context("kubectl get --watch showed no change")??;
    ensure!(seen.starts_with("reviews"), "{seen}");
    watch.kill().await?;

    // delete.
    let out = k.ok(&["delete", "vs", "reviews", "-n", "demo"]).await?;
    ensure!(out.contains("\"reviews\" deleted"), "{out}");
    ensure!(emu.get("vs", Some("demo"), "reviews")?.is_none());
    let out = k
        .ok(&["delete", "-f", &edited, "--ignore-not-found"])
        .await?;
    ensure!(out.contains("namespace \"demo\" deleted"), "{out}");
    ensure!(
        emu.list("pods", Some("demo"))?.is_empty(),
        "the namespace took its pods along"
    );

    // RBAC-style denial, as kubectl prints it.
    emu.forbid("pods", Verb::List)?;
    let denied = k.run(&["get", "pods", "-n", "kube-system"]).await?;
    ensure!(!denied.ok, "a forbidden list must fail");
    ensure!(
        denied.stderr.contains(r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:istio-system:shoal" cannot list resource "pods" in API group "" in the namespace "kube-system""#),
        "{}",
        denied.stderr
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_drives_the_emulator() -> Result<()> {
    with_each_kubectl(async |bin| kubectl_flows(bin).await).await
}

#[tokio::test]
async fn python_client_lists_watches_and_relists_after_410() -> Result<()> {
    let Some(python) = std::env::var_os("SHOAL_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!("SKIPPED: SHOAL_PYTHON is not set (scripts/test sets it to .venv/py/bin/python)");
        return Ok(());
    };
    let has_module = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?
        .success();
    if !has_module {
        eprintln!("SKIPPED: {python:?} has no `kubernetes` module (scripts/venv.sh: add_to_venv)");
        return Ok(());
    }
    let emu = Emulator::start(Options::default()).await?;
    emu.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: py}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: before, namespace: py}\ndata: {a: '1'}\n")?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    emu.kubeconfig(&kubeconfig)?;
    let mut child = Command::new(&python)
        .arg(format!("{CRATE}/py/watch_client.py"))
        .arg(&kubeconfig)
        .args(["py", "py-cm"])
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut next = async || -> Result<Value> {
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .context("python client said nothing")??
            .context("python client exited")?;
        let v: Value = serde_json::from_str(&line).with_context(|| line.clone())?;
        ensure!(v.get("error").is_none(), "python client: {v}");
        Ok(v)
    };
    let listed = next().await?;
    ensure!(listed["listed"] == json!(["before"]), "{listed}");
    let first_rv: u64 = listed["rv"].as_str().unwrap_or("").parse()?;
    // Changes made now reach the Python watch.
    let cm = |data: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "py-cm", "namespace": "py"}, "data": {"k": data}});
    emu.apply(cm("1"))?;
    emu.apply(cm("2"))?;
    emu.delete("configmaps", Some("py"), "py-cm")?;
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = next().await?;
        got.push((e["event"].clone(), e["data"]["k"].clone()));
    }
    ensure!(
        got == [
            (json!("ADDED"), json!("1")),
            (json!("MODIFIED"), json!("2")),
            (json!("DELETED"), json!("2"))
        ],
        "{got:?}"
    );
    ensure!(next().await?["ready"] == true);
    let lists_before = emu.requests(Verb::List, "configmaps")?;
    emu.compact();
    stdin.write_all(b"go\n").await?;
    stdin.flush().await?;
    let expired = next().await?;
    ensure!(expired["expired"] == 410, "{expired}");
    let relisted = next().await?;
    ensure!(relisted["relisted"] == json!(["before"]), "{relisted}");
    ensure!(relisted["rv"].as_str().unwrap_or("").parse::<u64>()? > first_rv);
    ensure!(
        emu.requests(Verb::List, "configmaps")? == lists_before + 1,
        "one re-list"
    );
    let status = tokio::time::timeout(STEP, child.wait()).await??;
    ensure!(status.success(), "python client exited with {status}");
    Ok(())
}
