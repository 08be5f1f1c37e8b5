//! The path monitor: one BFD session per peer path of the router, sans-IO. The runtime feeds
//! it the BFD packets that reach the router's WAN addresses ([`PathMonitor::handle`]), drives
//! its timers ([`PathMonitor::poll_timeout`], [`PathMonitor::handle_timeout`]), sends what
//! [`PathMonitor::transmit`] builds (complete IP packets), and pushes
//! [`PathMonitor::report`] to every worker's pipeline.
//!
//! # Framing and checks
//!
//! A path whose WAN interface has a gateway starts multihop (RFC 5883, UDP 4784); an on-link
//! peer single-hop (RFC 5881, UDP 3784, received TTL must be 255); once the peer speaks, the
//! path uses the mode the peer uses. Packets leave with TTL 255, DSCP CS6, from source port
//! 49152 + the path's index, and UDP checksums are checked on receipt.
//!
//! # Demultiplexing, and peers behind NAT
//!
//! Store paths cross carrier NATs: the hub sees the store's packets from the NAT's address and
//! port, not from the address its config names. So:
//!
//! - Edges are active (they speak first); a hub is passive towards edges (it answers once it
//!   has heard from them) and active towards other hubs.
//! - A packet with a non-zero Your Discriminator is matched by it alone (§6.8.6).
//! - A packet with Your Discriminator 0 (a session starting) is matched by its addresses: the
//!   path on the receiving WAN whose configured remote address is the source. If none matches
//!   (a NAT in between), and BFD is authenticated, it is matched by its **My Discriminator**:
//!   every router derives the discriminator of its end of a path from the peer key and the
//!   path's two endpoint names, so the hub knows in advance which discriminator each store
//!   path will carry; the packet must then authenticate with that peer's key. The path learns
//!   the NAT's address and port and answers there, from the port the store sent to (so the
//!   NAT's mapping carries the answer back). A later authenticated packet from another address
//!   (the NAT re-mapped) moves the learned address.
//! - Anything else with Your Discriminator 0 from an unknown source is dropped and counted
//!   (`unknown-source`); no state is created for it. Without authentication a NATed peer can
//!   therefore not be learned, which is the price of interoperating with peers that do not
//!   hold the key (FRR's bfdd does not authenticate).
//!
//! # Authentication
//!
//! By default every packet carries Meticulous Keyed SHA1 (§6.7.4) with a 20-byte key derived
//! from the peer key (HKDF, see [`crate::security::PeerKey::derive`]), key id = the key's
//! security id (low byte); the sequence number rises by one per packet and a receiver accepts
//! only `last + 1 ..= last + 3 × Detect Mult` (§6.7.3), which also yields exact one-way loss.
//! `authentication: none` turns it off on both ends.
//!
//! # What the pipeline gets
//!
//! Per path a [`PathHealth`]: Up when the BFD session is Up, Down when it is not — after a
//! start-up grace of [`STARTUP_GRACE`] during which a path that never was Up stays
//! [`Liveness::Unknown`] (treated as usable, so that a router starting does not refuse
//! sessions while BFD comes up at its 1 s slow rate) — and the quality estimates of
//! [`super::quality`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signpost_proto::v1::{BfdAuthentication, PathMonitoring};

use super::bfd::{
    self, Auth, AuthType, Control, ControlPacket, Diagnostic, Event, Session, SessionConfig, State,
};
use super::book::{Liveness, PathHealth, PathReport};
use super::quality::{Estimate, Quality};
use crate::packet::{Ipv4Packet, Ipv6Packet, UdpDatagram, ip_protocol};
use crate::pipeline::{Egress, Interface, Tables};

/// A path that never came up is reported Down only after this long.
pub const STARTUP_GRACE: Duration = Duration::from_secs(3);
/// BFD source ports start here (RFC 5881 §4: 49152–65535).
const SOURCE_PORT_BASE: u16 = 49152;
const DISCRIMINATOR_LABEL: &[u8] = b"signpost bfd v1 discriminator";
const AUTH_KEY_LABEL: &[u8] = b"signpost bfd v1 meticulous keyed sha1";
/// DSCP CS6 (network control).
const CS6: u8 = 48;

