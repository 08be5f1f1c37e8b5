//! Path monitoring and session-smart path choice: which peer paths are up and how good they
//! are, and which path (and service location) each session uses.
//!
//! ```text
//!  BFD packets ──▶ monitor ──(PathReport: liveness + quality per path)──▶ every pipeline's book
//!  (runtime)       bfd::Session per path, quality::Quality        book: SLA classes, targets,
//!                  (one per router, sans-IO)                        hysteresis → choose / move
//! ```
//!
//! - [`bfd`]: RFC 5880 Control packets and the session state machine (asynchronous mode).
//! - [`quality`]: latency, jitter and loss estimates from Poll/Final round trips and
//!   authenticated sequence numbers.
//! - [`monitor`]: one BFD session per peer path, framing (single-hop / multihop), NAT
//!   learning, authentication with a key from the peer key; produces [`book::PathReport`]s.
//! - [`book`]: per SLA class and peer the target path, with hold-down; the pipeline's
//!   per-packet check is two array reads.
//!
//! Defaults suited to a store: 50 ms × 3 (a dead path is noticed within 150 ms), 1 s slow
//! rate until Up, 5 s hold-down before sessions return to a recovered path.

pub mod bfd;
pub mod book;
pub mod monitor;
pub mod quality;

#[cfg(test)]
mod failover_tests;

use crate::packet::ip_protocol;

/// Whether a UDP packet to the router is BFD: to or from the single-hop or multihop port (an
/// answer through a NAT comes from 4784 to the port the router sent from).
#[inline]
pub fn is_bfd(protocol: u8, src_port: u16, dst_port: u16) -> bool {
    let bfd = |p| p == bfd::SINGLE_HOP_PORT || p == bfd::MULTIHOP_PORT;
    protocol == ip_protocol::UDP && (bfd(dst_port) || bfd(src_port))
}
