//! Seed inputs for each target, built from real packets: a TCP SYN with options, UDP, ICMP echo
//! and ARP in Ethernet frames, WAN packets with SVR metadata as the lab's pipelines produce
//! them, pcap files of those, and pipeline scripts that open sessions end to end. They are the
//! files under `cnf/fuzz/corpus/<target>/`, and the smoke test runs them directly.

use core::time::Duration;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::packet::ethernet::ethertype;
use crate::packet::{ArpPacket, Ipv4Packet, TcpSegment, UdpDatagram, arp, ip_protocol, tcp};
use crate::pcap::{LinkType, PcapWriter};
use crate::pipeline::testbed::{CLIENT, GUEST, PAYMENTS_REAL, PAYMENTS_VIP, TELEMETRY};
use crate::pipeline::{Action, Ingress, Interface, Options, PacketBuf, Pipeline, ip};
use crate::svr::{COOKIE, FALSE_POSITIVE_MARKER};

/// One seed: the target it is for and its file name in that target's corpus (always
/// `seed-…`, so that `cnf/fuzz/.gitignore` keeps what fuzzing adds out of git).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    pub target: &'static str,
    pub name: &'static str,
    pub bytes: Vec<u8>,
}

/// MSS 1460, NOP, window scale 7, NOP, NOP, SACK permitted: 12 bytes.
const SYN_OPTIONS: [u8; 12] = [2, 4, 0x05, 0xb4, 1, 3, 3, 7, 1, 1, 4, 2];
/// The store's LAN address; traffic to it is for the router itself.
const EDGE_LAN: [u8; 4] = [10, 1, 0, 1];

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let syn = ipv4_tcp(
        CLIENT,
        40000,
        PAYMENTS_VIP,
        443,
        tcp::flags::SYN,
        1000,
        &SYN_OPTIONS,
        b"",
    );
    let udp = ipv4_udp(CLIENT, 5004, TELEMETRY, 9000, b"reading 1");
    let echo = ipv4_icmp_echo(CLIENT, EDGE_LAN, 0x0b0e, 7, b"ping");
    let wan = wan_capture();
    let first_wan = wan.first().cloned().unwrap_or_default();

    let mut seeds = Vec::new();
    let mut add = |target, name, bytes| {
        seeds.push(Seed {
            target,
            name,
            bytes,
        })
    };

    add(
        "packet_views",
        "seed-eth-vlan10-tcp-syn",
        ethernet(Some(10), ethertype::IPV4, &syn),
    );
    add(
        "packet_views",
        "seed-eth-udp",
        ethernet(None, ethertype::IPV4, &udp),
    );
    add(
        "packet_views",
        "seed-eth-icmp-echo",
        ethernet(None, ethertype::IPV4, &echo),
    );
    add(
        "packet_views",
        "seed-eth-arp-request",
        ethernet(None, ethertype::ARP, &arp_request()),
    );
    add(
        "packet_views",
        "seed-eth-ipv6-udp",
        ethernet(None, ethertype::IPV6, &ipv6_udp()),
    );
    add("packet_views", "seed-wan-syn-metadata", first_wan.clone());

    for (i, name) in ["seed-edge-syn-metadata", "seed-hub-syn-ack-metadata"]
        .into_iter()
        .enumerate()
    {
        if let Some(payload) = wan.get(i).and_then(|p| l4_payload(p)) {
            add("svr_metadata", name, payload);
        }
    }
    let mut marked = FALSE_POSITIVE_MARKER.to_vec();
    marked.extend_from_slice(&COOKIE);
    marked.extend_from_slice(b"data that began with the cookie");
    add("svr_metadata", "seed-false-positive-marker", marked);

    add(
        "pcap_inspect",
        "seed-wan-raw-usec",
        pcap(LinkType::Raw, &wan),
    );
    let lan = [
        ethernet(Some(10), ethertype::IPV4, &syn),
        ethernet(None, ethertype::IPV4, &udp),
        ethernet(None, ethertype::ARP, &arp_request()),
    ];
    add(
        "pcap_inspect",
        "seed-lan-ethernet-usec",
        pcap(LinkType::Ethernet, &lan),
    );
    add(
        "pcap_inspect",
        "seed-wan-sll-nsec-big-endian",
        sll_big_endian(&wan),
    );

    for (name, bytes) in bfd_seeds() {
        add("bfd", name, bytes);
    }

    add(
        "health",
        "seed-health-payments-down",
        super::health::down_message(),
    );
    for (name, bytes) in ["seed-health-echo-reply", "seed-health-syn-ack"]
        .into_iter()
        .zip(super::health::answers())
    {
        add("health", name, bytes);
    }

    add(
        "pipeline",
        "seed-tcp-encrypt-handshake",
        tcp_script(2, &syn),
    );
    add(
        "pipeline",
        "seed-tcp-authenticate-handshake",
        tcp_script(1, &syn),
    );
    add("pipeline", "seed-udp-none-path-change", udp_script(&udp));
    add(
        "pipeline",
        "seed-hub-wan-metadata",
        hub_wan_script(&first_wan),
    );
    add(
        "pipeline",
        "seed-refused-and-local",
        refused_script(&syn, &echo),
    );
    seeds
}

