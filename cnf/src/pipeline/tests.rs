//! Back-to-back: a store edge and a cloud hub pipeline, the edge's WAN output handed to the hub
//! (optionally through a NAT, as an LTE carrier would), and back. Packets are built and checked
//! with `etherparse`, an independent implementation.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use signpost_proto::v1 as pb;

use super::testbed::{
    CLIENT, GUEST, GUEST_IN, HUB_LAN, PAYMENTS_REAL, PAYMENTS_VIP, POS, TELEMETRY, WAN0,
    edge_config, hub_config, run,
};
use super::*;

struct Lab {
    now: Instant,
    edge: Pipeline,
    hub: Pipeline,
    /// Every packet that crossed the WAN, for inspection (and a pcap when asked).
    wan: Vec<Vec<u8>>,
}

impl Lab {
    fn new(security: pb::SecurityMode) -> Lab {
        let now = Instant::now();
        let edge = Tables::new(&edge_config(security), "v1").expect("edge config builds");
        let hub = Tables::new(&hub_config(security), "v1").expect("hub config builds");
        Lab {
            now,
            edge: Pipeline::new(now, Arc::new(edge), Options::default()),
            hub: Pipeline::new(
                now,
                Arc::new(hub),
                Options {
                    hash_seed: 99,
                    uuid_seed: [5, 6],
                    ..Options::default()
                },
            ),
            wan: Vec::new(),
        }
    }

    /// LAN packet at the store → (edge action, hub action, what the hub delivers).
    fn store_to_hub(
        &mut self,
        ingress: Ingress,
        packet: &[u8],
    ) -> (Action, Option<Action>, Vec<u8>) {
        let (a, wan) = run(&mut self.edge, self.now, ingress, packet);
        if !matches!(a, Action::Forward(_)) {
            return (a, None, Vec::new());
        }
        self.wan.push(wan.clone());
        let (b, out) = run(&mut self.hub, self.now, WAN0, &wan);
        (a, Some(b), out)
    }

    /// The WAN side as a pcap file (raw IP link type), 1 ms apart.
    fn pcap(&self) -> Vec<u8> {
        let mut w =
            crate::pcap::PcapWriter::new(Vec::new(), crate::pcap::LinkType::Raw).expect("header");
        for (i, packet) in self.wan.iter().enumerate() {
            w.write_packet(Duration::from_millis(i as u64), packet)
                .expect("in memory");
        }
        w.into_inner()
    }

    fn hub_to_store(&mut self, packet: &[u8]) -> (Action, Option<Action>, Vec<u8>) {
        let (a, wan) = run(&mut self.hub, self.now, HUB_LAN, packet);
        if !matches!(a, Action::Forward(_)) {
            return (a, None, Vec::new());
        }
        self.wan.push(wan.clone());
        let wan_in = match a {
            Action::Forward(Egress { next_hop, .. })
                if next_hop == IpAddr::V4(Ipv4Addr::new(100, 64, 1, 2)) =>
            {
                Ingress {
                    interface: Interface::Wan(1),
                    vlan: None,
                }
            }
            _ => WAN0,
        };
        let (b, out) = run(&mut self.edge, self.now, wan_in, &wan);
        (a, Some(b), out)
    }
}

#[allow(clippy::too_many_arguments)] // a packet is its fields
/// `SIGNPOST_PCAP_DIR=DIR cargo test -p signpost-cnf --lib pipeline` writes each test's WAN side
/// to `DIR/<test name>.pcap`, for tshark, Wireshark or `signpostctl svr decode`.
impl Drop for Lab {
    fn drop(&mut self) {
        let Some(dir) = std::env::var_os("SIGNPOST_PCAP_DIR") else {
            return;
        };
        let thread = std::thread::current();
        let name = thread
            .name()
            .unwrap_or("lab")
            .rsplit("::")
            .next()
            .unwrap_or("lab")
            .to_string();
        let path = std::path::Path::new(&dir).join(format!("{name}.pcap"));
        if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, self.pcap()))
        {
            eprintln!("could not write {}: {e}", path.display());
        }
    }
}

/// `packet` as it arrives after crossing the WAN: with the DSCP of its session's class. The
/// testbed's policies name no priority, so their sessions are `normal` (AF21, 18).
fn marked(mut packet: Vec<u8>) -> Vec<u8> {
    assert!(crate::qos::dscp::mark(&mut packet, 18));
    packet
}

