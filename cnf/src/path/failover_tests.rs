//! Session-smart path choice through the real pipeline, in simulated time: the path monitor's
//! reports ([`Pipeline::set_path_health`]) decide where new sessions start and where live ones
//! go; a second hub tests location failover.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use signpost_proto::v1 as pb;

use crate::path::book::{HOLD_DOWN, Liveness, PathHealth, PathReport};
use crate::path::quality::Estimate;
use crate::pipeline::testbed::{
    CLIENT, PAYMENTS_REAL, PAYMENTS_VIP, TELEMETRY, edge_config, hub_config, run,
};
use crate::pipeline::{Action, Egress, Ingress, Interface, Options, Pipeline, Tables};

const POS: Ingress = Ingress {
    interface: Interface::Lan(0),
    vlan: Some(10),
};
const MS: Duration = Duration::from_millis(1);
const HUB2_WAN: [u8; 4] = [203, 0, 113, 20];

fn udp(src_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(CLIENT, TELEMETRY, 64)
        .udp(src_port, 9000)
        .write(&mut out, payload)
        .expect("builds");
    out
}

fn tcp(flags: &str, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(CLIENT, PAYMENTS_VIP, 64).tcp(40000, 443, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("builds");
    out
}

fn health(loss_ppm: u32, latency_ms: u32) -> PathHealth {
    PathHealth {
        liveness: Liveness::Up,
        quality: Estimate {
            latency_us: Some(latency_ms * 1000),
            jitter_us: Some(500),
            loss_ppm: Some(loss_ppm),
        },
    }
}

const DOWN: PathHealth = PathHealth {
    liveness: Liveness::Down,
    quality: Estimate {
        latency_us: None,
        jitter_us: None,
        loss_ppm: None,
    },
};

/// The store with `payments` under an SLA of 1 % loss (telemetry has none).
fn store(extra: impl FnOnce(&mut pb::RouterConfig)) -> Pipeline {
    let mut config = edge_config(pb::SecurityMode::None);
    for r in &mut config.access {
        if r.service == "payments" {
            r.sla = Some(pb::Sla {
                max_loss_ppm: 10_000,
                ..Default::default()
            });
        }
    }
    extra(&mut config);
    let tables = Tables::new(&config, "v1").expect("builds");
    Pipeline::new(Instant::now(), Arc::new(tables), Options::default())
}

fn report(p: &Pipeline, health: &[PathHealth]) -> PathReport {
    PathReport {
        tables: Arc::clone(p.tables()),
        health: health.to_vec(),
        locations_down: Vec::new(),
    }
}

fn wan_of(a: &Action) -> Option<u8> {
    match a {
        Action::Forward(Egress {
            interface: Interface::Wan(w),
            ..
        }) => Some(*w),
        _ => None,
    }
}

#[test]
fn new_sessions_start_on_the_best_path_that_meets_their_sla() {
    let t0 = Instant::now();
    let mut edge = store(|_| {});
    // Broadband (path 0, preferred) loses 5 %, LTE (path 1) nothing.
    assert!(edge.set_path_health(t0, &report(&edge, &[health(50_000, 10), health(0, 40)])));
    let (a, _) = run(&mut edge, t0, POS, &tcp("S", 1, 0, &[]));
    assert_eq!(
        wan_of(&a),
        Some(1),
        "payments (1 % SLA) starts on LTE: {a:?}"
    );
    let (a, _) = run(&mut edge, t0, POS, &udp(5000, b"t"));
    assert_eq!(
        wan_of(&a),
        Some(0),
        "telemetry (no SLA) stays on broadband: {a:?}"
    );
    assert_eq!(edge.counters().sessions_sla_fallback, 0);
    // Both lossy: the less bad, counted as a fallback.
    edge.set_path_health(
        t0,
        &report(&edge, &[health(30_000, 10), health(80_000, 40)]),
    );
    let mut syn = tcp("S", 1, 0, &[]);
    syn[21] ^= 1; // another source port: another session
    let (a, _) = run(&mut edge, t0 + MS, POS, &fix(syn));
    assert_eq!(wan_of(&a), Some(0), "{a:?}");
    assert_eq!(edge.counters().sessions_sla_fallback, 1);
}

/// Recomputes the checksums of a packet edited in place.
fn fix(packet: Vec<u8>) -> Vec<u8> {
    let s = SlicedPacket::from_ip(&packet).expect("ip");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else {
        panic!("v4")
    };
    let h = ip.header();
    let (src, dst) = (h.source(), h.destination());
    let mut out = Vec::new();
    match s.transport {
        Some(TransportSlice::Tcp(t)) => {
            let mut b = PacketBuilder::ipv4(src, dst, h.ttl()).tcp(
                t.source_port(),
                t.destination_port(),
                t.sequence_number(),
                t.window_size(),
            );
            if t.syn() {
                b = b.syn();
            }
            if t.ack() {
                b = b.ack(t.acknowledgment_number());
            }
            b.write(&mut out, t.payload()).expect("builds");
        }
        other => panic!("{other:?}"),
    }
    out
}

#[test]
fn a_live_session_leaves_a_path_that_breaks_its_sla_and_returns_after_the_hold_down() {
    let t0 = Instant::now();
    let mut edge = store(|_| {});
    edge.set_path_health(t0, &report(&edge, &[health(0, 10), health(0, 40)]));
    let (a, _) = run(&mut edge, t0, POS, &tcp("S", 1, 0, &[]));
    assert_eq!(wan_of(&a), Some(0));
    let (a, _) = run(&mut edge, t0, POS, &udp(5000, b"t"));
    assert_eq!(wan_of(&a), Some(0));
    // 5 % loss on broadband: payments moves at its next packet, telemetry stays.
    let t1 = t0 + Duration::from_secs(1);
    edge.set_path_health(t1, &report(&edge, &[health(50_000, 10), health(0, 40)]));
    let (a, wan) = run(&mut edge, t1, POS, &tcp("A", 2, 9, b"pay"));
    assert_eq!(wan_of(&a), Some(1), "{a:?}");
    assert!(
        crate::svr::starts_with_cookie(payload(&wan)),
        "metadata again"
    );
    let (a, _) = run(&mut edge, t1, POS, &udp(5000, b"t"));
    assert_eq!(wan_of(&a), Some(0), "no SLA, no move");
    assert_eq!(edge.counters().sessions_rebound, 1);
    // Broadband clean again: back only once it stayed clean for the hold-down.
    let mut back = None;
    for step in 1..=80u32 {
        let now = t1 + 100 * MS * step;
        edge.set_path_health(now, &report(&edge, &[health(0, 10), health(0, 40)]));
        let (a, _) = run(&mut edge, now, POS, &tcp("A", 2 + step, 9, b"pay"));
        if back.is_none() && wan_of(&a) == Some(0) {
            back = Some(now - t1);
        }
    }
    assert_eq!(
        back,
        Some(100 * MS + HOLD_DOWN),
        "one report to start, then the hold-down"
    );
    assert_eq!(edge.counters().sessions_rebound, 2);
}

fn payload(ip: &[u8]) -> &[u8] {
    match SlicedPacket::from_ip(ip).map(|s| s.transport) {
        Ok(Some(TransportSlice::Udp(u))) => u.payload(),
        Ok(Some(TransportSlice::Tcp(t))) => t.payload(),
        _ => &[],
    }
}

/// A store with a second location for both services on `hub2` (one path, broadband).
fn store_with_two_hubs() -> Pipeline {
    store(|c| {
        let mut hub2 = c.peers[0].clone();
        hub2.name = "hub2".into();
        hub2.paths.truncate(1);
        for p in &mut hub2.paths {
            p.id = "store/broadband->hub2/internet".into();
            p.remote_address = "203.0.113.20".into();
        }
        c.peers.push(hub2);
        for s in &mut c.services {
            let mut loc = s.locations[0].clone();
            loc.router = "hub2".into();
            loc.priority = 1;
            s.locations.push(loc);
        }
    })
}

fn hub2() -> Pipeline {
    let mut c = hub_config(pb::SecurityMode::None);
    c.router = "hub2".into();
    c.wan_interfaces[0].addresses = vec!["203.0.113.20/24".into()];
    for s in &mut c.services {
        for l in &mut s.locations {
            l.router = "hub2".into();
        }
    }
    let tables = Tables::new(&c, "v1").expect("builds");
    Pipeline::new(Instant::now(), Arc::new(tables), Options::default())
}

#[test]
fn when_a_location_fails_udp_moves_to_another_and_tcp_is_reset() {
    let t0 = Instant::now();
    let mut edge = store_with_two_hubs();
    let up = health(0, 10);
    edge.set_path_health(t0, &report(&edge, &[up, up, up]));
    let (a, _) = run(&mut edge, t0, POS, &udp(5000, b"before"));
    assert_eq!(wan_of(&a), Some(0));
    let (a, _) = run(&mut edge, t0, POS, &tcp("S", 1, 0, &[]));
    assert_eq!(wan_of(&a), Some(0));
    // Both paths to `hub` down: that location is gone, `hub2` is reachable.
    let t1 = t0 + Duration::from_secs(1);
    edge.set_path_health(t1, &report(&edge, &[DOWN, DOWN, up]));
    let (a, wan) = run(&mut edge, t1, POS, &udp(5000, b"after"));
    let Action::Forward(out) = a else {
        panic!("{a:?}")
    };
    assert_eq!(
        out.next_hop,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        "broadband gateway"
    );
    let dst = match SlicedPacket::from_ip(&wan).map(|s| s.net) {
        Ok(Some(etherparse::NetSlice::Ipv4(ip))) => ip.header().destination(),
        other => panic!("{other:?}"),
    };
    assert_eq!(dst, HUB2_WAN, "to the other location");
    assert_eq!(edge.counters().sessions_relocated, 1);
    // The other hub takes it as a new session and delivers the datagram.
    let mut h2 = hub2();
    let (b, delivered) = run(
        &mut h2,
        t1,
        Ingress {
            interface: Interface::Wan(0),
            vlan: None,
        },
        &wan,
    );
    assert!(matches!(b, Action::Forward(_)), "{b:?} {:?}", h2.counters());
    assert_eq!(payload(&delivered), b"after");
    // The TCP session cannot follow: its next segment is answered with a reset.
    let (a, rst) = run(&mut edge, t1, POS, &tcp("A", 2, 77, b"data"));
    assert_eq!(
        a,
        Action::Forward(Egress {
            interface: Interface::Lan(0),
            vlan: Some(10),
            next_hop: IpAddr::V4(Ipv4Addr::from(CLIENT)),
            class: 0,
        }),
    );
    let s = SlicedPacket::from_ip(&rst).expect("a valid packet");
    let Some(TransportSlice::Tcp(t)) = s.transport else {
        panic!("tcp")
    };
    assert!(
        t.rst() && !t.ack() && t.sequence_number() == 77,
        "seq from the segment's ACK"
    );
    assert_eq!((t.source_port(), t.destination_port()), (443, 40000));
    let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else {
        panic!("v4")
    };
    assert_eq!(
        (ip.header().source(), ip.header().destination()),
        (PAYMENTS_VIP, CLIENT)
    );
    assert_eq!(edge.counters().sessions_reset, 1);
    assert_eq!(edge.sessions().len(), 1, "only the UDP session is left");
    // A new connection goes to hub2 at once.
    let mut syn = tcp("S", 100, 0, &[]);
    syn[21] ^= 2;
    let (a, _) = run(&mut edge, t1, POS, &fix(syn));
    assert_eq!(wan_of(&a), Some(0));
    let _ = PAYMENTS_REAL;
}

#[test]
fn proximity_prefers_the_location_with_the_lower_measured_latency() {
    let t0 = Instant::now();
    let mut edge = store_with_two_hubs();
    // hub: 40 ms on both paths; hub2: 8 ms.
    edge.set_path_health(
        t0,
        &report(&edge, &[health(0, 40), health(0, 40), health(0, 8)]),
    );
    let (a, wan) = run(&mut edge, t0, POS, &udp(5000, b"x"));
    assert!(wan_of(&a).is_some());
    let dst = match SlicedPacket::from_ip(&wan).map(|s| s.net) {
        Ok(Some(etherparse::NetSlice::Ipv4(ip))) => ip.header().destination(),
        other => panic!("{other:?}"),
    };
    assert_eq!(dst, HUB2_WAN);
}

fn wan_dst(wan: &[u8]) -> [u8; 4] {
    match SlicedPacket::from_ip(wan).map(|s| s.net) {
        Ok(Some(etherparse::NetSlice::Ipv4(ip))) => ip.header().destination(),
        other => panic!("{other:?}"),
    }
}

/// `hub`'s location of `services` reported unhealthy (its paths stay up): new sessions go to
/// hub2, a live UDP session is re-established there at its next packet, a live TCP session is
/// reset; once `hub` is healthy again new sessions may return (proximity, equal measures:
/// config order).
#[test]
fn a_location_reported_unhealthy_is_skipped_and_its_sessions_move() {
    let t0 = Instant::now();
    let mut edge = store_with_two_hubs();
    let up = health(0, 10);
    let paths = [up, up, up];
    edge.set_path_health(t0, &report(&edge, &paths));
    let (a, wan) = run(&mut edge, t0, POS, &udp(5000, b"before"));
    assert_eq!((wan_of(&a), wan_dst(&wan)), (Some(0), [203, 0, 113, 10]));
    let (a, _) = run(&mut edge, t0, POS, &tcp("S", 1, 0, &[]));
    assert_eq!(wan_of(&a), Some(0));
    let t = edge.tables();
    let hub = t.peer_named("hub").expect("hub");
    let down: Vec<_> = ["payments", "telemetry"]
        .iter()
        .map(|s| (t.classifier.service_named(s).expect("service"), hub))
        .collect();
    let mut r = report(&edge, &paths);
    r.locations_down = down;
    let t1 = t0 + Duration::from_secs(1);
    assert!(edge.set_path_health(t1, &r));
    assert!(
        edge.path_book().location_down(r.locations_down[0].0, hub),
        "recorded"
    );
    // The UDP session continues through hub2.
    let (a, wan) = run(&mut edge, t1, POS, &udp(5000, b"after"));
    assert_eq!((wan_of(&a), wan_dst(&wan)), (Some(0), HUB2_WAN), "{a:?}");
    assert!(
        crate::svr::starts_with_cookie(payload(&wan)),
        "metadata again"
    );
    assert_eq!(edge.counters().sessions_relocated, 1);
    let (_, wan) = run(&mut edge, t1, POS, &udp(5000, b"again"));
    assert_eq!(wan_dst(&wan), HUB2_WAN, "stays there");
    // The TCP session is reset; a new one opens at hub2.
    let (a, _) = run(&mut edge, t1, POS, &tcp("A", 2, 77, b"data"));
    assert!(
        matches!(
            a,
            Action::Forward(Egress {
                interface: Interface::Lan(0),
                ..
            })
        ),
        "{a:?}"
    );
    assert_eq!(edge.counters().sessions_reset, 1);
    let mut syn = tcp("S", 100, 0, &[]);
    syn[21] ^= 2;
    let (_, wan) = run(&mut edge, t1, POS, &fix(syn.clone()));
    assert_eq!(
        wan_dst(&wan),
        HUB2_WAN,
        "new payments go to the healthy location"
    );
    // Healthy again: a new session may go back (config order breaks the tie); live ones stay.
    let t2 = t1 + Duration::from_secs(1);
    assert!(edge.set_path_health(t2, &report(&edge, &paths)));
    syn[21] ^= 4;
    let (_, wan) = run(&mut edge, t2, POS, &fix(syn));
    assert_eq!(wan_dst(&wan), [203, 0, 113, 10]);
    let (_, wan) = run(&mut edge, t2, POS, &udp(5000, b"later"));
    assert_eq!(wan_dst(&wan), HUB2_WAN, "a live session is not moved back");
}
