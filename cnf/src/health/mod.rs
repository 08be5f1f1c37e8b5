//! Service-location health: whether the servers behind a router answer, and what its peers
//! do about it. A hub whose payments server died keeps its paths up; without this its peers
//! would keep sending it payment sessions.
//!
//! ```text
//!  router fronting a location                         every peer (a store)
//!  ┌───────────────────────────────┐                  ┌──────────────────────────────────┐
//!  │ probe: ICMP echo + TCP SYN to │  health message  │ remote: (service, peer) down      │
//!  │ each location address, from   │ ───────────────▶ │ until refreshed or HOLD passes    │
//!  │ the LAN address; thresholds   │  on change, and  │   → PathReport → every pipeline:  │
//!  │ → a location is down when all │  every REFRESH   │ choose() skips the location; live │
//!  │   its addresses are           │  while down      │ sessions move (UDP) / reset (TCP) │
//!  └───────────────────────────────┘                  └──────────────────────────────────┘
//! ```
//!
//! - [`probe`]: the probes and their thresholds (sans-IO).
//! - [`message`]: the authenticated health message (SVR metadata codec, peer-key HMAC).
//! - [`remote`]: peers' reports at the ingress router.
//! - [`ServiceHealth`]: the three together, as the path monitor thread drives them: the
//!   messages ride the peer paths BFD runs on ([`PathMonitor::channels`]), over every path
//!   that is Up, and are sent when a location's state changes ([`REPEATS`] times,
//!   [`REFRESH`] apart) and every [`REFRESH`] while it is down. A receiver holds a "down" for
//!   [`remote::HOLD`] after the last message; "up" clears it at once. A location is healthy
//!   until someone says otherwise: a peer that never sends (an older router, health checks
//!   disabled) changes nothing.
//!
//! What the pipeline does with it is in [`crate::path::book`] (the book keeps the down
//! locations) and `Pipeline::choose` / `move_session`: a location reported down is skipped
//! for new sessions, and live sessions to it are re-established at another location at their
//! next packet, as when all paths to the location are down (UDP continues, TCP is reset).
//!
//! Limits: only addresses listed in a location (`ServiceLocation.addresses`) are probed (a
//! location that delivers to the original destination has nothing to probe); a location with
//! several addresses is down only when all are, and the router does not yet skip a dead
//! address among live ones when it delivers; health messages need the BFD paths (with path
//! monitoring disabled they are not sent).

pub mod message;
pub mod probe;
pub mod remote;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signpost_proto::v1 as pb;

use crate::classify::ServiceId;
use crate::path::monitor::{PathMonitor, udp_packet};
use crate::pipeline::{Egress, Tables};
pub use message::{HealthMessage, Refusal};
pub use probe::{ProbeCounters, ProbeView, Prober, Verdict, is_probe_answer};
pub use remote::{Remote, RemoteView};

/// How often a down location is reported again, and the spacing of a change's repeats.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How many times a change is sent.
pub const REPEATS: u8 = 3;
/// DSCP CS6 (network control), as BFD.
const CS6: u8 = 48;

/// One fronted service's checks, from its config with defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSettings {
    pub interval: Duration,
    /// At most the interval.
    pub timeout: Duration,
    /// Consecutive misses before an address is Down.
    pub unhealthy: u32,
    /// Consecutive answers before a Down address is Up again.
    pub healthy: u32,
    /// The TCP port probed (it decides), if any.
    pub tcp_port: Option<u16>,
}

impl CheckSettings {
    /// `None` when the service's checks are disabled.
    pub fn from_config(service: &pb::Service) -> Option<CheckSettings> {
        let h = service.health_check.unwrap_or_default();
        if h.disabled {
            return None;
        }
        let ms = |v: u32, default: u64| {
            Duration::from_millis(if v == 0 { default } else { u64::from(v) })
        };
        let interval = ms(h.interval_ms, 1000);
        let timeout = ms(h.timeout_ms, interval.as_millis() as u64).min(interval);
        let first_tcp = service
            .transports
            .iter()
            .filter(|t| t.protocol == pb::Protocol::Tcp as i32)
            .find_map(|t| t.ports.first())
            .and_then(|r| u16::try_from(r.first).ok())
            .filter(|p| *p != 0);
        let tcp_port = match u16::try_from(h.port) {
            Ok(0) | Err(_) => first_tcp,
            Ok(p) => Some(p),
        };
        let count = |v: u32, default: u32| if v == 0 { default } else { v.min(100) };
        Some(CheckSettings {
            interval,
            timeout,
            unhealthy: count(h.unhealthy_threshold, 3),
            healthy: count(h.healthy_threshold, 2),
            tcp_port,
        })
    }
}

