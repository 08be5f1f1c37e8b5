//! Fuzz target `bfd`: the bytes as a BFD Control packet (codec oracles), and fed to a hub's
//! path monitor twice — as a whole IP packet, and wrapped in a valid IPv4/UDP packet from the
//! store's broadband address to the multihop port, so that demultiplexing, authentication and
//! the session state machine see it. Whatever the monitor then sends must be a valid BFD
//! packet.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::pipeline::lab_tables;
use crate::packet::{Ipv4Packet, UdpDatagram};
use crate::path::bfd::{self, AuthType, Control, ControlPacket};
use crate::path::monitor::{PathMonitor, udp_packet};

const STORE_BROADBAND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const HUB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// `payload` as the UDP payload of an IPv4 packet store broadband → hub, port 4784.
pub(super) fn wrap(payload: &[u8]) -> Vec<u8> {
    let from = SocketAddr::from((STORE_BROADBAND, 49152));
    let to = SocketAddr::from((HUB, bfd::MULTIHOP_PORT));
    udp_packet(from, to, 254, 0, payload.get(..1400).unwrap_or(payload)).unwrap_or_default()
}

fn codec(data: &[u8]) {
    let Ok(p) = ControlPacket::new_checked(data) else {
        return;
    };
    let _ = (p.auth(), p.as_bytes(), p.required_min_echo_rx());
    let _ = bfd::packet::verify_sha1(&p, &[0x42; 20]);
    let Ok(c) = Control::parse(&p) else { return };
    assert!(
        c.detect_mult != 0 && c.my_discriminator != 0,
        "checked fields"
    );
    let buildable = match c.auth {
        None => true,
        Some(a) => matches!(a.kind, AuthType::KeyedSha1 | AuthType::MeticulousKeyedSha1),
    };
    if !buildable {
        return;
    }
    let mut out = [0u8; 64];
    let n = c.emit(&mut out).expect("a parsed packet fits 52 bytes");
    let again = ControlPacket::new_checked(&out[..n]).expect("what emit writes is valid");
    assert_eq!(
        Control::parse(&again),
        Ok(c),
        "parse → emit → parse is the identity"
    );
    if c.auth.is_none() {
        assert_eq!(&out[..n], &data[..24], "every header bit is a field");
    }
}

pub(super) fn run(data: &[u8]) {
    codec(data);
    let (now, _, hub) = lab_tables(0);
    let mut monitor = PathMonitor::new(now, Arc::clone(&hub), 7);
    let _ = monitor.handle(now, 0, data);
    let _ = monitor.handle(now, 0, &wrap(data));
    monitor.handle_timeout(now);
    let mut out = Vec::new();
    monitor.transmit(now, &mut out);
    for (_, packet) in out {
        let ip = Ipv4Packet::new_checked(&packet[..]).expect("the monitor builds IPv4 here");
        let udp = UdpDatagram::new_checked(&packet[ip.header_len()..]).expect("and UDP");
        let c = ControlPacket::new_checked(udp.payload()).expect("and BFD");
        assert!(Control::parse(&c).is_ok());
    }
    let _ = monitor.report(now);
}
