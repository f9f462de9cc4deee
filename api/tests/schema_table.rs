//! Keeps the files shoal derives from the Envoy protos shipped by `envoy-types` current:
//!
//! - `src/canonical/schema.rs`: for every message from which a protobuf map or a
//!   `google.protobuf.Any` can be reached, the fields that lead there;
//! - `descriptors/envoy.bin`: the descriptors of the files shoal's resources use (and their
//!   imports), for JSON rendering (config dumps, golden tests).
//!
//! Regenerate with `SHOAL_REGEN_SCHEMA=1 cargo test -p shoal-api --test schema_table`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use prost::Message;
use shoal_api::pb::google::protobuf::{
    DescriptorProto, FileDescriptorSet, field_descriptor_proto::Label, field_descriptor_proto::Type,
};

fn envoy_types_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let pkg = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .expect("envoy-types is a dependency");
    PathBuf::from(pkg["manifest_path"].as_str().expect("manifest path"))
        .parent()
        .expect("package dir")
        .to_path_buf()
}

#[derive(Clone)]
enum Kind {
    Message(String),
    Map { value: Option<String> },
}

fn collect(prefix: &str, msg: &DescriptorProto, out: &mut BTreeMap<String, Vec<(i32, Kind)>>) {
    let name = format!("{prefix}.{}", msg.name());
    let entries: BTreeMap<String, &DescriptorProto> = msg
        .nested_type
        .iter()
        .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|n| (format!("{name}.{}", n.name()), n))
        .collect();
    let mut fields = Vec::new();
    for f in &msg.field {
        if f.r#type() != Type::Message {
            continue;
        }
        let ty = f.type_name().to_string();
        if let Some(entry) = entries.get(&ty) {
            let value = entry
                .field
                .iter()
                .find(|v| v.number() == 2)
                .filter(|v| v.r#type() == Type::Message)
                .map(|v| v.type_name().to_string());
            fields.push((f.number(), Kind::Map { value }));
        } else {
            let _ = f.label() == Label::Repeated;
            fields.push((f.number(), Kind::Message(ty)));
        }
    }
    out.insert(name.clone(), fields);
    for n in &msg.nested_type {
        if !n.options.as_ref().is_some_and(|o| o.map_entry()) {
            collect(&name, n, out);
        }
    }
}

fn descriptor_set() -> FileDescriptorSet {
    let bin = std::fs::read(envoy_types_dir().join("src/generated/types.bin")).expect("types.bin");
    FileDescriptorSet::decode(bin.as_slice()).expect("descriptor set decodes")
}

/// Proto files whose messages shoal emits or reads; the subset holds them and their imports.
const ROOT_FILES: &[&str] = &[
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/path/match/uri_template/v3/uri_template_match.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/proxy_protocol/v3/proxy_protocol.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto",
    "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/network/set_filter_state/v3/set_filter_state.proto",
    "envoy/service/discovery/v3/discovery.proto",
];

fn descriptor_subset(set: &FileDescriptorSet) -> Vec<u8> {
    let by_name: BTreeMap<&str, _> = set.file.iter().map(|f| (f.name(), f)).collect();
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = ROOT_FILES.to_vec();
    while let Some(name) = stack.pop() {
        if !wanted.insert(name) {
            continue;
        }
        let file = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{name} is in envoy-types"));
        stack.extend(file.dependency.iter().map(String::as_str));
    }
    // Keep the original (dependency-respecting) order.
    let mut files: Vec<_> = set
        .file
        .iter()
        .filter(|f| wanted.contains(f.name()))
        .cloned()
        .collect();
    for f in &mut files {
        f.source_code_info = None;
    }
    FileDescriptorSet { file: files }.encode_to_vec()
}

fn generate_table(set: &FileDescriptorSet) -> String {
    let mut all = BTreeMap::new();
    for file in &set.file {
        let pkg = if file.package().is_empty() {
            String::new()
        } else {
            format!(".{}", file.package())
        };
        for m in &file.message_type {
            collect(&pkg, m, &mut all);
        }
    }
    const ANY: &str = ".google.protobuf.Any";
    // Least fixpoint: a message matters when a map, an Any, or a message that matters is
    // reachable from one of its fields.
    let mut relevant: BTreeSet<String> = BTreeSet::new();
    relevant.insert(ANY.to_string());
    loop {
        let before = relevant.len();
        for (name, fields) in &all {
            if relevant.contains(name) {
                continue;
            }
            let hit = fields.iter().any(|(_, k)| match k {
                Kind::Map { .. } => true,
                Kind::Message(t) => relevant.contains(t),
            });
            if hit {
                relevant.insert(name.clone());
            }
        }
        if relevant.len() == before {
            break;
        }
    }
    let names: Vec<&String> = relevant.iter().collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut s = String::new();
    s.push_str(
        "// @generated by api/tests/schema_table.rs from envoy-types' descriptor set; do not edit.\n\
         // Every message from which a protobuf map or a google.protobuf.Any is reachable, with the\n\
         // fields that lead there. Messages are sorted by full name; fields by number.\n\n\
         use super::{Field, Kind};\n\n",
    );
    s.push_str(&format!("pub(super) const ANY: u16 = {};\n\n", index[ANY]));
    s.push_str("pub(super) static MESSAGES: &[(&str, &[Field])] = &[\n");
    for name in &names {
        let mut fields: Vec<String> = Vec::new();
        if name.as_str() != ANY {
            let mut list = all[name.as_str()].clone();
            list.sort_by_key(|(n, _)| *n);
            for (num, kind) in list {
                match kind {
                    Kind::Map { value } => {
                        let v = value
                            .as_deref()
                            .and_then(|v| index.get(v))
                            .map_or("None".to_string(), |i| format!("Some({i})"));
                        fields.push(format!("({num}, Kind::Map({v}))"));
                    }
                    Kind::Message(t) => {
                        if let Some(i) = index.get(t.as_str()) {
                            fields.push(format!("({num}, Kind::Message({i}))"));
                        }
                    }
                }
            }
        }
        s.push_str(&format!(
            "    (\"{}\", &[{}]),\n",
            name.trim_start_matches('.'),
            fields.join(", ")
        ));
    }
    s.push_str("];\n");
    s
}

#[test]
fn derived_files_are_current() {
    let set = descriptor_set();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let outputs = [
        (
            dir.join("src/canonical/schema.rs"),
            generate_table(&set).into_bytes(),
        ),
        (dir.join("descriptors/envoy.bin"), descriptor_subset(&set)),
    ];
    for (path, fresh) in outputs {
        if std::env::var_os("SHOAL_REGEN_SCHEMA").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &fresh).expect("write derived file");
            continue;
        }
        let current = std::fs::read(&path).unwrap_or_default();
        assert!(
            current == fresh,
            "{} is stale: run SHOAL_REGEN_SCHEMA=1 cargo test -p shoal-api --test schema_table",
            path.display()
        );
    }
}
