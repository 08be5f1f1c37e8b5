//! The guard in the pipeline, in simulated time: what may create state, new-session rates per
//! source and per tenant, half-open isolation between tenants, bandwidth rate limits, DSCP
//! marking, and the per-source table's bound under a spoofed flood. Packets are built with
//! `etherparse`, an independent implementation.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::{IpNumber, Ipv4Header, PacketBuilder, SlicedPacket};
use signpost_proto::v1 as pb;

use crate::packet::Ipv4Packet;
use crate::pipeline::testbed::{
    CLIENT, GUEST, GUEST_IN, PAYMENTS_VIP, POS, TELEMETRY, WAN0, edge_config, hub_config, run,
};
use crate::pipeline::{Action, DropReason, Egress, Ingress, Interface, Options, Pipeline, Tables};

fn pipeline(now: Instant, config: &pb::RouterConfig) -> Pipeline {
    let tables = Tables::new(config, "v1").expect("config builds");
    Pipeline::new(now, Arc::new(tables), Options::default())
}

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1000, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'R' => b.rst(),
            'F' => b.fin(),
            _ => b,
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, &[]).expect("tcp");
    out
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, &vec![0x5a; len])
        .expect("udp");
    out
}

fn syn(src: [u8; 4], sport: u16) -> Vec<u8> {
    tcp(src, sport, PAYMENTS_VIP, 443, "S")
}

fn dropped(a: &Action) -> Option<DropReason> {
    match a {
        Action::Drop(r) => Some(*r),
        _ => None,
    }
}

fn to_wan(a: &Action) -> bool {
    matches!(
        a,
        Action::Forward(Egress {
            interface: Interface::Wan(_),
            ..
        })
    )
}

/// A rule like the testbed's, for `tenant` × `service`.
fn rule(tenant: &str, service: &str) -> pb::AccessRule {
    pb::AccessRule {
        tenant: tenant.into(),
        service: service.into(),
        policy: format!("{tenant}-{service}"),
        path_preference: vec!["broadband".into(), "lte".into()],
        security: pb::SecurityMode::None as i32,
        direction: pb::Direction::FromTenant as i32,
        ..Default::default()
    }
}

fn with_limits(mut c: pb::RouterConfig, limits: pb::Limits) -> pb::RouterConfig {
    c.limits = Some(limits);
    c
}

fn drops_of(p: &Pipeline, tenant: &str, reason: DropReason) -> u64 {
    p.guard()
        .tenant_drops()
        .get(&(tenant.to_string(), reason))
        .copied()
        .unwrap_or(0)
}

