//! The session pipeline: everything the router does to a packet, as a pure function of
//! (packet, tables, session state, `now`) → an [`Action`]. No sockets, no clocks, no threads: the
//! runtime's drivers call [`Pipeline::handle`] per packet (the runtime's worker does the same in
//! stages over a receive batch, as [`Pipeline::handle_batch`] does, so that the batch's session
//! lookups overlap their cache misses), [`Pipeline::poll_timers`] per batch and
//! [`Pipeline::poll_transmit`] for control packets, the way `quinn-proto` is driven by `quinn`.
//!
//! # A session's life
//!
//! 1. **First packet, ingress router** (a store edge; packet from a LAN): classify the source to a
//!    tenant and the destination to a service, look up the access rule (none: dropped, deny by
//!    default), choose a service location and a peer path the policy allows, allocate a waypoint
//!    5-tuple on that path, create the session, rewrite the packet to the waypoints (NAT, no
//!    tunnel header) and insert SVR metadata at the start of the L4 payload: forward context
//!    (the original 5-tuple), session UUID, tenant, service, source and destination routers,
//!    path id, security policy, security id (key version, header TLV 16). An HMAC trailer
//!    authenticates it (see [`crate::security`]).
//! 2. The ingress keeps adding forward metadata until an authenticated packet comes back.
//! 3. **Egress router** (a hub; packet from a WAN with metadata and no session): find the peer by
//!    the source-router TLV and its key by security id, verify, check its own policy (tenant ×
//!    service, direction, that it fronts the service, that the original destination belongs to
//!    that service here: `Classifier::check_destination`), create the session (LAN side: original
//!    source → the service location's real address, or the original destination), strip the
//!    metadata and deliver. Its replies carry reverse metadata (reverse context, UUID, TLV 18
//!    "disable forward metadata") until a forward packet arrives without metadata.
//! 4. **Established**: one lookup, the NAT rewrite with incremental checksums, a TTL decrement.
//!    `authenticate` / `encrypt` sessions add the per-packet trailer.
//! 5. **Path change**: the path book ([`crate::path::book`], fed by the path monitor) keeps,
//!    per SLA class and peer, the path sessions should use. When a session's path is no longer
//!    it (down, breaking the SLA, or a preferred path back after its hold-down), the next
//!    forward packet moves it there with a new waypoint 5-tuple and metadata again; the egress
//!    router finds the session by UUID and re-binds it. No reset. When no path to the
//!    session's location is up but another location is reachable, a UDP/ICMP session is
//!    re-established there and a TCP session is reset (RST to the client, see `reset.rs`).
//! 6. **End**: idle timeouts per protocol and TCP state; an ingress router that expires a
//!    session tells its peer with an authenticated control message (TLV 24 "delete session").
//!
//! # Byte cost on the WAN, per packet
//!
//! | security | packets with metadata | other packets |
//! |---|---|---|
//! | `none` | metadata block + 24-byte HMAC trailer | 0 |
//! | `authenticate` | metadata block + 24 | 24 (sequence + tag) |
//! | `encrypt` | metadata block + 24 + 24 | 24 (sequence + tag) |
//!
//! A forward metadata block for an IPv4 session is about 100–150 bytes (it carries names); it
//! rides only until the handshake completes — on TCP, the SYN and the SYN-ACK.
//!
//! # Limits of this version (stated, not hidden)
//!
//! IP fragments, IPv6 extension headers and ICMP errors are dropped and counted; TCP MSS is
//! clamped on SYNs of sessions with a per-packet trailer so full-sized segments still fit the
//! MTU; sessions opened from the service side (`direction: FromService`) are not routed yet.

mod drop;
pub mod ip;
pub mod offload;
mod reset;
mod tables;
#[doc(hidden)]
pub mod testbed;
mod view;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use signpost_proto::v1::{Direction as PolicyDirection, LoadBalancing, SecurityMode};

use crate::classify::{RuleId, ServiceId, TenantId};
use crate::guard::Guard;
use crate::packet::ip_protocol;
use crate::path::book::{PathBook, PathReport};
use crate::qos::Policer;
use crate::security::{self, ReplayWindow, SessionKey, TRAILER_LEN};
use crate::session::{
    Expired, FlowKey, Hit, Insert, Refused, SessionId, SessionTable, Side, allocate_waypoint,
};
use crate::svr::{self, Classified, ContextAddrs, ControlMessage, Metadata, SessionContext};

pub use drop::{Counters, DropReason};
pub use ip::PacketBuf;
pub use tables::{ConfigError, Lan, Peer, PeerPath, Route, Tables, Wan};
pub use view::{PathView, SessionView};

/// An interface of the router, by kind and index in the config's interface list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interface {
    Wan(u8),
    Lan(u8),
}

/// Where a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingress {
    pub interface: Interface,
    /// 802.1Q VLAN id of the frame, if tagged.
    pub vlan: Option<u16>,
}

/// Where a packet goes: the driver resolves `next_hop` to a link-layer address and tags `vlan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Egress {
    pub interface: Interface,
    pub vlan: Option<u16>,
    pub next_hop: IpAddr,
    /// The session's QoS class (index into `Tables::qos.classes`) on a WAN egress; 0 otherwise.
    pub class: u8,
}

/// What to do with a packet after [`Pipeline::handle`] (which rewrote it in place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Forward(Egress),
    /// For the router's own host stack (BFD, ping to the router, management).
    Local,
    /// A control message the pipeline acted on; nothing to send.
    Consumed,
    Drop(DropReason),
}

/// Settings that are not part of the config.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The WAN MTU; packets that metadata or trailers would push past it are dropped (counted).
    pub mtu: u16,
    /// Seeds the session index hash; random per process.
    pub hash_seed: u64,
    /// Seeds session UUIDs; random per process.
    pub uuid_seed: [u64; 2],
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mtu: 1500,
            hash_seed: 0x5157_0057,
            uuid_seed: [0x5157_0001, 0x5157_0002],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// This router classified the session's first packet and chose its path.
    Ingress,
    /// This router received the session from a peer and delivers it to the service.
    Egress,
}

/// What the pipeline keeps per session on top of the table's keys and timers.
///
/// `repr(C)`, what an established packet reads first: the table places the first 16 bytes
/// (through `rule`) in the cache lines that hold the session's keys (see
/// [`crate::session::Session`]).
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Svr {
    role: Role,
    /// Ingress: add forward metadata. Egress: add reverse metadata.
    metadata_tx: bool,
    wan: u8,
    lan: u8,
    security: SecurityMode,
    peer: u16,
    /// Ingress: index in the peer's paths.
    path: u16,
    /// LAN VLAN, 0 when untagged.
    vlan: u16,
    /// Read per packet (QoS class, rate limits), so among the first 16 bytes.
    rule: RuleId,
    service: ServiceId,
    security_id: u32,
    tx_seq: u64,
    replay: ReplayWindow,
    /// Only `authenticate` and `encrypt` sessions derive one (HKDF costs about a microsecond);
    /// boxed so that sessions without one do not carry its 32 bytes.
    key: Option<Box<SessionKey>>,
}

