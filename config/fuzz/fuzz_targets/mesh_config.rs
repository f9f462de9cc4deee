//! Arbitrary text as `--mesh-config` (a MeshConfig, or an `istio` ConfigMap holding one)
//! and as `--mesh-networks` (a MeshNetworks, or that ConfigMap's `meshNetworks` key):
//! parsed and checked, and any networks read asked where an address belongs. Nothing may
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = shoal_config::mesh_config::parse(text);
        if let Ok((networks, _)) = shoal_config::mesh_networks::parse(text) {
            for address in ["10.1.2.3", "fd00::1", "0.0.0.0", "not an address"] {
                let _ = networks.of_address(address);
            }
            let _ = networks.of_registry("Kubernetes");
        }
    }
});
