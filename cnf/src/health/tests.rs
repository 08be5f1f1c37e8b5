//! Service-location health in simulated time: the prober against a simulated service host
//! (thresholds, a flapping server, a dead host), and the testbed hub telling the testbed store
//! over a simulated network that its payments location is down (message loss, replay,
//! forgery, a wrong clock).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signpost_proto::v1 as pb;

use super::probe::server::Host;
use super::*;
use crate::pipeline::testbed::{PAYMENTS_REAL, edge_config, hub_config};
use crate::pipeline::{Interface, Tables};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
/// 2026-12-01, µs since the epoch: the clock both routers read.
const WALL: u64 = 1_796_083_200_000_000;

fn tables(config: pb::RouterConfig) -> Arc<Tables> {
    Arc::new(Tables::new(&config, "v1").expect("the testbed config builds"))
}

/// The hub's prober and the payments host behind it, 1 ms apart.
struct Lan {
    now: Instant,
    prober: Prober,
    host: Host,
    flight: Vec<(Instant, Vec<u8>)>,
}

impl Lan {
    fn new(config: pb::RouterConfig) -> Lan {
        let now = Instant::now();
        Lan {
            now,
            prober: Prober::new(now, &tables(config), 3),
            host: Host {
                alive: true,
                listening: true,
                resets_seen: 0,
            },
            flight: Vec::new(),
        }
    }

    fn step(&mut self) {
        self.now += MS;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
        self.flight = later;
        for (_, p) in due {
            assert!(self.prober.handle(now, &p), "an answer to a probe");
        }
        self.prober.handle_timeout(now);
        let mut out = Vec::new();
        self.prober.transmit(now, &mut out);
        for (egress, p) in out {
            assert_eq!(egress.interface, Interface::Lan(0));
            assert_eq!(egress.next_hop, IpAddr::V4(Ipv4Addr::from(PAYMENTS_REAL)));
            if let Some(answer) = self.host.answer(&p) {
                self.flight.push((now + MS, answer));
            }
        }
    }

    /// Runs `d`, returning the verdict after each step where it changed, with its time.
    fn run(&mut self, d: Duration) -> Vec<(Duration, Verdict)> {
        let start = self.now;
        let mut seen = Vec::new();
        let mut last = self.verdict();
        while self.now < start + d {
            self.step();
            let v = self.verdict();
            if v != last {
                seen.push((self.now - start, v));
                last = v;
            }
        }
        seen
    }

    fn verdict(&self) -> Verdict {
        self.prober
            .views(self.now)
            .first()
            .map_or(Verdict::Unknown, |v| v.verdict)
    }
}

#[test]
fn a_dead_server_process_is_down_after_three_refusals_and_up_after_two_answers() {
    let mut lan = Lan::new(hub_config(pb::SecurityMode::None));
    let views = lan.prober.views(lan.now);
    assert_eq!(
        views.len(),
        1,
        "payments has a real address; telemetry none: {views:?}"
    );
    assert_eq!(lan.run(2 * SEC).first().map(|c| c.1), Some(Verdict::Up));
    assert!(
        lan.host.resets_seen >= 1,
        "every SYN-ACK is answered with a RST (half-open)"
    );
    // The process dies; the host still answers pings and refuses the port.
    lan.host.listening = false;
    let changes = lan.run(5 * SEC);
    assert_eq!(changes.len(), 1, "{changes:?}");
    let (after, v) = changes[0];
    assert_eq!(v, Verdict::Down);
    assert!(
        (2 * SEC..=3 * SEC + 10 * MS).contains(&after),
        "three refused rounds, 1 s apart: {after:?}"
    );
    let view = &lan.prober.views(lan.now)[0];
    assert!(
        view.detail.contains("tcp/443 refused") && view.detail.contains("ping answered"),
        "{}",
        view.detail
    );
    assert!(lan.prober.locations()[0].1, "the location is down");
    lan.host.listening = true;
    let changes = lan.run(3 * SEC);
    let (after, v) = changes[0];
    assert_eq!(v, Verdict::Up);
    assert!(
        (SEC..=2 * SEC + 10 * MS).contains(&after),
        "two answers: {after:?}"
    );
    let c = lan.prober.counters();
    assert_eq!((c.went_down, c.went_up), (1, 1), "{c:?}");
    assert!(c.tcp_refused >= 3 && c.tcp_open >= 3, "{c:?}");
}

