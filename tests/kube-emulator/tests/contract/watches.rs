//! Watches, CRD lifecycle and restarts.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::common::{TIMEOUT, cm, rv};
use crate::{CMS, start, widget_crd};

#[tokio::test]
async fn watches_replay_history_follow_selectors_and_expire() -> Result<()> {
    let (emu, c) = start().await?;
    let (_, a) = c.post(CMS, &cm("a", json!({"app": "x"}))).await?;
    let start_rv = rv(&a);
    c.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        r#"{"data":{"k":"2"}}"#,
    )
    .await?;
    // From a resourceVersion: history after it, in order.
    let mut w = c
        .watch(&format!("{CMS}?watch=true&resourceVersion={start_rv}"))
        .await?;
    let mut sel = c.watch(&format!("{CMS}?watch=1&labelSelector=app%3Dx&resourceVersion={start_rv}&allowWatchBookmarks=true")).await?;
    let e = w.next_change(TIMEOUT).await?;
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["data"]["k"], "2");
    assert_eq!(e["object"]["apiVersion"], "v1");
    assert_eq!(sel.next_change(TIMEOUT).await?["type"], "MODIFIED");
    // Leaving the selector: DELETED for the selective watcher, MODIFIED for the other.
    c.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"app":"y"}}}"#,
    )
    .await?;
    let e = w.next_change(TIMEOUT).await?;
    assert_eq!(e["type"], "MODIFIED");
    let d = sel.next_change(TIMEOUT).await?;
    assert_eq!(d["type"], "DELETED");
    assert_eq!(
        d["object"]["metadata"]["labels"]["app"], "x",
        "the state that matched"
    );
    assert_eq!(
        d["object"]["metadata"]["resourceVersion"],
        e["object"]["metadata"]["resourceVersion"]
    );
    // Entering it again: ADDED.
    c.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"app":"x"}}}"#,
    )
    .await?;
    assert_eq!(sel.next_change(TIMEOUT).await?["type"], "ADDED");
    c.delete(&format!("{CMS}/a")).await?;
    w.next_change(TIMEOUT).await?;
    let d = w.next_change(TIMEOUT).await?;
    assert_eq!(d["type"], "DELETED");
    assert!(rv(&d["object"]) > rv(&e["object"]));
    // Bookmarks carry only the resourceVersion.
    let b = loop {
        let e = sel
            .next(TIMEOUT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("ended"))?;
        if e["type"] == "BOOKMARK" {
            break e;
        }
    };
    assert_eq!(b["object"]["kind"], "ConfigMap");
    assert!(
        b["object"]["metadata"]["resourceVersion"]
            .as_str()
            .is_some()
    );
    assert!(b["object"].get("data").is_none());
    // A watch from before the compaction: one 410 ERROR event, then the end.
    emu.compact();
    let mut old = c
        .watch(&format!("{CMS}?watch=true&resourceVersion={start_rv}"))
        .await?;
    let e = old
        .next(TIMEOUT)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no event"))?;
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(old.next(TIMEOUT).await?.is_none());
    // Existing watches go on after compaction.
    c.post(CMS, &cm("b", json!({}))).await?;
    assert_eq!(w.next_change(TIMEOUT).await?["type"], "ADDED");
    Ok(())
}

