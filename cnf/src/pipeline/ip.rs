//! The pipeline's view of one IP packet: where its layers start, its 5-tuple, and the three
//! rewrites the router makes — NAT of addresses and ports (incremental checksums), growing or
//! shrinking the L4 payload (metadata in, metadata out, trailers), and refilling lengths and
//! checksums after the payload changed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{
    IcmpPacket, Ipv4Packet, Ipv6Packet, TcpSegment, UdpDatagram, checksum, ip_protocol,
};
use crate::session::{FlowKey, Octets, Segment};

use super::DropReason;

/// A packet in a buffer with room to grow: the packet is `buf[..len]`, the rest is tailroom.
#[derive(Debug)]
pub struct PacketBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> PacketBuf<'a> {
    /// `len` is clamped to the buffer.
    pub fn new(buf: &'a mut [u8], len: usize) -> Self {
        let len = len.min(buf.len());
        Self { buf, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn data(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        self.buf.get_mut(..len).unwrap_or(&mut [])
    }

    pub(crate) fn raw(&mut self) -> &mut [u8] {
        self.buf
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len());
    }
}

/// Where a packet's layers are and what its 5-tuple is. Offsets are into the packet buffer.
#[derive(Clone, Copy, Debug)]
pub struct Parsed {
    pub v6: bool,
    pub protocol: u8,
    /// Start of the L4 header.
    pub l4: usize,
    /// Start of the L4 payload.
    pub payload: usize,
    /// End of the IP packet (`total length`; link padding after it is ignored).
    pub end: usize,
    pub key: FlowKey,
    pub tcp: Option<Segment>,
}

impl Parsed {
    pub fn src(&self) -> IpAddr {
        self.key.src()
    }

    pub fn dst(&self) -> IpAddr {
        self.key.dst()
    }
}

