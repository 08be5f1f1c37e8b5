//! Target `packet_views`: any bytes through every checked view of `crate::packet`. What a view
//! accepts must agree with its own lengths, setters must read back, and on a copy a full
//! checksum fill must verify and the incremental updates NAT uses must agree with a full fill.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::packet::arp::operation;
use crate::packet::ethernet::ethertype;
use crate::packet::{
    ArpPacket, EthernetFrame, IcmpPacket, Ipv4Packet, Ipv6Packet, MacAddress, TcpSegment,
    UdpDatagram, checksum, ip_protocol, tcp,
};

/// The pseudo-header addresses of an L4 message.
#[derive(Clone, Copy, Debug)]
enum Pseudo {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Pseudo {
    /// Other addresses of the same family, as a NAT would write.
    fn translated(self) -> Pseudo {
        match self {
            Pseudo::V4(s, d) => Pseudo::V4(
                Ipv4Addr::from_bits(d.to_bits().rotate_left(7) ^ 0x6440_0001),
                Ipv4Addr::from_bits(s.to_bits().swap_bytes()),
            ),
            Pseudo::V6(s, d) => Pseudo::V6(
                Ipv6Addr::from_bits(d.to_bits().rotate_left(9) ^ 0xfd00 << 112),
                Ipv6Addr::from_bits(s.to_bits().swap_bytes()),
            ),
        }
    }

    /// The one's complement update of a checksum that covers this pseudo-header when the
    /// addresses change to `to`.
    fn update(self, to: Pseudo, c: u16) -> u16 {
        match (self, to) {
            (Pseudo::V4(os, od), Pseudo::V4(ns, nd)) => {
                checksum::update_ipv4_addr(checksum::update_ipv4_addr(c, os, ns), od, nd)
            }
            (Pseudo::V6(os, od), Pseudo::V6(ns, nd)) => {
                checksum::update_ipv6_addr(checksum::update_ipv6_addr(c, &os, &ns), &od, &nd)
            }
            _ => c,
        }
    }
}

/// Two checksums that mean the same: equal, or the two zeros of one's complement (RFC 1624
/// eqn. 3 may give 0xffff where a full computation gives 0x0000, and both verify).
fn same_checksum(a: u16, b: u16) -> bool {
    a == b || matches!((a, b), (0, 0xffff) | (0xffff, 0))
}

/// RFC 1071 §4.1 word by word, the reference for `checksum::data`'s 32-bit loop.
fn reference_sum(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let Some(&last) = words.remainder().first() {
        acc += u64::from(last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Reads bytes of the input at wrapping positions, to derive field values from it.
struct Picker<'a>(&'a [u8]);

impl Picker<'_> {
    fn u8(&self, at: usize) -> u8 {
        match self.0.len() {
            0 => 0x5a,
            n => self.0.get(at % n).copied().unwrap_or(0),
        }
    }

    fn u16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.u8(at), self.u8(at + 1)])
    }

    fn u32(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.u8(at),
            self.u8(at + 1),
            self.u8(at + 2),
            self.u8(at + 3),
        ])
    }

    fn u128(&self, at: usize) -> u128 {
        (u128::from(self.u32(at)) << 96)
            | (u128::from(self.u32(at + 4)) << 64)
            | (u128::from(self.u32(at + 8)) << 32)
            | u128::from(self.u32(at + 12))
    }
}

pub(super) fn run(data: &[u8]) {
    checksums(data);
    ethernet(data);
    arp(data);
    ipv4(data);
    ipv6(data);
    // The L4 views straight on the bytes, under pseudo-headers taken from the input.
    let pick = Picker(data);
    let v4 = Pseudo::V4(
        Ipv4Addr::from_bits(pick.u32(3)),
        Ipv4Addr::from_bits(pick.u32(11)),
    );
    let v6 = Pseudo::V6(
        Ipv6Addr::from_bits(pick.u128(5)),
        Ipv6Addr::from_bits(pick.u128(17)),
    );
    for pseudo in [v4, v6] {
        tcp_segment(data, pseudo);
        udp_datagram(data, pseudo);
        icmp_message(data, pseudo);
    }
}