#[allow(clippy::too_many_arguments)] // a packet is its fields
fn tcp_packet(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    ttl: u8,
    flags: &str,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, ttl).tcp(sport, dport, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
        b = b
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .expect("options fit");
    }
    if flags.contains('A') {
        b = b.ack(1);
    }
    if flags.contains('P') {
        b = b.psh();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("writes");
    out
}

fn udp_packet(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, ttl)
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("writes");
    out
}

/// Checks every checksum with the crate's views (etherparse does not verify on parse).
fn assert_valid(packet: &[u8]) {
    let ip = crate::packet::Ipv4Packet::new_checked(packet).expect("IPv4");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let (s, d) = (ip.src_addr(), ip.dst_addr());
    match ip.protocol() {
        6 => assert!(
            crate::packet::TcpSegment::new_checked(ip.payload())
                .expect("TCP")
                .verify_checksum_v4(s, d),
            "TCP checksum"
        ),
        17 => assert!(
            crate::packet::UdpDatagram::new_checked(ip.payload())
                .expect("UDP")
                .verify_checksum_v4(s, d),
            "UDP checksum"
        ),
        _ => {}
    }
}

fn payload_of(packet: &[u8]) -> Vec<u8> {
    match SlicedPacket::from_ip(packet).expect("parses").transport {
        Some(TransportSlice::Tcp(t)) => t.payload().to_vec(),
        Some(TransportSlice::Udp(u)) => u.payload().to_vec(),
        _ => Vec::new(),
    }
}

fn tuple(packet: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let p = ip::parse(packet).expect("parses");
    (p.src(), p.key.src_port(), p.dst(), p.key.dst_port())
}

fn addr(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

#[test]
fn tcp_with_encryption_end_to_end() {
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    // SYN from a POS terminal to the payments VIP.
    let syn = tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "S", 1000, &[]);
    let (a, b, delivered) = lab.store_to_hub(POS, &syn);
    let Action::Forward(out) = a else {
        panic!("edge: {a:?}")
    };
    assert_eq!(out.interface, Interface::Wan(0), "broadband is preferred");
    assert_eq!(out.next_hop, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let wan = lab.wan[0].clone();
    assert_valid(&wan);
    let (src, sport, dst, dport) = tuple(&wan);
    assert_eq!((src, dst), (addr([192, 0, 2, 11]), addr([203, 0, 113, 10])));
    assert!((16384..=65535).contains(&sport) && (20000..=40000).contains(&dport));
    assert!(
        svr::starts_with_cookie(&payload_of(&wan)),
        "first packet carries metadata"
    );
    assert_eq!(
        b,
        Some(Action::Forward(Egress {
            interface: Interface::Lan(0),
            vlan: None,
            next_hop: addr(PAYMENTS_REAL),
            class: 0,
        }))
    );
    assert_valid(&delivered);
    assert_eq!(
        tuple(&delivered),
        (addr(CLIENT), 40000, addr(PAYMENTS_REAL), 443)
    );
    assert!(payload_of(&delivered).is_empty());
    // The MSS was clamped for the 24-byte trailer: 1500 - 20 - 20 - 24.
    let t = SlicedPacket::from_ip(&delivered).expect("parses");
    let Some(TransportSlice::Tcp(seg)) = t.transport else {
        panic!("tcp")
    };
    assert!(
        seg.options_iterator()
            .any(|o| matches!(o, Ok(TcpOptionElement::MaximumSegmentSize(1436))))
    );

    // SYN-ACK from the payment server, through the hub with reverse metadata.
    let syn_ack = tcp_packet(PAYMENTS_REAL, 443, CLIENT, 40000, 64, "SA", 5000, &[]);
    let (a, b, back) = lab.hub_to_store(&syn_ack);
    assert!(
        matches!(
            a,
            Action::Forward(Egress {
                interface: Interface::Wan(0),
                ..
            })
        ),
        "{a:?}"
    );
    assert!(
        svr::starts_with_cookie(&payload_of(&lab.wan[1])),
        "reply carries reverse metadata"
    );
    assert_eq!(
        b,
        Some(Action::Forward(Egress {
            interface: Interface::Lan(0),
            vlan: Some(10),
            next_hop: addr(CLIENT),
            class: 0,
        }))
    );
    assert_valid(&back);
    assert_eq!(
        tuple(&back),
        (addr(PAYMENTS_VIP), 443, addr(CLIENT), 40000),
        "the client sees the address it dialed"
    );

    // Data: no metadata any more, payload encrypted on the WAN, byte-identical on delivery except
    // the intended NAT and the two TTL decrements.
    let request = b"POST /authorize amount=12.34 card=tokenized";
    let data = tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "AP", 1001, request);
    let (_, b, delivered) = lab.store_to_hub(POS, &data);
    assert!(matches!(b, Some(Action::Forward(_))), "{b:?}");
    let wan = lab.wan[2].clone();
    assert_valid(&wan);
    assert!(
        !svr::starts_with_cookie(&payload_of(&wan)),
        "handshake complete: no metadata"
    );
    assert_eq!(payload_of(&wan).len(), request.len() + TRAILER_LEN);
    assert!(
        !payload_of(&wan).windows(8).any(|w| w == b"amount=1"),
        "payload is encrypted on the WAN"
    );
    let expected = tcp_packet(CLIENT, 40000, PAYMENTS_REAL, 443, 62, "AP", 1001, request);
    assert_eq!(delivered, marked(expected));

    let response = b"HTTP/1.1 200 OK approved";
    let reply = tcp_packet(PAYMENTS_REAL, 443, CLIENT, 40000, 64, "AP", 5001, response);
    let (_, b, back) = lab.hub_to_store(&reply);
    assert!(matches!(b, Some(Action::Forward(_))), "{b:?}");
    assert_eq!(
        back,
        marked(tcp_packet(
            PAYMENTS_VIP,
            443,
            CLIENT,
            40000,
            62,
            "AP",
            5001,
            response
        ))
    );
    assert_eq!(lab.edge.counters().sessions_created, 1);
    assert_eq!(lab.hub.counters().sessions_created, 1);
}

