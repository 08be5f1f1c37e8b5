//! The bodies of the router's fuzz targets, one function per target taking the fuzzer's bytes.
//! They live in the crate (not in `cnf/fuzz/`) so that `cargo test` runs the same code on stable
//! Rust (`cnf/tests/fuzz_smoke.rs`) and `cargo fuzz` (`cnf/fuzz/`) on nightly with libFuzzer.
//!
//! Each body is an oracle, not only a "does not panic" run: an `assert!` in here that fails is
//! a bug in the code under test (or in the oracle, which says why it holds).
//!
//! - [`packet_views`]: every checked view, every getter, setters read back, full and RFC 1624
//!   incremental checksums agreeing.
//! - [`svr_metadata`]: classification, the block view, the TLV iterator, and `Metadata` parse →
//!   emit → parse giving back an equal value and canonical bytes.
//! - [`pcap_inspect`]: the capture inspector on a file, and on the bytes as one packet of each
//!   link type; files that read are rewritten and read back equal.
//! - [`pipeline`]: a store edge and a cloud hub pipeline driven by a script of packets, clock
//!   ticks and path changes, WAN packets handed from one router to the other; every forwarded
//!   packet is a well-formed IP packet whose checksums verify when the input's did, and what a
//!   peer delivers is what the other side sent.
//!
//! - [`bfd`]: BFD Control packets through the codec (parse → emit → parse, every header bit a
//!   field) and into a hub's path monitor.
//! - [`health`]: service-location health messages into a store (accepted only when authentic)
//!   and probe answers into a hub's prober (whatever it sends stays valid).
//!
//! Not a public API (`#[doc(hidden)]`): the names may change with the targets.

mod bfd;
mod health;
mod pcap;
mod pipeline;
mod seeds;
mod svr;
mod views;

pub use pipeline::{Outcome, check_forwarded_packet, checksums_verify, pipeline_outcome};
pub use seeds::{Seed, seeds};

/// Fuzz target `packet_views`: the bytes as an Ethernet frame, an ARP packet, IPv4 and IPv6
/// packets, and TCP, UDP and ICMP messages.
pub fn packet_views(data: &[u8]) {
    views::run(data);
}

/// Fuzz target `svr_metadata`: the bytes as the start of an L4 payload that may carry SVR
/// metadata.
pub fn svr_metadata(data: &[u8]) {
    svr::run(data);
}

/// Fuzz target `pcap_inspect`: the bytes as a pcap file, and as one captured packet.
pub fn pcap_inspect(data: &[u8]) {
    pcap::run(data);
}

/// Fuzz target `bfd`: the bytes as a BFD Control packet and as an IP packet for the path
/// monitor.
pub fn bfd(data: &[u8]) {
    bfd::run(data);
}

/// Fuzz target `health`: the bytes as a peer's health message for a store, and as an answer
/// to a hub's probes.
pub fn health(data: &[u8]) {
    health::run(data);
}

/// Fuzz target `pipeline`: the bytes as a script for a store edge and a cloud hub (the format
/// is in `fuzzing/pipeline.rs`).
pub fn pipeline(data: &[u8]) {
    let _ = pipeline_outcome(data);
}
