//! The XDP fast path against the pipeline, packet by packet: the testbed's store edge and hub
//! (`pipeline::testbed`, security `none`, packets from its builders `udp_v4` / `tcp_v4`) establish a UDP and a TCP session through the
//! pipeline; each side's [`Pipeline::offload_plan`] is turned into map entries exactly as the
//! runtime does (`OffloadKey::new`, `OffloadEntry::new`); then every case below runs once
//! through the loaded program (`BPF_PROG_TEST_RUN`) and once through the pipeline. A frame the
//! program forwards must be byte for byte what the pipeline (and the runtime's Ethernet
//! framing) sends, on the interface and VLAN the pipeline chose; a frame it punts must leave
//! the program unchanged, counted under the expected reason, for the pipeline to handle.
//!
//! A last test attaches the program to a veth in a namespace of its own, leaves it attached
//! as a crashed router would, and checks that the next fast path replaces it and that a router
//! without the fast path detaches it.
//!
//! Needs root (or CAP_BPF + CAP_NET_ADMIN) to load the program; elsewhere it prints why it
//! skipped and passes. It uses the loopback interface of the test's own network namespace as
//! the ingress and egress device of `BPF_PROG_TEST_RUN` (nothing is sent).

use std::sync::Arc;
use std::time::Instant;

use signpost_cnf::io::fastpath::{FastPath, Link, OffloadEntry, OffloadKey, Stat};
use signpost_cnf::packet::{Ipv4Packet, MacAddress};
use signpost_cnf::pipeline::offload::Rewrite;
use signpost_cnf::pipeline::testbed::{
    CLIENT, HUB_LAN, PAYMENTS_VIP, POS, TELEMETRY, WAN0, edge_config, hub_config, run, tcp_v4,
    udp_v4,
};
use signpost_cnf::pipeline::{Action, DropReason, Ingress, Options, Pipeline, Tables};
use signpost_cnf::session::SessionId;
use signpost_proto::v1 as pb;

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
const LOOPBACK: u32 = 1;
const IN_MAC: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x01]);
const OUT_MAC: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x02]);
const HOP_MAC: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x03]);
const PEER_MAC: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x09]);

/// Loads the program, or says why this machine cannot.
fn fast_path() -> Option<FastPath> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: needs root (or CAP_BPF + CAP_NET_ADMIN) to load the XDP program");
        return None;
    }
    match FastPath::load_detached() {
        Ok(f) => Some(f),
        // Root, yet no BPF: a real failure (the verifier's log is in the message).
        Err(e) => panic!("{e}"),
    }
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_v4(src, sport, dst, dport, 64, payload)
}

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str, payload: &[u8]) -> Vec<u8> {
    tcp_v4(src, sport, dst, dport, 64, flags, payload)
}

/// A packet of the direction `r` matches: its 5-tuple as it arrives.
fn packet_for(r: &Rewrite, flags: &str, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = r.key.v4_addrs().expect("IPv4");
    let (sport, dport) = (r.key.src_port(), r.key.dst_port());
    match r.key.protocol() {
        6 => tcp(src, sport, dst, dport, flags, payload),
        _ => udp(src, sport, dst, dport, payload),
    }
}

fn refill_ip_checksum(ip: &mut [u8]) {
    Ipv4Packet::new_unchecked(ip).fill_checksum();
}