#[test]
fn a_dead_host_times_out_and_an_icmp_only_service_is_judged_by_ping() {
    let mut config = hub_config(pb::SecurityMode::None);
    for s in &mut config.services {
        s.health_check = Some(pb::HealthCheck {
            interval_ms: 200,
            timeout_ms: 100,
            unhealthy_threshold: 2,
            // No TCP port: ping decides.
            port: 0,
            ..Default::default()
        });
        s.transports
            .retain(|t| t.protocol != pb::Protocol::Tcp as i32);
        s.transports.push(pb::Transport {
            protocol: pb::Protocol::Udp as i32,
            ports: vec![pb::PortRange {
                first: 443,
                last: 443,
            }],
        });
    }
    let mut lan = Lan::new(config);
    assert_eq!(lan.run(SEC).first().map(|c| c.1), Some(Verdict::Up));
    lan.host.alive = false;
    let changes = lan.run(SEC);
    let (after, v) = changes[0];
    assert_eq!(v, Verdict::Down);
    assert!(
        (200 * MS..=500 * MS).contains(&after),
        "two timeouts: {after:?}"
    );
    assert!(lan.prober.counters().echo_timeout >= 2);
    assert_eq!(lan.prober.counters().syn_sent, 0, "no TCP to probe");
}

#[test]
fn a_flapping_server_changes_state_only_on_consecutive_results() {
    let mut lan = Lan::new(hub_config(pb::SecurityMode::None));
    lan.run(2 * SEC);
    assert_eq!(lan.verdict(), Verdict::Up);
    // Two refusals, one answer, over and over: never three misses in a row.
    for _ in 0..6 {
        lan.host.listening = false;
        assert!(lan.run(2 * SEC).is_empty(), "stays up");
        lan.host.listening = true;
        assert!(lan.run(SEC).is_empty(), "stays up");
    }
    lan.host.listening = false;
    lan.run(3 * SEC + 500 * MS);
    assert_eq!(lan.verdict(), Verdict::Down);
    // Now one answer, one refusal: never two answers in a row.
    for _ in 0..6 {
        lan.host.listening = true;
        assert!(lan.run(SEC).is_empty(), "stays down");
        lan.host.listening = false;
        assert!(lan.run(SEC).is_empty(), "stays down");
    }
}

#[test]
fn settings_come_from_the_service_with_defaults() {
    let hub = tables(hub_config(pb::SecurityMode::None));
    let payments = hub.classifier.service_named("payments").expect("payments");
    let s = hub.health_check(payments).expect("probed");
    assert_eq!(
        (s.interval, s.timeout, s.unhealthy, s.healthy, s.tcp_port),
        (SEC, SEC, 3, 2, Some(443))
    );
    let telemetry = hub
        .classifier
        .service_named("telemetry")
        .expect("telemetry");
    assert_eq!(
        hub.health_check(telemetry),
        None,
        "no real address to probe"
    );
    let mut config = hub_config(pb::SecurityMode::None);
    config.services[0].health_check = Some(pb::HealthCheck {
        disabled: true,
        ..Default::default()
    });
    assert_eq!(tables(config).health_check(payments), None);
    let edge = tables(edge_config(pb::SecurityMode::None));
    assert_eq!(
        edge.health_check(payments),
        None,
        "the store fronts nothing"
    );
}

/// The testbed store and hub: path monitors and service health on both, the payments host
/// behind the hub, a network with delay, optional loss of health messages and a tap.
struct Net {
    now: Instant,
    edge_monitor: PathMonitor,
    hub_monitor: PathMonitor,
    edge: ServiceHealth,
    hub: ServiceHealth,
    host: Host,
    /// (arrival, to the hub?, receiving WAN, packet)
    flight: Vec<(Instant, bool, u8, Vec<u8>)>,
    lan: Vec<(Instant, Vec<u8>)>,
    /// Drop health messages towards the store while set.
    lose_messages: bool,
    /// Health messages towards the store, as sent.
    tapped: Vec<(u8, Vec<u8>)>,
}

fn is_message(packet: &[u8]) -> bool {
    packet.get(28..).is_some_and(crate::svr::starts_with_cookie)
}