#[tokio::test]
async fn watch_initial_state_timeout_and_initial_events_end() -> Result<()> {
    let (_emu, c) = start().await?;
    c.post(CMS, &cm("a", json!({}))).await?;
    let mut w = c
        .watch(&format!("{CMS}?watch=true&timeoutSeconds=1"))
        .await?;
    assert_eq!(
        w.next(TIMEOUT).await?.map(|e| e["type"].clone()),
        Some(json!("ADDED"))
    );
    let t = std::time::Instant::now();
    assert!(
        w.next(Duration::from_secs(5)).await?.is_none(),
        "timeoutSeconds ends the stream"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    let mut s = c.watch(&format!("{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")).await?;
    assert_eq!(
        s.next(TIMEOUT).await?.map(|e| e["type"].clone()),
        Some(json!("ADDED"))
    );
    let b = s.next(TIMEOUT).await?.unwrap_or_default();
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    Ok(())
}

#[tokio::test]
async fn crds_register_every_version_and_take_their_objects_along() -> Result<()> {
    let (emu, c) = start().await?;
    let (code, crd) = c
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &widget_crd(),
        )
        .await?;
    assert_eq!(code, 201, "{crd}");
    assert!(crd["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    }));
    let (_, groups) = c.get("/apis").await?;
    let g = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == "example.com")
        .cloned()
        .unwrap_or_default();
    assert_eq!(g["preferredVersion"]["version"], "v1");
    assert_eq!(g["versions"].as_array().map(Vec::len), Some(2));
    let (_, res) = c.get("/apis/example.com/v1beta1").await?;
    let names: Vec<&str> = res["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status"]);
    assert_eq!(res["resources"][0]["shortNames"], json!(["wd"]));
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}, "status": {"ready": true}});
    let (code, created) = c
        .post("/apis/example.com/v1/namespaces/default/widgets", &w)
        .await?;
    assert_eq!(code, 201, "{created}");
    assert!(
        created.get("status").is_none(),
        "status is ignored on create"
    );
    let (_, beta) = c
        .get("/apis/example.com/v1beta1/namespaces/default/widgets/w")
        .await?;
    assert_eq!(beta["apiVersion"], "example.com/v1beta1");
    assert_eq!(beta["spec"]["size"], 1);
    // Status subresource isolation.
    let mut upd = beta.clone();
    upd["apiVersion"] = json!("example.com/v1");
    upd["spec"]["size"] = json!(2);
    upd["status"] = json!({"ready": "ignored"});
    let (_, after) = c
        .put("/apis/example.com/v1/namespaces/default/widgets/w", &upd)
        .await?;
    assert_eq!(after["metadata"]["generation"], 2);
    assert!(after.get("status").is_none());
    let mut st = after.clone();
    st["status"] = json!({"ready": true});
    st["spec"]["size"] = json!(99);
    let (code, after) = c
        .put(
            "/apis/example.com/v1/namespaces/default/widgets/w/status",
            &st,
        )
        .await?;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"]["ready"], true);
    assert_eq!(
        after["spec"]["size"], 2,
        "a status write changes only status"
    );
    assert_eq!(
        after["metadata"]["generation"], 2,
        "status changes keep the generation"
    );
    let (_, after) = c
        .patch(
            "/apis/example.com/v1/namespaces/default/widgets/w/status",
            "application/merge-patch+json",
            r#"{"status":{"phase":"Ok"}}"#,
        )
        .await?;
    assert_eq!(after["status"], json!({"ready": true, "phase": "Ok"}));
    let (code, _) = c
        .patch(
            "/apis/example.com/v1/namespaces/default/widgets/w",
            "application/strategic-merge-patch+json",
            "{}",
        )
        .await?;
    assert_eq!(code, 415, "no strategic merge patch for custom resources");
    assert_eq!(
        emu.get("wd", Some("default"), "w")?
            .map(|w| w["status"]["phase"].clone()),
        Some(json!("Ok"))
    );
    // Deleting the CRD deletes its objects (watchers see it) and the endpoints.
    let mut watch = c
        .watch("/apis/example.com/v1/namespaces/default/widgets?watch=true")
        .await?;
    assert_eq!(
        watch.next(TIMEOUT).await?.map(|e| e["type"].clone()),
        Some(json!("ADDED"))
    );
    let (code, _) = c
        .delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
        .await?;
    assert_eq!(code, 200);
    assert_eq!(
        watch.next(TIMEOUT).await?.map(|e| e["type"].clone()),
        Some(json!("DELETED"))
    );
    assert!(watch.next(TIMEOUT).await?.is_none());
    assert_eq!(
        c.get("/apis/example.com/v1/namespaces/default/widgets")
            .await?
            .0,
        404
    );
    assert_eq!(c.get("/apis/example.com/v1").await?.0, 404);
    // A CRD with a name that is not plural.group is invalid.
    let mut bad = widget_crd();
    bad["metadata"]["name"] = json!("nope");
    assert_eq!(
        c.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &bad
        )
        .await?
        .0,
        422
    );
    Ok(())
}

#[tokio::test]
async fn restart_keeps_objects_and_compacts_history() -> Result<()> {
    let (emu, c) = start().await?;
    let (_, a) = c.post(CMS, &cm("a", json!({}))).await?;
    let mut w = c
        .watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&a)))
        .await?;
    emu.stop().await;
    assert!(
        w.next(TIMEOUT).await.is_err() || w.next(TIMEOUT).await?.is_none(),
        "stop cuts watches"
    );
    assert!(
        c.get(CMS).await.is_err(),
        "connections refused while stopped"
    );
    emu.restart().await?;
    let (code, l) = c.get(CMS).await?;
    assert_eq!(code, 200);
    assert_eq!(l["items"].as_array().map(Vec::len), Some(1));
    let mut w = c
        .watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&a) - 1))
        .await?;
    assert_eq!(
        w.next(TIMEOUT).await?.map(|e| e["object"]["code"].clone()),
        Some(json!(410))
    );
    // Pause: unreachable for a while, then back by itself.
    emu.pause(Duration::from_millis(300)).await;
    assert!(c.get(CMS).await.is_err());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(c.get(CMS).await?.0, 200);
    Ok(())
}