/// A script step: op, then the u16 length and the packet.
fn step(script: &mut Vec<u8>, op: u8, packet: &[u8]) {
    script.push(op);
    script.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    script.extend_from_slice(packet);
}

/// Ops of the pipeline script (see `fuzzing/pipeline.rs`).
const EDGE_LAN_OP: u8 = 0;
const EDGE_WAN_OP: u8 = 1;
const HUB_LAN_OP: u8 = 2;
const HUB_WAN_OP: u8 = 3;
const CLOCK_OP: u8 = 4;
const PATH_OP: u8 = 5;
const REPLAY_OP: u8 = 6;
const RELAY: u8 = 0x10;

/// Handshake, data both ways, a replayed WAN packet, then idle until the session expires and
/// the store tells the hub with a control message.
fn tcp_script(mode: u8, syn: &[u8]) -> Vec<u8> {
    let ack = tcp::flags::ACK;
    let syn_ack = ipv4_tcp(
        PAYMENTS_REAL,
        443,
        CLIENT,
        40000,
        tcp::flags::SYN | ack,
        5000,
        &SYN_OPTIONS[..4],
        b"",
    );
    let request = ipv4_tcp(
        CLIENT,
        40000,
        PAYMENTS_VIP,
        443,
        ack | tcp::flags::PSH,
        1001,
        &[],
        b"POST /authorize amount=12.34",
    );
    let response = ipv4_tcp(
        PAYMENTS_REAL,
        443,
        CLIENT,
        40000,
        ack | tcp::flags::PSH,
        5001,
        &[],
        b"HTTP/1.1 200 OK",
    );
    // Data that begins with the cookie: marked on the WAN, delivered as is.
    let mut cookie = COOKIE.to_vec();
    cookie.extend_from_slice(b"not metadata");
    let cookie = ipv4_tcp(
        CLIENT,
        40000,
        PAYMENTS_VIP,
        443,
        ack | tcp::flags::PSH,
        1029,
        &[],
        &cookie,
    );
    let mut script = vec![mode];
    step(&mut script, EDGE_LAN_OP | RELAY, syn);
    step(&mut script, HUB_LAN_OP | RELAY, &syn_ack);
    step(&mut script, EDGE_LAN_OP | RELAY, &request);
    step(&mut script, HUB_LAN_OP | RELAY, &response);
    step(&mut script, EDGE_LAN_OP | RELAY, &cookie);
    script.push(REPLAY_OP);
    // The hub hears from the server two minutes later, so the store's side idles out first
    // (after an hour) and tells the hub, which still holds the session; later the hub's too.
    script.extend_from_slice(&[CLOCK_OP, 120]);
    step(&mut script, HUB_LAN_OP, &response);
    script.extend_from_slice(&[CLOCK_OP, 128 + 58, CLOCK_OP, 255]);
    script
}