named_counters! {
    /// What happened to health messages.
    MessageCounters {
        sent => "sent": "health messages sent to peers",
        accepted => "accepted": "health messages accepted",
        changed => "changed": "accepted messages that changed a location's state",
        malformed => "malformed": "not a health message, or a field missing",
        unknown_source => "unknown-source": "from an address and port no peer path uses",
        unknown_key => "unknown-key": "naming a key the peer does not have",
        auth_failed => "auth-failed": "wrong HMAC, or not from that peer to this router",
        replay => "replay": "sequence number seen already or too old (replay)",
        stale => "stale": "time more than 5 minutes from this router's clock",
        unknown_service => "unknown-service": "about a service this router does not reach at that peer",
    }
}

/// Maps `now` to the wall clock, from one reading taken at construction.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    pub at: Instant,
    /// Microseconds since the Unix epoch at `at`.
    pub unix_us: u64,
}

impl WallClock {
    pub fn system(now: Instant) -> WallClock {
        let unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        WallClock { at: now, unix_us }
    }

    pub fn us(&self, now: Instant) -> u64 {
        self.unix_us + now.saturating_duration_since(self.at).as_micros() as u64
    }
}

#[derive(Clone, Copy, Debug)]
struct Announce {
    up: bool,
    repeats: u8,
    next: Instant,
}

/// A location as the admin API shows it: one of this router's probed addresses, or a peer's
/// report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationView {
    pub service: String,
    pub router: String,
    /// The probed address (own locations only).
    pub address: Option<std::net::IpAddr>,
    pub up: bool,
    pub detail: String,
    pub since: Duration,
}

/// A location changed state (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub service: String,
    pub router: String,
    /// The probed address, for this router's own locations.
    pub address: Option<std::net::IpAddr>,
    pub up: bool,
}

/// A router's service-location health: its prober, what it announced, and its peers'
/// reports. See the module docs.
#[derive(Debug)]
pub struct ServiceHealth {
    tables: Arc<Tables>,
    prober: Prober,
    announced: HashMap<String, Announce>,
    remote: Remote,
    clock: WallClock,
    last_seq: u64,
    counters: MessageCounters,
    down: Vec<(ServiceId, u16)>,
    changed: bool,
    events: Vec<HealthEvent>,
}

impl ServiceHealth {
    pub fn new(now: Instant, tables: Arc<Tables>, clock: WallClock, seed: u64) -> ServiceHealth {
        ServiceHealth {
            prober: Prober::new(now, &tables, seed),
            tables,
            announced: HashMap::new(),
            remote: Remote::default(),
            clock,
            last_seq: 0,
            counters: MessageCounters::default(),
            down: Vec::new(),
            changed: false,
            events: Vec::new(),
        }
    }

    pub fn set_tables(&mut self, now: Instant, tables: Arc<Tables>) {
        self.prober.set_tables(now, &tables);
        self.tables = tables;
        self.down = self.remote.down(now, &self.tables);
        self.changed = true;
    }

    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    pub fn probe_counters(&self) -> &ProbeCounters {
        self.prober.counters()
    }

    pub fn message_counters(&self) -> &MessageCounters {
        &self.counters
    }

    /// A LAN packet addressed to the router that may answer a probe.
    pub fn handle_probe_answer(&mut self, now: Instant, packet: &[u8]) -> bool {
        self.prober.handle(now, packet)
    }

    /// A health message that came on a peer path ([`PathMonitor::peer_message`]); `peer` is
    /// `None` when no path of a peer uses the address it came from.
    pub fn handle_message(
        &mut self,
        now: Instant,
        peer: Option<u16>,
        payload: &[u8],
    ) -> Result<(), Refusal> {
        let result = match peer {
            Some(p) => self
                .remote
                .receive(now, self.clock.us(now), &self.tables, p, payload),
            None => {
                self.counters.unknown_source += 1;
                return Err(Refusal::AuthFailed);
            }
        };
        let c = &mut self.counters;
        match result {
            Ok(changed) => {
                c.accepted += 1;
                if changed {
                    c.changed += 1;
                    self.refresh_down(now);
                }
                Ok(())
            }
            Err(r) => {
                match r {
                    Refusal::Malformed => c.malformed += 1,
                    Refusal::UnknownKey => c.unknown_key += 1,
                    Refusal::AuthFailed => c.auth_failed += 1,
                    Refusal::Replay => c.replay += 1,
                    Refusal::Stale => c.stale += 1,
                    Refusal::UnknownService => c.unknown_service += 1,
                }
                Err(r)
            }
        }
    }