// Three cache lines per session (see `Session`); the memory target is 256 bytes per session.
const _: () = assert!(size_of::<Option<crate::session::Session<Svr>>>() <= 192);

/// A packet parsed and hashed ahead of handling, so that a batch's session lookups can be
/// fetched from memory together (see [`Pipeline::handle_batch`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prepared {
    parsed: Result<ip::Parsed, DropReason>,
    hash: u64,
}

/// `Svr::path` of an ingress session whose location was reported unhealthy: it is no path's
/// index, so the per-packet target check fails and the next forward packet moves the session
/// (`move_session`), with no extra test on the fast path.
const RELOCATE: u16 = u16::MAX - 1;

/// A path choice: the location's peer, the path, and whether it misses the SLA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Choice {
    peer: u16,
    path: u16,
    fallback: bool,
}

/// Orders locations in [`Pipeline::choose`]: SLA fallback last, then by the service's mode.
type Rank = (bool, u64, u64, u64, usize);

/// What [`Pipeline::move_session`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Moved {
    Moved,
    /// A TCP session whose location is gone: answer the client with a reset.
    Reset,
}

/// A control message waiting for [`Pipeline::poll_transmit`].
#[derive(Clone, Debug)]
struct ControlTx {
    wan_key: FlowKey,
    wan: u8,
    peer: u16,
    security_id: u32,
    /// The session's mode: an `encrypt` session's metadata packets carry two trailers.
    security: SecurityMode,
    uuid: [u8; 16],
    message: ControlMessage,
    seq: u64,
}

/// The router's packet pipeline. One per worker queue.
pub struct Pipeline {
    tables: Arc<Tables>,
    sessions: SessionTable<Svr>,
    counters: Counters,
    /// Path liveness and quality (from the path monitor) and the path each SLA class uses.
    paths: PathBook,
    peer_sessions: Vec<u32>,
    waypoint_cursor: u32,
    uuid_seed: [u64; 2],
    uuid_counter: u64,
    expired: Vec<Expired<Svr>>,
    transmits: VecDeque<ControlTx>,
    options: Options,
    /// Scratch for [`Pipeline::handle_batch`].
    batch: Vec<Prepared>,
    /// Admission: new-session rates, drops per tenant (`crate::guard`).
    guard: Guard,
    /// Rate limits per access rule (`crate::qos`).
    policer: Policer,
    /// What the in-kernel fast path must learn (`offload`).
    offload: offload::Offload,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn tenant_names(tables: &Tables) -> Vec<String> {
    (0..tables.classifier.tenant_count())
        .map(|t| {
            let id = TenantId(u16::try_from(t).unwrap_or(u16::MAX));
            tables.classifier.tenant_info(id).name.clone()
        })
        .collect()
}

fn refused(r: Refused) -> DropReason {
    match r {
        Refused::TableFull => DropReason::TableFull,
        Refused::TenantLimit => DropReason::TenantLimit,
        Refused::HalfOpenLimit => DropReason::HalfOpenLimit,
        Refused::TenantHalfOpenLimit => DropReason::TenantHalfOpenLimit,
        Refused::KeyInUse => DropReason::KeyInUse,
    }
}

fn context(key: &FlowKey) -> Result<SessionContext, DropReason> {
    let addrs = match (key.src(), key.dst()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => ContextAddrs::V4 { src, dst },
        (IpAddr::V6(src), IpAddr::V6(dst)) => ContextAddrs::V6 { src, dst },
        _ => return Err(DropReason::FamilyMismatch),
    };
    Ok(SessionContext {
        addrs,
        src_port: key.src_port(),
        dst_port: key.dst_port(),
        protocol: key.protocol(),
    })
}

fn context_key(ctx: &SessionContext) -> FlowKey {
    let (src, dst) = match ctx.addrs {
        ContextAddrs::V4 { src, dst } => (IpAddr::V4(src), IpAddr::V4(dst)),
        ContextAddrs::V6 { src, dst } => (IpAddr::V6(src), IpAddr::V6(dst)),
    };
    FlowKey::new(ctx.protocol, src, ctx.src_port, dst, ctx.dst_port)
}

fn mode_name(mode: SecurityMode) -> &'static str {
    match mode {
        SecurityMode::Encrypt => "encrypt",
        SecurityMode::Authenticate => "authenticate",
        _ => "none",
    }
}

/// A rule without a security mode is carried as `none` (metadata still authenticated).
fn effective(mode: SecurityMode) -> SecurityMode {
    match mode {
        SecurityMode::Unspecified => SecurityMode::None,
        mode => mode,
    }
}

fn crypto_dir(reply: bool) -> security::Direction {
    if reply {
        security::Direction::Reverse
    } else {
        security::Direction::Forward
    }
}