/// Parses an IP packet far enough to route it as a session. Anything the router does not carry
/// is a drop reason, never a panic.
pub fn parse(data: &[u8]) -> Result<Parsed, DropReason> {
    let version = data.first().map(|b| b >> 4).ok_or(DropReason::Malformed)?;
    let (v6, protocol, l4, end, src, dst) = match version {
        4 => {
            let ip = Ipv4Packet::new_checked(data).map_err(|_| DropReason::Malformed)?;
            if ip.is_fragment() {
                return Err(DropReason::Fragment);
            }
            let (src, dst) = (
                Octets::V4(ip.src_addr().octets()),
                Octets::V4(ip.dst_addr().octets()),
            );
            (
                false,
                ip.protocol(),
                ip.header_len(),
                usize::from(ip.total_len()),
                src,
                dst,
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(data).map_err(|_| DropReason::Malformed)?;
            let end = 40 + usize::from(ip.payload_len());
            let (src, dst) = (
                Octets::V6(ip.src_addr().octets()),
                Octets::V6(ip.dst_addr().octets()),
            );
            (true, ip.next_header(), 40, end, src, dst)
        }
        _ => return Err(DropReason::Malformed),
    };
    let l4_bytes = data.get(l4..end).ok_or(DropReason::Malformed)?;
    let (src_port, dst_port, header_len, tcp) = match protocol {
        ip_protocol::TCP => {
            let seg = TcpSegment::new_checked(l4_bytes).map_err(|_| DropReason::Malformed)?;
            let flags = Segment::from_flags(u16::from(seg.flags()));
            (
                seg.src_port(),
                seg.dst_port(),
                seg.header_len(),
                Some(flags),
            )
        }
        ip_protocol::UDP => {
            let udp = UdpDatagram::new_checked(l4_bytes).map_err(|_| DropReason::Malformed)?;
            (udp.src_port(), udp.dst_port(), 8, None)
        }
        ip_protocol::ICMP | ip_protocol::ICMPV6 => {
            let msg = IcmpPacket::new_checked(l4_bytes).map_err(|_| DropReason::Malformed)?;
            let echo = if protocol == ip_protocol::ICMP {
                msg.is_echo_v4()
            } else {
                msg.is_echo_v6()
            };
            if !echo || (protocol == ip_protocol::ICMP) == v6 {
                return Err(DropReason::IcmpNotEcho);
            }
            // Echo request and reply share the identifier: it stands in for both ports.
            let id = msg.echo_ident();
            (id, id, 8, None)
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    Ok(Parsed {
        v6,
        protocol,
        l4,
        payload: l4 + header_len,
        end,
        key: FlowKey::from_octets(protocol, src, src_port, dst, dst_port),
        tcp,
    })
}

/// Decrements the TTL / hop limit; `Err` when the packet must not be forwarded.
pub fn decrement_ttl(data: &mut [u8], p: &Parsed) -> Result<(), DropReason> {
    if p.v6 {
        let mut ip = Ipv6Packet::new_unchecked(data);
        let hops = ip.hop_limit();
        if hops <= 1 {
            return Err(DropReason::TtlExpired);
        }
        ip.set_hop_limit(hops - 1);
        Ok(())
    } else {
        Ipv4Packet::new_unchecked(data)
            .decrement_ttl()
            .map(|_| ())
            .ok_or(DropReason::TtlExpired)
    }
}

/// Rewrites addresses and ports to `to` (same family, same protocol), updating the IPv4 header
/// checksum and the L4 checksum incrementally. The payload is untouched.
pub fn nat(data: &mut [u8], p: &Parsed, to: &FlowKey) -> Result<(), DropReason> {
    if let (false, Some(old), Some(new)) = (p.v6, p.key.v4_addrs(), to.v4_addrs()) {
        return nat_v4(data, p, old, new, to);
    }
    nat_any(data, p, to)
}

/// [`nat`] for either family, one field at a time.
fn nat_any(data: &mut [u8], p: &Parsed, to: &FlowKey) -> Result<(), DropReason> {
    let from = p.key;
    let data = data.get_mut(..p.end).ok_or(DropReason::Malformed)?;
    if data.len() < p.payload {
        return Err(DropReason::Malformed);
    }
    match (from.src(), from.dst(), to.src(), to.dst()) {
        (IpAddr::V4(os), IpAddr::V4(od), IpAddr::V4(ns), IpAddr::V4(nd)) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut *data);
            let mut c = ip.checksum();
            c = checksum::update_ipv4_addr(c, os, ns);
            c = checksum::update_ipv4_addr(c, od, nd);
            ip.set_src_addr(ns);
            ip.set_dst_addr(nd);
            ip.set_checksum(c);
        }
        (IpAddr::V6(_), IpAddr::V6(_), IpAddr::V6(ns), IpAddr::V6(nd)) => {
            let mut ip = Ipv6Packet::new_unchecked(&mut *data);
            ip.set_src_addr(ns);
            ip.set_dst_addr(nd);
        }
        _ => return Err(DropReason::FamilyMismatch),
    }
    // The L4 checksum covers the ports and (except ICMPv4) the pseudo-header addresses.
    let l4_update = |c: u16| {
        let c = match p.protocol {
            ip_protocol::ICMP => c,
            _ => pseudo_update(c, &from, to),
        };
        let c = checksum::update_u16(c, from.src_port(), to.src_port());
        match p.protocol {
            ip_protocol::TCP | ip_protocol::UDP => {
                checksum::update_u16(c, from.dst_port(), to.dst_port())
            }
            _ => c,
        }
    };
    let l4 = &mut data[p.l4..];
    match p.protocol {
        ip_protocol::TCP => {
            let mut seg = TcpSegment::new_unchecked(l4);
            let c = l4_update(seg.checksum());
            seg.set_src_port(to.src_port());
            seg.set_dst_port(to.dst_port());
            seg.set_checksum(c);
        }
        ip_protocol::UDP => {
            let mut udp = UdpDatagram::new_unchecked(l4);
            udp.adjust_checksum(l4_update);
            udp.set_src_port(to.src_port());
            udp.set_dst_port(to.dst_port());
        }
        _ => {
            // ICMP echo: the identifier is the "port"; both ports of a key hold it.
            let mut msg = IcmpPacket::new_unchecked(l4);
            let c = l4_update(msg.checksum());
            msg.set_echo_ident(to.src_port());
            msg.set_checksum(c);
        }
    }
    Ok(())
}

/// [`nat`] for IPv4, the fast path's rewrite: one checksum update for both addresses (IP
/// header), one for addresses and ports together (TCP/UDP pseudo-header and header).
fn nat_v4(
    data: &mut [u8],
    p: &Parsed,
    (os, od): ([u8; 4], [u8; 4]),
    (ns, nd): ([u8; 4], [u8; 4]),
    to: &FlowKey,
) -> Result<(), DropReason> {
    let from = &p.key;
    let data = data.get_mut(..p.end).ok_or(DropReason::Malformed)?;
    if data.len() < p.payload || p.l4 < 20 {
        return Err(DropReason::Malformed);
    }
    let (os, od, ns, nd) = (
        u32::from_be_bytes(os),
        u32::from_be_bytes(od),
        u32::from_be_bytes(ns),
        u32::from_be_bytes(nd),
    );
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut *data);
        let c = checksum::update_u32s(ip.checksum(), [os, od], [ns, nd]);
        ip.set_src_addr(Ipv4Addr::from_bits(ns));
        ip.set_dst_addr(Ipv4Addr::from_bits(nd));
        ip.set_checksum(c);
    }
    let ports = |k: &FlowKey| u32::from(k.src_port()) << 16 | u32::from(k.dst_port());
    let l4 = &mut data[p.l4..];
    match p.protocol {
        ip_protocol::TCP => {
            let mut seg = TcpSegment::new_unchecked(l4);
            let c =
                checksum::update_u32s(seg.checksum(), [os, od, ports(from)], [ns, nd, ports(to)]);
            seg.set_src_port(to.src_port());
            seg.set_dst_port(to.dst_port());
            seg.set_checksum(c);
        }
        ip_protocol::UDP => {
            let mut udp = UdpDatagram::new_unchecked(l4);
            udp.adjust_checksum(|c| {
                checksum::update_u32s(c, [os, od, ports(from)], [ns, nd, ports(to)])
            });
            udp.set_src_port(to.src_port());
            udp.set_dst_port(to.dst_port());
        }
        _ => {
            // ICMP echo: no pseudo-header; the identifier is the "port".
            let mut msg = IcmpPacket::new_unchecked(l4);
            let c = checksum::update_u16(msg.checksum(), from.src_port(), to.src_port());
            msg.set_echo_ident(to.src_port());
            msg.set_checksum(c);
        }
    }
    Ok(())
}