impl Net {
    fn new(edge_clock_offset_us: i64) -> Net {
        let now = Instant::now();
        let edge_t = tables(edge_config(pb::SecurityMode::None));
        let hub_t = tables(hub_config(pb::SecurityMode::None));
        let clock = |offset: i64| WallClock {
            at: now,
            unix_us: WALL.saturating_add_signed(offset),
        };
        Net {
            now,
            edge_monitor: PathMonitor::new(now, Arc::clone(&edge_t), 11),
            hub_monitor: PathMonitor::new(now, Arc::clone(&hub_t), 22),
            edge: ServiceHealth::new(now, edge_t, clock(edge_clock_offset_us), 1),
            hub: ServiceHealth::new(now, hub_t, clock(0), 2),
            host: Host {
                alive: true,
                listening: true,
                resets_seen: 0,
            },
            flight: Vec::new(),
            lan: Vec::new(),
            lose_messages: false,
            tapped: Vec::new(),
        }
    }

    fn deliver(&mut self, to_hub: bool, wan: u8, packet: &[u8]) {
        let now = self.now;
        let (monitor, health) = if to_hub {
            (&mut self.hub_monitor, &mut self.hub)
        } else {
            (&mut self.edge_monitor, &mut self.edge)
        };
        match monitor.peer_message(wan, packet) {
            Some((peer, payload)) => {
                let _ = health.handle_message(now, peer, payload);
            }
            None => {
                let _ = monitor.handle(now, wan, packet);
            }
        }
    }