/// The monitor's settings, from the config's `path_monitoring` with defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorSettings {
    pub min_tx: Duration,
    pub min_rx: Duration,
    pub multiplier: u8,
    pub authenticate: bool,
    pub hold_down: Duration,
    pub disabled: bool,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self::from_config(&PathMonitoring::default())
    }
}

impl MonitorSettings {
    pub fn from_config(c: &PathMonitoring) -> MonitorSettings {
        let ms = |v: u32, default: u64| {
            Duration::from_millis(if v == 0 { default } else { u64::from(v) })
        };
        MonitorSettings {
            min_tx: ms(c.min_tx_ms, 50),
            min_rx: ms(c.min_rx_ms, 50),
            multiplier: if c.multiplier == 0 {
                3
            } else {
                u8::try_from(c.multiplier).unwrap_or(u8::MAX)
            },
            authenticate: c.authentication != BfdAuthentication::None as i32,
            hold_down: ms(c.hold_down_ms, super::book::HOLD_DOWN.as_millis() as u64),
            disabled: c.disabled,
        }
    }
}

named_counters! {
    /// What the monitor did with BFD packets.
    BfdCounters {
        rx => "rx": "BFD packets accepted",
        tx => "tx": "BFD packets sent",
        malformed => "malformed": "not a valid IP/UDP/BFD Control packet (RFC 5880 §6.8.6 checks)",
        bad_ttl => "bad-ttl": "single-hop packets with a TTL other than 255",
        unknown_discriminator => "unknown-discriminator": "Your Discriminator names no session",
        unknown_source => "unknown-source": "Your Discriminator 0 from an address no path expects",
        auth_mismatch => "auth-mismatch": "authentication present where none is used, or missing where it is",
        auth_failed => "auth-failed": "wrong digest or unknown key id",
        bad_sequence => "bad-sequence": "authentication sequence number outside the window (replay)",
        admin_down_discarded => "admin-down-discarded": "packets for a session held AdminDown",
        went_up => "went-up": "sessions that reached Up",
        went_down => "went-down": "sessions that fell from Up",
        nat_learned => "nat-learned": "peer addresses learned behind a NAT",
    }
}

#[derive(Clone, Debug)]
struct AuthState {
    /// (key id, key), the peer's current key first.
    keys: Vec<(u8, [u8; 20])>,
    tx_seq: u32,
    rx_seq: Option<u32>,
    last_valid: Option<Instant>,
}

#[derive(Clone, Debug)]
struct Monitored {
    peer: u16,
    path: u16,
    peer_name: String,
    path_id: String,
    wan: u8,
    local: Option<IpAddr>,
    remote: IpAddr,
    gateway: Option<IpAddr>,
    /// Where the peer's packets come from when that is not its configured address (a NAT).
    learned: Option<SocketAddr>,
    src_port: u16,
    multihop: bool,
    session: Session,
    quality: Quality,
    auth: Option<AuthState>,
    /// The discriminators the peer's end of this path derives (one per peer key).
    expected_remote: Vec<u32>,
    ever_up: bool,
    liveness: Liveness,
    created: Instant,
}

/// One path as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorView {
    pub peer: String,
    pub path: String,
    pub state: State,
    pub diagnostic: Diagnostic,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub learned: Option<SocketAddr>,
    pub multihop: bool,
    pub authenticated: bool,
    pub quality: Estimate,
}

/// The addresses, ports and egress of one peer path, as BFD uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerChannel {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub egress: Egress,
}

/// A path's BFD session changed state (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub peer: String,
    pub path: String,
    pub from: State,
    pub to: State,
    pub diagnostic: Diagnostic,
}

/// Why a received packet was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    BadTtl,
    UnknownDiscriminator,
    UnknownSource,
    AuthMismatch,
    AuthFailed,
    BadSequence,
    AdminDown,
}

/// The two endpoint names of a path, in an order both routers agree on.
fn canonical(here: &str, there: &str) -> String {
    if here <= there {
        format!("{here}<>{there}")
    } else {
        format!("{there}<>{here}")
    }
}

fn derive_discriminator(key: &crate::security::PeerKey, path: &str, end: &str) -> u32 {
    let label = [
        DISCRIMINATOR_LABEL,
        b"|",
        path.as_bytes(),
        b"|",
        end.as_bytes(),
    ]
    .concat();
    let bytes: [u8; 4] = key.derive(&label);
    u32::from_be_bytes(bytes).max(1)
}

