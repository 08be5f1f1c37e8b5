//! Target `pipeline`: a store edge and a cloud hub (the lab of `crate::pipeline::testbed`) driven by
//! a script the fuzzer writes. The compiled configs are built once per process; the two
//! pipelines are new for every input, so that any failure replays from its input alone.
//!
//! Script:
//!
//! ```text
//! byte 0      security mode of the `payments` policy: 0 none, 1 authenticate, 2 encrypt (mod 3)
//! then steps, each an op byte and its operands, until the input ends:
//!   op & 7    0 edge LAN   1 edge WAN   2 hub LAN   3 hub WAN      packet steps
//!             4, 7 clock: advance by one byte (< 128: seconds, else minutes), expire sessions
//!                  on both routers, relay their control packets to the peer
//!             5 path: one byte; bit 0 picks the store's path, bit 1 says up
//!             6 replay the last packet relayed over the WAN, to the same router again
//!   packet steps:
//!   op & 0x08 repair lengths and checksums before handing the packet over
//!   op & 0x10 relay: a packet forwarded to a WAN is handed to the peer's WAN interface
//!   op & 0x20 tamper: two operand bytes (offset, XOR mask) alter the relayed packet
//!   op >> 6   LAN: 0 the router's own VLAN (edge 10, hub none), 1 VLAN 30, 2 untagged,
//!                3 one more byte: LAN index (bit 7) and VLAN (low 7 bits)
//!             WAN: the interface index
//!   then a big-endian u16 length (low 11 bits) and that many packet bytes (fewer at the end).
//! ```
//!
//! Oracles, for every packet a pipeline forwards: it leaves by the other kind of interface; it
//! is one IPv4 or IPv6 packet of exactly the buffer's length with a TCP, UDP or ICMP echo
//! header that the views accept; its TTL is one less; a WAN packet fits the MTU; its checksums
//! verify whenever the packet's did on arrival. Control packets the routers emit are valid IP
//! packets. While no replay, tampered relay or crafted WAN packet has come between the routers,
//! a relayed packet or control packet is never unauthentic or replayed to the peer (nor has
//! bad metadata, for data), and what the peer delivers to its LAN carries the sender's L4
//! payload byte for byte, the same protocol and ports, and the client's address.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use signpost_proto::v1::SecurityMode;

use crate::packet::{
    IcmpPacket, Ipv4Packet, Ipv6Packet, TcpSegment, UdpDatagram, icmp, ip_protocol,
};
use crate::pipeline::testbed::{edge_config, hub_config};
use crate::pipeline::{
    Action, DropReason, Egress, Ingress, Interface, Options, PacketBuf, Pipeline, Tables, ip,
};

/// The WAN MTU both pipelines run with.
const MTU: u16 = 1500;
/// Room for a packet and what the pipeline adds to it (metadata, trailers).
const BUFFER: usize = 4096;
/// Packets a script step may carry: 11 bits of length.
const MAX_PACKET: usize = 0x07ff;
/// Control packets relayed per clock step, at most.
const MAX_TRANSMITS: usize = 64;

/// The compiled configs of both routers, for each security mode of `payments`.
struct Lab {
    base: Instant,
    /// `[none, authenticate, encrypt]`, each `(edge, hub)`.
    tables: [(Arc<Tables>, Arc<Tables>); 3],
}

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let build = |mode: SecurityMode| {
            let edge = Tables::new(&edge_config(mode), "fuzz");
            let hub = Tables::new(&hub_config(mode), "fuzz");
            match (edge, hub) {
                (Ok(edge), Ok(hub)) => (Arc::new(edge), Arc::new(hub)),
                (Err(e), _) | (_, Err(e)) => panic!("the lab's built-in configs must compile: {e}"),
            }
        };
        Lab {
            base: Instant::now(),
            tables: [
                build(SecurityMode::None),
                build(SecurityMode::Authenticate),
                build(SecurityMode::Encrypt),
            ],
        }
    })
}