#[test]
fn only_policy_allowed_sessions_create_state_or_pass() {
    let now = Instant::now();
    let mut edge = pipeline(now, &edge_config(pb::SecurityMode::None));
    let mut hub = pipeline(now, &hub_config(pb::SecurityMode::None));
    let icmp = |kind: u8| {
        let mut out = Vec::new();
        let b = PacketBuilder::ipv4(CLIENT, PAYMENTS_VIP, 64);
        match kind {
            0 => b.icmpv4_echo_reply(7, 1).write(&mut out, b"x"),
            _ => b.icmpv4_raw(3, 1, [0; 4]).write(&mut out, b"x"),
        }
        .expect("icmp");
        out
    };
    let gre = {
        let mut out = Vec::new();
        let ip = Ipv4Header::new(4, 64, IpNumber::GRE, CLIENT, PAYMENTS_VIP).expect("header");
        ip.write(&mut out).expect("write");
        out.extend_from_slice(&[0, 0, 0x08, 0]);
        out
    };
    let lan_cases: Vec<(&str, Ingress, Vec<u8>, DropReason)> = vec![
        (
            "guest: no policy",
            GUEST_IN,
            syn(GUEST, 1000),
            DropReason::NoPolicy,
        ),
        (
            "TCP ACK",
            POS,
            tcp(CLIENT, 1001, PAYMENTS_VIP, 443, "A"),
            DropReason::TcpNotSyn,
        ),
        (
            "TCP SYN-ACK",
            POS,
            tcp(CLIENT, 1002, PAYMENTS_VIP, 443, "SA"),
            DropReason::TcpNotSyn,
        ),
        (
            "TCP RST",
            POS,
            tcp(CLIENT, 1003, PAYMENTS_VIP, 443, "R"),
            DropReason::TcpNotSyn,
        ),
        (
            "TCP SYN+RST",
            POS,
            tcp(CLIENT, 1004, PAYMENTS_VIP, 443, "SR"),
            DropReason::TcpNotSyn,
        ),
        (
            "TCP FIN",
            POS,
            tcp(CLIENT, 1005, PAYMENTS_VIP, 443, "F"),
            DropReason::TcpNotSyn,
        ),
        ("ICMP echo reply", POS, icmp(0), DropReason::IcmpNotRequest),
        ("ICMP unreachable", POS, icmp(3), DropReason::IcmpNotEcho),
        ("GRE", POS, gre, DropReason::UnsupportedProtocol),
    ];
    for (what, ingress, packet, want) in lan_cases {
        let (a, _) = run(&mut edge, now, ingress, &packet);
        assert_eq!(dropped(&a), Some(want), "{what}: {a:?}");
    }
    let (a, _) = run(&mut edge, now, POS, &udp(CLIENT, 5000, TELEMETRY, 9999, 10));
    assert_eq!(dropped(&a), Some(DropReason::NoService), "{a:?}");
    let (a, _) = run(&mut edge, now, POS, &syn([10, 1, 99, 1], 1007));
    assert_eq!(dropped(&a), Some(DropReason::NoTenant), "{a:?}");

    // From the WAN: packets to a waypoint port without metadata, and to someone else.
    for (what, at_hub, packet, want) in [
        (
            "edge: TCP SYN to a waypoint port",
            false,
            tcp([203, 0, 113, 10], 20000, [192, 0, 2, 11], 30000, "S"),
            DropReason::NoSession,
        ),
        (
            "edge: UDP to a waypoint port",
            false,
            udp([203, 0, 113, 10], 20000, [192, 0, 2, 11], 30000, 20),
            DropReason::NoSession,
        ),
        (
            "hub: TCP SYN to a waypoint port",
            true,
            tcp([192, 0, 2, 11], 30000, [203, 0, 113, 10], 20001, "S"),
            DropReason::NoSession,
        ),
        (
            "hub: a packet for another address",
            true,
            tcp([192, 0, 2, 11], 30000, [203, 0, 113, 99], 20001, "S"),
            DropReason::NotForwarded,
        ),
    ] {
        let router = if at_hub { &mut hub } else { &mut edge };
        let (a, _) = run(router, now, WAN0, &packet);
        assert_eq!(dropped(&a), Some(want), "{what}: {a:?}");
    }
    // The service side cannot open sessions towards the store's tenants.
    let (a, _) = run(
        &mut hub,
        now,
        Ingress {
            interface: Interface::Lan(0),
            vlan: None,
        },
        &tcp([10, 100, 1, 10], 443, CLIENT, 40000, "S"),
    );
    assert!(dropped(&a).is_some(), "{a:?}");

    for (name, p) in [("edge", &edge), ("hub", &hub)] {
        assert_eq!(p.sessions().len(), 0, "{name} holds no state");
        let c = p.counters();
        assert_eq!(
            (c.to_wan, c.to_lan, c.sessions_created),
            (0, 0, 0),
            "{name}"
        );
    }
    assert_eq!(drops_of(&edge, "guest", DropReason::NoPolicy), 1);
}

#[test]
fn new_sessions_are_limited_per_source_at_both_routers() {
    let now = Instant::now();
    let mut config = edge_config(pb::SecurityMode::None);
    for r in &mut config.access {
        r.rate_limit = Some(pb::RateLimit {
            new_sessions_per_second: 5,
            ..Default::default()
        });
    }
    let mut edge = pipeline(now, &config);
    let admitted = (0..20)
        .filter(|i| to_wan(&run(&mut edge, now, POS, &syn(CLIENT, 1000 + i)).0))
        .count();
    assert_eq!(admitted, 5, "a burst of one second's worth");
    assert_eq!(edge.counters().dropped(DropReason::SourceSessionRate), 15);
    assert_eq!(drops_of(&edge, "pos", DropReason::SourceSessionRate), 15);
    // Another terminal of the same tenant is not affected.
    let other = [10, 1, 10, 6];
    assert!(to_wan(&run(&mut edge, now, POS, &syn(other, 2000)).0));
    // 200 ms later the first has one new session again.
    let later = now + Duration::from_millis(200);
    assert!(to_wan(&run(&mut edge, later, POS, &syn(CLIENT, 3000)).0));
    assert!(!to_wan(&run(&mut edge, later, POS, &syn(CLIENT, 3001)).0));
    // A source at its limit still passes packets of the sessions it has.
    let (a, _) = run(
        &mut edge,
        later,
        POS,
        &tcp(CLIENT, 1000, PAYMENTS_VIP, 443, "A"),
    );
    assert!(to_wan(&a), "{a:?}");

    // The hub applies its own policy's limit to the original source it learns from metadata.
    let mut hub_config = hub_config(pb::SecurityMode::None);
    for r in &mut hub_config.access {
        r.rate_limit = Some(pb::RateLimit {
            new_sessions_per_second: 3,
            ..Default::default()
        });
    }
    let mut hub = pipeline(now, &hub_config);
    let mut edge = pipeline(now, &edge_config(pb::SecurityMode::None));
    let mut delivered = 0;
    for i in 0..10 {
        let (a, wan) = run(&mut edge, now, POS, &syn(CLIENT, 4000 + i));
        assert!(to_wan(&a));
        let (b, _) = run(&mut hub, now, WAN0, &wan);
        match b {
            Action::Forward(_) => delivered += 1,
            other => assert_eq!(dropped(&other), Some(DropReason::SourceSessionRate)),
        }
    }
    assert_eq!(delivered, 3);
    assert_eq!(drops_of(&hub, "pos", DropReason::SourceSessionRate), 7);
}