fn pseudo_update(c: u16, from: &FlowKey, to: &FlowKey) -> u16 {
    match (from.src(), from.dst(), to.src(), to.dst()) {
        (IpAddr::V4(os), IpAddr::V4(od), IpAddr::V4(ns), IpAddr::V4(nd)) => {
            checksum::update_ipv4_addr(checksum::update_ipv4_addr(c, os, ns), od, nd)
        }
        (IpAddr::V6(os), IpAddr::V6(od), IpAddr::V6(ns), IpAddr::V6(nd)) => {
            checksum::update_ipv6_addr(checksum::update_ipv6_addr(c, &os, &ns), &od, &nd)
        }
        _ => c,
    }
}

/// Makes room for `n` bytes at `at` (inside the packet) by moving the rest right. `Err` when the
/// buffer has not `n` bytes of tailroom.
pub fn insert_gap(pkt: &mut PacketBuf<'_>, at: usize, n: usize) -> Result<(), DropReason> {
    let len = pkt.len();
    if at > len || len + n > pkt.capacity() {
        return Err(DropReason::NoRoom);
    }
    pkt.raw().copy_within(at..len, at + n);
    pkt.set_len(len + n);
    Ok(())
}

/// Removes `n` bytes at `at` by moving the rest left.
pub fn remove_range(pkt: &mut PacketBuf<'_>, at: usize, n: usize) -> Result<(), DropReason> {
    let len = pkt.len();
    if at + n > len {
        return Err(DropReason::Malformed);
    }
    pkt.raw().copy_within(at + n..len, at);
    pkt.set_len(len - n);
    Ok(())
}