/// The path monitor; see the module docs.
pub struct PathMonitor {
    tables: Arc<Tables>,
    settings: MonitorSettings,
    paths: Vec<Monitored>,
    by_discr: HashMap<u32, usize>,
    by_expected: HashMap<u32, Vec<usize>>,
    counters: BfdCounters,
    /// Packets queued outside the sessions (AdminDown of removed paths).
    queued: Vec<(Egress, Vec<u8>)>,
    transitions: Vec<Transition>,
    changed: bool,
    rng: u64,
}

impl PathMonitor {
    pub fn new(now: Instant, tables: Arc<Tables>, seed: u64) -> PathMonitor {
        let mut m = PathMonitor {
            settings: MonitorSettings::from_config(&tables.path_monitoring),
            tables: Arc::clone(&tables),
            paths: Vec::new(),
            by_discr: HashMap::new(),
            by_expected: HashMap::new(),
            counters: BfdCounters::default(),
            queued: Vec::new(),
            transitions: Vec::new(),
            changed: true,
            rng: seed | 1,
        };
        m.build(now, Vec::new());
        m
    }

    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    pub fn counters(&self) -> &BfdCounters {
        &self.counters
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A new config: sessions of paths that are still there (same peer, path id and
    /// addresses) continue; removed paths say AdminDown once and end.
    pub fn set_tables(&mut self, now: Instant, tables: Arc<Tables>) {
        self.settings = MonitorSettings::from_config(&tables.path_monitoring);
        self.tables = tables;
        let old = std::mem::take(&mut self.paths);
        self.build(now, old);
        self.changed = true;
    }

    fn session_config(&self, passive: bool, probe: bool) -> SessionConfig {
        SessionConfig {
            desired_min_tx: self.settings.min_tx,
            required_min_rx: self.settings.min_rx,
            detect_mult: self.settings.multiplier,
            passive,
            probe,
        }
    }

    fn build(&mut self, now: Instant, mut old: Vec<Monitored>) {
        self.by_discr.clear();
        self.by_expected.clear();
        if self.settings.disabled {
            return;
        }
        let tables = Arc::clone(&self.tables);
        let mut index = 0u16;
        for (p, peer) in tables.peers.iter().enumerate() {
            let passive = tables.hub && !peer.hub;
            let probe = !passive;
            for (i, path) in peer.paths.iter().enumerate() {
                let Some(wan) = tables.wans.get(path.wan) else {
                    continue;
                };
                let local = wan.address_for(path.remote);
                let here = format!("{}/{}", tables.router, wan.name);
                let there = format!("{}/{}", peer.name, path.remote_interface);
                let name = canonical(&here, &there);
                let auth = self.settings.authenticate.then(|| AuthState {
                    keys: peer
                        .keys
                        .keys()
                        .rev()
                        .map(|k| (k.security_id() as u8, k.derive::<20>(AUTH_KEY_LABEL)))
                        .collect(),
                    tx_seq: self.next_random() as u32,
                    rx_seq: None,
                    last_valid: None,
                });
                let expected_remote: Vec<u32> = peer
                    .keys
                    .keys()
                    .map(|k| derive_discriminator(k, &name, &there))
                    .collect();
                let config = self.session_config(passive, probe);
                let carried = old.iter().position(|m| {
                    m.peer_name == peer.name
                        && m.path_id == path.id
                        && m.local == local
                        && m.remote == path.remote
                });
                let monitored = match carried {
                    Some(k) => {
                        let mut m = old.swap_remove(k);
                        m.session.set_config(now, config);
                        match (&mut m.auth, auth) {
                            (Some(a), Some(new)) => a.keys = new.keys,
                            (_, auth) => m.auth = auth,
                        }
                        m.peer = p as u16;
                        m.path = i as u16;
                        m.wan = path.wan as u8;
                        m.gateway = wan.gateway;
                        m.expected_remote = expected_remote;
                        m
                    }
                    None => {
                        let mut discr = derive_discriminator(peer.keys.current(), &name, &here);
                        while self.by_discr.contains_key(&discr) {
                            discr = discr.wrapping_add(1).max(1);
                        }
                        let seed = self.next_random();
                        Monitored {
                            peer: p as u16,
                            path: i as u16,
                            peer_name: peer.name.clone(),
                            path_id: path.id.clone(),
                            wan: path.wan as u8,
                            local,
                            remote: path.remote,
                            gateway: wan.gateway,
                            learned: None,
                            src_port: SOURCE_PORT_BASE + (index % 16384),
                            multihop: wan.gateway.is_some(),
                            session: Session::new(now, config, discr, seed),
                            quality: Quality::new(now),
                            auth,
                            expected_remote,
                            ever_up: false,
                            liveness: Liveness::Unknown,
                            created: now,
                        }
                    }
                };
                let k = self.paths.len();
                self.by_discr
                    .insert(monitored.session.local_discriminator(), k);
                for d in &monitored.expected_remote {
                    self.by_expected.entry(*d).or_default().push(k);
                }
                self.paths.push(monitored);
                index = index.wrapping_add(1);
            }
        }
        for mut gone in old {
            gone.session.set_admin_down(now);
            if let Some(c) = gone.session.poll_transmit(now)
                && let Some(out) = frame(&mut gone, c)
            {
                self.queued.push(out);
            }
        }
    }

    /// A packet for one of the router's WAN addresses that may be BFD: the whole IP packet, as
    /// it arrived on WAN interface `wan`.
    pub fn handle(&mut self, now: Instant, wan: u8, packet: &[u8]) -> Result<(), Refusal> {
        let result = self.receive(now, wan, packet);
        match result {
            Ok(()) => self.counters.rx += 1,
            Err(r) => {
                let c = &mut self.counters;
                match r {
                    Refusal::Malformed => c.malformed += 1,
                    Refusal::BadTtl => c.bad_ttl += 1,
                    Refusal::UnknownDiscriminator => c.unknown_discriminator += 1,
                    Refusal::UnknownSource => c.unknown_source += 1,
                    Refusal::AuthMismatch => c.auth_mismatch += 1,
                    Refusal::AuthFailed => c.auth_failed += 1,
                    Refusal::BadSequence => c.bad_sequence += 1,
                    Refusal::AdminDown => c.admin_down_discarded += 1,
                }
            }
        }
        result
    }

    fn receive(&mut self, now: Instant, wan: u8, packet: &[u8]) -> Result<(), Refusal> {
        let rx = parse_ip_udp(packet).ok_or(Refusal::Malformed)?;
        // The mode is the port the peer uses (an answer through a NAT comes from it): so the
        // two ends agree even when only one of them has a gateway.
        let multihop = match (rx.dst_port, rx.src_port) {
            (bfd::MULTIHOP_PORT, _) => true,
            (bfd::SINGLE_HOP_PORT, _) => false,
            (_, bfd::MULTIHOP_PORT) => true,
            (_, bfd::SINGLE_HOP_PORT) => false,
            _ => return Err(Refusal::Malformed),
        };
        if !multihop && rx.ttl != 255 {
            // RFC 5881 §5: single-hop packets come from a neighbour, with TTL 255.
            return Err(Refusal::BadTtl);
        }
        let bfd_packet = ControlPacket::new_checked(rx.payload).map_err(|_| Refusal::Malformed)?;
        let c = Control::parse(&bfd_packet).map_err(|_| Refusal::Malformed)?;
        let k = if c.your_discriminator != 0 {
            *self
                .by_discr
                .get(&c.your_discriminator)
                .ok_or(Refusal::UnknownDiscriminator)?
        } else {
            self.match_new(wan, &rx, &c, &bfd_packet)?
        };
        let Some(m) = self.paths.get_mut(k) else {
            return Err(Refusal::UnknownDiscriminator);
        };
        if m.wan != wan || m.local != Some(rx.dst) {
            return Err(Refusal::UnknownSource);
        }
        let advance = match (&mut m.auth, c.auth) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => return Err(Refusal::AuthMismatch),
            (Some(a), Some(auth)) => Some(check_auth(a, &bfd_packet, auth, &m.session)?),
        };
        // Where the peer speaks from: its configured address, or a NAT (learned only when
        // authenticated, see the module docs).
        if rx.src != m.remote {
            if m.auth.is_none() {
                return Err(Refusal::UnknownSource);
            }
            let from = SocketAddr::new(rx.src, rx.src_port);
            if m.learned != Some(from) {
                m.learned = Some(from);
                self.counters.nat_learned += 1;
            }
        } else {
            m.learned = None;
        }
        if !m.session.handle(now, &c) {
            return Err(Refusal::AdminDown);
        }
        m.multihop = multihop;
        if let (Some(a), Some(adv)) = (&mut m.auth, advance) {
            a.rx_seq = c.auth.map(|x| x.sequence);
            a.last_valid = Some(now);
            if let Some(adv) = adv {
                m.quality.on_sequence(now, adv);
            }
        }
        self.drain_events(now, k);
        Ok(())
    }

    /// Your Discriminator 0: the path by addresses, else (authenticated) by the derived
    /// discriminator the packet carries.
    fn match_new<T: AsRef<[u8]>>(
        &self,
        wan: u8,
        rx: &Received<'_>,
        c: &Control,
        p: &ControlPacket<T>,
    ) -> Result<usize, Refusal> {
        if let Some(k) = self
            .paths
            .iter()
            .position(|m| m.wan == wan && m.remote == rx.src && m.local == Some(rx.dst))
        {
            return Ok(k);
        }
        let candidates = self
            .by_expected
            .get(&c.my_discriminator)
            .ok_or(Refusal::UnknownSource)?;
        for &k in candidates {
            let Some(m) = self.paths.get(k) else { continue };
            let Some(a) = &m.auth else { continue };
            if m.wan != wan {
                continue;
            }
            let key_id = c.auth.map(|x| x.key_id);
            if a.keys
                .iter()
                .any(|(id, key)| Some(*id) == key_id && bfd::packet::verify_sha1(p, key))
            {
                return Ok(k);
            }
        }
        Err(Refusal::UnknownSource)
    }

    fn drain_events(&mut self, now: Instant, k: usize) {
        let Some(m) = self.paths.get_mut(k) else {
            return;
        };
        while let Some(e) = m.session.poll_event() {
            match e {
                Event::StateChanged {
                    from,
                    to,
                    diagnostic,
                } => {
                    if self.transitions.len() < 1024 {
                        self.transitions.push(Transition {
                            peer: m.peer_name.clone(),
                            path: m.path_id.clone(),
                            from,
                            to,
                            diagnostic,
                        });
                    }
                    if to == State::Up {
                        // A path that comes back is measured afresh (anything sampled while it
                        // was coming up is not its quality); hysteresis in the book decides when
                        // it is trusted again.
                        m.quality.reset(now);
                        m.ever_up = true;
                        m.liveness = Liveness::Up;
                        self.counters.went_up += 1;
                    } else if from == State::Up {
                        self.counters.went_down += 1;
                        m.liveness = Liveness::Down;
                        m.quality.reset(now);
                    }
                    self.changed = true;
                }
                Event::RoundTrip { rtt, lost } => m.quality.on_round_trip(now, rtt, lost),
            }
        }
        if m.liveness == Liveness::Unknown
            && !m.ever_up
            && now.saturating_duration_since(m.created) >= STARTUP_GRACE
        {
            m.liveness = Liveness::Down;
            self.changed = true;
        }
    }

    /// The earliest time something is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let grace = self
            .paths
            .iter()
            .filter(|m| m.liveness == Liveness::Unknown)
            .map(|m| m.created + STARTUP_GRACE)
            .min();
        self.paths
            .iter()
            .filter_map(|m| m.session.poll_timeout())
            .chain(grace)
            .min()
    }