fn ethernet(dst: MacAddress, src: MacAddress, vlan: Option<u16>, ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + ip.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(v) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

struct Pair {
    now: Instant,
    edge: Pipeline,
    hub: Pipeline,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let build = |c: &pb::RouterConfig| Arc::new(Tables::new(c, "v1").expect("builds"));
        let mut edge = Pipeline::new(
            now,
            build(&edge_config(pb::SecurityMode::None)),
            Options::default(),
        );
        let mut hub = Pipeline::new(
            now,
            build(&hub_config(pb::SecurityMode::None)),
            Options::default(),
        );
        edge.set_offload(true);
        hub.set_offload(true);
        Pair { now, edge, hub }
    }

    fn up(&mut self, packet: &[u8]) {
        let (a, wan) = run(&mut self.edge, self.now, POS, packet);
        assert!(matches!(a, Action::Forward(_)), "edge: {a:?}");
        let (b, _) = run(&mut self.hub, self.now, WAN0, &wan);
        assert!(matches!(b, Action::Forward(_)), "hub: {b:?}");
    }

    fn down(&mut self, packet: &[u8]) {
        let (a, wan) = run(&mut self.hub, self.now, HUB_LAN, packet);
        assert!(matches!(a, Action::Forward(_)), "hub: {a:?}");
        let (b, _) = run(&mut self.edge, self.now, WAN0, &wan);
        assert!(matches!(b, Action::Forward(_)), "edge: {b:?}");
    }

    /// A UDP telemetry session, established and past its metadata exchange on both sides.
    fn udp_session() -> Pair {
        let mut pair = Pair::new();
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"one"));
        pair.down(&udp(TELEMETRY, 9000, CLIENT, 5004, b"ok"));
        pair.up(&udp(CLIENT, 5004, TELEMETRY, 9000, b"two"));
        pair
    }

    /// A TCP payments session after its three-way handshake.
    fn tcp_session() -> Pair {
        let mut pair = Pair::new();
        pair.up(&tcp(CLIENT, 40000, PAYMENTS_VIP, 443, "S", b""));
        let real = pair
            .hub
            .sessions()
            .iter()
            .map(|(_, s)| s.key(signpost_cnf::session::Side::Lan).v4_addrs())
            .next()
            .flatten()
            .expect("hub session")
            .1;
        pair.down(&tcp(real, 443, CLIENT, 40000, "SA", b""));
        pair.up(&tcp(CLIENT, 40000, PAYMENTS_VIP, 443, "A", b""));
        pair
    }
}

fn only_session(p: &Pipeline) -> SessionId {
    let ids: Vec<SessionId> = p.sessions().iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 1);
    ids[0]
}

/// Which router and direction a case runs on.
#[derive(Clone, Copy, Debug)]
enum Side {
    /// The store edge, POS (VLAN 10) → WAN, DSCP marked.
    EdgeUp,
    /// The store edge, WAN → POS, tagged VLAN 10 on the way out.
    EdgeDown,
    /// The hub, WAN → service, untagged.
    HubIn,
    /// The hub, service → WAN, DSCP marked.
    HubOut,
}

const SIDES: [Side; 4] = [Side::EdgeUp, Side::EdgeDown, Side::HubIn, Side::HubOut];

/// What the program must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Forward,
    Punt(Stat),
    /// Punted, and the direction's entry deleted by the program (a FIN or RST: the rest of
    /// the close, its last ACK included, is the pipeline's to see).
    PuntAndForget(Stat),
}

/// Wraps an IP packet into the frame a case sends (ingress VLAN given).
type Framing = dyn Fn(&[u8], Option<u16>) -> Vec<u8>;

struct Bench {
    fast: FastPath,
}

impl Bench {
    /// Runs `ip` (made by `build` from the direction's rewrite) through the program and the
    /// pipeline on `side` of a fresh `pair` and checks they agree; `frame` wraps the IP packet
    /// (the ingress Ethernet header and whatever a case does to the frame).
    fn case(
        &self,
        name: &str,
        mut pair: Pair,
        side: Side,
        build: &dyn Fn(&Rewrite) -> Vec<u8>,
        frame: &Framing,
        expect: Expect,
    ) {
        let (pipeline, which, ingress_vlan) = match side {
            Side::EdgeUp => (&mut pair.edge, 0, Some(10)),
            Side::EdgeDown => (&mut pair.edge, 1, None),
            Side::HubIn => (&mut pair.hub, 0, None),
            Side::HubOut => (&mut pair.hub, 1, None),
        };
        let id = only_session(pipeline);
        let plan = pipeline
            .offload_plan(id)
            .unwrap_or_else(|why| panic!("{name} {side:?}: not offloadable: {why:?}"));
        let r = plan.rewrites[which];
        let key = OffloadKey::new(LOOPBACK, &r.key).expect("IPv4 key");
        let link = Link {
            in_mac: IN_MAC,
            egress_port: 0,
            src_mac: OUT_MAC,
            dst_mac: HOP_MAC,
        };
        let entry = OffloadEntry::new(&r, &link, 7).expect("IPv4 target");
        self.fast.insert(&key, &entry).expect("insert");

        let ip = build(&r);
        let input = frame(&ip, ingress_vlan);
        let before = self.fast.stats();
        let (verdict, out) = self.fast.test_run(&input, LOOPBACK).unwrap_or_else(|e| {
            panic!(
                "{name} {side:?}: BPF_PROG_TEST_RUN on {} bytes: {e}",
                input.len()
            )
        });
        let after = self.fast.stats();
        let kept = self.fast.entry(&key).expect("read the entry").is_some();
        if kept {
            self.fast.remove(&key).expect("remove");
        }
        assert_eq!(
            kept,
            !matches!(expect, Expect::PuntAndForget(_)),
            "{name} {side:?}: the entry is kept unless a FIN or RST ends it"
        );
        let counted: Vec<Stat> = Stat::ALL
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(s, (b, a))| a > b && **s != Stat::ForwardedBytes)
            .map(|(s, _)| *s)
            .collect();