/// Telemetry over UDP with no security, a payload that begins with the cookie, then the
/// broadband path goes down and the session moves to LTE, then it idles out.
fn udp_script(udp: &[u8]) -> Vec<u8> {
    let reply = ipv4_udp(TELEMETRY, 9000, CLIENT, 5004, b"ok");
    let mut cookie = COOKIE.to_vec();
    cookie.extend_from_slice(b" looks like metadata");
    let cookie = ipv4_udp(CLIENT, 5004, TELEMETRY, 9000, &cookie);
    let mut script = vec![0];
    step(&mut script, EDGE_LAN_OP | RELAY, udp);
    step(&mut script, HUB_LAN_OP | RELAY, &reply);
    step(&mut script, EDGE_LAN_OP | RELAY, udp);
    step(&mut script, EDGE_LAN_OP | RELAY, &cookie);
    script.extend_from_slice(&[PATH_OP, 0]);
    step(&mut script, EDGE_LAN_OP | RELAY, udp);
    step(&mut script, HUB_LAN_OP | RELAY, &reply);
    // The collector speaks once more a minute later, not relayed: the store's side idles out
    // first (UDP: two minutes) and tells the hub; an hour later the hub's side is gone too.
    script.extend_from_slice(&[CLOCK_OP, 60]);
    step(&mut script, HUB_LAN_OP, &reply);
    script.extend_from_slice(&[CLOCK_OP, 100, CLOCK_OP, 128 + 60]);
    script
}

/// A WAN packet with metadata straight into the hub, twice (the second is a replay).
fn hub_wan_script(wan: &[u8]) -> Vec<u8> {
    let mut script = vec![2];
    step(&mut script, HUB_WAN_OP, wan);
    step(&mut script, HUB_WAN_OP, wan);
    script
}

/// What the store refuses or keeps: a guest, a ping to the router, a non-SYN, a packet on the
/// wrong VLAN, and one from a WAN without metadata.
fn refused_script(syn: &[u8], echo: &[u8]) -> Vec<u8> {
    let guest = ipv4_tcp(
        GUEST,
        40001,
        PAYMENTS_VIP,
        443,
        tcp::flags::SYN,
        1,
        &[],
        b"",
    );
    let not_syn = ipv4_tcp(
        CLIENT,
        40002,
        PAYMENTS_VIP,
        443,
        tcp::flags::ACK,
        1,
        &[],
        b"",
    );
    let mut script = vec![2];
    step(&mut script, EDGE_LAN_OP | 0x40, &guest);
    step(&mut script, EDGE_LAN_OP, echo);
    step(&mut script, EDGE_LAN_OP, &not_syn);
    step(&mut script, EDGE_LAN_OP | 0x80, syn);
    step(&mut script, EDGE_WAN_OP, syn);
    script
}

/// The WAN side of a TCP handshake on an `encrypt` session, as the lab's pipelines write it:
/// the SYN with forward metadata, the SYN-ACK with reverse metadata, then a data packet.
fn wan_capture() -> Vec<Vec<u8>> {
    let lab = super::pipeline::lab_tables(2);
    let now = lab.0;
    let mut edge = Pipeline::new(now, Arc::clone(&lab.1), Options::default());
    let hub_options = Options {
        hash_seed: 99,
        uuid_seed: [5, 6],
        ..Options::default()
    };
    let mut hub = Pipeline::new(now, Arc::clone(&lab.2), hub_options);
    let pos = Ingress {
        interface: Interface::Lan(0),
        vlan: Some(10),
    };
    let hub_lan = Ingress {
        interface: Interface::Lan(0),
        vlan: None,
    };
    let wan0 = Ingress {
        interface: Interface::Wan(0),
        vlan: None,
    };
    let run = |p: &mut Pipeline, ingress: Ingress, packet: &[u8]| {
        let mut buf = vec![0u8; 4096];
        let len = packet.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..len), packet.get(..len)) {
            to.copy_from_slice(from);
        }
        let mut pkt = PacketBuf::new(&mut buf, len);
        match p.handle(now, ingress, &mut pkt) {
            Action::Forward(_) => Some(pkt.data().to_vec()),
            _ => None,
        }
    };
    let syn = ipv4_tcp(
        CLIENT,
        40000,
        PAYMENTS_VIP,
        443,
        tcp::flags::SYN,
        1000,
        &SYN_OPTIONS,
        b"",
    );
    let syn_ack = ipv4_tcp(
        PAYMENTS_REAL,
        443,
        CLIENT,
        40000,
        tcp::flags::SYN | tcp::flags::ACK,
        5000,
        &SYN_OPTIONS[..4],
        b"",
    );
    let data = ipv4_tcp(
        CLIENT,
        40000,
        PAYMENTS_VIP,
        443,
        tcp::flags::ACK | tcp::flags::PSH,
        1001,
        &[],
        b"POST /authorize",
    );
    let mut wan = Vec::new();
    if let Some(out) = run(&mut edge, pos, &syn) {
        let _ = run(&mut hub, wan0, &out);
        wan.push(out);
    }
    if let Some(out) = run(&mut hub, hub_lan, &syn_ack) {
        let _ = run(&mut edge, wan0, &out);
        wan.push(out);
    }
    if let Some(out) = run(&mut edge, pos, &data) {
        wan.push(out);
    }
    wan
}

