//! Compiles ztunnel's workload discovery and authorization protos (`proto/istio/`, shoal's
//! own rendition of Istio's wire types) and shoal's federation protocol
//! (`proto/shoal/`) into Rust, and keeps their descriptors for JSON
//! rendering. Map fields become `BTreeMap`s, so encoding is deterministic (resource
//! versions are content hashes).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/istio/workload/workload.proto",
        "proto/istio/security/authorization.proto",
        "proto/shoal/federation/v1/federation.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("istio_descriptors.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