#[test]
fn udp_with_no_security_costs_nothing_after_the_handshake() {
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    let first = udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, b"reading 1");
    let (_, b, delivered) = lab.store_to_hub(POS, &first);
    assert!(matches!(b, Some(Action::Forward(_))), "{b:?}");
    // No real address at the location: delivered to the original destination.
    assert_eq!(
        delivered,
        marked(udp_packet(CLIENT, 5004, TELEMETRY, 9000, 62, b"reading 1"))
    );
    // Until something comes back, every packet carries metadata.
    let second = udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, b"reading 2");
    let (_, _, delivered) = lab.store_to_hub(POS, &second);
    assert_eq!(
        delivered,
        marked(udp_packet(CLIENT, 5004, TELEMETRY, 9000, 62, b"reading 2"))
    );
    assert!(svr::starts_with_cookie(&payload_of(&lab.wan[1])));
    let ack = udp_packet(TELEMETRY, 9000, CLIENT, 5004, 64, b"ok");
    let (_, b, back) = lab.hub_to_store(&ack);
    assert!(matches!(b, Some(Action::Forward(_))), "{b:?}");
    assert_eq!(
        back,
        marked(udp_packet(TELEMETRY, 9000, CLIENT, 5004, 62, b"ok"))
    );
    // The hub saw a forward packet without metadata only after this: one more reverse metadata
    // at most, then plain NAT both ways with not one extra byte.
    for n in 0..3 {
        let pkt = udp_packet(
            CLIENT,
            5004,
            TELEMETRY,
            9000,
            64,
            format!("reading {n}").as_bytes(),
        );
        let (_, _, delivered) = lab.store_to_hub(POS, &pkt);
        let wan = lab.wan.last().expect("sent").clone();
        assert_eq!(
            wan.len(),
            pkt.len(),
            "no bytes added on an established `none` session"
        );
        assert_valid(&wan);
        assert_eq!(payload_of(&delivered), payload_of(&pkt));
        let reply = udp_packet(TELEMETRY, 9000, CLIENT, 5004, 64, b"ok");
        let (_, _, back) = lab.hub_to_store(&reply);
        assert_eq!(
            back,
            marked(udp_packet(TELEMETRY, 9000, CLIENT, 5004, 62, b"ok"))
        );
    }
    let last_reply = lab.wan.last().expect("sent");
    assert_eq!(
        last_reply.len(),
        udp_packet(TELEMETRY, 9000, CLIENT, 5004, 64, b"ok").len()
    );
}