    /// Runs every session's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        for k in 0..self.paths.len() {
            if let Some(m) = self.paths.get_mut(k) {
                m.session.handle_timeout(now);
                if let Some(a) = &mut m.auth {
                    // §6.7.1: the sequence is forgotten after twice the Detection Time.
                    let limit = m.session.detection_time().unwrap_or(Duration::from_secs(3)) * 2;
                    if a.last_valid
                        .is_some_and(|t| now.saturating_duration_since(t) > limit)
                    {
                        a.rx_seq = None;
                        a.last_valid = None;
                    }
                }
            }
            self.drain_events(now, k);
        }
    }

    /// Every packet due now, framed as IP packets for `egress`.
    pub fn transmit(&mut self, now: Instant, out: &mut Vec<(Egress, Vec<u8>)>) {
        out.append(&mut self.queued);
        for m in &mut self.paths {
            while let Some(c) = m.session.poll_transmit(now) {
                if let Some(packet) = frame(m, c) {
                    out.push(packet);
                    self.counters.tx += 1;
                }
            }
        }
    }

    /// The state changes since the last call.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    /// True once since the last call when some path changed liveness (push a report now).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// How to reach `peer` over each of its paths whose BFD session is Up, for other
    /// router-to-router messages (service-location health, [`crate::health`]): the same
    /// addresses and ports as BFD, so they cross a carrier NAT on the mapping BFD keeps open.
    pub fn channels(&self, peer: u16) -> Vec<PeerChannel> {
        self.paths
            .iter()
            .filter(|m| m.peer == peer && m.session.state() == State::Up)
            .filter_map(channel)
            .collect()
    }

    /// A packet for the path monitor that is not BFD but an SVR metadata block (a peer's
    /// health message, [`crate::health::message`]): the UDP payload, and the peer whose path
    /// it came on (`None`: no path uses that source). `None` for anything else (BFD, or not
    /// a valid UDP packet): hand it to [`PathMonitor::handle`].
    pub fn peer_message<'a>(&self, wan: u8, packet: &'a [u8]) -> Option<(Option<u16>, &'a [u8])> {
        let rx = parse_ip_udp(packet)?;
        if !crate::svr::starts_with_cookie(rx.payload) {
            return None;
        }
        let from = SocketAddr::new(rx.src, rx.src_port);
        let peer = self
            .paths
            .iter()
            .find(|m| {
                m.wan == wan
                    && m.local == Some(rx.dst)
                    && match m.learned {
                        Some(at) => at == from,
                        None => m.remote == rx.src,
                    }
            })
            .map(|m| m.peer);
        Some((peer, rx.payload))
    }

    /// The health of every path, in the order [`PathReport`] wants.
    pub fn report(&self, now: Instant) -> PathReport {
        let mut health = Vec::new();
        let mut k = 0;
        for peer in &self.tables.peers {
            for _ in &peer.paths {
                let h = match self.paths.get(k) {
                    Some(m) if !self.settings.disabled => PathHealth {
                        liveness: m.liveness,
                        quality: m.quality.estimate(now),
                    },
                    _ => PathHealth::default(),
                };
                health.push(h);
                k += 1;
            }
        }
        PathReport {
            tables: Arc::clone(&self.tables),
            health,
            locations_down: Vec::new(),
        }
    }

    pub fn views(&self, now: Instant) -> Vec<MonitorView> {
        self.paths
            .iter()
            .map(|m| MonitorView {
                peer: m.peer_name.clone(),
                path: m.path_id.clone(),
                state: m.session.state(),
                diagnostic: m.session.diagnostic(),
                local_discriminator: m.session.local_discriminator(),
                remote_discriminator: m.session.remote_discriminator(),
                learned: m.learned,
                multihop: m.multihop,
                authenticated: m.auth.is_some(),
                quality: m.quality.estimate(now),
            })
            .collect()
    }
}

