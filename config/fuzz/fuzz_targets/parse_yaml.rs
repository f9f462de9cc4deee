//! Arbitrary text as a config file, the way the file source reads one: split into YAML
//! documents, parsed, typed and validated (`parse_yaml`), applied to a store under two
//! sources (so objects conflict), analyzed across objects, one source removed. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_config::analyze::analyze;
use shoal_config::parse::{Outcome, parse_yaml};
use shoal_config::store::ConfigStore;

fuzz_target!(|data: &[u8]| {
    // The file source rejects a file that is not UTF-8 before parsing it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = parse_yaml("fuzz.yaml", text);
    for d in &docs {
        assert!(
            d.origin.doc >= 1 && d.origin.line >= 1,
            "origin {:?}",
            d.origin
        );
        if let Outcome::Rejected { issues, .. } = &d.outcome {
            assert!(!issues.is_empty(), "a rejection without a reason");
        }
    }
    let mut store = ConfigStore::new();
    store.apply("a.yaml", docs.clone());
    store.apply("b.yaml", docs);
    let _ = analyze(&store.snapshot());
    store.remove_source("a.yaml");
});
