//! Any bytes as a pcap file, and as one captured packet, through the capture inspector.
//! The body and its oracles: `signpost_cnf::fuzzing::pcap_inspect`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signpost_cnf::fuzzing::pcap_inspect(data));
