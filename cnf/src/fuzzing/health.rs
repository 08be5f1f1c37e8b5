//! Fuzz target `health`: the bytes as a peer's service-location health message for the
//! testbed store (the UDP payload, and wrapped in an IPv4/UDP packet from the hub to the store's
//! BFD port for its path monitor to tell apart), and as a LAN packet answering the testbed
//! hub's probes (after a round of probes went out).
//!
//! Oracles: a message the store accepts is authentic — byte for byte what the hub seals for
//! the same service, state and sequence number (no input can forge the HMAC; a seed is such a
//! message); whatever the prober sends, before and after the input, is a valid IPv4 packet
//! whose checksums verify.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::pipeline::lab_tables;
use crate::health::{HealthMessage, ServiceHealth, WallClock};
use crate::packet::{IcmpPacket, Ipv4Packet, TcpSegment, ip_packet, ip_protocol};
use crate::path::bfd;
use crate::path::monitor::{PathMonitor, udp_packet};
use crate::pipeline::Egress;

/// The clock both routers read in the target (µs since the epoch, 2026-12-01).
pub(super) const WALL: u64 = 1_796_083_200_000_000;
const HUB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const STORE_BROADBAND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

/// `payload` as the UDP payload of an IPv4 packet hub → store broadband, from the multihop
/// port to the store's first BFD source port.
pub(super) fn wrap(payload: &[u8]) -> Vec<u8> {
    let from = SocketAddr::from((HUB, bfd::MULTIHOP_PORT));
    let to = SocketAddr::from((STORE_BROADBAND, 49152));
    udp_packet(from, to, 254, 48, payload.get(..1400).unwrap_or(payload)).unwrap_or_default()
}

/// The hub's "payments is down" message to the store, sealed at [`WALL`].
pub(super) fn down_message() -> Vec<u8> {
    let (_, _, hub) = lab_tables(0);
    let Some(store) = hub.peers.first() else {
        return Vec::new();
    };
    HealthMessage {
        service: "payments".into(),
        from: hub.router.clone(),
        to: store.name.clone(),
        up: false,
    }
    .seal(store.keys.current(), WALL)
    .unwrap_or_default()
}

/// The hub's first round of probes (the same seed as [`run`] uses).
pub(super) fn first_probes() -> Vec<(Egress, Vec<u8>)> {
    let (now, _, hub) = lab_tables(0);
    let mut h = ServiceHealth::new(
        now,
        hub,
        WallClock {
            at: now,
            unix_us: WALL,
        },
        5,
    );
    let monitor = PathMonitor::new(now, Arc::clone(h.tables()), 5);
    let mut out = Vec::new();
    h.transmit(now, &monitor, &mut out);
    out
}

/// A packet the hub's prober sent is valid IPv4 with verifying checksums.
fn check_probe(packet: &[u8]) {
    let ip = Ipv4Packet::new_checked(packet).expect("the prober builds IPv4 here");
    assert!(ip.verify_checksum(), "IP checksum");
    let l4 = &packet[ip.header_len()..usize::from(ip.total_len())];
    match ip.protocol() {
        ip_protocol::ICMP => {
            let m = IcmpPacket::new_checked(l4).expect("ICMP");
            assert!(m.verify_checksum_v4(), "ICMP checksum");
        }
        ip_protocol::TCP => {
            let s = TcpSegment::new_checked(l4).expect("TCP");
            assert!(
                s.verify_checksum_v4(ip.src_addr(), ip.dst_addr()),
                "TCP checksum"
            );
        }
        other => panic!("the prober sent protocol {other}"),
    }
}

/// The testbed store's service health and the hub's peer index there, at [`WALL`].
fn store_health() -> (ServiceHealth, Option<u16>) {
    let (now, edge, hub) = lab_tables(0);
    let clock = WallClock {
        at: now,
        unix_us: WALL,
    };
    let peer = edge.peer_named(&hub.router);
    (ServiceHealth::new(now, edge, clock, 1), peer)
}