/// The authentication checks of §6.7.3 for Meticulous Keyed SHA1: key by id, digest,
/// sequence within `last + 1 ..= last + 3 × Detect Mult`. The sequence's advance (for loss)
/// when one was known.
fn check_auth<T: AsRef<[u8]>>(
    a: &AuthState,
    p: &ControlPacket<T>,
    auth: Auth,
    session: &Session,
) -> Result<Option<u32>, Refusal> {
    if auth.kind != AuthType::MeticulousKeyedSha1 {
        return Err(Refusal::AuthMismatch);
    }
    let key = a
        .keys
        .iter()
        .find(|(id, _)| *id == auth.key_id)
        .map(|(_, k)| k)
        .ok_or(Refusal::AuthFailed)?;
    if !bfd::packet::verify_sha1(p, key) {
        return Err(Refusal::AuthFailed);
    }
    let Some(last) = a.rx_seq else {
        return Ok(None);
    };
    let window = 3 * u32::from(session.config().detect_mult.max(p.detect_mult()));
    let advance = auth.sequence.wrapping_sub(last);
    if advance == 0 || advance > window {
        return Err(Refusal::BadSequence);
    }
    Ok(Some(advance))
}

struct Received<'a> {
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    ttl: u8,
    payload: &'a [u8],
}