/// After the L4 payload changed size or content: writes the IP length, the UDP length, and
/// recomputes the L4 checksum (and the IPv4 header checksum) over the packet `data[..end]`.
pub fn refill(data: &mut [u8], p: &Parsed, end: usize) -> Result<(), DropReason> {
    let data = data.get_mut(..end).ok_or(DropReason::Malformed)?;
    let l4_len = end.checked_sub(p.l4).ok_or(DropReason::Malformed)?;
    let (src, dst) = {
        let key = ip_addrs(data, p.v6)?;
        (key.0, key.1)
    };
    if p.v6 {
        let payload_len = u16::try_from(l4_len).map_err(|_| DropReason::ExceedsMtu)?;
        Ipv6Packet::new_unchecked(&mut *data).set_payload_len(payload_len);
    } else {
        let total = u16::try_from(end).map_err(|_| DropReason::ExceedsMtu)?;
        let mut ip = Ipv4Packet::new_unchecked(&mut *data);
        ip.set_total_len(total);
        ip.fill_checksum();
    }
    let l4 = &mut data[p.l4..];
    match (p.protocol, src, dst) {
        (ip_protocol::TCP, IpAddr::V4(s), IpAddr::V4(d)) => {
            TcpSegment::new_unchecked(l4).fill_checksum_v4(s, d)
        }
        (ip_protocol::TCP, IpAddr::V6(s), IpAddr::V6(d)) => {
            TcpSegment::new_unchecked(l4).fill_checksum_v6(&s, &d)
        }
        (ip_protocol::UDP, s, d) => {
            let udp_len = u16::try_from(l4_len).map_err(|_| DropReason::ExceedsMtu)?;
            let mut udp = UdpDatagram::new_unchecked(l4);
            let had_checksum = udp.checksum() != 0;
            udp.set_len(udp_len);
            match (s, d) {
                (IpAddr::V4(s), IpAddr::V4(d)) if had_checksum => udp.fill_checksum_v4(s, d),
                (IpAddr::V4(_), IpAddr::V4(_)) => {}
                (IpAddr::V6(s), IpAddr::V6(d)) => udp.fill_checksum_v6(&s, &d),
                _ => return Err(DropReason::FamilyMismatch),
            }
        }
        (ip_protocol::ICMP, _, _) => IcmpPacket::new_unchecked(l4).fill_checksum_v4(),
        (ip_protocol::ICMPV6, IpAddr::V6(s), IpAddr::V6(d)) => {
            IcmpPacket::new_unchecked(l4).fill_checksum_v6(&s, &d)
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok(())
}

fn ip_addrs(data: &[u8], v6: bool) -> Result<(IpAddr, IpAddr), DropReason> {
    if v6 {
        let a: [u8; 16] = data
            .get(8..24)
            .and_then(|s| s.try_into().ok())
            .ok_or(DropReason::Malformed)?;
        let b: [u8; 16] = data
            .get(24..40)
            .and_then(|s| s.try_into().ok())
            .ok_or(DropReason::Malformed)?;
        Ok((IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b))))
    } else {
        let a: [u8; 4] = data
            .get(12..16)
            .and_then(|s| s.try_into().ok())
            .ok_or(DropReason::Malformed)?;
        let b: [u8; 4] = data
            .get(16..20)
            .and_then(|s| s.try_into().ok())
            .ok_or(DropReason::Malformed)?;
        Ok((IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b))))
    }
}

/// Writes addresses and ports of `to` without touching checksums (the caller refills them).
pub fn set_tuple(data: &mut [u8], p: &Parsed, to: &FlowKey) -> Result<(), DropReason> {
    let data = data
        .get_mut(..p.end.max(p.payload))
        .ok_or(DropReason::Malformed)?;
    match (to.src(), to.dst(), p.v6) {
        (IpAddr::V4(s), IpAddr::V4(d), false) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut *data);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
        }
        (IpAddr::V6(s), IpAddr::V6(d), true) => {
            let mut ip = Ipv6Packet::new_unchecked(&mut *data);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
        }
        _ => return Err(DropReason::FamilyMismatch),
    }
    let l4 = data.get_mut(p.l4..).ok_or(DropReason::Malformed)?;
    match p.protocol {
        ip_protocol::TCP => {
            let mut seg = TcpSegment::new_unchecked(l4);
            seg.set_src_port(to.src_port());
            seg.set_dst_port(to.dst_port());
        }
        ip_protocol::UDP => {
            let mut udp = UdpDatagram::new_unchecked(l4);
            udp.set_src_port(to.src_port());
            udp.set_dst_port(to.dst_port());
        }
        _ => IcmpPacket::new_unchecked(l4).set_echo_ident(to.src_port()),
    }
    Ok(())
}

