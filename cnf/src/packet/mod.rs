//! Zero-copy, checked views over the wire formats the router reads and rewrites: Ethernet II
//! (with one optional 802.1Q tag), ARP, IPv4, IPv6, TCP, UDP, ICMPv4/ICMPv6, and the Internet
//! checksum (full and RFC 1624 incremental, for NAT).
//!
//! Every view follows smoltcp's shape: `new_unchecked` wraps any buffer, `new_checked` validates
//! the lengths once so that no getter, setter or `payload()` of the result can panic, getters need
//! `T: AsRef<[u8]>` and setters `T: AsMut<[u8]>`. Views never allocate. A view built with
//! `new_unchecked` over a short buffer may panic on access; that is its contract.
//!
//! Views nest: a view's `payload()` is the buffer of the next layer's view. The L4 views
//! (TCP, UDP, ICMP) expect exactly the IP payload, because their checksums cover all of it.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod fixtures;

use core::fmt;

pub use arp::ArpPacket;
pub use ethernet::{EthernetFrame, MacAddress};
pub use icmp::IcmpPacket;
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use tcp::TcpSegment;
pub use udp::UdpDatagram;

/// Why a buffer is not a valid packet of the requested format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer ends before the header, or before the length its header announces.
    Truncated,
    /// A field holds a value the format forbids; the text names the field.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => {
                f.write_str("packet truncated: buffer shorter than its headers say")
            }
            Error::Malformed(what) => write!(f, "malformed packet: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result of checked packet construction.
pub type Result<T> = core::result::Result<T, Error>;

/// An IPv4 or IPv6 packet the router originates (BFD, health probes and messages): `l4` is the
/// whole L4 header and payload with its checksum field zero; the IP header is written in front
/// (no options, DF clear) and the L4 checksum (TCP, UDP, ICMPv4, ICMPv6) filled. `None` when the
/// families differ or it does not fit a packet.
pub fn ip_packet(
    src: core::net::IpAddr,
    dst: core::net::IpAddr,
    protocol: u8,
    ttl: u8,
    dscp: u8,
    l4: &[u8],
) -> Option<Vec<u8>> {
    use core::net::IpAddr;
    let ip_len = if src.is_ipv4() { 20 } else { 40 };
    let total = ip_len + l4.len();
    let mut out = vec![0u8; total];
    out.get_mut(ip_len..)?.copy_from_slice(l4);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut out[..]);
            ip.set_version_and_header_len(20);
            ip.set_dscp(dscp);
            ip.set_total_len(u16::try_from(total).ok()?);
            ip.set_ttl(ttl);
            ip.set_protocol(protocol);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            ip.fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = Ipv6Packet::new_unchecked(&mut out[..]);
            ip.set_version();
            ip.set_dscp(dscp);
            ip.set_payload_len(u16::try_from(l4.len()).ok()?);
            ip.set_next_header(protocol);
            ip.set_hop_limit(ttl);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
        }
        _ => return None,
    }
    let body = out.get_mut(ip_len..)?;
    match (protocol, src, dst) {
        (ip_protocol::UDP, IpAddr::V4(s), IpAddr::V4(d)) => {
            UdpDatagram::new_checked(body).ok()?.fill_checksum_v4(s, d)
        }
        (ip_protocol::UDP, IpAddr::V6(s), IpAddr::V6(d)) => UdpDatagram::new_checked(body)
            .ok()?
            .fill_checksum_v6(&s, &d),
        (ip_protocol::TCP, IpAddr::V4(s), IpAddr::V4(d)) => {
            TcpSegment::new_checked(body).ok()?.fill_checksum_v4(s, d)
        }
        (ip_protocol::TCP, IpAddr::V6(s), IpAddr::V6(d)) => {
            TcpSegment::new_checked(body).ok()?.fill_checksum_v6(&s, &d)
        }
        (ip_protocol::ICMP, IpAddr::V4(_), _) => {
            IcmpPacket::new_checked(body).ok()?.fill_checksum_v4()
        }
        (ip_protocol::ICMPV6, IpAddr::V6(s), IpAddr::V6(d)) => {
            IcmpPacket::new_checked(body).ok()?.fill_checksum_v6(&s, &d)
        }
        _ => return None,
    }
    Some(out)
}

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next header`) the router handles.
pub mod ip_protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;

    /// The usual short name of a protocol number, for reports.
    pub fn name(protocol: u8) -> Option<&'static str> {
        Some(match protocol {
            ICMP => "ICMP",
            TCP => "TCP",
            UDP => "UDP",
            ICMPV6 => "ICMPv6",
            47 => "GRE",
            50 => "ESP",
            51 => "AH",
            132 => "SCTP",
            _ => return None,
        })
    }
}

/// A byte range of a header field; every format's offsets are written once, in its `mod field`.
pub(crate) type Field = core::ops::Range<usize>;

#[inline]
pub(crate) fn read_u16(data: &[u8], field: Field) -> u16 {
    let mut bytes = [0u8; 2];
    bytes.copy_from_slice(&data[field]);
    u16::from_be_bytes(bytes)
}

#[inline]
pub(crate) fn read_u32(data: &[u8], field: Field) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&data[field]);
    u32::from_be_bytes(bytes)
}

#[inline]
pub(crate) fn read_array<const N: usize>(data: &[u8], field: Field) -> [u8; N] {
    let mut bytes = [0u8; N];
    bytes.copy_from_slice(&data[field]);
    bytes
}

#[inline]
pub(crate) fn write_u16(data: &mut [u8], field: Field, value: u16) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

#[inline]
pub(crate) fn write_u32(data: &mut [u8], field: Field, value: u32) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// `data[start..end]`, empty when a setter has made the length fields disagree with the buffer,
/// so that `payload()` stays panic-free even after e.g. `set_total_len` on a checked view.
#[inline]
pub(crate) fn clamped(data: &[u8], start: usize, end: usize) -> &[u8] {
    data.get(start..end).unwrap_or(&[])
}

#[inline]
pub(crate) fn clamped_mut(data: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    data.get_mut(start..end).unwrap_or(&mut [])
}

/// Proptest settings for this crate's codecs: failures are reported with their shrunk input in
/// the test output instead of being persisted to `proptest-regressions/` beside the crate.
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}

/// A deterministic xorshift64 generator for smoke tests that want many inputs without a crate.
#[cfg(test)]
pub(crate) struct XorShift(pub u64);

#[cfg(test)]
impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `len` bytes of noise.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod smoke {
    //! Thousands of pseudo-random buffers through every `new_checked`, and every getter of the
    //! views that were accepted: none may panic.

    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn exercise(buf: &[u8]) {
        if let Ok(frame) = EthernetFrame::new_checked(buf) {
            let _ = (
                frame.dst_addr(),
                frame.src_addr(),
                frame.ethertype(),
                frame.vlan_id(),
            );
            let _ = (frame.header_len(), frame.payload().len());
        }
        if let Ok(arp) = ArpPacket::new_checked(buf) {
            let _ = (
                arp.operation(),
                arp.sender_hardware_addr(),
                arp.sender_protocol_addr(),
            );
            let _ = (arp.target_hardware_addr(), arp.target_protocol_addr());
        }
        if let Ok(ip) = Ipv4Packet::new_checked(buf) {
            let _ = (
                ip.header_len(),
                ip.total_len(),
                ip.dscp(),
                ip.ecn(),
                ip.ident(),
            );
            let _ = (
                ip.dont_frag(),
                ip.more_frags(),
                ip.frag_offset(),
                ip.ttl(),
                ip.protocol(),
            );
            let _ = (
                ip.src_addr(),
                ip.dst_addr(),
                ip.options().len(),
                ip.payload().len(),
            );
            let _ = ip.verify_checksum();
        }
        if let Ok(ip) = Ipv6Packet::new_checked(buf) {
            let _ = (
                ip.traffic_class(),
                ip.flow_label(),
                ip.payload_len(),
                ip.next_header(),
            );
            let _ = (
                ip.hop_limit(),
                ip.src_addr(),
                ip.dst_addr(),
                ip.payload().len(),
            );
        }
        let (v4a, v4b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (v6a, v6b) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
        if let Ok(tcp) = TcpSegment::new_checked(buf) {
            let _ = (
                tcp.src_port(),
                tcp.dst_port(),
                tcp.seq_number(),
                tcp.ack_number(),
            );
            let _ = (
                tcp.header_len(),
                tcp.flags(),
                tcp.window_len(),
                tcp.urgent_at(),
            );
            let _ = (tcp.options().len(), tcp.payload().len());
            let _ = tcp.verify_checksum_v4(v4a, v4b);
            let _ = tcp.verify_checksum_v6(&v6a, &v6b);
        }
        if let Ok(udp) = UdpDatagram::new_checked(buf) {
            let _ = (
                udp.src_port(),
                udp.dst_port(),
                udp.len(),
                udp.payload().len(),
            );
            let _ = udp.verify_checksum_v4(v4a, v4b);
            let _ = udp.verify_checksum_v6(&v6a, &v6b);
        }
        if let Ok(icmp) = IcmpPacket::new_checked(buf) {
            let _ = (
                icmp.msg_type(),
                icmp.code(),
                icmp.echo_ident(),
                icmp.echo_seq_no(),
            );
            let _ = (icmp.rest_of_header(), icmp.payload().len());
            let _ = icmp.verify_checksum_v4();
            let _ = icmp.verify_checksum_v6(&v6a, &v6b);
        }
    }

    #[test]
    fn random_buffers_never_panic() {
        let mut rng = XorShift(0x5157_0057_5EED_0001);
        for round in 0..4000 {
            let len = (rng.next_u64() % 128) as usize;
            let mut buf = rng.bytes(len);
            // Nudge a share of inputs past the first checks so deeper paths run too.
            match round % 4 {
                1 if len > 0 => buf[0] = 0x45 + (buf[0] & 0x0a),
                2 if len > 0 => buf[0] = 0x60 | (buf[0] & 0x0f),
                3 if len > 13 => {
                    buf[12] = 0x81;
                    buf[13] = 0x00;
                }
                _ => {}
            }
            exercise(&buf);
        }
    }
}