#[test]
fn new_sessions_are_limited_per_tenant_without_touching_other_tenants() {
    let now = Instant::now();
    let mut config = edge_config(pb::SecurityMode::None);
    config.access.push(rule("guest", "telemetry"));
    let config = with_limits(
        config,
        pb::Limits {
            new_sessions_per_second_per_tenant: 10,
            ..Default::default()
        },
    );
    let mut edge = pipeline(now, &config);
    // 30 guests, one new session each, in the same instant.
    let guests = (0..30u8)
        .filter(|i| {
            let p = udp([10, 1, 30, 100 + i], 5000, TELEMETRY, 9000, 10);
            to_wan(&run(&mut edge, now, GUEST_IN, &p).0)
        })
        .count();
    assert_eq!(guests, 10);
    assert_eq!(drops_of(&edge, "guest", DropReason::TenantSessionRate), 20);
    // POS has its own budget.
    let pos = (0..10u16)
        .filter(|i| to_wan(&run(&mut edge, now, POS, &syn(CLIENT, 1000 + i)).0))
        .count();
    assert_eq!(pos, 10);
    assert_eq!(drops_of(&edge, "pos", DropReason::TenantSessionRate), 0);
    // A second later guests have ten more.
    let later = now + Duration::from_secs(1);
    let more = (0..20u8)
        .filter(|i| {
            let p = udp([10, 1, 30, 200 + i], 5000, TELEMETRY, 9000, 10);
            to_wan(&run(&mut edge, later, GUEST_IN, &p).0)
        })
        .count();
    assert_eq!(more, 10);
}

#[test]
fn a_syn_flood_from_one_tenant_leaves_half_open_room_for_the_others() {
    let now = Instant::now();
    let mut config = edge_config(pb::SecurityMode::None);
    config.access.push(rule("guest", "payments"));
    let config = with_limits(
        config,
        pb::Limits {
            max_half_open: 100,
            max_half_open_per_tenant: 40,
            ..Default::default()
        },
    );
    let mut edge = pipeline(now, &config);
    // 1,000 SYNs from spoofed guest addresses.
    let mut admitted = 0;
    for i in 0..1000u32 {
        let src = Ipv4Addr::from(0x0a01_1e00 | (i % 250 + 1)).octets();
        if to_wan(&run(&mut edge, now, GUEST_IN, &syn(src, 1024 + i as u16)).0) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 40, "the guest tenant's share");
    assert_eq!(
        drops_of(&edge, "guest", DropReason::TenantHalfOpenLimit),
        960
    );
    // POS terminals still open sessions, up to the rest of the global budget.
    let pos = (0..70u16)
        .filter(|i| to_wan(&run(&mut edge, now, POS, &syn(CLIENT, 2000 + i)).0))
        .count();
    assert_eq!(pos, 40, "POS has its own share (40)");
    assert_eq!(edge.sessions().half_open(), 80);
    // Half-open sessions leave after 5 s; the flood's room comes back for whoever needs it.
    let later = now + Duration::from_secs(6);
    edge.poll_timers(later, 10_000);
    assert_eq!(edge.sessions().half_open(), 0);
    assert!(to_wan(&run(&mut edge, later, POS, &syn(CLIENT, 9000)).0));
}

