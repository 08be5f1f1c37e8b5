//! Probes of the service locations a router fronts: each real address of each location is
//! probed from the router's own LAN address, through the runtime's own stack (the router's
//! devices have no kernel addresses: the runtime sends what [`Prober::transmit`] builds and
//! hands back the answers addressed to the router, [`Prober::handle`]). Sans-IO: `now` is an
//! argument, nothing here reads a clock or owns a socket.
//!
//! Every interval a round goes out to each address: an ICMP echo request, and — when the
//! service has a TCP port to check — a half-open TCP probe: a SYN from a port of
//! [`PROBE_PORTS`]; a SYN-ACK means the server listens (the prober answers it with a RST, so the
//! server keeps no connection), a RST means nothing listens there. The TCP probe decides when
//! there is one (a host whose server process died still answers pings), else the echo does.
//! An answer must come within the timeout; a RST counts as a miss at once.
//!
//! **Thresholds.** An address goes Down after `unhealthy` consecutive misses and Up again after
//! `healthy` consecutive answers; until its first verdict it is Unknown (counted as healthy,
//! as an unmeasured path is). A location is down when all its addresses are Down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::CheckSettings;
use crate::classify::ServiceId;
use crate::packet::icmp::{icmpv4_type, icmpv6_type};
use crate::packet::{IcmpPacket, Ipv4Packet, Ipv6Packet, TcpSegment, ip_packet, ip_protocol};
use crate::pipeline::{Egress, Interface, Tables};

/// Source ports of TCP probes (used in turn). Answers to them are handed to the prober.
pub const PROBE_PORTS: std::ops::RangeInclusive<u16> = 61000..=61999;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const ECHO_PAYLOAD: &[u8; 16] = b"signpost health\0";

/// Whether a packet addressed to the router may answer a probe (the runtime's filter, before
/// the packet is copied to the prober): an ICMP echo reply, or TCP to a probe port.
pub fn is_probe_answer(protocol: u8, dst_port: u16, l4: &[u8]) -> bool {
    match protocol {
        ip_protocol::TCP => PROBE_PORTS.contains(&dst_port),
        ip_protocol::ICMP => l4.first() == Some(&icmpv4_type::ECHO_REPLY),
        ip_protocol::ICMPV6 => l4.first() == Some(&icmpv6_type::ECHO_REPLY),
        _ => false,
    }
}

/// An address's verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verdict {
    /// No verdict yet: counted as healthy.
    #[default]
    Unknown,
    Up,
    Down,
}

/// What the last TCP probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOutcome {
    Open,
    Refused,
    Timeout,
}

#[derive(Clone, Copy, Debug)]
struct EchoPending {
    seq: u16,
    deadline: Instant,
}

#[derive(Clone, Copy, Debug)]
struct SynPending {
    port: u16,
    isn: u32,
    deadline: Instant,
}

/// One probed address of one fronted location.
#[derive(Clone, Debug)]
struct Target {
    service: ServiceId,
    service_name: String,
    addr: IpAddr,
    /// The router's LAN address the probes come from (`None`: no LAN address of the family).
    src: Option<IpAddr>,
    egress: Egress,
    settings: CheckSettings,
    ident: u16,
    seq: u16,
    next_round: Instant,
    echo: Option<EchoPending>,
    syn: Option<SynPending>,
    echo_answered: Option<bool>,
    tcp: Option<TcpOutcome>,
    successes: u32,
    misses: u32,
    verdict: Verdict,
    since: Instant,
}

named_counters! {
    /// What the prober did.
    ProbeCounters {
        echo_sent => "echo-sent": "ICMP echo requests sent to location addresses",
        echo_answered => "echo-answered": "echo replies in time",
        echo_timeout => "echo-timeout": "echo requests without a reply in time",
        syn_sent => "syn-sent": "TCP SYN probes sent",
        tcp_open => "tcp-open": "SYN-ACKs (the port listens; answered with a RST)",
        tcp_refused => "tcp-refused": "RSTs (nothing listens on the port)",
        tcp_timeout => "tcp-timeout": "SYN probes without an answer in time",
        late => "late": "answers after their timeout, or to no probe in flight",
        went_down => "went-down": "addresses that turned Down",
        went_up => "went-up": "addresses that turned Up",
    }
}

