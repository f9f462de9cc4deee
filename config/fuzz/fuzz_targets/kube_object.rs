//! Arbitrary JSON as an object a Kubernetes watch delivers, for several kinds: pruned,
//! fingerprinted and parsed by the source's tracker. Nothing may panic, and delivering
//! the same object again sends nothing (re-lists and resyncs must cost the proxies
//! nothing, whatever the object).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_config::Kind;
use shoal_config::source::SourceUpdate;
use shoal_config::source::kubernetes::tracker::{KindId, Tracker};

const KINDS: [(Kind, &str, &str, &str); 6] = [
    (Kind::Pod, "", "Pod", "v1"),
    (Kind::Service, "", "Service", "v1"),
    (Kind::Secret, "", "Secret", "v1"),
    (Kind::Namespace, "", "Namespace", "v1"),
    (Kind::VirtualService, "networking.istio.io", "VirtualService", "networking.istio.io/v1"),
    (Kind::KubeGateway, "gateway.networking.k8s.io", "Gateway", "gateway.networking.k8s.io/v1"),
];

fuzz_target!(|data: &[u8]| {
    let Ok(object) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for (kind, group, name, api_version) in KINDS {
        let mut tracker = Tracker::new(KindId { kind, group, name }, api_version);
        let first = tracker.apply(object.clone());
        if matches!(first, Some(SourceUpdate::Apply { .. })) {
            assert!(tracker.apply(object.clone()).is_none(), "the same object sent twice");
        }
        let _ = tracker.delete(&object);
    }
});