/// The lab's clock origin and `(edge, hub)` tables for a security mode (0 none, 1 authenticate,
/// 2 encrypt), for the seeds.
pub(super) fn lab_tables(mode: usize) -> (Instant, Arc<Tables>, Arc<Tables>) {
    let lab = lab();
    let (edge, hub) = lab.tables.get(mode).unwrap_or(&lab.tables[0]);
    (lab.base, Arc::clone(edge), Arc::clone(hub))
}

/// What a script did, for tests that check a seed reaches as deep as it should.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Packets forwarded to a WAN, by either router.
    pub to_wan: usize,
    /// Packets forwarded to a LAN, by either router.
    pub to_lan: usize,
    /// Relayed packets the peer delivered to its LAN (checked end to end).
    pub delivered: usize,
    /// Control packets the routers emitted (and relayed).
    pub control: usize,
    /// Control packets the receiving router consumed.
    pub consumed: usize,
    /// Every drop, in order.
    pub drops: Vec<DropReason>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Router {
    Edge,
    Hub,
}

impl Router {
    fn peer(self) -> Router {
        match self {
            Router::Edge => Router::Hub,
            Router::Hub => Router::Edge,
        }
    }
}

/// The script's bytes, read front to back; reads past the end give `None`.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    /// Up to `n` bytes: fewer when the script ends first.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// Runs a script (format in the module docs), asserting every oracle; returns what it did.
pub fn pipeline_outcome(data: &[u8]) -> Outcome {
    let mut script = Script(data);
    let mode = script.byte().unwrap_or(0) % 3;
    let mut lab = Run::new(usize::from(mode));
    while let Some(op) = script.byte() {
        match op & 0x07 {
            kind @ 0..=3 => {
                let router = if kind & 2 == 0 {
                    Router::Edge
                } else {
                    Router::Hub
                };
                let selector = op >> 6;
                let ingress = if kind & 1 == 0 {
                    let (lan, vlan) = match (selector, router) {
                        (0, Router::Edge) => (0, Some(10)),
                        (0, Router::Hub) => (0, None),
                        (1, _) => (0, Some(30)),
                        (2, _) => (0, None),
                        _ => {
                            let b = script.byte().unwrap_or(0);
                            (b >> 7, Some(u16::from(b & 0x7f)))
                        }
                    };
                    Ingress {
                        interface: Interface::Lan(lan),
                        vlan,
                    }
                } else {
                    Ingress {
                        interface: Interface::Wan(selector),
                        vlan: None,
                    }
                };
                let tamper = if op & 0x20 != 0 {
                    Some((script.byte().unwrap_or(0), script.byte().unwrap_or(0)))
                } else {
                    None
                };
                let len = usize::from(script.u16().unwrap_or(0)) & MAX_PACKET;
                let mut packet = script.take(len).to_vec();
                if op & 0x08 != 0 {
                    repair(&mut packet);
                }
                if kind & 1 == 1 {
                    lab.pristine = false;
                }
                lab.send(router, ingress, &packet, op & 0x10 != 0, tamper);
            }
            5 => {
                let b = script.byte().unwrap_or(0);
                lab.set_path(usize::from(b & 1), b & 2 != 0);
            }
            6 => {
                lab.pristine = false;
                lab.replay();
            }
            _ => {
                let b = script.byte().unwrap_or(0);
                let step = if b < 128 {
                    Duration::from_secs(u64::from(b))
                } else {
                    Duration::from_secs(60 * u64::from(b - 127))
                };
                lab.tick(step);
            }
        }
    }
    lab.outcome
}

/// One input's pair of routers.
struct Run {
    now: Instant,
    edge: Pipeline,
    hub: Pipeline,
    /// The last packet relayed over the WAN: its receiver and ingress.
    last_wan: Option<(Router, Ingress, Vec<u8>)>,
    /// No packet reached a WAN interface but from the peer, untouched: the routers agree on
    /// their sessions, and the peer oracles hold. A replay, a tampered relay or a crafted
    /// WAN packet ends that (a replayed first packet after the session expired, for one,
    /// rightly opens a session the other side no longer has).
    pristine: bool,
    outcome: Outcome,
}