/// The checksum module against its RFC 1071 definition.
fn checksums(data: &[u8]) {
    let sum = checksum::data(data);
    assert_eq!(
        sum,
        reference_sum(data),
        "checksum::data disagrees with RFC 1071"
    );
    // One's complement addition is associative: sums of two even-length halves combine.
    let split = (data.len() / 2) & !1;
    let (head, tail) = data.split_at(split);
    assert_eq!(
        checksum::combine(&[checksum::data(head), checksum::data(tail)]),
        sum,
        "partial sums of {split} + {} bytes do not combine to the whole",
        tail.len()
    );
    let pick = Picker(data);
    let (s4, d4) = (pick.u32(0), pick.u32(4));
    let (protocol, length) = (pick.u8(8), pick.u32(9));
    let mut bytes = Vec::with_capacity(40);
    bytes.extend_from_slice(&s4.to_be_bytes());
    bytes.extend_from_slice(&d4.to_be_bytes());
    bytes.extend_from_slice(&[0, protocol]);
    bytes.extend_from_slice(&(length as u16).to_be_bytes());
    assert_eq!(
        checksum::pseudo_header_v4(
            Ipv4Addr::from_bits(s4),
            Ipv4Addr::from_bits(d4),
            protocol,
            u32::from(length as u16)
        ),
        reference_sum(&bytes),
        "IPv4 pseudo-header sum"
    );
    let (s6, d6) = (pick.u128(2), pick.u128(7));
    bytes.clear();
    bytes.extend_from_slice(&s6.to_be_bytes());
    bytes.extend_from_slice(&d6.to_be_bytes());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, protocol]);
    assert_eq!(
        checksum::pseudo_header_v6(
            &Ipv6Addr::from_bits(s6),
            &Ipv6Addr::from_bits(d6),
            protocol,
            length
        ),
        reference_sum(&bytes),
        "IPv6 pseudo-header sum"
    );
}

fn ethernet(data: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let header_len = frame.header_len();
    assert!(
        header_len == 14 || header_len == 18,
        "header_len {header_len}"
    );
    assert_eq!(frame.is_vlan_tagged(), header_len == 18);
    assert_eq!(frame.vlan_tci().is_some(), frame.is_vlan_tagged());
    assert_eq!(frame.vlan_id().is_some(), frame.is_vlan_tagged());
    assert_eq!(frame.vlan_pcp().is_some(), frame.is_vlan_tagged());
    assert_eq!(Some(frame.payload()), data.get(header_len..));
    let (dst, src, kind) = (frame.dst_addr(), frame.src_addr(), frame.ethertype());
    let _ = (dst.is_multicast(), src.to_string(), MacAddress::BROADCAST);

    // Setters on a copy read back, and touch nothing else.
    let mut copy = data.to_vec();
    let Ok(mut frame) = EthernetFrame::new_checked(&mut copy[..]) else {
        panic!("the same bytes, mutable, were refused by EthernetFrame::new_checked");
    };
    frame.set_dst_addr(src);
    frame.set_src_addr(dst);
    let vid = Picker(data).u16(header_len);
    let tagged = frame.is_vlan_tagged();
    let pcp = frame.vlan_pcp();
    assert_eq!(frame.set_vlan_id(vid), tagged);
    if tagged {
        assert_eq!(frame.vlan_id(), Some(vid & 0x0fff));
        assert_eq!(frame.vlan_pcp(), pcp, "a VID rewrite keeps the PCP");
    }
    // 0x8100 written into an untagged frame would make it a tagged one: not a payload type.
    let new_kind = match kind.rotate_left(3) {
        ethertype::VLAN => ethertype::IPV6,
        other => other,
    };
    frame.set_ethertype(new_kind);
    assert_eq!(frame.ethertype(), new_kind);
    assert_eq!((frame.dst_addr(), frame.src_addr()), (src, dst));
    assert_eq!(frame.header_len(), header_len);
    assert_eq!(frame.payload_mut().len(), data.len() - header_len);

    let payload = data.get(header_len..).unwrap_or(&[]);
    match kind {
        ethertype::IPV4 => ipv4(payload),
        ethertype::IPV6 => ipv6(payload),
        ethertype::ARP => arp(payload),
        _ => {}
    }
}

