//! Any bytes as a peer's health message for a store, and as an answer to a hub's probes.
//! The body and its oracles: `signpost_cnf::fuzzing::health`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signpost_cnf::fuzzing::health(data));