impl Run {
    fn new(mode: usize) -> Run {
        let (base, edge, hub) = lab_tables(mode);
        let options = Options {
            mtu: MTU,
            ..Options::default()
        };
        Run {
            now: base,
            edge: Pipeline::new(base, edge, options),
            hub: Pipeline::new(
                base,
                hub,
                Options {
                    hash_seed: 99,
                    uuid_seed: [5, 6],
                    ..options
                },
            ),
            last_wan: None,
            pristine: true,
            outcome: Outcome::default(),
        }
    }

    fn pipeline(&mut self, router: Router) -> &mut Pipeline {
        match router {
            Router::Edge => &mut self.edge,
            Router::Hub => &mut self.hub,
        }
    }

    /// One packet through one router, every oracle on what it forwards.
    fn handle(&mut self, router: Router, ingress: Ingress, packet: &[u8]) -> (Action, Vec<u8>) {
        let mut buf = vec![0u8; BUFFER];
        let len = packet.len().min(BUFFER);
        if let (Some(to), Some(from)) = (buf.get_mut(..len), packet.get(..len)) {
            to.copy_from_slice(from);
        }
        let now = self.now;
        let mut pkt = PacketBuf::new(&mut buf, len);
        let action = self.pipeline(router).handle(now, ingress, &mut pkt);
        let out = pkt.data().to_vec();
        match action {
            Action::Forward(egress) => {
                if let Err(problem) = check_forwarded_packet(ingress, egress, packet, &out) {
                    panic!(
                        "{router:?} forwarded a bad packet from {ingress:?} to {egress:?}: \
                         {problem}\n in:  {}\n out: {}",
                        hex(packet),
                        hex(&out)
                    );
                }
                match egress.interface {
                    Interface::Wan(_) => self.outcome.to_wan += 1,
                    Interface::Lan(_) => self.outcome.to_lan += 1,
                }
            }
            Action::Drop(reason) => self.outcome.drops.push(reason),
            Action::Consumed | Action::Local => {}
        }
        (action, out)
    }

    fn send(
        &mut self,
        router: Router,
        ingress: Ingress,
        packet: &[u8],
        relay: bool,
        tamper: Option<(u8, u8)>,
    ) {
        let (action, out) = self.handle(router, ingress, packet);
        let Action::Forward(Egress {
            interface: Interface::Wan(_),
            ..
        }) = action
        else {
            return;
        };
        if relay {
            self.relay(router, packet, out, tamper);
        }
    }

    /// Hands a packet `from` forwarded to its WAN to the peer's WAN interface that owns the
    /// destination address. `original` is what `from` received from its LAN.
    fn relay(&mut self, from: Router, original: &[u8], mut wan: Vec<u8>, tamper: Option<(u8, u8)>) {
        let mut tampered = false;
        if let Some((at, mask)) = tamper {
            let at = usize::from(at) % wan.len().max(1);
            if let Some(byte) = wan.get_mut(at) {
                *byte ^= mask;
                tampered = mask != 0;
            }
        }
        self.pristine &= !tampered;
        let to = from.peer();
        let Some(ingress) = self.wan_ingress(to, &wan) else {
            return;
        };
        let (action, delivered) = self.handle(to, ingress, &wan);
        if self.pristine {
            if let Action::Drop(
                reason @ (DropReason::AuthFailed | DropReason::Replayed | DropReason::BadMetadata),
            ) = action
            {
                panic!(
                    "{to:?} dropped, as {}, a packet {from:?} had just sent it: {}\n original: {}",
                    reason.name(),
                    hex(&wan),
                    hex(original)
                );
            }
            if let Action::Forward(Egress {
                interface: Interface::Lan(_),
                ..
            }) = action
            {
                if let Err(problem) = transparent(from, original, &delivered) {
                    panic!(
                        "{to:?} delivered something else than {from:?} was given: {problem}\n \
                         original:  {}\n wan:       {}\n delivered: {}",
                        hex(original),
                        hex(&wan),
                        hex(&delivered)
                    );
                }
                self.outcome.delivered += 1;
            }
        }
        self.last_wan = Some((to, ingress, wan));
    }