#[test]
fn a_denied_flow_produces_nothing_on_the_wan() {
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    let syn = tcp_packet(GUEST, 40000, PAYMENTS_VIP, 443, 64, "S", 1, &[]);
    let (a, b, _) = lab.store_to_hub(GUEST_IN, &syn);
    assert_eq!(a, Action::Drop(DropReason::NoPolicy));
    assert_eq!(b, None);
    assert!(lab.wan.is_empty());
    // Not a service at all; and a mid-stream segment cannot open a session.
    let (a, _, _) = lab.store_to_hub(
        POS,
        &tcp_packet(CLIENT, 40001, [10, 200, 0, 1], 443, 64, "S", 1, &[]),
    );
    assert_eq!(a, Action::Drop(DropReason::NoService));
    let (a, _, _) = lab.store_to_hub(
        POS,
        &tcp_packet(CLIENT, 40002, PAYMENTS_VIP, 443, 64, "A", 1, &[]),
    );
    assert_eq!(a, Action::Drop(DropReason::TcpNotSyn));
    let c = lab.edge.counters();
    assert_eq!(
        (
            c.dropped(DropReason::NoPolicy),
            c.dropped(DropReason::NoService),
            c.dropped(DropReason::TcpNotSyn)
        ),
        (1, 1, 1)
    );
    assert!(lab.wan.is_empty());
    assert_eq!(lab.edge.sessions().len(), 0);
}

#[test]
fn tampered_metadata_is_dropped_and_counted() {
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    let syn = tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "S", 1000, &[]);
    let (_, wan) = run(&mut lab.edge, lab.now, POS, &syn);
    let p = ip::parse(&wan).expect("parses");
    // Flip one bit of the tenant name inside the metadata (the attacker wants another tenant);
    // fix the UDP/TCP checksum so only SVR authentication can notice.
    let mut forged = wan.clone();
    let at = forged
        .windows(3)
        .position(|w| w == b"pos")
        .expect("tenant TLV present");
    forged[at] ^= 0x01;
    let end = forged.len();
    ip::refill(&mut forged, &p, end).expect("refill");
    let (a, _) = run(&mut lab.hub, lab.now, WAN0, &forged);
    assert_eq!(a, Action::Drop(DropReason::AuthFailed));
    assert_eq!(lab.hub.counters().dropped(DropReason::AuthFailed), 1);
    assert_eq!(lab.hub.sessions().len(), 0);
    // The genuine packet still opens the session; replaying it later is refused.
    let (a, _) = run(&mut lab.hub, lab.now, WAN0, &wan);
    assert!(matches!(a, Action::Forward(_)), "{a:?}");
    let (a, _) = run(&mut lab.hub, lab.now, WAN0, &wan);
    assert_eq!(a, Action::Drop(DropReason::Replayed));
}

#[test]
fn tampered_payload_of_an_encrypted_session_is_dropped() {
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    lab.store_to_hub(
        POS,
        &tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "S", 1000, &[]),
    );
    lab.hub_to_store(&tcp_packet(
        PAYMENTS_REAL,
        443,
        CLIENT,
        40000,
        64,
        "SA",
        5000,
        &[],
    ));
    let data = tcp_packet(
        CLIENT,
        40000,
        PAYMENTS_VIP,
        443,
        64,
        "AP",
        1001,
        b"amount=10.00",
    );
    let (_, mut wan) = run(&mut lab.edge, lab.now, POS, &data);
    let p = ip::parse(&wan).expect("parses");
    wan[p.payload] ^= 0x80;
    let end = wan.len();
    ip::refill(&mut wan, &p, end).expect("refill");
    let (a, _) = run(&mut lab.hub, lab.now, WAN0, &wan);
    assert_eq!(a, Action::Drop(DropReason::AuthFailed));
}

