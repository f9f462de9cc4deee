//! A delta session fed an arbitrary sequence of requests (subscriptions, ACKs, NACKs,
//! stale nonces, resumes with arbitrary versions) while its views publish new snapshots.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_cache::session::DeltaSession;
use shoal_cache_fuzz::{Op, run};

fuzz_target!(|ops: Vec<Op>| {
    run::<DeltaSession>(&ops);
});