/// One probed address as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeView {
    pub service: String,
    pub address: IpAddr,
    pub verdict: Verdict,
    /// The last probes' results, in words.
    pub detail: String,
    pub since: Duration,
}

/// The prober of every location this router fronts; see the module docs.
#[derive(Debug)]
pub struct Prober {
    targets: Vec<Target>,
    by_addr: HashMap<IpAddr, Vec<usize>>,
    next_port: u16,
    rng: u64,
    counters: ProbeCounters,
    /// RSTs answering SYN-ACKs, sent with the next transmit.
    queued: Vec<(Egress, Vec<u8>)>,
    /// Verdict changes since the last [`Prober::take_transitions`] (service, address, to).
    transitions: Vec<(String, IpAddr, Verdict)>,
}

impl Prober {
    pub fn new(now: Instant, tables: &Arc<Tables>, seed: u64) -> Prober {
        let mut p = Prober {
            targets: Vec::new(),
            by_addr: HashMap::new(),
            next_port: *PROBE_PORTS.start(),
            rng: seed | 1,
            counters: ProbeCounters::default(),
            queued: Vec::new(),
            transitions: Vec::new(),
        };
        p.build(now, tables, Vec::new());
        p
    }

    /// A new config: addresses still probed with the same settings keep their verdict.
    pub fn set_tables(&mut self, now: Instant, tables: &Arc<Tables>) {
        let old = std::mem::take(&mut self.targets);
        self.build(now, tables, old);
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn build(&mut self, now: Instant, tables: &Arc<Tables>, mut old: Vec<Target>) {
        self.by_addr.clear();
        let ident_base = self.random() as u16;
        let c = &tables.classifier;
        for s in 0..c.service_count() {
            let service = ServiceId(u16::try_from(s).unwrap_or(u16::MAX));
            let (Some(addrs), Some(settings)) = (
                tables.fronted_addresses(service),
                tables.health_check(service),
            ) else {
                continue;
            };
            let name = c.service_info(service).name.clone();
            for &addr in addrs {
                let route = c.lan_route(addr);
                let src = route.and_then(|r| tables.lans.get(r.lan)).and_then(|l| {
                    l.addresses
                        .iter()
                        .copied()
                        .find(|a| a.is_ipv4() == addr.is_ipv4())
                });
                let egress = Egress {
                    interface: Interface::Lan(route.map_or(0, |r| r.lan as u8)),
                    vlan: route.and_then(|r| r.vlan),
                    next_hop: addr,
                    class: 0,
                };
                let k = self.targets.len();
                let carried = old.iter().position(|t| {
                    t.service_name == name && t.addr == addr && t.settings == settings
                });
                let target = match carried {
                    Some(i) => {
                        let mut t = old.swap_remove(i);
                        t.service = service;
                        t.src = src;
                        t.egress = egress;
                        t
                    }
                    None => Target {
                        service,
                        service_name: name.clone(),
                        addr,
                        src,
                        egress,
                        settings,
                        ident: ident_base.wrapping_add(k as u16),
                        seq: 0,
                        // Spread the rounds over the interval instead of probing in bursts.
                        next_round: now + settings.interval.mul_f64((k % 16) as f64 / 16.0),
                        echo: None,
                        syn: None,
                        echo_answered: None,
                        tcp: None,
                        successes: 0,
                        misses: 0,
                        verdict: Verdict::Unknown,
                        since: now,
                    },
                };
                self.by_addr.entry(addr).or_default().push(k);
                self.targets.push(target);
            }
        }
    }

    pub fn counters(&self) -> &ProbeCounters {
        &self.counters
    }

    /// The verdict changes since the last call (service, address, new verdict).
    pub fn take_transitions(&mut self) -> Vec<(String, IpAddr, Verdict)> {
        std::mem::take(&mut self.transitions)
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The earliest time something is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.targets
            .iter()
            .flat_map(|t| {
                [
                    Some(t.next_round),
                    t.echo.map(|e| e.deadline),
                    t.syn.map(|s| s.deadline),
                ]
            })
            .flatten()
            .min()
    }

    /// Probes whose time ran out count as misses.
    pub fn handle_timeout(&mut self, now: Instant) {
        for k in 0..self.targets.len() {
            self.expire(k, now, false);
        }
    }

    /// Ends target `k`'s probes whose deadline passed (all of them with `force`) as misses.
    fn expire(&mut self, k: usize, now: Instant, force: bool) {
        let Some(t) = self.targets.get_mut(k) else {
            return;
        };
        if t.echo.is_some_and(|e| force || e.deadline <= now) {
            t.echo = None;
            t.echo_answered = Some(false);
            self.counters.echo_timeout += 1;
            if t.settings.tcp_port.is_none() {
                self.record(k, false, now);
            }
        }
        let Some(t) = self.targets.get_mut(k) else {
            return;
        };
        if t.syn.is_some_and(|s| force || s.deadline <= now) {
            t.syn = None;
            t.tcp = Some(TcpOutcome::Timeout);
            self.counters.tcp_timeout += 1;
            self.record(k, false, now);
        }
    }

    fn record(&mut self, k: usize, answered: bool, now: Instant) {
        let Some(t) = self.targets.get_mut(k) else {
            return;
        };
        let before = t.verdict;
        if answered {
            t.successes = t.successes.saturating_add(1);
            t.misses = 0;
            if t.verdict == Verdict::Unknown
                || (t.verdict == Verdict::Down && t.successes >= t.settings.healthy)
            {
                t.verdict = Verdict::Up;
            }
        } else {
            t.misses = t.misses.saturating_add(1);
            t.successes = 0;
            if t.verdict != Verdict::Down && t.misses >= t.settings.unhealthy {
                t.verdict = Verdict::Down;
            }
        }
        if t.verdict != before {
            t.since = now;
            if self.transitions.len() < 1024 {
                self.transitions
                    .push((t.service_name.clone(), t.addr, t.verdict));
            }
            match t.verdict {
                Verdict::Down => self.counters.went_down += 1,
                Verdict::Up if before == Verdict::Down => self.counters.went_up += 1,
                _ => {}
            }
        }
    }

    /// Every probe due now (and the RSTs answering SYN-ACKs), as IP packets for `egress`.
    pub fn transmit(&mut self, now: Instant, out: &mut Vec<(Egress, Vec<u8>)>) {
        out.append(&mut self.queued);
        for k in 0..self.targets.len() {
            if self.targets[k].next_round > now {
                continue;
            }
            // A probe still in flight when the next round is due is a miss (the timeout is
            // never longer than the interval, so this is the timer's own rounding).
            self.expire(k, now, true);
            let isn = self.random() as u32;
            let port = self.next_port;
            self.next_port = if port >= *PROBE_PORTS.end() {
                *PROBE_PORTS.start()
            } else {
                port + 1
            };
            let t = &mut self.targets[k];
            let interval = t.settings.interval;
            t.next_round = if t.next_round + interval > now {
                t.next_round + interval
            } else {
                now + interval
            };
            let Some(src) = t.src else { continue };
            let deadline = now + t.settings.timeout;
            t.seq = t.seq.wrapping_add(1);
            if let Some(p) = echo_request(src, t.addr, t.ident, t.seq) {
                out.push((t.egress, p));
                t.echo = Some(EchoPending {
                    seq: t.seq,
                    deadline,
                });
                self.counters.echo_sent += 1;
            }
            if let Some(service_port) = t.settings.tcp_port
                && let Some(p) = tcp_segment(src, t.addr, port, service_port, isn, 0, SYN)
            {
                out.push((t.egress, p));
                t.syn = Some(SynPending {
                    port,
                    isn,
                    deadline,
                });
                self.counters.syn_sent += 1;
            }
        }
    }

    /// A packet addressed to the router that may answer a probe (the whole IP packet, as it
    /// came from a LAN). True when it did (in time or late).
    pub fn handle(&mut self, now: Instant, packet: &[u8]) -> bool {
        let Some(a) = parse_answer(packet) else {
            return false;
        };
        let Some(candidates) = self.by_addr.get(&a.src) else {
            return false;
        };
        for &k in candidates {
            let Some(t) = self.targets.get_mut(k) else {
                continue;
            };
            if t.src != Some(a.dst) {
                continue;
            }
            match a.kind {
                AnswerKind::Echo { ident, seq } if ident == t.ident => {
                    if t.echo.is_some_and(|e| e.seq == seq) {
                        t.echo = None;
                        t.echo_answered = Some(true);
                        self.counters.echo_answered += 1;
                        if t.settings.tcp_port.is_none() {
                            self.record(k, true, now);
                        }
                    } else {
                        self.counters.late += 1;
                    }
                    return true;
                }
                AnswerKind::Tcp {
                    src_port,
                    dst_port,
                    ack,
                    flags,
                } if Some(src_port) == t.settings.tcp_port => {
                    let Some(syn) = t.syn.filter(|s| s.port == dst_port) else {
                        if PROBE_PORTS.contains(&dst_port) {
                            self.counters.late += 1;
                            return true;
                        }
                        continue;
                    };
                    let acked = flags & ACK != 0 && ack == syn.isn.wrapping_add(1);
                    if flags & RST != 0 && acked {
                        t.syn = None;
                        t.tcp = Some(TcpOutcome::Refused);
                        self.counters.tcp_refused += 1;
                        self.record(k, false, now);
                    } else if flags & (SYN | ACK) == SYN | ACK && acked {
                        t.syn = None;
                        t.tcp = Some(TcpOutcome::Open);
                        self.counters.tcp_open += 1;
                        // Half-open: reset the server's side (RFC 9293 §3.10.7.3, seq = its ACK).
                        if let Some(src) = t.src
                            && let Some(p) =
                                tcp_segment(src, t.addr, dst_port, src_port, ack, 0, RST)
                        {
                            self.queued.push((t.egress, p));
                        }
                        self.record(k, true, now);
                    } else {
                        self.counters.late += 1;
                    }
                    return true;
                }
                _ => {}
            }
        }
        false
    }

    /// Services with at least one probed address, and whether every one is Down.
    pub fn locations(&self) -> Vec<(ServiceId, bool)> {
        let mut out: Vec<(ServiceId, bool)> = Vec::new();
        for t in &self.targets {
            let down = t.verdict == Verdict::Down;
            match out.iter_mut().find(|(s, _)| *s == t.service) {
                Some((_, all_down)) => *all_down &= down,
                None => out.push((t.service, down)),
            }
        }
        out
    }

    pub fn views(&self, now: Instant) -> Vec<ProbeView> {
        self.targets
            .iter()
            .map(|t| ProbeView {
                service: t.service_name.clone(),
                address: t.addr,
                verdict: t.verdict,
                detail: detail(t),
                since: now.saturating_duration_since(t.since),
            })
            .collect()
    }
}

fn detail(t: &Target) -> String {
    if t.src.is_none() {
        return "not probed: no LAN address of this family routes to it".into();
    }
    let echo = match t.echo_answered {
        None => "ping: no result yet",
        Some(true) => "ping answered",
        Some(false) => "ping unanswered",
    };
    let tcp = match (t.settings.tcp_port, t.tcp) {
        (None, _) => String::new(),
        (Some(p), None) => format!("tcp/{p}: no result yet, "),
        (Some(p), Some(TcpOutcome::Open)) => format!("tcp/{p} open, "),
        (Some(p), Some(TcpOutcome::Refused)) => format!("tcp/{p} refused (RST), "),
        (Some(p), Some(TcpOutcome::Timeout)) => format!("tcp/{p} unanswered, "),
    };
    let run = if t.misses > 0 {
        format!("; {} miss(es) in a row", t.misses)
    } else if t.successes > 0 {
        format!("; {} answer(s) in a row", t.successes)
    } else {
        String::new()
    };
    format!("{tcp}{echo}{run}")
}

enum AnswerKind {
    Echo {
        ident: u16,
        seq: u16,
    },
    Tcp {
        src_port: u16,
        dst_port: u16,
        ack: u32,
        flags: u8,
    },
}

struct Answer {
    src: IpAddr,
    dst: IpAddr,
    kind: AnswerKind,
}

/// An echo reply or a TCP segment with valid checksums; anything else is `None`.
fn parse_answer(packet: &[u8]) -> Option<Answer> {
    let (src, dst, protocol, l4) = match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.is_fragment() || !ip.verify_checksum() {
                return None;
            }
            let l4 = packet.get(ip.header_len()..usize::from(ip.total_len()))?;
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                ip.protocol(),
                l4,
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let l4 = packet.get(40..40 + usize::from(ip.payload_len()))?;
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                ip.next_header(),
                l4,
            )
        }
        _ => return None,
    };
    let kind = match (protocol, src, dst) {
        (ip_protocol::ICMP, IpAddr::V4(_), _) => {
            let m = IcmpPacket::new_checked(l4).ok()?;
            if m.msg_type() != icmpv4_type::ECHO_REPLY || !m.verify_checksum_v4() {
                return None;
            }
            AnswerKind::Echo {
                ident: m.echo_ident(),
                seq: m.echo_seq_no(),
            }
        }
        (ip_protocol::ICMPV6, IpAddr::V6(s), IpAddr::V6(d)) => {
            let m = IcmpPacket::new_checked(l4).ok()?;
            if m.msg_type() != icmpv6_type::ECHO_REPLY || !m.verify_checksum_v6(&s, &d) {
                return None;
            }
            AnswerKind::Echo {
                ident: m.echo_ident(),
                seq: m.echo_seq_no(),
            }
        }
        (ip_protocol::TCP, _, _) => {
            let seg = TcpSegment::new_checked(l4).ok()?;
            let ok = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => seg.verify_checksum_v4(s, d),
                (IpAddr::V6(s), IpAddr::V6(d)) => seg.verify_checksum_v6(&s, &d),
                _ => false,
            };
            if !ok {
                return None;
            }
            AnswerKind::Tcp {
                src_port: seg.src_port(),
                dst_port: seg.dst_port(),
                ack: seg.ack_number(),
                flags: seg.flags(),
            }
        }
        _ => return None,
    };
    Some(Answer { src, dst, kind })
}