#[test]
fn a_session_moves_to_lte_when_broadband_fails_and_the_hub_rebinds_it() {
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    lab.store_to_hub(
        POS,
        &tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "S", 1000, &[]),
    );
    lab.hub_to_store(&tcp_packet(
        PAYMENTS_REAL,
        443,
        CLIENT,
        40000,
        64,
        "SA",
        5000,
        &[],
    ));
    lab.store_to_hub(
        POS,
        &tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "A", 1001, &[]),
    );
    assert!(
        lab.edge
            .set_path_up("hub", "store/broadband->hub/internet", false)
    );
    let data = tcp_packet(
        CLIENT,
        40000,
        PAYMENTS_VIP,
        443,
        64,
        "AP",
        1001,
        b"still here",
    );
    let (a, b, delivered) = lab.store_to_hub(POS, &data);
    let Action::Forward(out) = a else {
        panic!("{a:?}")
    };
    assert_eq!(out.interface, Interface::Wan(1), "moved to LTE");
    let wan = lab.wan.last().expect("sent").clone();
    assert_eq!(tuple(&wan).0, addr([100, 64, 1, 2]));
    assert!(
        svr::starts_with_cookie(&payload_of(&wan)),
        "metadata again on the new path"
    );
    assert!(matches!(b, Some(Action::Forward(_))), "{b:?}");
    assert_eq!(
        delivered,
        marked(tcp_packet(
            CLIENT,
            40000,
            PAYMENTS_REAL,
            443,
            62,
            "AP",
            1001,
            b"still here"
        ))
    );
    assert_eq!(lab.hub.counters().sessions_rebound, 1);
    assert_eq!(
        lab.hub.sessions().len(),
        1,
        "the same session, not a new one"
    );
    // Replies now go to the LTE address.
    let reply = tcp_packet(PAYMENTS_REAL, 443, CLIENT, 40000, 64, "AP", 5001, b"ok");
    let (a, b, back) = lab.hub_to_store(&reply);
    assert!(
        matches!(a, Action::Forward(Egress { next_hop, .. }) if next_hop == addr([100, 64, 1, 2])),
        "{a:?}"
    );
    assert!(matches!(b, Some(Action::Forward(_))), "{b:?}");
    assert_eq!(
        back,
        marked(tcp_packet(
            PAYMENTS_VIP,
            443,
            CLIENT,
            40000,
            62,
            "AP",
            5001,
            b"ok"
        ))
    );
}

#[test]
fn an_expired_session_is_closed_at_the_hub_by_a_control_message() {
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    lab.store_to_hub(POS, &udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, b"x"));
    assert_eq!(lab.hub.sessions().len(), 1);
    let later = lab.now + Duration::from_secs(31);
    lab.edge.poll_timers(later, 1024);
    assert_eq!(lab.edge.sessions().len(), 0);
    let mut buf = [0u8; 512];
    let (egress, len) = lab
        .edge
        .poll_transmit(&mut buf)
        .expect("a delete-session message");
    assert_eq!(egress.interface, Interface::Wan(0));
    assert_valid(&buf[..len]);
    let (a, _) = run(&mut lab.hub, lab.now, WAN0, &buf[..len]);
    assert_eq!(a, Action::Consumed);
    assert_eq!(lab.hub.sessions().len(), 0);
    assert_eq!(lab.hub.counters().sessions_closed_by_peer, 1);
    assert!(lab.edge.poll_transmit(&mut buf).is_none());
}

/// Both ends expire a session on their own clocks; when the hub's went first, the store's
/// "delete session" finds nothing to delete: consumed, not a drop (it used to be counted as
/// `bad_metadata`, once per session, in the lab's drop tables).
#[test]
fn a_delete_for_a_session_the_hub_already_closed_is_consumed_quietly() {
    let mut lab = Lab::new(pb::SecurityMode::None);
    lab.store_to_hub(POS, &udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, b"x"));
    let later = lab.now + Duration::from_secs(31);
    lab.hub.poll_timers(later, 1024);
    assert_eq!(lab.hub.sessions().len(), 0);
    lab.edge.poll_timers(later, 1024);
    let mut buf = [0u8; 512];
    let (_, len) = lab
        .edge
        .poll_transmit(&mut buf)
        .expect("a delete-session message");
    let drops_before = lab.hub.counters().drops;
    let (a, _) = run(&mut lab.hub, later, WAN0, &buf[..len]);
    assert_eq!(a, Action::Consumed);
    assert_eq!(lab.hub.counters().drops, drops_before);
    assert_eq!(lab.hub.counters().sessions_created, 1);
}