/// IPv4 or IPv6 carrying UDP with a valid checksum.
fn parse_ip_udp(packet: &[u8]) -> Option<Received<'_>> {
    let (src, dst, ttl, l4) = match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.protocol() != ip_protocol::UDP || ip.is_fragment() || !ip.verify_checksum() {
                return None;
            }
            let l4 = packet.get(ip.header_len()..usize::from(ip.total_len()))?;
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                ip.ttl(),
                l4,
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            if ip.next_header() != ip_protocol::UDP {
                return None;
            }
            let l4 = packet.get(40..40 + usize::from(ip.payload_len()))?;
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                ip.hop_limit(),
                l4,
            )
        }
        _ => return None,
    };
    let udp = UdpDatagram::new_checked(l4).ok()?;
    let ok = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => udp.verify_checksum_v4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => udp.verify_checksum_v6(&s, &d),
        _ => false,
    };
    if !ok {
        return None;
    }
    let payload = l4.get(8..usize::from(udp.len()))?;
    Some(Received {
        src,
        dst,
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        ttl,
        payload,
    })
}

/// Where path `m`'s packets go: from its local address and port to the peer's (or the NAT's
/// mapping that BFD keeps open).
fn channel(m: &Monitored) -> Option<PeerChannel> {
    let local = m.local?;
    let standard = if m.multihop {
        bfd::MULTIHOP_PORT
    } else {
        bfd::SINGLE_HOP_PORT
    };
    let (dst, src_port, dst_port) = match m.learned {
        Some(at) => (at.ip(), standard, at.port()),
        None => (m.remote, m.src_port, standard),
    };
    Some(PeerChannel {
        from: SocketAddr::new(local, src_port),
        to: SocketAddr::new(dst, dst_port),
        egress: Egress {
            interface: Interface::Wan(m.wan),
            vlan: None,
            next_hop: m.gateway.unwrap_or(dst),
            // Router-originated frames leave through the raw socket, ahead of the WAN
            // scheduler's queues: BFD is never queued behind bulk traffic (it is marked CS6).
            class: 0,
        },
    })
}

