//! Arbitrary bytes as the body of a new ADS stream, in arbitrary DATA frames: gRPC framing
//! and its size limit, the first request's decoding (delta or SotW), its node id and shard.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    delta: bool,
    max_message_size: u16,
    shard_count: u32,
    chunks: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    shoal_router::fuzzing::first_request(
        input.delta,
        input.chunks,
        usize::from(input.max_message_size),
        input.shard_count,
    );
});