        // The pipeline on the same packet, as the runtime hands it over (Ethernet stripped).
        let l2 = if ingress_vlan.is_some() { 18 } else { 14 };
        let ingress = Ingress {
            interface: r.ingress,
            vlan: ingress_vlan,
        };
        let pipeline_in = input.get(l2..).unwrap_or(&[]);
        let (action, pipeline_out) = run(pipeline, pair.now, ingress, pipeline_in);

        match expect {
            Expect::Forward => {
                assert_eq!(
                    (verdict, counted.as_slice()),
                    (XDP_REDIRECT, &[Stat::ForwardedPackets][..]),
                    "{name} {side:?}: the program must forward"
                );
                let Action::Forward(egress) = action else {
                    panic!(
                        "{name} {side:?}: the program forwarded what the pipeline did not: {action:?}"
                    );
                };
                assert_eq!(egress.interface, r.egress.interface, "{name} {side:?}");
                assert_eq!(egress.vlan, r.egress.vlan, "{name} {side:?}");
                let wanted = ethernet(HOP_MAC, OUT_MAC, egress.vlan, &pipeline_out);
                assert_eq!(
                    out, wanted,
                    "{name} {side:?}: bytes differ from the pipeline's"
                );
            }
            Expect::Punt(reason) | Expect::PuntAndForget(reason) => {
                assert_eq!(
                    (verdict, counted.as_slice()),
                    (XDP_PASS, &[reason][..]),
                    "{name} {side:?}: the program must punt (to the socket; none here: pass)"
                );
                assert_eq!(
                    out, input,
                    "{name} {side:?}: a punted frame leaves unchanged"
                );
            }
        }
        println!("{name} {side:?}: {expect:?}, pipeline {action:?}");
    }
}

fn plain(ip: &[u8], vlan: Option<u16>) -> Vec<u8> {
    ethernet(IN_MAC, PEER_MAC, vlan, ip)
}

