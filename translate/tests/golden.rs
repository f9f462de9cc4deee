//! Golden tests: Istio YAML in, Envoy resources out (as Envoy's JSON), one directory per case.
//!
//! Each `golden/CASE/` holds `config.yaml` (the mesh), `proxies.yaml` (a map from output name to
//! node id, metadata, optionally `locality: REGION/ZONE/SUBZONE` and `workload_certs: false`), optionally `mesh.yaml` (mesh options) and one `OUTPUT.json` per proxy
//! with every resource of its view.
//! Regenerate with `SHOAL_UPDATE_GOLDEN=1 cargo test -p shoal-translate --test golden`, then
//! review the diff against Istio's documented behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{Value, json};
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::google::protobuf::{Struct, Value as PValue, value::Kind};
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;
use shoal_translate::model::{FetchedJwks, JwksRef};
use shoal_translate::{MeshOptions, Proxy, Translator, ViewKey, ViewOutput};

fn to_struct(v: &Value) -> Struct {
    let mut fields = HashMap::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        let kind = match v {
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Object(_) => Kind::StructValue(to_struct(v)),
            other => Kind::StringValue(other.to_string()),
        };
        fields.insert(k.clone(), PValue { kind: Some(kind) });
    }
    Struct { fields }
}

fn render(out: &ViewOutput) -> Value {
    let section = |m: &BTreeMap<shoal_api::ResourceType, Vec<shoal_api::Resource>>| {
        let mut obj = serde_json::Map::new();
        for (ty, rs) in m {
            let list: Vec<Value> = rs
                .iter()
                .map(|r| shoal_api::json::to_json(ty.type_url(), &r.body).expect("renders"))
                .collect();
            obj.insert(ty.short_name().to_string(), Value::Array(list));
        }
        Value::Object(obj)
    };
    json!({ "resources": section(&out.resources), "on_demand": section(&out.on_demand) })
}

/// Mesh options of a case: the defaults, or what its optional `mesh.yaml` sets
/// (`trust_domain`, `root_namespace`, `auto_mtls`, `jwks_fetch`), after what its optional
/// `meshconfig.yaml` (an Istio MeshConfig) sets.
fn mesh_options(dir: &Path) -> MeshOptions {
    let mut opts = MeshOptions::default();
    // An Istio MeshConfig, through the parser `serve --mesh-config` uses.
    if let Ok(text) = std::fs::read_to_string(dir.join("meshconfig.yaml")) {
        let (mesh, _) = shoal_config::mesh_config::parse(&text).unwrap();
        opts.apply_mesh_config(&mesh);
    }
    let v = mesh_yaml(dir);
    if let Some(mode) = v.get("jwks_fetch") {
        opts.jwks_fetch = serde_json::from_value(mode.clone()).unwrap();
    }
    if let Some(td) = v["trust_domain"].as_str() {
        opts.trust_domain = td.to_string();
    }
    if let Some(root) = v["root_namespace"].as_str() {
        opts.root_namespace = root.to_string();
    }
    if let Some(auto) = v["auto_mtls"].as_bool() {
        opts.auto_mtls = auto;
    }
    opts
}

fn mesh_yaml(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("mesh.yaml"))
        .map(|text| serde_saphyr::from_str(&text).unwrap())
        .unwrap_or_default()
}

/// Key sets "the control plane fetched", from `mesh.yaml`: `jwks: {URI: KEYS}` (a URI) or
/// `{"openid:ISSUER": KEYS}` (discovered from the issuer).
fn fetched_jwks(dir: &Path) -> FetchedJwks {
    let v = mesh_yaml(dir);
    let Some(map) = v["jwks"].as_object() else {
        return FetchedJwks::new();
    };
    map.iter()
        .map(|(k, keys)| {
            let r = match k.strip_prefix("openid:") {
                Some(issuer) => JwksRef::Discover(issuer.to_string()),
                None => JwksRef::Uri(k.clone()),
            };
            (r, keys.as_str().unwrap().into())
        })
        .collect()
}

fn run_case(dir: &Path) -> Vec<String> {
    let mut store = ConfigStore::new();
    let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    store.apply("config.yaml", parse_yaml("config.yaml", &config));
    let errors: Vec<String> = store
        .issues()
        .iter()
        .filter(|i| i.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "{}: config has errors: {errors:#?}",
        dir.display()
    );
    let mut tr = Translator::new(store.snapshot(), mesh_options(dir));
    tr.set_jwks(fetched_jwks(dir));
    let proxies: BTreeMap<String, Value> =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("proxies.yaml")).unwrap())
            .unwrap();
    let update = std::env::var_os("SHOAL_UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (name, p) in proxies {
        let node = Node {
            id: p["id"].as_str().unwrap().to_string(),
            metadata: Some(to_struct(&p["metadata"])),
            locality: p["locality"].as_str().map(|l| {
                let mut parts = l.split('/').map(str::to_string);
                shoal_api::pb::envoy::config::core::v3::Locality {
                    region: parts.next().unwrap_or_default(),
                    zone: parts.next().unwrap_or_default(),
                    sub_zone: parts.next().unwrap_or_default(),
                }
            }),
            ..Default::default()
        };
        let proxy = Proxy::from_node(Some(&node)).unwrap();
        let mut key = ViewKey::for_proxy(tr.model(), &proxy);
        // `workload_certs: false`: a proxy that did not authenticate (no SDS secrets).
        if let Some(certs) = p["workload_certs"].as_bool() {
            key.workload_certs = certs;
        }
        let got = render(&tr.build(&key));
        let got = serde_json::to_string_pretty(&json!({ "view": key.id(), "output": got }))
            .unwrap()
            + "\n";
        let path = dir.join(format!("{name}.json"));
        if update {
            std::fs::write(&path, &got).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(got.as_str()) {
            failures.push(format!(
                "{} differs (SHOAL_UPDATE_GOLDEN=1 to regenerate, then review)",
                path.display()
            ));
        }
    }
    failures
}

#[test]
fn golden() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        // `inject/` holds the sidecar injector's cases (`tests/inject.rs`).
        .filter(|p| p.is_dir() && !p.ends_with("inject"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let failures: Vec<String> = cases.iter().flat_map(|c| run_case(c)).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
