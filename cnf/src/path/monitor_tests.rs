//! Two path monitors — the testbed store (broadband and LTE, both behind gateways) and its
//! hub — joined by a simulated network in simulated time: delay, loss, cuts and a carrier NAT
//! on the LTE side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signpost_proto::v1 as pb;

use super::*;
use crate::pipeline::testbed::{edge_config, hub_config};

const MS: Duration = Duration::from_millis(1);
const STORE_LTE: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 2);
const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const NAT_PORT: u16 = 30001;

fn tables(mut config: pb::RouterConfig, monitoring: Option<pb::PathMonitoring>) -> Arc<Tables> {
    config.path_monitoring = monitoring;
    Arc::new(Tables::new(&config, "v1").expect("the testbed config builds"))
}

struct Net {
    now: Instant,
    edge: PathMonitor,
    hub: PathMonitor,
    /// (arrival, to hub?, WAN index at the receiver, packet)
    flight: Vec<(Instant, bool, u8, Vec<u8>)>,
    delay: Duration,
    /// Every n-th packet on broadband towards the hub is lost (0: none).
    lose_bb_every: u64,
    sent_bb: u64,
    cut_bb: bool,
    /// The LTE path crosses a NAT (source 100.64.1.2:* ↔ 198.51.100.7:30001).
    nat_lte: bool,
}

fn udp_ports(p: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([p[20], p[21]]),
        u16::from_be_bytes([p[22], p[23]]),
    )
}

/// Rewrites source or destination address and port of an IPv4/UDP packet, checksums fixed.
fn rewrite(p: &mut [u8], src: Option<(Ipv4Addr, u16)>, dst: Option<(Ipv4Addr, u16)>) {
    let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
    if let Some((a, _)) = src {
        ip.set_src_addr(a);
    }
    if let Some((a, _)) = dst {
        ip.set_dst_addr(a);
    }
    ip.fill_checksum();
    let (s, d) = (ip.src_addr(), ip.dst_addr());
    let mut udp = UdpDatagram::new_unchecked(&mut p[20..]);
    if let Some((_, port)) = src {
        udp.set_src_port(port);
    }
    if let Some((_, port)) = dst {
        udp.set_dst_port(port);
    }
    udp.fill_checksum_v4(s, d);
}

impl Net {
    fn new(
        monitoring: Option<pb::PathMonitoring>,
        hub_monitoring: Option<pb::PathMonitoring>,
    ) -> Net {
        let now = Instant::now();
        let edge = PathMonitor::new(
            now,
            tables(edge_config(pb::SecurityMode::None), monitoring),
            11,
        );
        let hub = PathMonitor::new(
            now,
            tables(hub_config(pb::SecurityMode::None), hub_monitoring),
            22,
        );
        Net {
            now,
            edge,
            hub,
            flight: Vec::new(),
            delay: 5 * MS,
            lose_bb_every: 0,
            sent_bb: 0,
            cut_bb: false,
            nat_lte: false,
        }
    }