/// The IP packet carrying `c` on path `m` (authenticated when the path is).
fn frame(m: &mut Monitored, mut c: Control) -> Option<(Egress, Vec<u8>)> {
    let ch = channel(m)?;
    let key = match &mut m.auth {
        Some(a) => {
            let (key_id, key) = *a.keys.first()?;
            a.tx_seq = a.tx_seq.wrapping_add(1);
            c.auth = Some(Auth {
                kind: AuthType::MeticulousKeyedSha1,
                key_id,
                sequence: a.tx_seq,
            });
            Some(key)
        }
        None => None,
    };
    let mut body = vec![0u8; c.buffer_len()];
    c.emit(&mut body).ok()?;
    if let Some(key) = key {
        bfd::packet::seal_sha1(&mut body, &key).ok()?;
    }
    let packet = udp_packet(ch.from, ch.to, 255, CS6, &body)?;
    Some((ch.egress, packet))
}

/// An IPv4 or IPv6 packet carrying `payload` in UDP from `from` to `to`, checksums filled;
/// `None` when the families differ or the payload does not fit.
pub(crate) fn udp_packet(
    from: SocketAddr,
    to: SocketAddr,
    ttl: u8,
    dscp: u8,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(8 + payload.len()).ok()?;
    let mut l4 = vec![0u8; usize::from(udp_len)];
    l4.get_mut(8..)?.copy_from_slice(payload);
    {
        let mut udp = UdpDatagram::new_unchecked(&mut l4[..]);
        udp.set_src_port(from.port());
        udp.set_dst_port(to.port());
        udp.set_len(udp_len);
    }
    crate::packet::ip_packet(from.ip(), to.ip(), ip_protocol::UDP, ttl, dscp, &l4)
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