pub(super) fn run(data: &[u8]) {
    let (now, edge, hub) = lab_tables(0);
    let clock = WallClock {
        at: now,
        unix_us: WALL,
    };
    // As a message from the hub to the store.
    let (mut store, peer) = store_health();
    if store.handle_message(now, peer, data).is_ok() {
        let keys = &edge.peers[usize::from(peer.expect("accepted from a peer"))].keys;
        let (m, seq) =
            HealthMessage::open(data, keys, &edge.router).expect("accepted, so it opens");
        let again = m.seal(keys.current(), seq).expect("seals");
        assert_eq!(again, data, "an accepted message is one the hub sealed");
    }
    // Wrapped for the store's path monitor: BFD or a health message, never both.
    let monitor = PathMonitor::new(now, Arc::clone(&edge), 7);
    let wrapped = wrap(data);
    if let Some((peer, payload)) = monitor.peer_message(0, &wrapped) {
        assert!(crate::svr::starts_with_cookie(payload));
        let _ = store.handle_message(now, peer, payload);
    }
    let _ = store.views(now);
    // As an answer to the hub's probes, after a round went out.
    let mut h = ServiceHealth::new(now, Arc::clone(&hub), clock, 5);
    let hub_monitor = PathMonitor::new(now, hub, 5);
    let mut out = Vec::new();
    h.transmit(now, &hub_monitor, &mut out);
    let _ = h.handle_probe_answer(now, data);
    if let Some(p) = ip_packet(
        std::net::IpAddr::V4(Ipv4Addr::new(10, 100, 1, 10)),
        std::net::IpAddr::V4(Ipv4Addr::new(10, 100, 0, 1)),
        ip_protocol::TCP,
        64,
        0,
        data.get(..60).unwrap_or(data),
    ) {
        let _ = h.handle_probe_answer(now, &p);
    }
    h.handle_timeout(now);
    h.transmit(now, &hub_monitor, &mut out);
    for (_, packet) in &out {
        check_probe(packet);
    }
    let _ = (h.views(now), h.down().len());
    let _ = h.take_events();
}

/// What the payments host would answer to the hub's first round of probes: an echo reply and
/// a SYN-ACK (seeds that reach the prober's matching).
pub(super) fn answers() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (_, p) in first_probes() {
        let Ok(ip) = Ipv4Packet::new_checked(&p[..]) else {
            continue;
        };
        let (src, dst) = (
            std::net::IpAddr::V4(ip.src_addr()),
            std::net::IpAddr::V4(ip.dst_addr()),
        );
        let l4 = &p[ip.header_len()..];
        let answer = match ip.protocol() {
            ip_protocol::ICMP => {
                let mut reply = l4.to_vec();
                let mut m = IcmpPacket::new_unchecked(&mut reply[..]);
                m.set_msg_type(crate::packet::icmp::icmpv4_type::ECHO_REPLY);
                m.set_checksum(0);
                ip_packet(dst, src, ip_protocol::ICMP, 64, 0, &reply)
            }
            ip_protocol::TCP => {
                let Ok(syn) = TcpSegment::new_checked(l4) else {
                    continue;
                };
                let mut seg = [0u8; 20];
                {
                    let mut s = TcpSegment::new_unchecked(&mut seg[..]);
                    s.set_src_port(syn.dst_port());
                    s.set_dst_port(syn.src_port());
                    s.set_seq_number(7);
                    s.set_ack_number(syn.seq_number().wrapping_add(1));
                    s.set_header_len(20);
                    s.set_flags(0x12);
                    s.set_window_len(1024);
                }
                ip_packet(dst, src, ip_protocol::TCP, 64, 0, &seg)
            }
            _ => None,
        };
        out.extend(answer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_reach_the_store_and_the_prober() {
        let (now, _, hub) = lab_tables(0);
        let clock = WallClock {
            at: now,
            unix_us: WALL,
        };
        let (mut store, peer) = store_health();
        assert_eq!(store.handle_message(now, peer, &down_message()), Ok(()));
        assert_eq!(store.down().len(), 1, "payments at the hub is down");
        let mut h = ServiceHealth::new(now, Arc::clone(&hub), clock, 5);
        let monitor = PathMonitor::new(now, hub, 5);
        let mut out = Vec::new();
        h.transmit(now, &monitor, &mut out);
        let answers = answers();
        assert_eq!(answers.len(), 2, "an echo reply and a SYN-ACK");
        for a in &answers {
            assert!(h.handle_probe_answer(now, a), "matched");
        }
        let c = h.probe_counters();
        assert_eq!((c.echo_answered, c.tcp_open), (1, 1), "{c:?}");
        run(&down_message());
        for a in answers {
            run(&a);
        }
    }
}