    fn refresh_down(&mut self, now: Instant) {
        let down = self.remote.down(now, &self.tables);
        if down == self.down {
            return;
        }
        let t = &self.tables;
        let event = |&(s, p): &(ServiceId, u16), up: bool| HealthEvent {
            service: t.classifier.service_info(s).name.clone(),
            router: t
                .peers
                .get(usize::from(p))
                .map_or_else(String::new, |p| p.name.clone()),
            address: None,
            up,
        };
        let went_down = down.iter().filter(|d| !self.down.contains(d));
        let went_up = self.down.iter().filter(|d| !down.contains(d));
        let events: Vec<HealthEvent> = went_down
            .map(|d| event(d, false))
            .chain(went_up.map(|d| event(d, true)))
            .collect();
        if self.events.len() < 1024 {
            self.events.extend(events);
        }
        self.down = down;
        self.changed = true;
    }

    /// The state changes since the last call: this router's probed addresses and its peers'
    /// locations.
    pub fn take_events(&mut self) -> Vec<HealthEvent> {
        let router = self.tables.router.clone();
        let own = self
            .prober
            .take_transitions()
            .into_iter()
            .map(|(service, address, v)| HealthEvent {
                service,
                router: router.clone(),
                address: Some(address),
                up: v != Verdict::Down,
            });
        let mut out: Vec<HealthEvent> = own.collect();
        out.append(&mut self.events);
        out
    }

    /// The earliest time something is due.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let announce = self
            .announced
            .values()
            .filter(|a| a.repeats > 0 || !a.up)
            .map(|a| a.next)
            .min();
        [
            self.prober.poll_timeout(),
            announce,
            self.remote.next_expiry(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.prober.handle_timeout(now);
        self.refresh_down(now);
    }

    /// Probes due now, and health messages to peers over `monitor`'s paths that are Up.
    pub fn transmit(
        &mut self,
        now: Instant,
        monitor: &PathMonitor,
        out: &mut Vec<(Egress, Vec<u8>)>,
    ) {
        self.prober.transmit(now, out);
        let tables = Arc::clone(&self.tables);
        for (service, all_down) in self.prober.locations() {
            let name = &tables.classifier.service_info(service).name;
            let up = !all_down;
            let a = self.announced.entry(name.clone()).or_insert(Announce {
                up,
                repeats: REPEATS,
                next: now,
            });
            if a.up != up {
                *a = Announce {
                    up,
                    repeats: REPEATS,
                    next: now,
                };
            }
            if a.next > now || (a.repeats == 0 && a.up) {
                continue;
            }
            a.repeats = a.repeats.saturating_sub(1);
            a.next = now + REFRESH;
            for (p, peer) in tables.peers.iter().enumerate() {
                let message = HealthMessage {
                    service: name.clone(),
                    from: tables.router.clone(),
                    to: peer.name.clone(),
                    up,
                };
                for ch in monitor.channels(p as u16) {
                    let seq = (self.last_seq + 1).max(self.clock.us(now));
                    self.last_seq = seq;
                    if let Some(payload) = message.seal(peer.keys.current(), seq)
                        && let Some(packet) = udp_packet(ch.from, ch.to, 255, CS6, &payload)
                    {
                        out.push((ch.egress, packet));
                        self.counters.sent += 1;
                    }
                }
            }
        }
    }

    /// The (service, peer) locations its peers report down, sorted (for the path report).
    pub fn down(&self) -> &[(ServiceId, u16)] {
        &self.down
    }

    /// True once since the last call when the down locations changed (push a report now).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// This router's probed addresses, then its peers' reports.
    pub fn views(&self, now: Instant) -> Vec<LocationView> {
        let own = self.prober.views(now).into_iter().map(|v| LocationView {
            service: v.service,
            router: self.tables.router.clone(),
            address: Some(v.address),
            up: v.verdict != Verdict::Down,
            detail: match v.verdict {
                Verdict::Unknown => format!("no verdict yet: {}", v.detail),
                _ => v.detail,
            },
            since: v.since,
        });
        let remote = self.remote.views(now).into_iter().map(|v| LocationView {
            detail: match (v.reported_up, v.up) {
                (true, _) => format!(
                    "reported up by {} {:.1} s ago",
                    v.router,
                    v.age.as_secs_f64()
                ),
                (false, false) => format!(
                    "reported down by {} {:.1} s ago; holds {:.1} s more unless refreshed",
                    v.router,
                    v.age.as_secs_f64(),
                    remote::HOLD.saturating_sub(v.age).as_secs_f64()
                ),
                (false, true) => format!(
                    "reported down by {} {:.1} s ago, not refreshed: expired",
                    v.router,
                    v.age.as_secs_f64()
                ),
            },
            service: v.service,
            router: v.router,
            address: None,
            up: v.up,
            since: v.age,
        });
        own.chain(remote).collect()
    }
}