    /// The WAN interface of `router` that owns the packet's destination address.
    fn wan_ingress(&self, router: Router, packet: &[u8]) -> Option<Ingress> {
        let dst = ip::parse(packet).ok()?.dst();
        let tables = match router {
            Router::Edge => self.edge.tables(),
            Router::Hub => self.hub.tables(),
        };
        let index = tables.wans.iter().position(|wan| wan.owns(dst))?;
        Some(Ingress {
            interface: Interface::Wan(u8::try_from(index).ok()?),
            vlan: None,
        })
    }

    fn replay(&mut self) {
        if let Some((router, ingress, packet)) = self.last_wan.clone() {
            let _ = self.handle(router, ingress, &packet);
        }
    }

    fn set_path(&mut self, index: usize, up: bool) {
        let tables = Arc::clone(self.edge.tables());
        let Some(hub) = tables.peers.first() else {
            return;
        };
        if let Some(path) = hub.paths.get(index) {
            self.edge.set_path_up(&hub.name, &path.id, up);
        }
    }

    /// Advances the clock, expires idle sessions and relays the control packets they cause.
    fn tick(&mut self, step: Duration) {
        self.now += step;
        let now = self.now;
        self.edge.poll_timers(now, usize::MAX);
        self.hub.poll_timers(now, usize::MAX);
        for router in [Router::Edge, Router::Hub] {
            for _ in 0..MAX_TRANSMITS {
                let mut buf = vec![0u8; BUFFER];
                let Some((egress, len)) = self.pipeline(router).poll_transmit(&mut buf) else {
                    break;
                };
                let packet = buf.get(..len).unwrap_or(&[]).to_vec();
                match valid_ip(&packet) {
                    Ok(summary) if summary.checksums => {}
                    Ok(_) => panic!(
                        "{router:?} emitted a control packet with bad checksums: {}",
                        hex(&packet)
                    ),
                    Err(problem) => panic!(
                        "{router:?} emitted a bad control packet: {problem}: {}",
                        hex(&packet)
                    ),
                }
                assert!(
                    matches!(egress.interface, Interface::Wan(_)),
                    "a control packet to {egress:?}"
                );
                self.outcome.control += 1;
                let peer = router.peer();
                if let Some(ingress) = self.wan_ingress(peer, &packet) {
                    // The peer may have let the session go already (bad metadata: a control
                    // message for no session), but what it holds, it must authenticate.
                    match self.handle(peer, ingress, &packet).0 {
                        Action::Consumed => self.outcome.consumed += 1,
                        Action::Drop(reason @ (DropReason::AuthFailed | DropReason::Replayed))
                            if self.pristine =>
                        {
                            panic!(
                                "{peer:?} dropped, as {}, a control packet {router:?} had just \
                             sent it: {}",
                                reason.name(),
                                hex(&packet)
                            )
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// What [`valid_ip`] found out about a packet.
struct Summary {
    ttl: u8,
    /// The IPv4 header checksum (if any) and the L4 checksum verify.
    checksums: bool,
}

/// A well-formed IP packet as the router sends it: one IPv4 or IPv6 packet of exactly the
/// buffer's length, not a fragment, with a TCP, UDP or ICMP echo header of its own family that
/// the views accept.
fn valid_ip(packet: &[u8]) -> Result<Summary, String> {
    let (ttl, protocol, payload, ipv4_ok, pseudo) = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(packet).map_err(|e| format!("IPv4: {e}"))?;
            if usize::from(ip.total_len()) != packet.len() {
                return Err(format!(
                    "IPv4 total length {} in a {}-byte packet",
                    ip.total_len(),
                    packet.len()
                ));
            }
            if ip.is_fragment() {
                return Err("a fragment".into());
            }
            let pseudo = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            let payload = packet.get(ip.header_len()..).unwrap_or(&[]);
            (
                ip.ttl(),
                ip.protocol(),
                payload,
                ip.verify_checksum(),
                pseudo,
            )
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(packet).map_err(|e| format!("IPv6: {e}"))?;
            if 40 + usize::from(ip.payload_len()) != packet.len() {
                return Err(format!(
                    "IPv6 payload length {} in a {}-byte packet",
                    ip.payload_len(),
                    packet.len()
                ));
            }
            let pseudo = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
            let payload = packet.get(40..).unwrap_or(&[]);
            (ip.hop_limit(), ip.next_header(), payload, true, pseudo)
        }
        other => return Err(format!("IP version {other:?}")),
    };
    let l4_ok = match (protocol, pseudo) {
        (ip_protocol::TCP, (src, dst)) => {
            let seg = TcpSegment::new_checked(payload).map_err(|e| format!("TCP: {e}"))?;
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => seg.verify_checksum_v4(s, d),
                (IpAddr::V6(s), IpAddr::V6(d)) => seg.verify_checksum_v6(&s, &d),
                _ => false,
            }
        }
        (ip_protocol::UDP, (src, dst)) => {
            // The UDP length may stop short of the IP payload (the rest is ignored), as a
            // forwarded packet may have arrived that way.
            let udp = UdpDatagram::new_checked(payload).map_err(|e| format!("UDP: {e}"))?;
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => udp.verify_checksum_v4(s, d),
                (IpAddr::V6(s), IpAddr::V6(d)) => udp.verify_checksum_v6(&s, &d),
                _ => false,
            }
        }
        (ip_protocol::ICMP, (IpAddr::V4(_), _)) => {
            let msg = IcmpPacket::new_checked(payload).map_err(|e| format!("ICMP: {e}"))?;
            if !msg.is_echo_v4() {
                return Err(format!("ICMP type {}", msg.msg_type()));
            }
            msg.verify_checksum_v4()
        }
        (ip_protocol::ICMPV6, (IpAddr::V6(s), IpAddr::V6(d))) => {
            let msg = IcmpPacket::new_checked(payload).map_err(|e| format!("ICMPv6: {e}"))?;
            if !matches!(
                msg.msg_type(),
                icmp::icmpv6_type::ECHO_REQUEST | icmp::icmpv6_type::ECHO_REPLY
            ) {
                return Err(format!("ICMPv6 type {}", msg.msg_type()));
            }
            msg.verify_checksum_v6(&s, &d)
        }
        (protocol, _) => return Err(format!("protocol {protocol} in this IP version")),
    };
    Ok(Summary {
        ttl,
        checksums: ipv4_ok && l4_ok,
    })
}

/// True when `packet` is a packet [`valid_ip`] accepts and its checksums verify.
pub fn checksums_verify(packet: &[u8]) -> bool {
    valid_ip(packet).is_ok_and(|summary| summary.checksums)
}

/// The oracle on one forwarded packet: `input` arrived on `ingress`, `output` leaves by
/// `egress`. `Err` says what is wrong.
pub fn check_forwarded_packet(
    ingress: Ingress,
    egress: Egress,
    input: &[u8],
    output: &[u8],
) -> Result<(), String> {
    match (ingress.interface, egress.interface) {
        (Interface::Lan(_), Interface::Wan(_)) => {
            if output.len() > usize::from(MTU) {
                return Err(format!("{} bytes to a WAN of MTU {MTU}", output.len()));
            }
        }
        (Interface::Wan(_), Interface::Lan(_)) => {}
        (from, to) => return Err(format!("routed from {from:?} to {to:?}")),
    }
    let summary = valid_ip(output)?;
    // The packet as the pipeline took it: link padding after the IP length is not part of it.
    let parsed = ip::parse(input).map_err(|r| format!("forwarded what it cannot parse: {r:?}"))?;
    let arrived = valid_ip(input.get(..parsed.end).unwrap_or(input));
    if let Ok(arrived) = &arrived
        && summary.ttl.checked_add(1) != Some(arrived.ttl)
    {
        return Err(format!("TTL {} in, {} out", arrived.ttl, summary.ttl));
    }
    if arrived.is_ok_and(|a| a.checksums) && !summary.checksums {
        return Err("checksums verified on arrival and do not on departure".into());
    }
    Ok(())
}

/// What the peer delivered against what the sender was given: same L4 payload, protocol and
/// ports; the client keeps its address (the source going out, the destination coming back).
fn transparent(from: Router, original: &[u8], delivered: &[u8]) -> Result<(), String> {
    let sent = ip::parse(original).map_err(|r| format!("original: {}", r.name()))?;
    let got = ip::parse(delivered).map_err(|r| format!("delivered: {}", r.name()))?;
    let payload = |packet: &[u8], p: &ip::Parsed| packet.get(p.payload..p.end).map(<[u8]>::to_vec);
    if payload(original, &sent) != payload(delivered, &got) {
        return Err("the L4 payloads differ".into());
    }
    let ports = |p: &ip::Parsed| (p.protocol, p.key.src_port(), p.key.dst_port());
    if ports(&sent) != ports(&got) {
        return Err(format!(
            "protocol and ports {:?} became {:?}",
            ports(&sent),
            ports(&got)
        ));
    }
    let (client, delivered_client) = match from {
        Router::Edge => (sent.src(), got.src()),
        Router::Hub => (sent.dst(), got.dst()),
    };
    if client != delivered_client {
        return Err(format!("the client {client} became {delivered_client}"));
    }
    Ok(())
}

/// Makes a mutated packet well-formed where it can: IP and UDP lengths to the buffer, a TCP data
/// offset that fits, and every checksum filled, so that scripts reach past the parsers.
fn repair(packet: &mut Vec<u8>) {
    packet.truncate(MAX_PACKET);
    let len = packet.len();
    match packet.first().map(|b| b >> 4) {
        Some(4) if len >= 20 => {
            let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
            let header_len = ip.header_len();
            let header_len = if (20..=len).contains(&header_len) {
                header_len
            } else {
                20
            };
            ip.set_version_and_header_len(header_len);
            ip.set_total_len(len as u16);
            let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
            if let Some(l4) = packet.get_mut(header_len..) {
                repair_l4(protocol, l4, (IpAddr::V4(src), IpAddr::V4(dst)));
            }
            Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();
        }
        Some(6) if len >= 40 => {
            let mut ip = Ipv6Packet::new_unchecked(&mut packet[..]);
            ip.set_payload_len((len - 40) as u16);
            let (src, dst, next) = (ip.src_addr(), ip.dst_addr(), ip.next_header());
            if let Some(l4) = packet.get_mut(40..) {
                repair_l4(next, l4, (IpAddr::V6(src), IpAddr::V6(dst)));
            }
        }
        _ => {}
    }
}

fn repair_l4(protocol: u8, l4: &mut [u8], (src, dst): (IpAddr, IpAddr)) {
    let len = l4.len();
    match (protocol, src, dst) {
        (ip_protocol::TCP, _, _) if len >= 20 => {
            let mut seg = TcpSegment::new_unchecked(l4);
            if seg.header_len() < 20 || seg.header_len() > len {
                seg.set_header_len(20);
            }
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => seg.fill_checksum_v4(s, d),
                (IpAddr::V6(s), IpAddr::V6(d)) => seg.fill_checksum_v6(&s, &d),
                _ => {}
            }
        }
        (ip_protocol::UDP, _, _) if len >= 8 => {
            let mut udp = UdpDatagram::new_unchecked(l4);
            udp.set_len(len as u16);
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => udp.fill_checksum_v4(s, d),
                (IpAddr::V6(s), IpAddr::V6(d)) => udp.fill_checksum_v6(&s, &d),
                _ => {}
            }
        }
        (ip_protocol::ICMP, IpAddr::V4(_), _) if len >= 8 => {
            IcmpPacket::new_unchecked(l4).fill_checksum_v4();
        }
        (ip_protocol::ICMPV6, IpAddr::V6(s), IpAddr::V6(d)) if len >= 8 => {
            IcmpPacket::new_unchecked(l4).fill_checksum_v6(&s, &d);
        }
        _ => {}
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
