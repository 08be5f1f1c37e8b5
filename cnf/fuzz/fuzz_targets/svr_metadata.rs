//! Any bytes as an L4 payload that may start with SVR metadata: parse, emit, parse.
//! The body and its oracles: `signpost_cnf::fuzzing::svr_metadata`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signpost_cnf::fuzzing::svr_metadata(data));
