use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::*;
use crate::meta::Kind;
use crate::parse::{kind_for, split_documents};
use crate::resources::custom_resource;

fn str_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v}"))
}

fn versions(crd: &Value) -> &Vec<Value> {
    crd["spec"]["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions in {crd}"))
}

#[test]
fn every_custom_kind_has_one_crd_and_built_in_kinds_none() {
    for kind in Kind::ALL {
        assert_eq!(
            custom_resource(kind).is_none(),
            kind.builtin(),
            "{kind}: a custom kind needs a row in resources::CUSTOM_RESOURCES"
        );
    }
    let custom = Kind::ALL.iter().filter(|k| !k.builtin()).count();
    let kinds: BTreeSet<Kind> = CUSTOM_RESOURCES.iter().map(|r| r.kind).collect();
    assert_eq!(kinds.len(), custom);
    assert_eq!(crds().len(), custom);
}

#[test]
fn names_are_plural_dot_group() {
    let mut names = BTreeSet::new();
    let mut short_names = BTreeSet::new();
    for crd in crds() {
        let name = str_at(&crd, &["metadata", "name"]);
        let plural = str_at(&crd, &["spec", "names", "plural"]);
        let group = str_at(&crd, &["spec", "group"]);
        let kind = str_at(&crd, &["spec", "names", "kind"]);
        assert_eq!(name, format!("{plural}.{group}"));
        assert!(names.insert(name.to_string()), "{name} twice");
        assert!(crate::host::is_dns_label(plural) && plural == plural.to_ascii_lowercase());
        assert_eq!(
            str_at(&crd, &["spec", "names", "singular"]),
            kind.to_ascii_lowercase()
        );
        assert_eq!(
            str_at(&crd, &["spec", "names", "listKind"]),
            format!("{kind}List")
        );
        assert_eq!(str_at(&crd, &["spec", "scope"]), "Namespaced");
        let categories = crd["spec"]["names"]["categories"].as_array();
        assert!(categories.is_some_and(|c| !c.is_empty()), "{name}");
        for short in crd["spec"]["names"]["shortNames"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(short_names.insert(short.to_string()), "{short} twice");
        }
    }
    assert!(names.contains("virtualservices.networking.istio.io"));
    assert!(names.contains("authorizationpolicies.security.istio.io"));
    assert!(names.contains("httproutes.gateway.networking.k8s.io"));
}

#[test]
fn every_version_served_is_one_shoal_parses() {
    for (crd, r) in crds().iter().zip(CUSTOM_RESOURCES.iter()) {
        let group = str_at(crd, &["spec", "group"]);
        let kind = str_at(crd, &["spec", "names", "kind"]);
        for v in versions(crd) {
            let api_version = format!("{group}/{}", str_at(v, &["name"]));
            assert_eq!(
                kind_for(&api_version, kind),
                Some(r.kind),
                "{api_version} {kind}"
            );
            assert_eq!(v["served"], true);
        }
    }
}

#[test]
fn one_storage_version_each() {
    for crd in crds() {
        let stored: Vec<&str> = versions(&crd)
            .iter()
            .filter(|v| v["storage"] == true)
            .map(|v| str_at(v, &["name"]))
            .collect();
        assert_eq!(stored.len(), 1, "{}", crd["metadata"]["name"]);
    }
    let storage = |kind| custom_resource(kind).map(|r| r.storage);
    assert_eq!(storage(Kind::VirtualService), Some("v1"));
    assert_eq!(storage(Kind::AuthorizationPolicy), Some("v1"));
    assert_eq!(storage(Kind::ProxyConfig), Some("v1beta1"));
    assert_eq!(storage(Kind::KubeGateway), Some("v1"));
    assert_eq!(storage(Kind::ReferenceGrant), Some("v1beta1"));
    assert_eq!(storage(Kind::TcpRoute), Some("v1alpha2"));
}

#[test]
fn any_spec_and_status_through_the_status_subresource() {
    let any = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    for crd in crds() {
        for v in versions(&crd) {
            let schema = &v["schema"]["openAPIV3Schema"];
            assert_eq!(schema["type"], "object");
            assert_eq!(schema["properties"]["spec"], any);
            assert_eq!(schema["properties"]["status"], any);
            assert_eq!(v["subresources"], json!({"status": {}}));
        }
    }
}

#[test]
fn printer_columns_end_in_age_where_istio_and_the_gateway_api_have_it() {
    let columns = |name: &str| -> Vec<String> {
        let crd = crds()
            .into_iter()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"));
        versions(&crd)[0]["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{}={}", str_at(c, &["name"]), str_at(c, &["jsonPath"])))
            .collect()
    };
    assert_eq!(
        columns("virtualservices.networking.istio.io"),
        [
            "Gateways=.spec.gateways",
            "Hosts=.spec.hosts",
            "Age=.metadata.creationTimestamp"
        ]
    );
    assert_eq!(
        columns("gateways.gateway.networking.k8s.io"),
        [
            "Class=.spec.gatewayClassName",
            "Address=.status.addresses[*].value",
            r#"Programmed=.status.conditions[?(@.type=="Programmed")].status"#,
            "Age=.metadata.creationTimestamp"
        ]
    );
    // No columns: kubectl shows name and age.
    assert!(columns("sidecars.networking.istio.io").is_empty());
    for crd in crds() {
        for v in versions(&crd) {
            let Some(list) = v["additionalPrinterColumns"].as_array() else {
                continue;
            };
            assert!(
                list.iter()
                    .any(|c| c["name"] == "Age" && c["type"] == "date"),
                "{}",
                crd["metadata"]["name"]
            );
        }
    }
}

#[test]
fn the_yaml_is_deterministic_and_reads_back_as_the_crds() {
    let text = crds_yaml();
    assert_eq!(text, crds_yaml());
    let docs: Vec<Value> = split_documents(&text)
        .into_iter()
        .map(|(line, doc)| {
            serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("document at line {line}: {e}"))
        })
        .collect();
    assert_eq!(docs, crds());
}

/// `deploy/kind/10-crds.yaml` is what `shoal crds` prints. `SHOAL_UPDATE_GOLDEN=1` writes it.
#[test]
fn the_committed_manifest_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kind/10-crds.yaml");
    let text = crds_yaml();
    if std::env::var_os("SHOAL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        committed == text,
        "{} is stale: run `shoal crds > deploy/kind/10-crds.yaml` or \
         `SHOAL_UPDATE_GOLDEN=1 cargo test -p shoal-config --lib crds`",
        path.display()
    );
}