fn echo_request(src: IpAddr, dst: IpAddr, ident: u16, seq: u16) -> Option<Vec<u8>> {
    let mut l4 = vec![0u8; 8 + ECHO_PAYLOAD.len()];
    {
        let mut m = IcmpPacket::new_unchecked(&mut l4[..]);
        m.set_msg_type(if src.is_ipv4() {
            icmpv4_type::ECHO_REQUEST
        } else {
            icmpv6_type::ECHO_REQUEST
        });
        m.set_code(0);
        m.set_echo_ident(ident);
        m.set_echo_seq_no(seq);
        m.payload_mut().copy_from_slice(ECHO_PAYLOAD);
    }
    let protocol = if src.is_ipv4() {
        ip_protocol::ICMP
    } else {
        ip_protocol::ICMPV6
    };
    ip_packet(src, dst, protocol, 64, 0, &l4)
}

fn tcp_segment(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> Option<Vec<u8>> {
    let mut l4 = [0u8; 20];
    {
        let mut seg = TcpSegment::new_unchecked(&mut l4[..]);
        seg.set_src_port(src_port);
        seg.set_dst_port(dst_port);
        seg.set_seq_number(seq);
        seg.set_ack_number(ack);
        seg.set_header_len(20);
        seg.set_flags(flags);
        seg.set_window_len(if flags & SYN != 0 { 1024 } else { 0 });
    }
    ip_packet(src, dst, ip_protocol::TCP, 64, 0, &l4)
}

#[cfg(test)]
pub(super) mod server {
    //! A simulated service host for the tests: answers echo requests, and SYNs to its port
    //! with a SYN-ACK while `listening`, a RST otherwise; records the RSTs it receives.

    use super::*;

    #[derive(Default)]
    pub struct Host {
        pub alive: bool,
        pub listening: bool,
        pub resets_seen: u32,
    }

    impl Host {
        /// The host's answer to one probe packet, if any.
        pub fn answer(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
            if !self.alive {
                return None;
            }
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            let l4 = packet.get(ip.header_len()..usize::from(ip.total_len()))?;
            match ip.protocol() {
                ip_protocol::ICMP => {
                    let m = IcmpPacket::new_checked(l4).ok()?;
                    let mut reply = l4.to_vec();
                    let mut r = IcmpPacket::new_unchecked(&mut reply[..]);
                    r.set_msg_type(icmpv4_type::ECHO_REPLY);
                    r.set_checksum(0);
                    let _ = m;
                    ip_packet(dst, src, ip_protocol::ICMP, 64, 0, &reply)
                }
                ip_protocol::TCP => {
                    let seg = TcpSegment::new_checked(l4).ok()?;
                    if seg.rst() {
                        self.resets_seen += 1;
                        return None;
                    }
                    let ack = seg.seq_number().wrapping_add(1);
                    let flags = if self.listening { SYN | ACK } else { RST | ACK };
                    tcp_segment(dst, src, seg.dst_port(), seg.src_port(), 7, ack, flags)
                }
                _ => None,
            }
        }
    }
}