fn arp(data: &[u8]) {
    let Ok(request) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = request.operation();
    // The reply the router would build, field by field, reads back.
    let ours = MacAddress([0x02, 0, 0, 0, 0, 0x01]);
    let mut buf = [0u8; 28];
    let mut reply = ArpPacket::new_unchecked(&mut buf[..]);
    reply.fill_ethernet_ipv4();
    reply.set_operation(operation::REPLY);
    reply.set_sender_hardware_addr(ours);
    reply.set_sender_protocol_addr(request.target_protocol_addr());
    reply.set_target_hardware_addr(request.sender_hardware_addr());
    reply.set_target_protocol_addr(request.sender_protocol_addr());
    let Ok(reply) = ArpPacket::new_checked(&buf[..]) else {
        panic!("a reply built with fill_ethernet_ipv4 was refused");
    };
    assert_eq!(reply.operation(), operation::REPLY);
    assert_eq!(reply.sender_hardware_addr(), ours);
    assert_eq!(reply.sender_protocol_addr(), request.target_protocol_addr());
    assert_eq!(reply.target_hardware_addr(), request.sender_hardware_addr());
    assert_eq!(reply.target_protocol_addr(), request.sender_protocol_addr());
}

fn ipv4(data: &[u8]) {
    let Ok(ip) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let (header_len, total_len) = (ip.header_len(), usize::from(ip.total_len()));
    assert_eq!(ip.version(), 4);
    assert!(
        20 <= header_len && header_len <= total_len && total_len <= data.len(),
        "accepted header {header_len}, total {total_len}, buffer {}",
        data.len()
    );
    assert_eq!(ip.options().len(), header_len - 20);
    assert_eq!(Some(ip.payload()), data.get(header_len..total_len));
    assert!(ip.dscp() < 64 && ip.ecn() < 4);
    assert_eq!(ip.frag_offset() % 8, 0);
    assert_eq!(ip.is_fragment(), ip.more_frags() || ip.frag_offset() != 0);
    let _ = (ip.ident(), ip.dont_frag(), ip.ttl(), ip.checksum());
    let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    let verified = ip.verify_checksum();

    // As received: forwarding's TTL decrement keeps a correct checksum correct.
    let mut copy = data.to_vec();
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut copy[..]) else {
        panic!("the same bytes, mutable, were refused by Ipv4Packet::new_checked");
    };
    let ttl = ip.ttl();
    match ip.decrement_ttl() {
        Some(left) => assert_eq!((left, ip.ttl()), (ttl - 1, ttl - 1)),
        None => assert!(ttl <= 1),
    }
    assert_eq!(
        ip.verify_checksum(),
        verified,
        "TTL decrement changed validity"
    );

    // Filled, then NATed with incremental updates: still valid, and the same as a full fill.
    ip.fill_checksum();
    assert!(ip.verify_checksum(), "fill_checksum does not verify");
    let Pseudo::V4(new_src, new_dst) = Pseudo::V4(src, dst).translated() else {
        return;
    };
    let mut c = ip.checksum();
    c = checksum::update_ipv4_addr(c, src, new_src);
    c = checksum::update_ipv4_addr(c, dst, new_dst);
    ip.set_src_addr(new_src);
    ip.set_dst_addr(new_dst);
    ip.set_checksum(c);
    assert!(
        ip.verify_checksum(),
        "incremental address update does not verify"
    );
    let _ = ip.decrement_ttl();
    let incremental = ip.checksum();
    ip.fill_checksum();
    assert!(
        same_checksum(incremental, ip.checksum()),
        "incremental {incremental:#06x} vs full {:#06x}",
        ip.checksum()
    );

    // Setters read back.
    let pick = Picker(data);
    let (dscp, ecn, ident) = (pick.u8(1) >> 2, pick.u8(2) & 3, pick.u16(3));
    let (df, mf, offset) = (pick.u8(5) & 1 != 0, pick.u8(6) & 1 != 0, pick.u16(7) & !7);
    ip.set_dscp(dscp);
    ip.set_ecn(ecn);
    ip.set_ident(ident);
    ip.set_flags_and_frag_offset(df, mf, offset);
    ip.set_ttl(pick.u8(9));
    ip.set_protocol(protocol);
    assert_eq!((ip.dscp(), ip.ecn(), ip.ident()), (dscp, ecn, ident));
    assert_eq!(
        (ip.dont_frag(), ip.more_frags(), ip.frag_offset()),
        (df, mf, offset)
    );
    assert_eq!(ip.ttl(), pick.u8(9));
    assert_eq!(ip.options_mut().len(), header_len - 20);
    assert_eq!(ip.payload_mut().len(), total_len - header_len);

    let ip = Ipv4Packet::new_unchecked(data);
    if !ip.is_fragment() {
        l4(protocol, ip.payload(), Pseudo::V4(src, dst));
    }
}

