//! Any bytes as a script of packets, clock ticks and path changes for a store and a hub.
//! The body and its oracles: `signpost_cnf::fuzzing::pipeline`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signpost_cnf::fuzzing::pipeline(data));