/// The same for a session of an `encrypt` policy: the control message carries both trailers,
/// as every metadata packet of such a session does, or the hub cannot open it.
#[test]
fn an_expired_encrypted_session_is_closed_at_the_hub_by_a_control_message() {
    for security in [pb::SecurityMode::Authenticate, pb::SecurityMode::Encrypt] {
        let mut lab = Lab::new(security);
        let syn = tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "S", 1000, &[]);
        let (_, b, _) = lab.store_to_hub(POS, &syn);
        assert!(matches!(b, Some(Action::Forward(_))), "{security:?}: {b:?}");
        let later = lab.now + Duration::from_secs(21); // past the half-open timeout
        lab.edge.poll_timers(later, 1024);
        assert_eq!(lab.edge.sessions().len(), 0);
        let mut buf = [0u8; 512];
        let (_, len) = lab
            .edge
            .poll_transmit(&mut buf)
            .expect("a delete-session message");
        assert_valid(&buf[..len]);
        let (a, _) = run(&mut lab.hub, lab.now, WAN0, &buf[..len]);
        assert_eq!(a, Action::Consumed, "{security:?}");
        assert_eq!(lab.hub.sessions().len(), 0, "{security:?}");
        assert_eq!(lab.hub.counters().sessions_closed_by_peer, 1);
    }
}

/// Application data that happens to begin with the SVR cookie (or with the false-positive
/// marker itself) is delivered unchanged in every security mode, both ways, once the handshake
/// is over: the sender marks it, the receiver strips the mark (and checks the trailer).
#[test]
fn payloads_that_begin_with_the_cookie_are_delivered_unchanged() {
    let mut marker_first = svr::FALSE_POSITIVE_MARKER.to_vec();
    marker_first.extend_from_slice(b"tail");
    let mut cookie_first = svr::COOKIE.to_vec();
    cookie_first.extend_from_slice(b"POST /authorize");
    for security in [
        pb::SecurityMode::None,
        pb::SecurityMode::Authenticate,
        pb::SecurityMode::Encrypt,
    ] {
        let mut lab = Lab::new(security);
        let syn = tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "S", 1000, &[]);
        lab.store_to_hub(POS, &syn);
        let syn_ack = tcp_packet(PAYMENTS_REAL, 443, CLIENT, 40000, 64, "SA", 5000, &[]);
        lab.hub_to_store(&syn_ack);
        for (n, payload) in [&cookie_first, &marker_first, &svr::COOKIE.to_vec()]
            .into_iter()
            .enumerate()
        {
            let seq = 1001 + 100 * n as u32;
            let data = tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "AP", seq, payload);
            let (a, b, delivered) = lab.store_to_hub(POS, &data);
            assert!(matches!(a, Action::Forward(_)), "{security:?} #{n}: {a:?}");
            assert!(
                matches!(b, Some(Action::Forward(_))),
                "{security:?} #{n}: {b:?}"
            );
            let expected = tcp_packet(CLIENT, 40000, PAYMENTS_REAL, 443, 62, "AP", seq, payload);
            assert_eq!(delivered, marked(expected), "{security:?} #{n} to the hub");

            let reply = tcp_packet(PAYMENTS_REAL, 443, CLIENT, 40000, 64, "AP", seq, payload);
            let (_, b, back) = lab.hub_to_store(&reply);
            assert!(
                matches!(b, Some(Action::Forward(_))),
                "{security:?} #{n}: {b:?}"
            );
            let expected = tcp_packet(PAYMENTS_VIP, 443, CLIENT, 40000, 62, "AP", seq, payload);
            assert_eq!(back, marked(expected), "{security:?} #{n} to the store");
        }
    }
}