fn ipv6(data: &[u8]) {
    let Ok(ip) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let payload_len = usize::from(ip.payload_len());
    assert_eq!(ip.version(), 6);
    assert!(40 + payload_len <= data.len());
    assert_eq!(Some(ip.payload()), data.get(40..40 + payload_len));
    assert_eq!(ip.dscp(), ip.traffic_class() >> 2);
    assert_eq!(ip.ecn(), ip.traffic_class() & 3);
    assert!(ip.flow_label() < 1 << 20);
    let (src, dst, next) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
    let _ = ip.hop_limit();

    let mut copy = data.to_vec();
    let Ok(mut ip) = Ipv6Packet::new_checked(&mut copy[..]) else {
        panic!("the same bytes, mutable, were refused by Ipv6Packet::new_checked");
    };
    let pick = Picker(data);
    let (class, flow, dscp, ecn) = (pick.u8(1), pick.u32(2), pick.u8(6) >> 2, pick.u8(7) & 3);
    ip.set_traffic_class(class);
    ip.set_flow_label(flow);
    assert_eq!(
        (ip.traffic_class(), ip.flow_label()),
        (class, flow & 0xf_ffff)
    );
    ip.set_dscp(dscp);
    ip.set_ecn(ecn);
    assert_eq!((ip.dscp(), ip.ecn()), (dscp, ecn));
    assert_eq!(
        ip.flow_label(),
        flow & 0xf_ffff,
        "DSCP/ECN kept the flow label"
    );
    ip.set_version();
    let Pseudo::V6(new_src, new_dst) = Pseudo::V6(src, dst).translated() else {
        return;
    };
    ip.set_src_addr(new_src);
    ip.set_dst_addr(new_dst);
    ip.set_hop_limit(pick.u8(8));
    ip.set_next_header(next);
    assert_eq!(
        (ip.version(), ip.src_addr(), ip.dst_addr(), ip.hop_limit()),
        (6, new_src, new_dst, pick.u8(8))
    );
    assert_eq!(usize::from(ip.payload_len()), payload_len);
    assert_eq!(ip.payload_mut().len(), payload_len);

    l4(
        next,
        Ipv6Packet::new_unchecked(data).payload(),
        Pseudo::V6(src, dst),
    );
}

/// An IP payload by its protocol number.
fn l4(protocol: u8, bytes: &[u8], pseudo: Pseudo) {
    match (protocol, pseudo) {
        (ip_protocol::TCP, _) => tcp_segment(bytes, pseudo),
        (ip_protocol::UDP, _) => udp_datagram(bytes, pseudo),
        (ip_protocol::ICMP, Pseudo::V4(..)) | (ip_protocol::ICMPV6, Pseudo::V6(..)) => {
            icmp_message(bytes, pseudo)
        }
        _ => {}
    }
}

fn tcp_verify<T: AsRef<[u8]>>(seg: &TcpSegment<T>, pseudo: Pseudo) -> bool {
    match pseudo {
        Pseudo::V4(s, d) => seg.verify_checksum_v4(s, d),
        Pseudo::V6(s, d) => seg.verify_checksum_v6(&s, &d),
    }
}

fn tcp_fill<T: AsRef<[u8]> + AsMut<[u8]>>(seg: &mut TcpSegment<T>, pseudo: Pseudo) {
    match pseudo {
        Pseudo::V4(s, d) => seg.fill_checksum_v4(s, d),
        Pseudo::V6(s, d) => seg.fill_checksum_v6(&s, &d),
    }
}