#[test]
fn forwarded_frames_are_byte_identical_to_the_pipelines() {
    let Some(fast) = fast_path() else { return };
    fast.set_device(0, LOOPBACK).expect("devices[0] = lo");
    let bench = Bench { fast };
    for side in SIDES {
        bench.case(
            "udp",
            Pair::udp_session(),
            side,
            &|r| packet_for(r, "", b"a reading of 24 bytes..."),
            &plain,
            Expect::Forward,
        );
        bench.case(
            "udp checksum 0",
            Pair::udp_session(),
            side,
            &|r| {
                let mut p = packet_for(r, "", b"no checksum");
                p[26] = 0;
                p[27] = 0;
                p
            },
            &plain,
            Expect::Forward,
        );
        bench.case(
            "tcp",
            Pair::tcp_session(),
            side,
            &|r| packet_for(r, "A", b"GET / HTTP/1.1\r\n\r\n"),
            &plain,
            Expect::Forward,
        );
        bench.case(
            "tcp, no payload",
            Pair::tcp_session(),
            side,
            &|r| packet_for(r, "A", b""),
            &plain,
            Expect::Forward,
        );
        for tos in [0xb8u8, 0x03, 0xff] {
            bench.case(
                &format!("udp with TOS {tos:#04x} (DSCP remarked, ECN kept)"),
                Pair::udp_session(),
                side,
                &|r| {
                    let mut p = packet_for(r, "", b"marked");
                    p[1] = tos;
                    refill_ip_checksum(&mut p);
                    p
                },
                &plain,
                Expect::Forward,
            );
        }
        bench.case(
            "udp with link padding",
            Pair::udp_session(),
            side,
            &|r| packet_for(r, "", b"x"),
            &|ip, vlan| {
                let mut f = plain(ip, vlan);
                f.extend_from_slice(&[0xee; 20]);
                f
            },
            Expect::Forward,
        );
        bench.case(
            "udp, TTL 2",
            Pair::udp_session(),
            side,
            &|r| {
                let mut p = packet_for(r, "", b"last hop");
                p[8] = 2;
                refill_ip_checksum(&mut p);
                p
            },
            &plain,
            Expect::Forward,
        );
    }
}

#[test]
fn frames_that_need_the_pipeline_are_punted_unchanged() {
    let Some(fast) = fast_path() else { return };
    fast.set_device(0, LOOPBACK).expect("devices[0] = lo");
    let bench = Bench { fast };
    let with = |r: &Rewrite, f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = packet_for(r, "A", b"payload bytes");
        f(&mut p);
        p
    };
    for side in SIDES {
        bench.case(
            "ttl 1",
            Pair::udp_session(),
            side,
            &|r| {
                with(r, &|p| {
                    p[8] = 1;
                    refill_ip_checksum(p);
                })
            },
            &plain,
            Expect::Punt(Stat::Ttl),
        );
        for (flags, expect) in [
            ("SA", Expect::Punt(Stat::TcpFlags)),
            ("FA", Expect::PuntAndForget(Stat::TcpFlags)),
            ("RA", Expect::PuntAndForget(Stat::TcpFlags)),
        ] {
            bench.case(
                &format!("tcp {flags}"),
                Pair::tcp_session(),
                side,
                &|r| packet_for(r, flags, b""),
                &plain,
                expect,
            );
        }
        bench.case(
            "svr cookie payload",
            Pair::udp_session(),
            side,
            &|r| packet_for(r, "", &0x4C48_DBC6_DDF6_670Cu64.to_be_bytes()),
            &plain,
            Expect::Punt(Stat::SvrCookie),
        );
        bench.case(
            "ip options",
            Pair::udp_session(),
            side,
            &|r| {
                let p = packet_for(r, "", b"optioned");
                let mut o = p[..20].to_vec();
                o.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
                o.extend_from_slice(&p[20..]);
                o[0] = 0x46;
                let total = (o.len() as u16).to_be_bytes();
                o[2..4].copy_from_slice(&total);
                refill_ip_checksum(&mut o);
                o
            },
            &plain,
            Expect::Punt(Stat::IpOptions),
        );
        bench.case(
            "fragment",
            Pair::udp_session(),
            side,
            &|r| {
                with(r, &|p| {
                    p[6] |= 0x20; // more fragments
                    refill_ip_checksum(p);
                })
            },
            &plain,
            Expect::Punt(Stat::Fragment),
        );
        bench.case(
            "truncated IP packet",
            Pair::udp_session(),
            side,
            &|r| packet_for(r, "", b"cut short"),
            &|ip, vlan| {
                let f = plain(ip, vlan);
                f[..f.len() - 3].to_vec()
            },
            Expect::Punt(Stat::Malformed),
        );
        bench.case(
            "udp length past the packet",
            Pair::udp_session(),
            side,
            &|r| {
                let mut p = packet_for(r, "", b"lying");
                p[24] = 0x05;
                p
            },
            &plain,
            Expect::Punt(Stat::Malformed),
        );
        bench.case(
            // BPF_PROG_TEST_RUN refuses frames below 14 bytes; a VLAN tag cut off is the
            // shortest truncation it takes.
            "truncated 802.1Q header",
            Pair::udp_session(),
            side,
            &|r| packet_for(r, "", b""),
            &|_, _| {
                let mut f = IN_MAC.0.to_vec();
                f.extend_from_slice(&PEER_MAC.0);
                f.extend_from_slice(&[0x81, 0x00]);
                f
            },
            Expect::Punt(Stat::Malformed),
        );
        bench.case(
            "another port's address",
            Pair::udp_session(),
            side,
            &|r| packet_for(r, "", b"not ours"),
            &|ip, vlan| ethernet(HOP_MAC, PEER_MAC, vlan, ip),
            Expect::Punt(Stat::NotForUs),
        );
        bench.case(
            "miss",
            Pair::udp_session(),
            side,
            &|r| {
                let (src, dst) = r.key.v4_addrs().expect("v4");
                udp(
                    src,
                    r.key.src_port() ^ 1,
                    dst,
                    r.key.dst_port(),
                    b"other flow",
                )
            },
            &plain,
            Expect::Punt(Stat::NoSession),
        );
        bench.case(
            "larger than the MTU",
            Pair::udp_session(),
            side,
            &|r| packet_for(r, "", &[0x55; 1480]),
            &plain,
            Expect::Punt(Stat::TooBig),
        );
    }
}