#[test]
fn sessions_cross_a_carrier_nat() {
    let mut lab = Lab::new(pb::SecurityMode::Authenticate);
    assert!(
        lab.edge
            .set_path_up("hub", "store/broadband->hub/internet", false)
    );
    // The carrier rewrites the store's LTE address and port (CGNAT).
    let public = FlowKey::v4(
        17,
        Ipv4Addr::new(198, 18, 0, 77),
        61000,
        Ipv4Addr::new(203, 0, 113, 10),
        0,
    );
    let (a, wan) = run(
        &mut lab.edge,
        lab.now,
        POS,
        &udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, b"via lte"),
    );
    assert!(
        matches!(
            a,
            Action::Forward(Egress {
                interface: Interface::Wan(1),
                ..
            })
        ),
        "{a:?}"
    );
    let mut natted = wan.clone();
    let p = ip::parse(&natted).expect("parses");
    let inside = p.key;
    let outside = FlowKey::new(
        17,
        public.src(),
        public.src_port(),
        inside.dst(),
        inside.dst_port(),
    );
    ip::nat(&mut natted, &p, &outside).expect("nat");
    let (b, delivered) = run(&mut lab.hub, lab.now, WAN0, &natted);
    assert!(matches!(b, Action::Forward(_)), "{b:?}");
    assert_eq!(payload_of(&delivered), b"via lte");
    let (a, reply) = run(
        &mut lab.hub,
        lab.now,
        HUB_LAN,
        &udp_packet(TELEMETRY, 9000, CLIENT, 5004, 64, b"ack"),
    );
    assert!(
        matches!(a, Action::Forward(Egress { next_hop, .. }) if next_hop == public.src()),
        "{a:?}"
    );
    let p = ip::parse(&reply).expect("parses");
    assert_eq!(p.key.dst_port(), 61000);
    let mut back = reply.clone();
    ip::nat(&mut back, &p, &inside.reversed()).expect("nat");
    let (b, delivered) = run(
        &mut lab.edge,
        lab.now,
        Ingress {
            interface: Interface::Wan(1),
            vlan: None,
        },
        &back,
    );
    assert!(matches!(b, Action::Forward(_)), "{b:?}");
    assert_eq!(
        delivered,
        marked(udp_packet(TELEMETRY, 9000, CLIENT, 5004, 62, b"ack"))
    );
}

#[test]
fn removing_the_policy_closes_live_sessions_and_denies_new_ones() {
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    lab.store_to_hub(POS, &udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, b"x"));
    assert_eq!(lab.edge.sessions().len(), 1);
    let mut config = edge_config(pb::SecurityMode::Encrypt);
    config.access.retain(|r| r.service != "telemetry");
    lab.edge
        .set_tables(Arc::new(Tables::new(&config, "v2").expect("builds")));
    assert_eq!(lab.edge.sessions().len(), 0);
    let (a, _, _) = lab.store_to_hub(POS, &udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, b"x"));
    assert_eq!(a, Action::Drop(DropReason::NoPolicy));
}

#[test]
fn malformed_packets_are_counted_drops() {
    let mut lab = Lab::new(pb::SecurityMode::None);
    for bytes in [&[][..], &[0x45, 0, 0][..], &[0x60; 30][..], &[0x45; 60][..]] {
        let (a, _) = run(&mut lab.edge, lab.now, POS, bytes);
        assert!(matches!(a, Action::Drop(_)), "{a:?}");
        let (a, _) = run(&mut lab.hub, lab.now, WAN0, bytes);
        assert!(matches!(a, Action::Drop(_) | Action::Local), "{a:?}");
    }
}

#[test]
fn the_wan_side_reads_back_with_the_capture_inspector() {
    use crate::svr::inspect::{Verdict, inspect_capture};
    let mut lab = Lab::new(pb::SecurityMode::Encrypt);
    lab.store_to_hub(
        POS,
        &tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "S", 1000, &[]),
    );
    lab.hub_to_store(&tcp_packet(
        PAYMENTS_REAL,
        443,
        CLIENT,
        40000,
        64,
        "SA",
        5000,
        &[],
    ));
    lab.store_to_hub(
        POS,
        &tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "AP", 1001, b"data"),
    );
    let reports = inspect_capture(&lab.pcap()).expect("a valid pcap");
    assert_eq!(reports.len(), 3);
    let Verdict::Metadata { metadata, .. } = &reports[0].verdict else {
        panic!("{:?}", reports[0].verdict)
    };
    assert_eq!(metadata.tenant.as_deref(), Some("pos"));
    assert_eq!(metadata.service.as_deref(), Some("payments"));
    assert_eq!(metadata.source_router.as_deref(), Some("store"));
    assert_eq!(metadata.security_id, Some(7));
    assert!(metadata.payload_encrypted);
    let forward = metadata.forward_context.expect("forward context");
    assert_eq!((forward.src_port, forward.dst_port), (40000, 443));
    let Verdict::Metadata { metadata, .. } = &reports[1].verdict else {
        panic!("{:?}", reports[1].verdict)
    };
    assert!(metadata.disable_forward_metadata && metadata.reverse_context.is_some());
    assert!(
        matches!(reports[2].verdict, Verdict::Ordinary { .. }),
        "{:?}",
        reports[2].verdict
    );
}