fn tcp_segment(data: &[u8], pseudo: Pseudo) {
    let Ok(seg) = TcpSegment::new_checked(data) else {
        return;
    };
    let header_len = seg.header_len();
    assert!(20 <= header_len && header_len <= data.len());
    assert_eq!(seg.options().len(), header_len - 20);
    assert_eq!(Some(seg.payload()), data.get(header_len..));
    let flags = seg.flags();
    let named = [
        (seg.fin(), tcp::flags::FIN),
        (seg.syn(), tcp::flags::SYN),
        (seg.rst(), tcp::flags::RST),
        (seg.psh(), tcp::flags::PSH),
        (seg.ack(), tcp::flags::ACK),
        (seg.urg(), tcp::flags::URG),
        (seg.ece(), tcp::flags::ECE),
        (seg.cwr(), tcp::flags::CWR),
    ];
    for (set, bit) in named {
        assert_eq!(set, flags & bit != 0, "flag {bit:#04x}");
    }
    let _ = (seg.window_len(), seg.urgent_at(), seg.ack_number());
    let (sport, dport, seq) = (seg.src_port(), seg.dst_port(), seg.seq_number());
    let verified = tcp_verify(&seg, pseudo);

    // As received, then filled: NAT's incremental updates keep what verified verifying.
    for fill in [false, true] {
        let mut copy = data.to_vec();
        let mut seg = TcpSegment::new_unchecked(&mut copy[..]);
        if fill {
            tcp_fill(&mut seg, pseudo);
            assert!(tcp_verify(&seg, pseudo), "fill_checksum does not verify");
        }
        let to = pseudo.translated();
        let (new_sport, new_seq) = (dport.rotate_left(5), !seq);
        let mut c = pseudo.update(to, seg.checksum());
        c = checksum::update_u16(c, sport, new_sport);
        c = checksum::update_u32(c, seq, new_seq);
        seg.set_src_port(new_sport);
        seg.set_seq_number(new_seq);
        seg.set_checksum(c);
        assert_eq!(
            tcp_verify(&seg, to),
            verified || fill,
            "incremental NAT changed validity (filled first: {fill})"
        );
        if fill {
            let incremental = seg.checksum();
            tcp_fill(&mut seg, to);
            assert!(same_checksum(incremental, seg.checksum()));
        }
        assert_eq!((seg.src_port(), seg.seq_number()), (new_sport, new_seq));
    }

    let mut copy = data.to_vec();
    let mut seg = TcpSegment::new_unchecked(&mut copy[..]);
    let pick = Picker(data);
    seg.set_dst_port(pick.u16(1));
    seg.set_ack_number(pick.u32(2));
    seg.set_flags(pick.u8(3));
    seg.set_window_len(pick.u16(4));
    seg.set_urgent_at(pick.u16(5));
    assert_eq!(
        (seg.dst_port(), seg.ack_number(), seg.flags()),
        (pick.u16(1), pick.u32(2), pick.u8(3))
    );
    assert_eq!(
        (seg.window_len(), seg.urgent_at()),
        (pick.u16(4), pick.u16(5))
    );
    let len = usize::from(pick.u8(6) & 0x0f).max(5) * 4;
    if len <= data.len() {
        seg.set_header_len(len);
        assert_eq!(seg.header_len(), len);
        assert_eq!(seg.options_mut().len(), len - 20);
        assert_eq!(seg.payload_mut().len(), data.len() - len);
    }
}

fn udp_verify<T: AsRef<[u8]>>(udp: &UdpDatagram<T>, pseudo: Pseudo) -> bool {
    match pseudo {
        Pseudo::V4(s, d) => udp.verify_checksum_v4(s, d),
        Pseudo::V6(s, d) => udp.verify_checksum_v6(&s, &d),
    }
}

fn udp_fill<T: AsRef<[u8]> + AsMut<[u8]>>(udp: &mut UdpDatagram<T>, pseudo: Pseudo) {
    match pseudo {
        Pseudo::V4(s, d) => udp.fill_checksum_v4(s, d),
        Pseudo::V6(s, d) => udp.fill_checksum_v6(&s, &d),
    }
}

fn udp_datagram(data: &[u8], pseudo: Pseudo) {
    let Ok(udp) = UdpDatagram::new_checked(data) else {
        return;
    };
    let len = usize::from(udp.len());
    assert!(8 <= len && len <= data.len());
    assert_eq!(Some(udp.payload()), data.get(8..len));
    let (sport, dport, sum) = (udp.src_port(), udp.dst_port(), udp.checksum());
    let verified = udp_verify(&udp, pseudo);
    match pseudo {
        Pseudo::V4(..) if sum == 0 => assert!(verified, "no checksum is valid over IPv4"),
        Pseudo::V6(..) if sum == 0 => assert!(!verified, "a checksum is mandatory over IPv6"),
        _ => {}
    }

    for fill in [false, true] {
        let mut copy = data.to_vec();
        let mut udp = UdpDatagram::new_unchecked(&mut copy[..]);
        if fill {
            udp_fill(&mut udp, pseudo);
            assert_ne!(udp.checksum(), 0, "a computed zero is sent as 0xffff");
            assert!(udp_verify(&udp, pseudo), "fill_checksum does not verify");
        }
        let before = udp.checksum();
        let to = pseudo.translated();
        let (new_sport, new_dport) = (dport ^ 0x8001, sport.rotate_left(3));
        udp.adjust_checksum(|c| pseudo.update(to, c));
        udp.adjust_checksum(|c| checksum::update_u16(c, sport, new_sport));
        udp.adjust_checksum(|c| checksum::update_u16(c, dport, new_dport));
        udp.set_src_port(new_sport);
        udp.set_dst_port(new_dport);
        if before == 0 {
            assert_eq!(
                udp.checksum(),
                0,
                "an absent checksum stays absent under NAT"
            );
        } else {
            assert_eq!(
                udp_verify(&udp, to),
                verified || fill,
                "incremental NAT changed validity (filled first: {fill})"
            );
        }
        if fill {
            let incremental = udp.checksum();
            udp_fill(&mut udp, to);
            assert!(same_checksum(incremental, udp.checksum()));
        }
    }

    let mut copy = data.to_vec();
    let mut udp = UdpDatagram::new_unchecked(&mut copy[..]);
    assert_eq!(udp.payload_mut().len(), len - 8);
    udp.set_len(u16::MAX);
    let _ = (udp.payload().len(), udp.payload_mut().len());
}

