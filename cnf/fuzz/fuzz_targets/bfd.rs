//! Any bytes as a BFD Control packet and as an IP packet for a hub's path monitor.
//! The body and its oracles: `signpost_cnf::fuzzing::bfd`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signpost_cnf::fuzzing::bfd(data));