fn l4_payload(packet: &[u8]) -> Option<Vec<u8>> {
    let p = ip::parse(packet).ok()?;
    packet.get(p.payload..p.end).map(<[u8]>::to_vec)
}

/// IPv4 / TCP with checksums filled.
#[allow(clippy::too_many_arguments)] // a packet is its fields
fn ipv4_tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    seq: u32,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let header_len = 20 + options.len().next_multiple_of(4);
    let mut l4 = vec![0u8; header_len + payload.len()];
    l4[20..20 + options.len()].copy_from_slice(options);
    l4[header_len..].copy_from_slice(payload);
    let mut seg = TcpSegment::new_unchecked(&mut l4[..]);
    seg.set_src_port(sport);
    seg.set_dst_port(dport);
    seg.set_seq_number(seq);
    if flags & tcp::flags::ACK != 0 {
        seg.set_ack_number(1);
    }
    seg.set_header_len(header_len);
    seg.set_flags(flags);
    seg.set_window_len(64240);
    seg.fill_checksum_v4(src.into(), dst.into());
    ipv4(src, dst, ip_protocol::TCP, &l4)
}

fn ipv4_udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; 8 + payload.len()];
    l4[8..].copy_from_slice(payload);
    let mut udp = UdpDatagram::new_unchecked(&mut l4[..]);
    udp.set_src_port(sport);
    udp.set_dst_port(dport);
    udp.set_len((8 + payload.len()) as u16);
    udp.fill_checksum_v4(src.into(), dst.into());
    ipv4(src, dst, ip_protocol::UDP, &l4)
}

fn ipv4_icmp_echo(src: [u8; 4], dst: [u8; 4], ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; 8 + payload.len()];
    l4[8..].copy_from_slice(payload);
    let mut icmp = crate::packet::IcmpPacket::new_unchecked(&mut l4[..]);
    icmp.set_msg_type(crate::packet::icmp::icmpv4_type::ECHO_REQUEST);
    icmp.set_echo_ident(ident);
    icmp.set_echo_seq_no(seq);
    icmp.fill_checksum_v4();
    ipv4(src, dst, ip_protocol::ICMP, &l4)
}

fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; 20 + l4.len()];
    packet[20..].copy_from_slice(l4);
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.set_version_and_header_len(20);
    ip.set_total_len((20 + l4.len()) as u16);
    ip.set_ident(0x1c46);
    ip.set_flags_and_frag_offset(true, false, 0);
    ip.set_ttl(64);
    ip.set_protocol(protocol);
    ip.set_src_addr(Ipv4Addr::from(src));
    ip.set_dst_addr(Ipv4Addr::from(dst));
    ip.fill_checksum();
    packet
}