fn icmp_message(data: &[u8], pseudo: Pseudo) {
    let Ok(icmp) = IcmpPacket::new_checked(data) else {
        return;
    };
    assert_eq!(Some(icmp.payload()), data.get(8..));
    assert_eq!(Some(&icmp.rest_of_header()[..]), data.get(4..8));
    let [a, b, c, d] = icmp.rest_of_header();
    assert_eq!(
        (icmp.echo_ident(), icmp.echo_seq_no()),
        (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))
    );
    let _ = (
        icmp.msg_type(),
        icmp.code(),
        icmp.is_echo_v4(),
        icmp.is_echo_v6(),
    );
    let verify = |icmp: &IcmpPacket<&mut [u8]>, pseudo: Pseudo| match pseudo {
        Pseudo::V4(..) => icmp.verify_checksum_v4(),
        Pseudo::V6(s, d) => icmp.verify_checksum_v6(&s, &d),
    };
    let fill = |icmp: &mut IcmpPacket<&mut [u8]>, pseudo: Pseudo| match pseudo {
        Pseudo::V4(..) => icmp.fill_checksum_v4(),
        Pseudo::V6(s, d) => icmp.fill_checksum_v6(&s, &d),
    };

    let mut copy = data.to_vec();
    let mut icmp = IcmpPacket::new_unchecked(&mut copy[..]);
    fill(&mut icmp, pseudo);
    assert!(verify(&icmp, pseudo), "fill_checksum does not verify");
    // An echo through NAT: new identifier (and, for ICMPv6, new pseudo-header addresses).
    let to = match pseudo {
        Pseudo::V4(..) => pseudo,
        Pseudo::V6(..) => pseudo.translated(),
    };
    let (old, new) = (icmp.echo_ident(), icmp.echo_ident() ^ 0x5a5a);
    let c = checksum::update_u16(pseudo.update(to, icmp.checksum()), old, new);
    icmp.set_echo_ident(new);
    icmp.set_checksum(c);
    // ICMPv4 has no pseudo-header: a message of all zeros (but the checksum) sums to zero, the
    // one case where eqn. 3's 0x0000 does not verify. It cannot arise with a pseudo-header.
    let all_zero = matches!(pseudo, Pseudo::V4(..))
        && copy.get(..2).is_some_and(|h| h == [0, 0])
        && copy
            .get(4..)
            .is_some_and(|rest| rest.iter().all(|&b| b == 0));
    let icmp = IcmpPacket::new_unchecked(&mut copy[..]);
    if !all_zero {
        assert!(
            verify(&icmp, to),
            "incremental identifier update does not verify"
        );
    }
    let mut icmp = icmp;
    let incremental = icmp.checksum();
    fill(&mut icmp, to);
    assert!(all_zero || same_checksum(incremental, icmp.checksum()));

    let pick = Picker(data);
    icmp.set_msg_type(pick.u8(0));
    icmp.set_code(pick.u8(1));
    icmp.set_echo_seq_no(pick.u16(2));
    icmp.set_rest_of_header([pick.u8(3), pick.u8(4), pick.u8(5), pick.u8(6)]);
    assert_eq!((icmp.msg_type(), icmp.code()), (pick.u8(0), pick.u8(1)));
    assert_eq!(
        icmp.rest_of_header(),
        [pick.u8(3), pick.u8(4), pick.u8(5), pick.u8(6)]
    );
    assert_eq!(icmp.payload_mut().len(), data.len() - 8);
}
