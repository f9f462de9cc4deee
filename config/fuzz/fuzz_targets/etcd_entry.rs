//! Arbitrary bytes as an etcd key below the prefix and its value (split at the first NUL):
//! key parsing, value decoding, the check against the key, typed parsing and validation, by
//! the etcd source's tracker. Nothing may panic; the update names the key; the same value
//! put again, or a re-read of the same prefix, sends nothing; a delete removes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_config::source::SourceUpdate;
use shoal_config::source::etcd::key::source_id;
use shoal_config::source::etcd::tracker::Tracker;
use shoal_config::source::etcd::Prefix;

fuzz_target!(|data: &[u8]| {
    let (tail, value) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let mut key = b"/shoal/config/".to_vec();
    key.extend_from_slice(tail);
    let mut tracker = Tracker::new(Prefix::new("/shoal/config"));
    match tracker.put(&key, value) {
        Some(SourceUpdate::Apply { source, docs }) => {
            assert_eq!(source, source_id(&key));
            assert_eq!(docs.len(), 1, "one document per key");
        }
        other => panic!("a first put is an apply: {other:?}"),
    }
    assert!(tracker.put(&key, value).is_none(), "the same value sent twice");
    assert!(tracker.resync([(key.as_slice(), value)]).is_empty(), "an unchanged re-read sent updates");
    assert!(matches!(tracker.delete(&key), Some(SourceUpdate::Remove { .. })));
});