/// `packets` through `p` as one [`Pipeline::handle_batch`]: each action and the bytes after it.
fn run_batch(
    p: &mut Pipeline,
    now: Instant,
    ingress: Ingress,
    packets: &[Vec<u8>],
) -> Vec<(Action, Vec<u8>)> {
    let mut bufs: Vec<Vec<u8>> = packets
        .iter()
        .map(|packet| {
            let mut buf = vec![0u8; 2048];
            buf[..packet.len()].copy_from_slice(packet);
            buf
        })
        .collect();
    let mut pkts: Vec<PacketBuf<'_>> = bufs
        .iter_mut()
        .zip(packets)
        .map(|(buf, packet)| PacketBuf::new(buf, packet.len()))
        .collect();
    let mut actions = vec![Action::Consumed; 3];
    p.handle_batch(now, ingress, &mut pkts, &mut actions);
    let lens: Vec<usize> = pkts.iter().map(PacketBuf::len).collect();
    assert_eq!(actions.len(), packets.len(), "one action per packet");
    actions
        .into_iter()
        .zip(bufs)
        .zip(lens)
        .map(|((action, mut buf), len)| {
            buf.truncate(len);
            (action, buf)
        })
        .collect()
}

#[test]
fn a_batch_is_handled_exactly_as_its_packets_one_by_one() {
    let mut one_by_one = Lab::new(pb::SecurityMode::Encrypt);
    let mut batched = Lab::new(pb::SecurityMode::Encrypt);
    let lan_batch = |n: u8| {
        vec![
            udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, &[n; 20]),
            // The same flow again in the same batch: it must find the session the packet
            // before it created, although both were prepared before either was handled.
            udp_packet(CLIENT, 5004, TELEMETRY, 9000, 64, &[n; 30]),
            tcp_packet(CLIENT, 40000, PAYMENTS_VIP, 443, 64, "S", 1, &[]),
            vec![0x45, 0, 0, 3],
            udp_packet(CLIENT, 5005, TELEMETRY, 9000, 1, b"ttl runs out"),
            tcp_packet(GUEST, 40001, PAYMENTS_VIP, 443, 64, "S", 1, &[]),
            udp_packet(CLIENT, 5006, TELEMETRY, 9000, 64, &[n; 40]),
        ]
    };
    let replies = vec![
        udp_packet(TELEMETRY, 9000, CLIENT, 5004, 64, b"ok"),
        udp_packet(TELEMETRY, 9000, CLIENT, 5006, 64, b"ok too"),
    ];
    for round in 0..3u8 {
        let lan = lan_batch(round);
        let expected: Vec<(Action, Vec<u8>)> = lan
            .iter()
            .map(|p| run(&mut one_by_one.edge, one_by_one.now, POS, p))
            .collect();
        let got = run_batch(&mut batched.edge, batched.now, POS, &lan);
        assert_eq!(got, expected, "LAN batch, round {round}");
        // Both hubs take the edge's WAN output one by one and answer the UDP flows; the
        // answers come back to the edges, one by one and as a batch.
        let mut to_edge = Vec::new();
        for (lab, out) in [(&mut one_by_one, &expected), (&mut batched, &got)] {
            let mut wan = Vec::new();
            for (action, bytes) in out {
                if matches!(action, Action::Forward(_)) {
                    run(&mut lab.hub, lab.now, WAN0, bytes);
                }
            }
            for reply in &replies {
                let (action, bytes) = run(&mut lab.hub, lab.now, HUB_LAN, reply);
                assert!(matches!(action, Action::Forward(_)), "{action:?}");
                wan.push(bytes);
            }
            to_edge.push(wan);
        }
        assert_eq!(to_edge[0], to_edge[1], "hub replies, round {round}");
        let expected: Vec<(Action, Vec<u8>)> = to_edge[0]
            .iter()
            .map(|p| run(&mut one_by_one.edge, one_by_one.now, WAN0, p))
            .collect();
        let got = run_batch(&mut batched.edge, batched.now, WAN0, &to_edge[1]);
        assert_eq!(got, expected, "WAN batch, round {round}");
    }
    assert_eq!(batched.edge.counters(), one_by_one.edge.counters());
    assert!(batched.edge.counters().sessions_created >= 3);
    assert!(run_batch(&mut batched.edge, batched.now, POS, &[]).is_empty());
}