impl Pipeline {
    pub fn new(now: Instant, tables: Arc<Tables>, options: Options) -> Self {
        let sessions = SessionTable::new(now, tables.limits, tables.timeouts, options.hash_seed);
        let paths = PathBook::for_tables(&tables);
        let peer_sessions = vec![0; tables.peers.len()];
        let guard = Guard::new(now, &tables.guard, tenant_names(&tables), options.hash_seed);
        let policer = Policer::new(now, &tables.qos);
        Self {
            tables,
            sessions,
            counters: Counters::default(),
            paths,
            peer_sessions,
            waypoint_cursor: (options.hash_seed as u32) & 0xffff,
            uuid_seed: options.uuid_seed,
            uuid_counter: 0,
            expired: Vec::new(),
            transmits: VecDeque::new(),
            options,
            batch: Vec::new(),
            guard,
            policer,
            offload: offload::Offload::default(),
        }
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn sessions(&self) -> &SessionTable<Svr> {
        &self.sessions
    }

    /// Sizes the session table up front (benchmarks, routers with a known load).
    pub fn reserve(&mut self, sessions: usize) {
        self.sessions.reserve(sessions);
    }

    /// Marks a peer path up or down at once, without hold-down (an override; the path
    /// monitor reports through [`Pipeline::set_path_health`]). Sessions whose path is no
    /// longer their class's target move on their next forward packet.
    pub fn set_path_up(&mut self, peer: &str, path_id: &str, up: bool) -> bool {
        let Some(p) = self.tables.peer_named(peer) else {
            return false;
        };
        let Some(paths) = self.tables.peers.get(usize::from(p)) else {
            return false;
        };
        let Some(i) = paths.paths.iter().position(|x| x.id == path_id) else {
            return false;
        };
        let changed = self.paths.force(usize::from(p), i, up);
        if changed {
            self.offload.invalidate();
        }
        changed
    }

    /// Takes the path monitor's report (liveness and quality of every path) and re-evaluates
    /// path choices at `now`. A report made for other tables (a config change in between) is
    /// ignored: the next one will match. Never per packet: on change and on a timer.
    pub fn set_path_health(&mut self, now: Instant, report: &PathReport) -> bool {
        if !Arc::ptr_eq(&report.tables, &self.tables) {
            return false;
        }
        let locations_changed = report.apply(&mut self.paths);
        let targets = self
            .offload
            .is_enabled()
            .then(|| self.paths.targets().to_vec());
        self.paths.evaluate(now);
        if locations_changed {
            self.relocate_from_unhealthy_locations();
        }
        if locations_changed || targets.is_some_and(|t| t != self.paths.targets()) {
            self.offload.invalidate();
        }
        true
    }

    /// Ingress sessions whose location is now reported unhealthy move at their next forward
    /// packet (see [`RELOCATE`]). Runs when the reports change, never per packet.
    fn relocate_from_unhealthy_locations(&mut self) {
        let paths = &self.paths;
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.state.role == Role::Ingress && paths.location_down(s.state.service, s.state.peer)
            })
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            if let Some(s) = self.sessions.get_mut(id) {
                s.state.path = RELOCATE;
            }
        }
    }

    /// Path liveness, quality and choices as this pipeline uses them.
    pub fn path_book(&self) -> &PathBook {
        &self.paths
    }

    /// Where a new session of `service` under `rule` would go now: (peer index, path index,
    /// whether no path meets the SLA). For `explain`.
    pub fn path_choice(&self, service: ServiceId, rule: RuleId) -> Option<(u16, u16, bool)> {
        self.choose(service, rule)
            .map(|c| (c.peer, c.path, c.fallback))
    }

    /// Installs a new config. Live sessions are re-resolved by name; those the new config no
    /// longer allows (policy, tenant, service or peer gone) are closed at once.
    pub fn set_tables(&mut self, tables: Arc<Tables>) {
        let old = std::mem::replace(&mut self.tables, tables);
        let new = Arc::clone(&self.tables);
        self.offload.invalidate();
        self.sessions.set_limits(new.limits, new.timeouts);
        self.guard.configure(&new.guard, tenant_names(&new));
        self.policer = Policer::new(self.sessions.base(), &new.qos);
        self.paths = self.paths.carry_over(&old, &new);
        self.peer_sessions = vec![0; new.peers.len()];
        let ids: Vec<SessionId> = self.sessions.iter().map(|(id, _)| id).collect();
        for id in ids {
            let keep = self.sessions.get_mut(id).and_then(|s| {
                let tenant = old
                    .classifier
                    .tenant_info(crate::classify::TenantId(s.tenant()))
                    .name
                    .clone();
                let st = &mut s.state;
                let service = &old.classifier.service_info(st.service).name;
                let peer = old.peers.get(usize::from(st.peer))?;
                let t = new.classifier.tenant_named(&tenant)?;
                let svc = new.classifier.service_named(service)?;
                let rule = new.classifier.rule(t, svc)?;
                let new_peer = new.peer_named(&peer.name)?;
                if st.role == Role::Ingress && st.path != RELOCATE {
                    let path_id = &peer.paths.get(usize::from(st.path))?.id;
                    let np = new.peers.get(usize::from(new_peer))?;
                    st.path =
                        u16::try_from(np.paths.iter().position(|p| &p.id == path_id)?).ok()?;
                }
                if new.classifier.rule_info(rule).security != st.security {
                    return None;
                }
                st.service = svc;
                st.rule = rule;
                st.peer = new_peer;
                Some(new_peer)
            });
            match keep {
                Some(peer) => {
                    if let Some(n) = self.peer_sessions.get_mut(usize::from(peer)) {
                        *n += 1;
                    }
                }
                None => {
                    self.sessions.remove(id);
                    self.offload.removed(id);
                    self.counters.sessions_expired += 1;
                }
            }
        }
    }

    fn new_uuid(&mut self) -> [u8; 16] {
        self.uuid_counter += 1;
        let a = splitmix(self.uuid_seed[0] ^ self.uuid_counter);
        let b = splitmix(self.uuid_seed[1].wrapping_add(self.uuid_counter));
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&a.to_be_bytes());
        u[8..].copy_from_slice(&b.to_be_bytes());
        u[6] = (u[6] & 0x0f) | 0x40; // RFC 9562 version 4 layout
        u[8] = (u[8] & 0x3f) | 0x80;
        u
    }

    /// Processes one IP packet (`pkt` holds it, with tailroom), rewriting it in place.
    pub fn handle(&mut self, now: Instant, ingress: Ingress, pkt: &mut PacketBuf<'_>) -> Action {
        let prepared = self.prepare(pkt.data());
        self.handle_prepared(now, ingress, pkt, prepared)
    }

    /// Processes a batch of IP packets from one ingress, in order, exactly as [`Self::handle`]
    /// would one after the other, writing one action per packet to `actions` (cleared first).
    /// The batch's session lookups are started together — index buckets, then session slots —
    /// so that their cache misses overlap instead of following each other.
    pub fn handle_batch(
        &mut self,
        now: Instant,
        ingress: Ingress,
        pkts: &mut [PacketBuf<'_>],
        actions: &mut Vec<Action>,
    ) {
        let mut prepared = std::mem::take(&mut self.batch);
        prepared.clear();
        prepared.extend(pkts.iter().map(|pkt| self.prepare(pkt.data())));
        for p in &prepared {
            self.prefetch(p);
        }
        actions.clear();
        for (pkt, p) in pkts.iter_mut().zip(prepared.drain(..)) {
            actions.push(self.handle_prepared(now, ingress, pkt, p));
        }
        self.batch = prepared;
    }

    /// Batches, first stage: parses `packet` and starts fetching its index bucket.
    #[inline]
    pub(crate) fn prepare(&self, packet: &[u8]) -> Prepared {
        let parsed = ip::parse(packet);
        let hash = match &parsed {
            Ok(p) => {
                let hash = self.sessions.hash(&p.key);
                self.sessions.prefetch_index(hash);
                hash
            }
            Err(_) => 0,
        };
        Prepared { parsed, hash }
    }

    /// Batches, second stage, once the batch is prepared: starts fetching the session.
    #[inline]
    pub(crate) fn prefetch(&self, prepared: &Prepared) {
        if prepared.parsed.is_ok() {
            self.sessions.prefetch_session(prepared.hash);
        }
    }

    /// Batches, last stage: [`Self::handle`] for a packet [`Self::prepare`]d from these very
    /// bytes (unchanged since).
    pub(crate) fn handle_prepared(
        &mut self,
        now: Instant,
        ingress: Ingress,
        pkt: &mut PacketBuf<'_>,
        prepared: Prepared,
    ) -> Action {
        match self.process(now, ingress, pkt, prepared) {
            Ok(action) => {
                match action {
                    Action::Forward(Egress {
                        interface: Interface::Wan(_),
                        ..
                    }) => self.counters.to_wan += 1,
                    Action::Forward(Egress {
                        interface: Interface::Lan(_),
                        ..
                    }) => self.counters.to_lan += 1,
                    Action::Local => self.counters.local += 1,
                    _ => {}
                }
                action
            }
            Err(reason) => {
                self.counters.drop(reason);
                Action::Drop(reason)
            }
        }
    }

    fn process(
        &mut self,
        now: Instant,
        ingress: Ingress,
        pkt: &mut PacketBuf<'_>,
        prepared: Prepared,
    ) -> Result<Action, DropReason> {
        let p = prepared.parsed?;
        pkt.set_len(p.end);
        if let Some(hit) =
            self.sessions
                .lookup_hashed(&p.key, prepared.hash, now, &mut self.expired)
        {
            let action = self.established(now, ingress, pkt, p, hit);
            if action.is_ok() {
                self.offload.note(hit.id);
            }
            return action;
        }
        match ingress.interface {
            Interface::Lan(lan) => {
                if self.tables.lan_owns(p.dst()) || self.tables.wan_owning(p.dst()).is_some() {
                    return Ok(Action::Local);
                }
                crate::guard::may_open(pkt.data(), &p)?;
                let id = self.open_from_lan(now, lan, ingress.vlan, &p)?;
                self.established(
                    now,
                    ingress,
                    pkt,
                    p,
                    Hit {
                        id,
                        side: Side::Lan,
                        reply: false,
                    },
                )
            }
            Interface::Wan(wan) => {
                let Some(w) = self.tables.wans.get(usize::from(wan)) else {
                    return Err(DropReason::NotForwarded);
                };
                if !w.owns(p.dst()) {
                    return Err(DropReason::NotForwarded);
                }
                if crate::path::is_bfd(p.protocol, p.key.src_port(), p.key.dst_port()) {
                    // For the path monitor, also when a NAT's answer lands on a waypoint port.
                    return Ok(Action::Local);
                }
                let payload = pkt.data().get(p.payload..p.end).unwrap_or(&[]);
                if !w.is_waypoint_port(p.key.dst_port()) || !svr::starts_with_cookie(payload) {
                    if w.is_waypoint_port(p.key.dst_port()) && p.protocol != ip_protocol::ICMP {
                        return Err(DropReason::NoSession);
                    }
                    return Ok(Action::Local);
                }
                let Some(id) = self.open_from_wan(now, wan, pkt, &p)? else {
                    return Ok(Action::Consumed);
                };
                let action = self.established(
                    now,
                    ingress,
                    pkt,
                    p,
                    Hit {
                        id,
                        side: Side::Wan,
                        reply: false,
                    },
                );
                // A session re-bound to a new path must leave the kernel's entries of its old
                // one at once (the runtime decides it again); a new one is noted like any other.
                if action.is_ok() {
                    self.offload.note(id);
                }
                action
            }
        }
    }

    /// Chooses the location (peer) and path for a new session of `service` under `rule`: per
    /// location, the path book's target for the rule's SLA class (see [`crate::path::book`]);
    /// across locations, those whose target meets the SLA first, then the service's mode:
    /// failover by priority, least-loaded by live sessions, proximity by measured latency
    /// (configured cost while unmeasured).
    fn choose(&self, service: ServiceId, rule: RuleId) -> Option<Choice> {
        let mode = self.tables.classifier.service_info(service).load_balancing;
        let class = self.paths.class_of(rule);
        let mut best: Option<(Rank, Choice)> = None;
        for (order, route) in self.tables.routes_of(service).iter().enumerate() {
            if self.paths.location_down(service, route.peer) {
                continue;
            }
            let Some((path, fallback)) = self.paths.target(class, route.peer) else {
                continue;
            };
            let Some(cost) = self
                .tables
                .peers
                .get(usize::from(route.peer))
                .and_then(|p| p.paths.get(usize::from(path)))
                .map(|p| u64::from(p.cost))
            else {
                continue;
            };
            let priority = u64::from(route.priority);
            let rank = match mode {
                LoadBalancing::Failover => (fallback, priority, 0, 0, order),
                LoadBalancing::LeastLoaded => {
                    let load = self
                        .peer_sessions
                        .get(usize::from(route.peer))
                        .copied()
                        .unwrap_or(0);
                    (fallback, u64::from(load), priority, 0, order)
                }
                _ => {
                    let latency = self
                        .paths
                        .health_at(usize::from(route.peer), usize::from(path))
                        .and_then(|h| h.quality.latency_us)
                        .map_or(u64::MAX, u64::from);
                    (fallback, latency, cost, priority, order)
                }
            };
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((
                    rank,
                    Choice {
                        peer: route.peer,
                        path,
                        fallback,
                    },
                ));
            }
        }
        best.map(|(_, c)| c)
    }

    fn open_from_lan(
        &mut self,
        now: Instant,
        lan: u8,
        vlan: Option<u16>,
        p: &ip::Parsed,
    ) -> Result<SessionId, DropReason> {
        let c = &self.tables.classifier;
        let tenant = c
            .tenant(usize::from(lan), vlan, p.src())
            .ok_or(DropReason::NoTenant)?;
        let service = c
            .service(p.dst(), p.protocol, p.key.dst_port())
            .ok_or(DropReason::NoService)?;
        let rule = c
            .rule(tenant, service)
            .ok_or_else(|| self.guard.refuse(tenant, DropReason::NoPolicy))?;
        let info = c.rule_info(rule);
        if info.direction == PolicyDirection::FromService {
            return Err(self.guard.refuse(tenant, DropReason::Direction));
        }
        let security = effective(info.security);
        self.guard.admit(now, tenant, rule, p.src())?;
        let choice = self.choose(service, rule).ok_or(DropReason::NoPath)?;
        let (peer_ix, path_ix) = (choice.peer, choice.path);
        let tables = Arc::clone(&self.tables);
        let peer = tables
            .peers
            .get(usize::from(peer_ix))
            .ok_or(DropReason::NoPath)?;
        let path = peer
            .paths
            .get(usize::from(path_ix))
            .ok_or(DropReason::NoPath)?;
        let wan = tables.wans.get(path.wan).ok_or(DropReason::NoPath)?;
        let local = wan.address_for(path.remote).ok_or(DropReason::NoPath)?;
        if local.is_ipv4() != p.src().is_ipv4() {
            return Err(DropReason::FamilyMismatch);
        }
        let uuid = self.new_uuid();
        let wan_key = allocate_waypoint(
            &self.sessions,
            &mut self.waypoint_cursor,
            p.protocol,
            local,
            wan.ports,
            path.remote,
            path.remote_ports,
            64,
        )
        .ok_or(DropReason::WaypointsExhausted)?;
        let peer_key = peer.keys.current();
        let security_id = peer_key.security_id();
        let key =
            (security != SecurityMode::None).then(|| Box::new(SessionKey::derive(peer_key, &uuid)));
        let state = Svr {
            role: Role::Ingress,
            metadata_tx: true,
            security,
            peer: peer_ix,
            path: path_ix,
            wan: path.wan as u8,
            lan,
            vlan: vlan.unwrap_or(0),
            service,
            rule,
            security_id,
            tx_seq: 0,
            replay: ReplayWindow::new(),
            key,
        };
        let new = Insert {
            keys: [p.key, wan_key],
            uuid,
            index_uuid: false,
            tenant: tenant.0,
            state,
        };
        let id = self
            .sessions
            .insert(now, new)
            .map_err(|r| self.guard.refuse(tenant, refused(r)))?;
        if let Some(n) = self.peer_sessions.get_mut(usize::from(peer_ix)) {
            *n += 1;
        }
        self.counters.sessions_created += 1;
        if choice.fallback {
            self.counters.sessions_sla_fallback += 1;
        }
        Ok(id)
    }

    /// A WAN packet with metadata and no session: a new session from a peer, or a known session
    /// (by UUID) arriving on a new path; `None` for a control message about a session this
    /// router no longer has (both ends closed it; the peer's "delete session" came second).
    fn open_from_wan(
        &mut self,
        now: Instant,
        wan: u8,
        pkt: &PacketBuf<'_>,
        p: &ip::Parsed,
    ) -> Result<Option<SessionId>, DropReason> {
        let payload = pkt
            .data()
            .get(p.payload..p.end)
            .ok_or(DropReason::Malformed)?;
        let (meta, meta_len) = match svr::classify(payload).map_err(|_| DropReason::BadMetadata)? {
            Classified::Metadata(view) => (
                Metadata::parse(&view).map_err(|_| DropReason::BadMetadata)?,
                view.total_len(),
            ),
            _ => return Err(DropReason::NoSession),
        };
        let source = meta
            .source_router
            .as_deref()
            .ok_or(DropReason::BadMetadata)?;
        let peer_ix = self
            .tables
            .peer_named(source)
            .ok_or(DropReason::UnknownPeer)?;
        let peer = self
            .tables
            .peers
            .get(usize::from(peer_ix))
            .ok_or(DropReason::UnknownPeer)?;
        let security_id = meta.security_id.ok_or(DropReason::BadMetadata)?;
        let peer_key = peer.keys.get(security_id).ok_or(DropReason::UnknownKey)?;
        security::open_metadata_packet(peer_key, security::Direction::Forward, payload, meta_len)
            .map_err(|_| DropReason::AuthFailed)?;
        let uuid = meta.session_uuid.ok_or(DropReason::BadMetadata)?;
        if let Some(id) = self.sessions.by_uuid(&uuid) {
            // The same session on a new path: re-bind its WAN side to the 5-tuple it came on.
            let same_peer = self
                .sessions
                .get(id)
                .is_some_and(|s| s.state.peer == peer_ix && s.state.role == Role::Egress);
            if !same_peer {
                return Err(DropReason::AuthFailed);
            }
            self.sessions.rebind_wan(id, p.key).map_err(refused)?;
            if let Some(s) = self.sessions.get_mut(id) {
                s.state.wan = wan;
                s.state.metadata_tx = true;
            }
            self.counters.sessions_rebound += 1;
            return Ok(Some(id));
        }
        if meta.control_message.is_some() {
            return Ok(None);
        }
        let c = &self.tables.classifier;
        let tenant = c
            .tenant_named(meta.tenant.as_deref().ok_or(DropReason::BadMetadata)?)
            .ok_or(DropReason::NoTenant)?;
        let service = c
            .service_named(meta.service.as_deref().ok_or(DropReason::BadMetadata)?)
            .ok_or(DropReason::NoService)?;
        let rule = c
            .rule(tenant, service)
            .ok_or_else(|| self.guard.refuse(tenant, DropReason::NoPolicy))?;
        let info = c.rule_info(rule);
        if info.direction == PolicyDirection::FromService {
            return Err(self.guard.refuse(tenant, DropReason::Direction));
        }
        let security = effective(info.security);
        if meta.payload_encrypted != (security == SecurityMode::Encrypt) {
            return Err(DropReason::BadMetadata);
        }
        let original = context_key(&meta.forward_context.ok_or(DropReason::BadMetadata)?);
        if original.protocol() != p.protocol || original.src().is_ipv4() != p.src().is_ipv4() {
            return Err(DropReason::BadMetadata);
        }
        // Delivered to the original destination (a breakout) or not, it must be the named
        // service's: not a host of another service this router fronts, nor a nested service.
        c.check_destination(
            service,
            original.dst(),
            original.protocol(),
            original.dst_port(),
        )
        .map_err(|_| self.guard.refuse(tenant, DropReason::ServiceMismatch))?;
        self.guard.admit(now, tenant, rule, original.src())?;
        let addrs = self
            .tables
            .fronted_addresses(service)
            .ok_or(DropReason::NotALocation)?;
        let dst = match addrs.len() {
            0 => original.dst(),
            n => addrs
                .get(usize::from(uuid[15]) % n)
                .copied()
                .unwrap_or(original.dst()),
        };
        if dst.is_ipv4() != original.src().is_ipv4() {
            return Err(DropReason::FamilyMismatch);
        }
        let route = c.lan_route(dst).ok_or(DropReason::NoRoute)?;
        let lan_key = FlowKey::new(
            original.protocol(),
            original.src(),
            original.src_port(),
            dst,
            original.dst_port(),
        );
        let state = Svr {
            role: Role::Egress,
            metadata_tx: true,
            security,
            peer: peer_ix,
            path: u16::MAX,
            wan,
            lan: route.lan as u8,
            vlan: route.vlan.unwrap_or(0),
            service,
            rule,
            security_id,
            tx_seq: 0,
            replay: ReplayWindow::new(),
            key: (security != SecurityMode::None)
                .then(|| Box::new(SessionKey::derive(peer_key, &uuid))),
        };
        let new = Insert {
            keys: [lan_key, p.key],
            uuid,
            index_uuid: true,
            tenant: tenant.0,
            state,
        };
        let id = self
            .sessions
            .insert(now, new)
            .map_err(|r| self.guard.refuse(tenant, refused(r)))?;
        if let Some(n) = self.peer_sessions.get_mut(usize::from(peer_ix)) {
            *n += 1;
        }
        self.counters.sessions_created += 1;
        Ok(Some(id))
    }

    /// Moves an ingress session whose path is no longer its class's target: to the new target
    /// on the same peer (new waypoint 5-tuple, metadata again, the peer re-binds by UUID); when
    /// no path to its peer is up but another location of the service is reachable, a UDP or
    /// ICMP session is re-established there (same UUID, keys of the new peer: a new session
    /// for that router) and a TCP session is reset (the other location's server does not know
    /// the connection). `Err` when no allowed path is up anywhere: the packet is dropped and
    /// the session waits.
    fn move_session(&mut self, id: SessionId) -> Result<Moved, DropReason> {
        let (service, rule, protocol, peer_now) = {
            let s = self.sessions.get(id).ok_or(DropReason::NoSession)?;
            let st = &s.state;
            (st.service, st.rule, s.key(Side::Lan).protocol(), st.peer)
        };
        let class = self.paths.class_of(rule);
        let here = self
            .paths
            .target(class, peer_now)
            .filter(|_| !self.paths.location_down(service, peer_now));
        let (peer_ix, path_ix) = match here {
            Some((path, _)) => (peer_now, path),
            None => {
                let choice = self.choose(service, rule).ok_or(DropReason::NoPath)?;
                if protocol == ip_protocol::TCP {
                    return Ok(Moved::Reset);
                }
                (choice.peer, choice.path)
            }
        };
        let peer = self
            .tables
            .peers
            .get(usize::from(peer_ix))
            .ok_or(DropReason::NoPath)?;
        let path = peer
            .paths
            .get(usize::from(path_ix))
            .ok_or(DropReason::NoPath)?;
        let wan = self.tables.wans.get(path.wan).ok_or(DropReason::NoPath)?;
        let local = wan.address_for(path.remote).ok_or(DropReason::NoPath)?;
        let key = allocate_waypoint(
            &self.sessions,
            &mut self.waypoint_cursor,
            protocol,
            local,
            wan.ports,
            path.remote,
            path.remote_ports,
            64,
        )
        .ok_or(DropReason::WaypointsExhausted)?;
        let relocated = peer_ix != peer_now;
        let peer_key = peer.keys.current();
        self.sessions.rebind_wan(id, key).map_err(refused)?;
        if let Some(s) = self.sessions.get_mut(id) {
            let uuid = *s.uuid();
            let st = &mut s.state;
            st.path = path_ix;
            st.wan = path.wan as u8;
            st.metadata_tx = true;
            if relocated {
                // A new session for the other router: its key, its sequence numbers.
                st.peer = peer_ix;
                st.security_id = peer_key.security_id();
                st.key = (st.security != SecurityMode::None)
                    .then(|| Box::new(SessionKey::derive(peer_key, &uuid)));
                st.replay = ReplayWindow::new();
            }
        }
        if relocated {
            if let Some(n) = self.peer_sessions.get_mut(usize::from(peer_now)) {
                *n = n.saturating_sub(1);
            }
            if let Some(n) = self.peer_sessions.get_mut(usize::from(peer_ix)) {
                *n += 1;
            }
            self.counters.sessions_relocated += 1;
        } else {
            self.counters.sessions_rebound += 1;
        }
        Ok(Moved::Moved)
    }

    fn established(
        &mut self,
        now: Instant,
        ingress: Ingress,
        pkt: &mut PacketBuf<'_>,
        p: ip::Parsed,
        hit: Hit,
    ) -> Result<Action, DropReason> {
        match (hit.side, ingress.interface) {
            (Side::Lan, Interface::Lan(_)) => self.lan_to_wan(now, pkt, p, hit),
            (Side::Wan, Interface::Wan(wan)) => self.wan_to_lan(now, wan, pkt, p, hit),
            // A LAN 5-tuple arriving from a WAN (or the reverse) is spoofed or misrouted.
            _ => Err(DropReason::NotForwarded),
        }
    }

    fn lan_to_wan(
        &mut self,
        now: Instant,
        pkt: &mut PacketBuf<'_>,
        p: ip::Parsed,
        hit: Hit,
    ) -> Result<Action, DropReason> {
        let (role, path, rule, tenant) = {
            let s = self.sessions.get(hit.id).ok_or(DropReason::NoSession)?;
            (
                s.state.role,
                (s.state.peer, s.state.path),
                s.state.rule,
                s.tenant(),
            )
        };
        if !self.policer.admit(now, usize::from(rule.0), p.end) {
            return Err(self.guard.refuse(TenantId(tenant), DropReason::RateLimited));
        }
        if role == Role::Ingress
            && !hit.reply
            && !self
                .paths
                .is_target(self.paths.class_of(rule), path.0, path.1)
            && self.move_session(hit.id)? == Moved::Reset
        {
            return self.reset_to_client(hit.id, pkt, &p);
        }
        ip::decrement_ttl(pkt.data_mut(), &p)?;
        let tables = &*self.tables;
        let s = self.sessions.get_mut(hit.id).ok_or(DropReason::NoSession)?;
        let wan_key = *s.key(Side::Wan);
        let lan_key = *s.key(Side::Lan);
        let tenant = crate::classify::TenantId(s.tenant());
        let target = if hit.reply {
            wan_key.reversed()
        } else {
            wan_key
        };
        let (st, uuid) = s.state_and_uuid();
        let trailer_mode =
            st.security != SecurityMode::None && st.security != SecurityMode::Unspecified;
        if trailer_mode && p.tcp.is_some_and(|t| t.syn) {
            let ip_header = if p.v6 { 40 } else { 20 };
            let mss = self
                .options
                .mtu
                .saturating_sub(ip_header + 20 + TRAILER_LEN as u16);
            ip::clamp_mss(pkt.data_mut(), &p, mss);
        }
        let dir = crypto_dir(hit.reply);
        let mut changed = false;
        if st.metadata_tx {
            let peer = tables
                .peers
                .get(usize::from(st.peer))
                .ok_or(DropReason::UnknownPeer)?;
            let peer_key = peer
                .keys
                .get(st.security_id)
                .ok_or(DropReason::UnknownKey)?;
            let meta = if st.role == Role::Ingress && !hit.reply {
                let c = &tables.classifier;
                Metadata {
                    security_id: Some(st.security_id),
                    forward_context: Some(context(&lan_key)?),
                    session_uuid: Some(*uuid),
                    tenant: Some(c.tenant_info(tenant).name.clone()),
                    service: Some(c.service_info(st.service).name.clone()),
                    payload_encrypted: st.security == SecurityMode::Encrypt,
                    source_router: Some(tables.router.clone()),
                    destination_router: Some(peer.name.clone()),
                    security_policy: Some(mode_name(st.security).to_string()),
                    peer_pathway_id: peer.paths.get(usize::from(st.path)).map(|x| x.id.clone()),
                    ..Metadata::default()
                }
            } else {
                Metadata {
                    security_id: Some(st.security_id),
                    reverse_context: Some(context(&lan_key.reversed())?),
                    session_uuid: Some(*uuid),
                    source_router: Some(tables.router.clone()),
                    disable_forward_metadata: true,
                    ..Metadata::default()
                }
            };
            let m = meta.buffer_len();
            ip::insert_gap(pkt, p.payload, m)?;
            let block = pkt
                .raw()
                .get_mut(p.payload..p.payload + m)
                .ok_or(DropReason::NoRoom)?;
            meta.emit(block).map_err(|_| DropReason::NoRoom)?;
            st.tx_seq += 1;
            let len = pkt.len() - p.payload;
            let l4 = pkt.raw().get_mut(p.payload..).ok_or(DropReason::NoRoom)?;
            let len = match (&st.key, st.security) {
                (Some(key), SecurityMode::Encrypt) => security::seal_session_metadata_packet(
                    peer_key,
                    key,
                    st.security,
                    dir,
                    st.tx_seq,
                    l4,
                    len,
                    m,
                ),
                _ => security::seal_metadata_packet(peer_key, dir, st.tx_seq, l4, len, m),
            }
            .map_err(|_| DropReason::NoRoom)?;
            pkt.set_len(p.payload + len);
            self.counters.metadata_sent += 1;
            changed = true;
        } else if trailer_mode {
            st.tx_seq += 1;
            let len = pkt.len();
            let key = st.key.as_ref().ok_or(DropReason::NoRoom)?;
            let new_len =
                security::seal_payload(key, st.security, dir, st.tx_seq, pkt.raw(), p.payload, len)
                    .map_err(|_| DropReason::NoRoom)?;
            pkt.set_len(new_len);
            changed = true;
        }
        if !st.metadata_tx && svr::starts_with_cookie(pkt.data().get(p.payload..).unwrap_or(&[])) {
            // An ordinary payload that begins with the cookie, as it goes on the wire (sealed,
            // in trailer modes): mark it so the peer does not take it for metadata. The mark is
            // outside the trailer; adding or removing one cannot change what is delivered.
            ip::insert_gap(pkt, p.payload, svr::FALSE_POSITIVE_MARKER.len())?;
            if let Some(b) = pkt
                .raw()
                .get_mut(p.payload..p.payload + svr::FALSE_POSITIVE_MARKER.len())
            {
                b.copy_from_slice(&svr::FALSE_POSITIVE_MARKER);
            }
            changed = true;
        }
        if pkt.len() > usize::from(self.options.mtu) {
            return Err(DropReason::ExceedsMtu);
        }
        if changed {
            ip::set_tuple(pkt.raw(), &p, &target)?;
            let end = pkt.len();
            ip::refill(pkt.raw(), &p, end)?;
        } else {
            ip::nat(pkt.raw(), &p, &target)?;
        }
        let wan = tables
            .wans
            .get(usize::from(st.wan))
            .ok_or(DropReason::NoPath)?;
        let next_hop = wan.gateway.unwrap_or_else(|| target.dst());
        let (class, dscp) = tables.qos.rule_class(usize::from(st.rule.0));
        crate::qos::dscp::mark(pkt.data_mut(), dscp);
        let egress = Egress {
            interface: Interface::Wan(st.wan),
            vlan: None,
            next_hop,
            class,
        };
        let bytes = p.end;
        self.sessions.touch(hit.id, now, hit.reply, bytes, p.tcp);
        Ok(Action::Forward(egress))
    }

    fn wan_to_lan(
        &mut self,
        now: Instant,
        wan: u8,
        pkt: &mut PacketBuf<'_>,
        p: ip::Parsed,
        hit: Hit,
    ) -> Result<Action, DropReason> {
        let tables = &*self.tables;
        let s = self.sessions.get_mut(hit.id).ok_or(DropReason::NoSession)?;
        let lan_key = *s.key(Side::Lan);
        let target = if hit.reply {
            lan_key.reversed()
        } else {
            lan_key
        };
        let st = &mut s.state;
        let dir = crypto_dir(hit.reply);
        let trailer_mode =
            st.security != SecurityMode::None && st.security != SecurityMode::Unspecified;
        let mut changed = false;
        let mut control = None;
        let l4_len = pkt.len().saturating_sub(p.payload);
        let payload = pkt.data().get(p.payload..).unwrap_or(&[]);
        match svr::classify(payload).map_err(|_| DropReason::BadMetadata)? {
            Classified::Metadata(view) => {
                let meta = Metadata::parse(&view).map_err(|_| DropReason::BadMetadata)?;
                let m = view.total_len();
                let security_id = meta.security_id.unwrap_or(st.security_id);
                let peer = tables
                    .peers
                    .get(usize::from(st.peer))
                    .ok_or(DropReason::UnknownPeer)?;
                let peer_key = peer.keys.get(security_id).ok_or(DropReason::UnknownKey)?;
                let opened = security::open_metadata_packet(peer_key, dir, payload, m)
                    .map_err(|_| DropReason::AuthFailed)?;
                st.replay
                    .check(opened.seq)
                    .map_err(|_| DropReason::Replayed)?;
                st.replay.accept(opened.seq);
                let end = pkt.len();
                let l4 = pkt
                    .raw()
                    .get_mut(p.payload..end)
                    .ok_or(DropReason::Malformed)?;
                let inner = match (&st.key, st.security) {
                    (Some(key), SecurityMode::Encrypt) => {
                        security::open_session_metadata_payload(
                            key,
                            st.security,
                            dir,
                            l4,
                            m,
                            opened,
                        )
                        .map_err(|_| DropReason::AuthFailed)?
                        .payload_len
                    }
                    (None, SecurityMode::Encrypt) => return Err(DropReason::AuthFailed),
                    _ => opened.payload_len,
                };
                // Keep only the original payload: drop the metadata block and the trailers.
                ip::remove_range(pkt, p.payload, m)?;
                pkt.set_len(p.payload + inner);
                self.counters.metadata_received += 1;
                if st.role == Role::Ingress
                    && (meta.disable_forward_metadata || meta.reverse_context.is_some())
                {
                    st.metadata_tx = false;
                }
                if st.role == Role::Egress
                    && !hit.reply
                    && !st.metadata_tx
                    && meta.forward_context.is_some()
                {
                    // The ingress still sends forward metadata: it has not seen our reverse
                    // metadata yet, so answer with it again.
                    st.metadata_tx = true;
                }
                control = meta.control_message;
                changed = true;
            }
            marked @ (Classified::FalsePositiveMarker { .. } | Classified::Ordinary) => {
                if matches!(marked, Classified::FalsePositiveMarker { .. }) {
                    // The data (sealed, in trailer modes) began with the cookie: strip the mark.
                    ip::remove_range(pkt, p.payload, svr::FALSE_POSITIVE_MARKER.len())?;
                    changed = true;
                }
                if trailer_mode {
                    let len = pkt.len();
                    let key = st.key.as_ref().ok_or(DropReason::AuthFailed)?;
                    let o =
                        security::open_payload(key, st.security, dir, pkt.raw(), p.payload, len)
                            .map_err(|_| DropReason::AuthFailed)?;
                    st.replay.check(o.seq).map_err(|_| DropReason::Replayed)?;
                    st.replay.accept(o.seq);
                    pkt.set_len(p.payload + o.payload_len);
                    changed = true;
                } else if l4_len > 0 || p.tcp.is_some() {
                    // Plain NAT.
                }
                if st.role == Role::Egress && !hit.reply {
                    // A forward packet without metadata: the ingress saw our reverse metadata.
                    st.metadata_tx = false;
                }
            }
        }
        if st.role == Role::Egress {
            st.wan = wan;
        }
        let (lan, vlan) = (st.lan, st.vlan);
        match control {
            Some(ControlMessage::DeleteSession) => {
                self.remove_session(hit.id, false);
                self.counters.sessions_closed_by_peer += 1;
                return Ok(Action::Consumed);
            }
            Some(ControlMessage::EnableMetadata) => {
                st.metadata_tx = true;
                return Ok(Action::Consumed);
            }
            Some(ControlMessage::DisableMetadata) => {
                st.metadata_tx = false;
                return Ok(Action::Consumed);
            }
            Some(_) => {
                self.sessions.touch(hit.id, now, hit.reply, 0, None);
                return Ok(Action::Consumed);
            }
            None => {}
        }
        if trailer_mode && p.tcp.is_some_and(|t| t.syn) {
            let ip_header = if p.v6 { 40 } else { 20 };
            let mss = self
                .options
                .mtu
                .saturating_sub(ip_header + 20 + TRAILER_LEN as u16);
            ip::clamp_mss(pkt.data_mut(), &p, mss);
        }
        ip::decrement_ttl(pkt.data_mut(), &p)?;
        if changed {
            ip::set_tuple(pkt.raw(), &p, &target)?;
            let end = pkt.len();
            ip::refill(pkt.raw(), &p, end)?;
        } else {
            ip::nat(pkt.raw(), &p, &target)?;
        }
        let egress = Egress {
            interface: Interface::Lan(lan),
            vlan: (vlan != 0).then_some(vlan),
            next_hop: target.dst(),
            class: 0,
        };
        self.sessions.touch(hit.id, now, hit.reply, p.end, p.tcp);
        Ok(Action::Forward(egress))
    }

    fn remove_session(&mut self, id: SessionId, notify: bool) {
        if let Some(gone) = self.sessions.remove(id) {
            self.retire(gone, notify);
        }
    }

    fn retire(&mut self, gone: Expired<Svr>, notify: bool) {
        self.offload.removed(gone.id);
        let st = &gone.state;
        if let Some(n) = self.peer_sessions.get_mut(usize::from(st.peer)) {
            *n = n.saturating_sub(1);
        }
        let protocol = gone.keys[0].protocol();
        if notify
            && st.role == Role::Ingress
            && protocol != ip_protocol::ICMP
            && protocol != ip_protocol::ICMPV6
        {
            self.transmits.push_back(ControlTx {
                wan_key: gone.keys[1],
                wan: st.wan,
                peer: st.peer,
                security_id: st.security_id,
                security: st.security,
                uuid: gone.uuid,
                message: ControlMessage::DeleteSession,
                seq: st.tx_seq + 1,
            });
        }
    }

    /// Expires idle sessions: visits up to `budget` table slots. Call once per batch.
    pub fn poll_timers(&mut self, now: Instant, budget: usize) {
        let mut expired = std::mem::take(&mut self.expired);
        self.sessions.sweep(now, budget, &mut expired);
        for gone in expired.drain(..) {
            self.counters.sessions_expired += 1;
            self.retire(gone, true);
        }
        self.expired = expired;
    }

    /// The next control packet to send (an IP packet written into `buf`), if any.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(Egress, usize)> {
        while let Some(tx) = self.transmits.pop_front() {
            if let Some(out) = self.build_control(&tx, buf) {
                return Some(out);
            }
        }
        None
    }

    fn build_control(&self, tx: &ControlTx, buf: &mut [u8]) -> Option<(Egress, usize)> {
        let peer = self.tables.peers.get(usize::from(tx.peer))?;
        let key = peer.keys.get(tx.security_id)?;
        let wan = self.tables.wans.get(usize::from(tx.wan))?;
        let meta = Metadata {
            security_id: Some(tx.security_id),
            session_uuid: Some(tx.uuid),
            source_router: Some(self.tables.router.clone()),
            control_message: Some(tx.message),
            ..Metadata::default()
        };
        let k = tx.wan_key;
        let ip_len = if k.src().is_ipv4() { 20 } else { 40 };
        let l4_header = if k.protocol() == ip_protocol::TCP {
            20
        } else {
            8
        };
        let m = meta.buffer_len();
        let total = ip_len + l4_header + m + security::overhead(tx.security, true);
        let out = buf.get_mut(..total)?;
        out.fill(0);
        match (k.src(), k.dst()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut ip = crate::packet::Ipv4Packet::new_unchecked(&mut *out);
                ip.set_version_and_header_len(20);
                ip.set_ttl(64);
                ip.set_protocol(k.protocol());
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ip = crate::packet::Ipv6Packet::new_unchecked(&mut *out);
                ip.set_version();
                ip.set_hop_limit(64);
                ip.set_next_header(k.protocol());
                ip.set_src_addr(s);
                ip.set_dst_addr(d);
            }
            _ => return None,
        }
        if k.protocol() == ip_protocol::TCP {
            let mut seg = crate::packet::TcpSegment::new_unchecked(out.get_mut(ip_len..)?);
            seg.set_header_len(20);
            seg.set_flags(0x10);
        }
        let l4 = out.get_mut(ip_len + l4_header..)?;
        meta.emit(l4).ok()?;
        // Sealed as every metadata packet of the session is, so that the peer opens it with
        // the same steps: in `encrypt` the (empty) payload gets the session AEAD trailer too.
        let session_key = SessionKey::derive(key, &tx.uuid);
        let sealed = security::seal_session_metadata_packet(
            key,
            &session_key,
            tx.security,
            security::Direction::Forward,
            tx.seq,
            l4,
            m,
            m,
        )
        .ok()?;
        let total = ip_len + l4_header + sealed;
        let p = ip::Parsed {
            v6: !k.src().is_ipv4(),
            protocol: k.protocol(),
            l4: ip_len,
            payload: ip_len + l4_header,
            end: total,
            key: k,
            tcp: None,
        };
        ip::set_tuple(out, &p, &k).ok()?;
        ip::refill(out, &p, total).ok()?;
        let next_hop = wan.gateway.unwrap_or(k.dst());
        Some((
            Egress {
                interface: Interface::Wan(tx.wan),
                vlan: None,
                next_hop,
                class: 0,
            },
            total,
        ))
    }
}

#[cfg(test)]
mod tests;