    fn step(&mut self) {
        self.now += MS;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
        self.flight = later;
        for (_, to_hub, wan, packet) in due {
            let m = if to_hub {
                &mut self.hub
            } else {
                &mut self.edge
            };
            let _ = m.handle(now, wan, &packet);
        }
        self.edge.handle_timeout(now);
        self.hub.handle_timeout(now);
        let mut out = Vec::new();
        self.edge.transmit(now, &mut out);
        for (egress, mut packet) in out.drain(..) {
            let Interface::Wan(w) = egress.interface else {
                continue;
            };
            if w == 0 {
                self.sent_bb += 1;
                if self.cut_bb
                    || (self.lose_bb_every != 0 && self.sent_bb.is_multiple_of(self.lose_bb_every))
                {
                    continue;
                }
            } else if self.nat_lte {
                rewrite(&mut packet, Some((NAT_PUBLIC, NAT_PORT)), None);
            }
            self.flight.push((now + self.delay, true, 0, packet));
        }
        self.hub.transmit(now, &mut out);
        for (_, mut packet) in out {
            let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
            let wan = if dst == NAT_PUBLIC {
                let (_, port) = udp_ports(&packet);
                assert_eq!(port, NAT_PORT, "the hub answers the NAT's port");
                // The NAT maps back to the store's BFD source port for its LTE path.
                rewrite(&mut packet, None, Some((STORE_LTE, 49153)));
                1
            } else if dst == STORE_LTE {
                1
            } else {
                if self.cut_bb {
                    continue;
                }
                0
            };
            self.flight.push((now + self.delay, false, wan, packet));
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn states(&self, m: &PathMonitor) -> Vec<State> {
        m.views(self.now).into_iter().map(|v| v.state).collect()
    }
}

#[test]
fn store_and_hub_bring_both_paths_up_authenticated() {
    let mut net = Net::new(None, None);
    net.run(Duration::from_secs(4));
    assert_eq!(net.states(&net.edge), vec![State::Up, State::Up]);
    assert_eq!(net.states(&net.hub), vec![State::Up, State::Up]);
    let views = net.edge.views(net.now);
    assert!(views.iter().all(|v| v.authenticated && v.multihop));
    let c = net.hub.counters();
    assert_eq!(
        (c.auth_failed, c.bad_sequence, c.malformed),
        (0, 0, 0),
        "{c:?}"
    );
    let report = net.edge.report(net.now);
    assert!(
        report.health.iter().all(|h| h.liveness == Liveness::Up),
        "{report:?}"
    );
    // 5 ms each way: a 10 ms round trip, no loss.
    for h in &report.health {
        let l = h.quality.latency_us.expect("measured");
        assert!((10_000..=11_000).contains(&l), "{l}");
        assert_eq!(h.quality.loss_ppm, Some(0));
    }
}

#[test]
fn the_hub_learns_a_store_path_behind_a_carrier_nat() {
    let mut net = Net::new(None, None);
    net.nat_lte = true;
    net.run(Duration::from_secs(4));
    assert_eq!(net.states(&net.hub), vec![State::Up, State::Up]);
    assert_eq!(net.states(&net.edge), vec![State::Up, State::Up]);
    let lte = &net.hub.views(net.now)[1];
    assert_eq!(
        lte.learned,
        Some(SocketAddr::new(IpAddr::V4(NAT_PUBLIC), NAT_PORT))
    );
    assert!(net.hub.counters().nat_learned >= 1);
}

#[test]
fn without_authentication_a_nated_store_is_refused_and_counted() {
    let none = Some(pb::PathMonitoring {
        authentication: pb::BfdAuthentication::None as i32,
        ..Default::default()
    });
    let mut net = Net::new(none, none);
    net.nat_lte = true;
    net.run(Duration::from_secs(4));
    assert_eq!(
        net.states(&net.hub),
        vec![State::Up, State::Down],
        "broadband has no NAT"
    );
    assert!(
        net.hub.counters().unknown_source >= 2,
        "{:?}",
        net.hub.counters()
    );
    assert!(net.edge.views(net.now).iter().all(|v| !v.authenticated));
}

#[test]
fn a_wrong_key_or_a_missing_section_is_refused() {
    let mut hub = hub_config(pb::SecurityMode::None);
    hub.peers[0].keys[0].key = vec![0x43; 32];
    let now = Instant::now();
    let mut net = Net::new(None, None);
    net.hub = PathMonitor::new(now, tables(hub, None), 22);
    net.run(Duration::from_secs(3));
    assert_eq!(net.states(&net.hub), vec![State::Down, State::Down]);
    let c = *net.hub.counters();
    assert!(c.auth_failed >= 2, "{c:?}");
    // A hub without authentication and a store with it: mismatched, both stay down.
    let none = Some(pb::PathMonitoring {
        authentication: pb::BfdAuthentication::None as i32,
        ..Default::default()
    });
    let mut net = Net::new(None, none);
    net.run(Duration::from_secs(3));
    assert_eq!(net.states(&net.edge), vec![State::Down, State::Down]);
    assert!(net.hub.counters().auth_mismatch >= 2);
}

#[test]
fn a_cut_path_is_reported_down_within_the_detection_time() {
    let mut net = Net::new(None, None);
    net.run(Duration::from_secs(4));
    net.edge.take_changed();
    net.cut_bb = true;
    let cut = net.now;
    let mut down = None;
    for _ in 0..300 {
        net.step();
        if net.edge.take_changed() {
            down = Some(net.now - cut);
            break;
        }
    }
    let down = down.expect("reported within 300 ms");
    assert!(down <= 150 * MS + net.delay, "{down:?}");
    let report = net.edge.report(net.now);
    assert_eq!(report.health[0].liveness, Liveness::Down);
    assert_eq!(report.health[1].liveness, Liveness::Up, "LTE unaffected");
    assert_eq!(net.edge.counters().went_down, 1);
}

#[test]
fn loss_and_delay_show_in_the_estimates() {
    let mut net = Net::new(None, None);
    net.delay = 20 * MS;
    net.lose_bb_every = 20; // 5 % of the store's broadband packets
    net.run(Duration::from_secs(14));
    let report = net.edge.report(net.now);
    let bb = report.health[0].quality;
    let lte = report.health[1].quality;
    let loss = bb.loss_ppm.expect("measured");
    assert!(
        (25_000..=80_000).contains(&loss),
        "5 % forward loss seen by round trips: {loss}"
    );
    assert_eq!(lte.loss_ppm, Some(0));
    let l = lte.latency_us.expect("measured");
    assert!((40_000..=41_000).contains(&l), "{l}");
    // The hub sees the same loss one-way, from the sequence numbers.
    let hub_bb = net.hub.report(net.now).health[0].quality;
    let hub_loss = hub_bb.loss_ppm.expect("measured");
    assert!((30_000..=70_000).contains(&hub_loss), "{hub_loss}");
}

#[test]
fn paths_start_unknown_and_turn_down_after_the_grace_if_never_up() {
    let now = Instant::now();
    let mut m = PathMonitor::new(now, tables(edge_config(pb::SecurityMode::None), None), 1);
    assert!(
        m.report(now)
            .health
            .iter()
            .all(|h| h.liveness == Liveness::Unknown)
    );
    let mut out = Vec::new();
    m.transmit(now, &mut out);
    assert_eq!(out.len(), 2, "an edge speaks first, on both paths");
    m.handle_timeout(now + STARTUP_GRACE);
    assert!(m.take_changed());
    assert!(
        m.report(now)
            .health
            .iter()
            .all(|h| h.liveness == Liveness::Down)
    );
    let disabled = Some(pb::PathMonitoring {
        disabled: true,
        ..Default::default()
    });
    let mut m = PathMonitor::new(
        now,
        tables(edge_config(pb::SecurityMode::None), disabled),
        1,
    );
    m.transmit(now, &mut out);
    m.handle_timeout(now + STARTUP_GRACE * 2);
    assert!(
        m.report(now)
            .health
            .iter()
            .all(|h| h.liveness == Liveness::Unknown)
    );
}

#[test]
fn a_config_change_keeps_running_sessions() {
    let mut net = Net::new(None, None);
    net.run(Duration::from_secs(4));
    let before = net.edge.views(net.now);
    let t = tables(edge_config(pb::SecurityMode::Encrypt), None);
    net.edge.set_tables(net.now, t);
    net.run(Duration::from_millis(200));
    let after = net.edge.views(net.now);
    assert_eq!(net.states(&net.edge), vec![State::Up, State::Up]);
    assert_eq!(
        before
            .iter()
            .map(|v| v.local_discriminator)
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|v| v.local_discriminator)
            .collect::<Vec<_>>()
    );
}

#[test]
fn garbage_and_strangers_are_counted_not_fatal() {
    let now = Instant::now();
    let mut m = PathMonitor::new(now, tables(hub_config(pb::SecurityMode::None), None), 1);
    let mut rng = crate::packet::XorShift(0x1234);
    for len in 0..200 {
        let mut p = rng.bytes(len);
        if let Some(b) = p.first_mut() {
            *b = 0x45;
        }
        let _ = m.handle(now, 0, &p);
    }
    assert_eq!(m.counters().rx, 0);
    assert!(m.counters().malformed >= 190);
}

/// A broadband cut of 10 s and its restore, seen by a payments-like SLA (150 ms, 1 %): the
/// path comes back once — never up, degraded, up again — because what it measured before and
/// during the cut (Polls left unanswered, a Final answering a Poll sent before the cut) is not
/// a sample of the path that came back.
#[test]
fn a_restored_path_starts_from_fresh_samples_and_does_not_flap() {
    use super::super::book::PathBook;
    let mut config = edge_config(pb::SecurityMode::None);
    for rule in &mut config.access {
        rule.sla = Some(pb::Sla {
            max_latency_ms: 150,
            max_loss_ppm: 10_000,
            ..Default::default()
        });
    }
    let edge_tables = tables(config, None);
    let mut net = Net::new(None, None);
    net.edge = PathMonitor::new(net.now, Arc::clone(&edge_tables), 11);
    let mut book = PathBook::new(&edge_tables, super::super::book::HOLD_DOWN);
    let watch = |net: &mut Net, book: &mut PathBook, secs: u64, log: &mut Vec<&'static str>| {
        for _ in 0..secs * 10 {
            net.run(100 * MS);
            net.edge.report(net.now).apply(book);
            book.evaluate(net.now);
            let h = book.health_at(0, 0).expect("broadband");
            let state = match (h.liveness, book.degraded(0, 0)) {
                (Liveness::Up, true) => "degraded",
                (Liveness::Up, false) => "up",
                _ => "down",
            };
            if log.last() != Some(&state) {
                log.push(state);
            }
            if state != "down" {
                let l = h.quality.latency_us.unwrap_or(0);
                assert!(l <= 11_000, "latency {l} µs at {:?}: {log:?}", h.quality);
                assert!(
                    h.quality.loss_ppm.is_none_or(|p| p == 0),
                    "loss at {:?}: {log:?}",
                    h.quality
                );
            }
        }
    };
    let mut log = Vec::new();
    watch(&mut net, &mut book, 15, &mut log);
    assert_eq!(log, ["up"]);
    net.cut_bb = true;
    watch(&mut net, &mut book, 10, &mut log);
    net.cut_bb = false;
    watch(&mut net, &mut book, 20, &mut log);
    assert_eq!(log, ["up", "down", "up"]);
}