/// Lowers the TCP MSS option of a SYN to `mss` when it is larger (so that per-packet trailers
/// never push a full-sized segment past the path MTU), fixing the checksum incrementally.
pub fn clamp_mss(data: &mut [u8], p: &Parsed, mss: u16) {
    let Some(l4) = data.get_mut(p.l4..p.payload) else {
        return;
    };
    let mut seg = TcpSegment::new_unchecked(l4);
    let mut at = 0;
    let mut change = None;
    {
        let opts = seg.options_mut();
        while at < opts.len() {
            match opts[at] {
                0 => break,
                1 => at += 1,
                kind => {
                    let Some(&len) = opts.get(at + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || at + len > opts.len() {
                        break;
                    }
                    if kind == 2 && len == 4 {
                        let old = u16::from_be_bytes([opts[at + 2], opts[at + 3]]);
                        if old > mss {
                            opts[at + 2..at + 4].copy_from_slice(&mss.to_be_bytes());
                            // The option's 2-byte value sits at an even offset from the TCP
                            // header start (20 + at + 2) only when `at` is even.
                            change = Some((old, at));
                        }
                    }
                    at += len;
                }
            }
        }
    }
    if let Some((old, at)) = change {
        let c = seg.checksum();
        let c = if at % 2 == 0 {
            checksum::update_u16(c, old, mss)
        } else {
            // Odd alignment: the value straddles two checksum words; swap bytes of both sides.
            checksum::update_u16(c, old.swap_bytes(), mss.swap_bytes())
        };
        seg.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    fn packet(
        kind: u8,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, 64);
        let mut out = Vec::new();
        let written = match kind {
            0 => b.tcp(sport, dport, 7, 1000).write(&mut out, payload),
            1 | 2 => b.udp(sport, dport).write(&mut out, payload),
            _ => b.icmpv4_echo_request(sport, 1).write(&mut out, payload),
        };
        written.expect("builds");
        if kind == 2 {
            // UDP over IPv4 without a checksum: it must stay without one.
            out[26] = 0;
            out[27] = 0;
        }
        out
    }

    fn valid(packet: &[u8]) -> bool {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return false;
        };
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        ip.verify_checksum()
            && match ip.protocol() {
                ip_protocol::TCP => {
                    TcpSegment::new_checked(ip.payload()).is_ok_and(|t| t.verify_checksum_v4(s, d))
                }
                ip_protocol::UDP => UdpDatagram::new_checked(ip.payload())
                    .is_ok_and(|u| u.checksum() == 0 || u.verify_checksum_v4(s, d)),
                _ => IcmpPacket::new_checked(ip.payload()).is_ok_and(|m| m.verify_checksum_v4()),
            }
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// The IPv4 fast path rewrites exactly as the field-by-field path does, and leaves
        /// every checksum valid.
        #[test]
        fn ipv4_nat_equals_the_general_rewrite(
            kind in 0u8..4,
            from in any::<([u8; 4], u16, [u8; 4], u16)>(),
            to in any::<([u8; 4], u16, [u8; 4], u16)>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let original = packet(kind, from.0, from.1, from.2, from.3, &payload);
            let p = parse(&original).expect("parses");
            let ident = if p.protocol == ip_protocol::ICMP { to.1 } else { to.3 };
            let target = FlowKey::v4(p.protocol, to.0.into(), to.1, to.2.into(), ident);
            let (mut fast, mut general) = (original.clone(), original.clone());
            nat(&mut fast, &p, &target).expect("rewrites");
            nat_any(&mut general, &p, &target).expect("rewrites");
            prop_assert_eq!(&fast, &general);
            prop_assert!(valid(&fast));
            let q = parse(&fast).expect("parses");
            prop_assert_eq!(q.key, target);
        }
    }
}
