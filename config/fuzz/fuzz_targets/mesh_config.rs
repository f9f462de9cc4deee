//! Arbitrary text as `--mesh-config` (a MeshConfig, or an `istio` ConfigMap holding one):
//! parsed and checked. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = shoal_config::mesh_config::parse(text);
    }
});