/// The pipeline drops what the program punted in these cases, so punting (rather than, say,
/// forwarding without a decrement) was the only right answer.
#[test]
fn the_pipeline_drops_what_the_program_declined_to_judge() {
    let mut pair = Pair::udp_session();
    let id = only_session(&pair.edge);
    let r = pair.edge.offload_plan(id).expect("plan").rewrites[0];
    let mut p = packet_for(&r, "", b"x");
    p[8] = 1;
    refill_ip_checksum(&mut p);
    let (a, _) = run(&mut pair.edge, pair.now, POS, &p);
    assert_eq!(a, Action::Drop(DropReason::TtlExpired));
    let big = packet_for(&r, "", &[0x55; 1480]);
    let (a, _) = run(&mut pair.edge, pair.now, POS, &big);
    assert_eq!(a, Action::Drop(DropReason::ExceedsMtu));
}

/// The program as a crashed router leaves it: attached, never detached. A new fast path
/// replaces it; a router without the fast path detaches it (so its stale `sessions` cannot go
/// on forwarding); a clean stop detaches it.
#[test]
fn a_program_left_by_a_crashed_router_is_replaced_or_detached() {
    if let Some(why) = signpost_e2e::available() {
        println!("SKIPPED: {why}");
        return;
    }
    let a = signpost_e2e::Namespace::create("fpa").expect("namespace");
    let b = signpost_e2e::Namespace::create("fpb").expect("namespace");
    a.veth("wan0", &b, "peer0").expect("veth");
    let attached = |ns: &signpost_e2e::Namespace| {
        let out = ns.ip(&["link", "show", "dev", "wan0"]).expect("ip link");
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    };
    let devices = vec!["wan0".to_string()];
    let d = devices.clone();
    signpost_e2e::in_namespace(&a, move || {
        let crashed = FastPath::attach(&d).map_err(|e| e.to_string())?;
        std::mem::forget(crashed);
        Ok(())
    })
    .join()
    .expect("thread")
    .expect("first attach");
    assert!(attached(&a), "left attached, as after a crash");
    let d = devices.clone();
    signpost_e2e::in_namespace(&a, move || {
        let again = FastPath::attach(&d).map_err(|e| e.to_string())?;
        drop(again);
        Ok(())
    })
    .join()
    .expect("thread")
    .expect("a new fast path replaces the stale program");
    assert!(!attached(&a), "a clean stop detaches");
    let d = devices.clone();
    signpost_e2e::in_namespace(&a, move || {
        std::mem::forget(FastPath::attach(&d).map_err(|e| e.to_string())?);
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(c"wan0".as_ptr()) };
        signpost_cnf::io::fastpath::clear_stale("wan0", index);
        Ok(())
    })
    .join()
    .expect("thread")
    .expect("stale fast path");
    assert!(
        !attached(&a),
        "without the fast path, a stale one is detached"
    );
}