    fn step(&mut self) {
        self.now += MS;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
        self.flight = later;
        for (_, to_hub, wan, p) in due {
            self.deliver(to_hub, wan, &p);
        }
        let (due, later): (Vec<_>, Vec<_>) = self.lan.drain(..).partition(|f| f.0 <= now);
        self.lan = later;
        for (_, p) in due {
            self.hub.handle_probe_answer(now, &p);
        }
        let mut out = Vec::new();
        self.edge_monitor.handle_timeout(now);
        self.edge_monitor.transmit(now, &mut out);
        self.edge.handle_timeout(now);
        self.edge.transmit(now, &self.edge_monitor, &mut out);
        for (egress, p) in out.drain(..) {
            let Interface::Wan(w) = egress.interface else {
                panic!("the store probes nothing: {egress:?}")
            };
            // Both store paths reach the hub's one WAN.
            let _ = w;
            self.flight.push((now + 5 * MS, true, 0, p));
        }
        self.hub_monitor.handle_timeout(now);
        self.hub_monitor.transmit(now, &mut out);
        self.hub.handle_timeout(now);
        self.hub.transmit(now, &self.hub_monitor, &mut out);
        for (egress, p) in out {
            match egress.interface {
                Interface::Lan(_) => {
                    if let Some(a) = self.host.answer(&p) {
                        self.lan.push((now + MS, a));
                    }
                }
                Interface::Wan(_) => {
                    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
                    let wan = u8::from(dst == Ipv4Addr::new(100, 64, 1, 2));
                    if is_message(&p) {
                        self.tapped.push((wan, p.clone()));
                        if self.lose_messages {
                            continue;
                        }
                    }
                    self.flight.push((now + 5 * MS, false, wan, p));
                }
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// How long until the store sees payments at the hub as `down` (or not), at most `limit`.
    fn until_store_sees(&mut self, down: bool, limit: Duration) -> Option<Duration> {
        let start = self.now;
        while self.now < start + limit {
            self.step();
            if self.payments_down_at_store() == down {
                return Some(self.now - start);
            }
        }
        None
    }

    fn payments_down_at_store(&self) -> bool {
        let t = self.edge.tables();
        let s = t.classifier.service_named("payments").expect("payments");
        let hub = t.peer_named("hub").expect("hub");
        self.edge.down().contains(&(s, hub))
    }
}

#[test]
fn the_store_learns_that_the_hubs_payments_server_died_and_recovered() {
    let mut net = Net::new(0);
    net.run(4 * SEC);
    assert!(!net.payments_down_at_store());
    net.host.listening = false;
    let noticed = net
        .until_store_sees(true, 5 * SEC)
        .expect("the store hears within 5 s");
    assert!(
        (2 * SEC..=3 * SEC + 50 * MS).contains(&noticed),
        "three refusals then one message: {noticed:?}"
    );
    assert!(net.edge.take_changed());
    let c = *net.edge.message_counters();
    assert!(c.accepted >= 1 && c.changed == 1, "{c:?}");
    assert_eq!(
        (
            c.auth_failed,
            c.replay,
            c.stale,
            c.malformed,
            c.unknown_source
        ),
        (0, 0, 0, 0, 0),
        "{c:?}"
    );
    // While down, the hub refreshes the report every second on both paths: it holds.
    net.run(5 * SEC);
    assert!(net.payments_down_at_store());
    let views = net.edge.views(net.now);
    assert!(
        views
            .iter()
            .any(|v| v.router == "hub" && !v.up && v.detail.contains("reported down")),
        "{views:?}"
    );
    net.host.listening = true;
    let back = net
        .until_store_sees(false, 4 * SEC)
        .expect("the store hears the recovery");
    assert!(
        back <= 2 * SEC + 50 * MS,
        "two answers then one message: {back:?}"
    );
}

#[test]
fn lost_messages_are_made_good_by_refreshes_and_expiry() {
    let mut net = Net::new(0);
    net.run(4 * SEC);
    net.host.listening = false;
    // Every message of the change is lost; the first refresh after that gets through.
    net.lose_messages = true;
    net.run(3 * SEC + 500 * MS);
    assert!(!net.payments_down_at_store());
    net.lose_messages = false;
    assert!(
        net.until_store_sees(true, 2 * SEC).is_some(),
        "a refresh arrives"
    );
    // The recovery's messages are all lost: the store forgets the "down" once no refresh
    // came for HOLD.
    net.lose_messages = true;
    net.host.listening = true;
    let forgot = net
        .until_store_sees(false, 8 * SEC)
        .expect("expired without refreshes");
    assert!(
        forgot <= 2 * SEC + remote::HOLD + 100 * MS,
        "recovery (2 s) then the hold: {forgot:?}"
    );
}

#[test]
fn replays_forgeries_strangers_and_a_wrong_clock_are_refused_and_counted() {
    let mut net = Net::new(0);
    net.run(4 * SEC);
    net.host.listening = false;
    net.until_store_sees(true, 5 * SEC).expect("down");
    let (wan, recorded) = net.tapped.last().cloned().expect("a message was sent");
    net.host.listening = true;
    net.until_store_sees(false, 4 * SEC).expect("up again");
    // The recorded "down" replayed: refused, the location stays up.
    let before = *net.edge.message_counters();
    net.deliver(false, wan, &recorded);
    let c = *net.edge.message_counters();
    assert_eq!(c.replay, before.replay + 1, "{c:?}");
    assert!(!net.payments_down_at_store());
    // Altered in its TLVs (the state byte is the last before the trailer): refused.
    let mut forged = recorded.clone();
    let at = forged.len() - crate::security::TRAILER_LEN - 1;
    forged[at] ^= 1;
    fix_udp_checksum(&mut forged);
    net.deliver(false, wan, &forged);
    assert_eq!(
        net.edge.message_counters().auth_failed,
        before.auth_failed + 1
    );
    // Sealed with another key: refused.
    let mut other = hub_config(pb::SecurityMode::None);
    other.peers[0].keys[0].key = vec![0x43; 32];
    let wrong = tables(other);
    let payload = HealthMessage {
        service: "payments".into(),
        from: "hub".into(),
        to: "store".into(),
        up: false,
    }
    .seal(wrong.peers[0].keys.current(), WALL + 60_000_000)
    .expect("sealed");
    let mut p = recorded.clone();
    p.truncate(28);
    p.extend_from_slice(&payload);
    let forged = reframe(&p);
    net.deliver(false, wan, &forged);
    assert_eq!(
        net.edge.message_counters().auth_failed,
        before.auth_failed + 2
    );
    // From an address no path uses.
    let mut stranger = recorded.clone();
    stranger[12..16].copy_from_slice(&[198, 51, 100, 99]);
    let stranger = reframe(&stranger);
    net.deliver(false, wan, &stranger);
    assert_eq!(net.edge.message_counters().unknown_source, 1);
    assert!(!net.payments_down_at_store(), "nothing was taken");

    // A store whose clock is 10 minutes off refuses the hub's messages as stale.
    let mut net = Net::new(600_000_000);
    net.run(4 * SEC);
    net.host.listening = false;
    assert_eq!(net.until_store_sees(true, 5 * SEC), None);
    assert!(net.edge.message_counters().stale >= 1);
}

/// Recomputes the IPv4 header and UDP checksums of a packet edited in place.
fn reframe(p: &[u8]) -> Vec<u8> {
    let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
    let from = std::net::SocketAddr::new(src, u16::from_be_bytes([p[20], p[21]]));
    let to = std::net::SocketAddr::new(dst, u16::from_be_bytes([p[22], p[23]]));
    udp_packet(from, to, 255, CS6, &p[28..]).expect("frames")
}

fn fix_udp_checksum(p: &mut Vec<u8>) {
    *p = reframe(p);
}