/// IPv6 2001:db8:1::10 → 2001:db8:2::20 / UDP 5353 → 5353 / `signpost`.
fn ipv6_udp() -> Vec<u8> {
    let (src, dst) = (
        "2001:db8:1::10"
            .parse()
            .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
        "2001:db8:2::20"
            .parse()
            .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
    );
    let mut packet = vec![0u8; 40 + 16];
    packet[48..].copy_from_slice(b"signpost");
    let mut udp = UdpDatagram::new_unchecked(&mut packet[40..]);
    udp.set_src_port(5353);
    udp.set_dst_port(5353);
    udp.set_len(16);
    udp.fill_checksum_v6(&src, &dst);
    let mut ip = crate::packet::Ipv6Packet::new_unchecked(&mut packet[..]);
    ip.set_version();
    ip.set_traffic_class(0xb8);
    ip.set_flow_label(0x12345);
    ip.set_payload_len(16);
    ip.set_next_header(ip_protocol::UDP);
    ip.set_hop_limit(255);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    packet
}

fn arp_request() -> Vec<u8> {
    let mut packet = vec![0u8; 28];
    let mut arp = ArpPacket::new_unchecked(&mut packet[..]);
    arp.fill_ethernet_ipv4();
    arp.set_operation(arp::operation::REQUEST);
    arp.set_sender_hardware_addr(crate::packet::MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    arp.set_sender_protocol_addr(Ipv4Addr::from(CLIENT));
    arp.set_target_protocol_addr(Ipv4Addr::from(EDGE_LAN));
    packet
}

fn ethernet(vlan: Option<u16>, kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![
        0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];
    if let Some(vid) = vlan {
        frame.extend_from_slice(&ethertype::VLAN.to_be_bytes());
        frame.extend_from_slice(&vid.to_be_bytes());
    }
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn pcap(link_type: LinkType, packets: &[Vec<u8>]) -> Vec<u8> {
    let Ok(mut writer) = PcapWriter::new(Vec::new(), link_type) else {
        return Vec::new();
    };
    for (i, packet) in packets.iter().enumerate() {
        let at = Duration::from_millis(1_700_000_000_000 + i as u64);
        if writer.write_packet(at, packet).is_err() {
            break;
        }
    }
    writer.into_inner()
}

/// A big-endian, nanosecond, Linux cooked (v1) file: the byte order and precision the writer
/// does not produce on this machine, written field by field.
fn sll_big_endian(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut file = Vec::new();
    file.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
    file.extend_from_slice(&2u16.to_be_bytes());
    file.extend_from_slice(&4u16.to_be_bytes());
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&65535u32.to_be_bytes());
    file.extend_from_slice(&LinkType::LinuxSll.number().to_be_bytes());
    for (i, packet) in packets.iter().enumerate() {
        // Packet type 4 (sent by us), ARPHRD_ETHER, 6-byte address, then the protocol.
        let mut cooked = vec![0, 4, 0, 1, 0, 6, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0];
        cooked.extend_from_slice(&ethertype::IPV4.to_be_bytes());
        cooked.extend_from_slice(packet);
        file.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        file.extend_from_slice(&(i as u32 * 1_000_000 + 123).to_be_bytes());
        file.extend_from_slice(&(cooked.len() as u32).to_be_bytes());
        file.extend_from_slice(&(cooked.len() as u32).to_be_bytes());
        file.extend_from_slice(&cooked);
    }
    file
}

/// A peer's first packet (Down, unauthenticated) and the store's first authenticated packets
/// as its path monitor builds them (BFD payloads).
fn bfd_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![(
        "seed-bfd-down",
        vec![
            0x20, 0x40, 0x03, 0x18, 0x5c, 0x10, 0xb9, 0xe4, 0, 0, 0, 0, 0x00, 0x0f, 0x42, 0x40,
            0x00, 0x04, 0x93, 0xe0, 0, 0, 0xc3, 0x50,
        ],
    )];
    let (now, edge, _) = super::pipeline::lab_tables(0);
    let mut monitor = crate::path::monitor::PathMonitor::new(now, edge, 7);
    let mut sent = Vec::new();
    monitor.transmit(now, &mut sent);
    if let Some((_, packet)) = sent.first()
        && let Some(payload) = packet.get(28..)
    {
        out.push(("seed-bfd-store-first-authenticated", payload.to_vec()));
    }
    out
}