#[test]
fn a_tenant_service_rate_limit_polices_its_bandwidth() {
    let start = Instant::now();
    let mut config = edge_config(pb::SecurityMode::None);
    for r in &mut config.access {
        r.rate_limit = Some(pb::RateLimit {
            bits_per_second: 1_000_000,
            burst_bytes: 12_500,
            ..Default::default()
        });
    }
    let mut edge = pipeline(start, &config);
    // 4 Mbit/s of 1,028-byte IP packets (1000 bytes of UDP payload) for 2 s of simulated time.
    let mut sent_bytes = 0usize;
    let (mut ok, mut limited) = (0, 0);
    for i in 0..1000u64 {
        let now = start + Duration::from_micros(i * 2056);
        let p = udp(CLIENT, 5004, TELEMETRY, 9000, 1000);
        let (a, out) = run(&mut edge, now, POS, &p);
        match dropped(&a) {
            None => {
                ok += 1;
                sent_bytes += p.len();
                assert!(out.len() >= p.len());
            }
            Some(DropReason::RateLimited) => limited += 1,
            Some(other) => panic!("{other:?}"),
        }
    }
    // From the first packet to the last (999 × 2.056 ms) at 125,000 bytes/s, plus the
    // 12,500-byte burst, within one packet.
    let expected = 125_000.0 * 2.053_944 + 12_500.0;
    assert!(
        (sent_bytes as f64 - expected).abs() < 1028.0,
        "{sent_bytes} bytes vs {expected}"
    );
    assert_eq!(ok + limited, 1000);
    assert_eq!(drops_of(&edge, "pos", DropReason::RateLimited), limited);
}

#[test]
fn egress_packets_carry_their_class_dscp_with_valid_checksums() {
    let now = Instant::now();
    let mut config = edge_config(pb::SecurityMode::None);
    for r in &mut config.access {
        r.priority = if r.service == "payments" {
            pb::Priority::Critical
        } else {
            pb::Priority::Low
        } as i32;
    }
    let mut edge = pipeline(now, &config);
    let classes = &edge.tables().qos.classes.clone();
    for (packet, priority, dscp) in [
        (syn(CLIENT, 1000), pb::Priority::Critical, 46),
        (
            udp(CLIENT, 5004, TELEMETRY, 9000, 100),
            pb::Priority::Low,
            8,
        ),
    ] {
        // The first packet (with metadata, checksums recomputed) and a later one (NAT only,
        // checksums updated incrementally).
        let later = match packet[9] {
            6 => tcp(CLIENT, 1000, PAYMENTS_VIP, 443, "A"),
            _ => packet.clone(),
        };
        for p in [packet, later] {
            let (a, out) = run(&mut edge, now, POS, &p);
            let Action::Forward(Egress { class, .. }) = a else {
                panic!("{a:?}")
            };
            assert_eq!(class, classes.for_priority(priority));
            let ip = Ipv4Packet::new_checked(&out[..]).expect("IPv4");
            assert_eq!(ip.dscp(), dscp);
            assert!(ip.verify_checksum(), "header checksum after marking");
            let parsed = SlicedPacket::from_ip(&out).expect("etherparse parses it");
            let Some(etherparse::NetSlice::Ipv4(v4)) = parsed.net else {
                panic!("ipv4")
            };
            assert_eq!(v4.header().dcp().value(), dscp);
        }
    }
}

#[test]
fn a_spoofed_flood_does_not_grow_the_guard() {
    let now = Instant::now();
    let mut config = edge_config(pb::SecurityMode::None);
    config.access.push(rule("guest", "telemetry"));
    // A big guest network, so that the flood can come from 65,000 addresses.
    for n in &mut config.lan_interfaces[0].networks {
        if n.name == "guest" {
            n.prefixes = vec!["10.64.0.0/10".into()];
        }
    }
    for r in &mut config.access {
        r.rate_limit = Some(pb::RateLimit {
            new_sessions_per_second: 2,
            ..Default::default()
        });
    }
    let config = with_limits(
        config,
        pb::Limits {
            max_sessions: 5_000,
            ..Default::default()
        },
    );
    let mut edge = pipeline(now, &config);
    let memory = edge.guard().sources().memory_bytes();
    // 200,000 UDP packets from distinct spoofed guest sources over 2 s.
    for i in 0..200_000u32 {
        let t = now + Duration::from_micros(u64::from(i) * 10);
        let src = Ipv4Addr::from(0x0a40_0000 | (i % 65_000)).octets();
        let _ = run(&mut edge, t, GUEST_IN, &udp(src, 6000, TELEMETRY, 9000, 10));
    }
    let g = edge.guard().sources();
    assert_eq!(
        g.memory_bytes(),
        memory,
        "the per-source table does not grow"
    );
    assert!(g.len() <= g.capacity());
    assert!(g.evictions() > 0, "evictions are counted");
    assert!(edge.sessions().len() <= 5_000, "the table limit holds");
    assert!(edge.counters().dropped(DropReason::TableFull) > 0);
}
