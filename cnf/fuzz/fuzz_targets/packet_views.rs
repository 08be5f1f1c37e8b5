//! Any bytes as Ethernet, ARP, IPv4, IPv6, TCP, UDP and ICMP: views, setters, checksums.
//! The body and its oracles: `signpost_cnf::fuzzing::packet_views`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signpost_cnf::fuzzing::packet_views(data));
