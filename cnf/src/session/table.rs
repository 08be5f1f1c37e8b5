//! The slab of sessions and its two indexes (by key, by session UUID).

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use super::index::{FlowIndex, prefetch, with_huge_pages};
use super::key::{FlowHasher, FlowKey};
use super::tcp::{Segment, TcpState};
use crate::packet::ip_protocol;

/// A session's slot in the table. Valid until that session is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u32);

/// Which of a session's two keys a packet matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Side {
    Lan = 0,
    Wan = 1,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lan => Side::Wan,
            Side::Wan => Side::Lan,
        }
    }
}

/// A lookup result: the session, the key it matched, and whether the packet travels
/// responder → initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub id: SessionId,
    pub side: Side,
    pub reply: bool,
}

/// Idle timeouts. Defaults follow common stateful-firewall practice, shortened where a store
/// router under attack needs room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_established: Duration,
    pub tcp_half_open: Duration,
    pub tcp_closing: Duration,
    pub tcp_closed: Duration,
    /// UDP before any reply was seen.
    pub udp_unreplied: Duration,
    pub udp: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_established: Duration::from_secs(3600),
            // Short: a SYN flood's entries leave quickly, and a retransmitted SYN (1 s, 3 s, ...)
            // refreshes its own session.
            tcp_half_open: Duration::from_secs(5),
            tcp_closing: Duration::from_secs(60),
            tcp_closed: Duration::from_secs(5),
            udp_unreplied: Duration::from_secs(30),
            udp: Duration::from_secs(120),
            icmp: Duration::from_secs(30),
        }
    }
}

/// [`Timeouts`] in the table's milliseconds, converted once (not per packet).
#[derive(Clone, Copy, Debug)]
struct TimeoutsMs {
    tcp_established: u64,
    tcp_half_open: u64,
    tcp_closing: u64,
    tcp_closed: u64,
    udp_unreplied: u64,
    udp: u64,
    icmp: u64,
}

impl From<&Timeouts> for TimeoutsMs {
    fn from(t: &Timeouts) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            tcp_established: ms(t.tcp_established),
            tcp_half_open: ms(t.tcp_half_open),
            tcp_closing: ms(t.tcp_closing),
            tcp_closed: ms(t.tcp_closed),
            udp_unreplied: ms(t.udp_unreplied),
            udp: ms(t.udp),
            icmp: ms(t.icmp),
        }
    }
}

/// Limits on what the table holds. Zero means "no limit" for the per-tenant and half-open
/// limits; `max_sessions` is always enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimits {
    pub max_sessions: u32,
    pub max_per_tenant: u32,
    pub max_half_open: u32,
    /// Half-open TCP sessions one tenant may hold, so that one tenant's SYN flood cannot take
    /// the half-open budget of the others.
    pub max_half_open_per_tenant: u32,
}

impl Default for TableLimits {
    fn default() -> Self {
        Self {
            max_sessions: 1 << 20,
            max_per_tenant: 0,
            max_half_open: 0,
            max_half_open_per_tenant: 0,
        }
    }
}

/// Why a session was not created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The table holds `max_sessions`.
    TableFull,
    /// The tenant holds its share.
    TenantLimit,
    /// Too many TCP sessions are waiting for their handshake.
    HalfOpenLimit,
    /// The tenant holds its share of half-open TCP sessions.
    TenantHalfOpenLimit,
    /// One of the keys already belongs to a live session.
    KeyInUse,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refused::TableFull => "session table full (limits.maxSessions)",
            Refused::TenantLimit => "tenant session limit reached (limits.maxSessionsPerTenant)",
            Refused::HalfOpenLimit => "half-open TCP session limit reached (limits.maxHalfOpen)",
            Refused::TenantHalfOpenLimit => {
                "the tenant's half-open TCP session limit reached (limits.maxHalfOpenPerTenant)"
            }
            Refused::KeyInUse => "5-tuple already belongs to another session",
        })
    }
}

/// What a new session starts with.
#[derive(Clone, Debug)]
pub struct Insert<S> {
    /// LAN key then WAN key, both initiator → responder.
    pub keys: [FlowKey; 2],
    pub uuid: [u8; 16],
    /// Index it by UUID too (sessions a peer may re-bind: the ones this router terminates).
    pub index_uuid: bool,
    pub tenant: u16,
    pub state: S,
}

/// One session.
///
/// The layout is fixed (`repr(C)`, 64-byte aligned) for the fast path: what a packet of an
/// established session needs — both keys (the one it matched and the one it is rewritten to),
/// the idle timer, byte counts, TCP state, and the first 16 bytes of the pipeline's `state` —
/// fills the slot's first two cache lines (bytes 0..128); the UUID and the rest of `state`
/// follow in the third. A slot is 192 bytes when `state` is at most 64 bytes.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Session<S> {
    keys: [FlowKey; 2],
    tenant: u16,
    tcp: TcpState,
    replied: bool,
    last_seen_ms: u64,
    /// Bytes seen initiator → responder and back (IP packet lengths as received).
    bytes: [u64; 2],
    uuid_indexed: bool,
    /// Starts at byte 112 when `S` is 8-byte aligned: its first 16 bytes share the keys' lines.
    pub state: S,
    uuid: [u8; 16],
}

impl<S> Session<S> {
    pub fn key(&self, side: Side) -> &FlowKey {
        &self.keys[side as usize]
    }

    pub fn uuid(&self) -> &[u8; 16] {
        &self.uuid
    }

    /// The pipeline's state beside the UUID, which lies in another cache line than the fast
    /// path's fields: read it only when needed.
    pub fn state_and_uuid(&mut self) -> (&mut S, &[u8; 16]) {
        (&mut self.state, &self.uuid)
    }

    pub fn tenant(&self) -> u16 {
        self.tenant
    }

    pub fn tcp_state(&self) -> TcpState {
        self.tcp
    }

    /// Has the responder ever answered?
    pub fn replied(&self) -> bool {
        self.replied
    }

    /// Bytes initiator → responder and responder → initiator.
    pub fn bytes(&self) -> [u64; 2] {
        self.bytes
    }

    /// Milliseconds since the table's base instant when the session last saw a packet.
    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms
    }

    fn protocol(&self) -> u8 {
        self.keys[0].protocol()
    }

    fn idle_timeout_ms(&self, t: &TimeoutsMs) -> u64 {
        match self.protocol() {
            ip_protocol::TCP => match self.tcp {
                TcpState::SynSent | TcpState::SynReceived => t.tcp_half_open,
                TcpState::Established => t.tcp_established,
                TcpState::FinWait | TcpState::Closing => t.tcp_closing,
                TcpState::Closed => t.tcp_closed,
            },
            ip_protocol::UDP if self.replied => t.udp,
            ip_protocol::UDP => t.udp_unreplied,
            _ => t.icmp,
        }
    }

    fn expired(&self, now_ms: u64, t: &TimeoutsMs) -> bool {
        now_ms.saturating_sub(self.last_seen_ms) >= self.idle_timeout_ms(t)
    }

    fn half_open(&self) -> bool {
        self.protocol() == ip_protocol::TCP && self.tcp.is_half_open()
    }
}

/// A session that timed out, handed back so the pipeline can tell its peer.
#[derive(Clone, Debug)]
pub struct Expired<S> {
    /// The slot it held (free again, and reusable, from now on).
    pub id: SessionId,
    pub keys: [FlowKey; 2],
    pub uuid: [u8; 16],
    pub state: S,
}

/// The table. See the module docs.
#[derive(Debug)]
pub struct SessionTable<S> {
    slots: Vec<Option<Session<S>>>,
    free: Vec<u32>,
    /// `slot << 1 | side`, hashed alike in both orientations of a key.
    by_key: FlowIndex,
    by_uuid: HashTable<u32>,
    flow_hasher: FlowHasher,
    hasher: FixedState,
    base: Instant,
    /// The last `now` seen and its milliseconds since `base`: drivers pass one `now` per batch,
    /// so the conversion is done once per batch, not twice per packet.
    clock: (Instant, u64),
    timeouts: Timeouts,
    timeouts_ms: TimeoutsMs,
    limits: TableLimits,
    len: u32,
    half_open: u32,
    per_tenant: Vec<u32>,
    per_tenant_half_open: Vec<u32>,
    sweep_cursor: usize,
}

impl<S> SessionTable<S> {
    /// `base` is the instant the table measures time from; pass the `now` of the first call.
    /// `hash_seed` should be random per process so that flows cannot be chosen to collide.
    pub fn new(base: Instant, limits: TableLimits, timeouts: Timeouts, hash_seed: u64) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_key: FlowIndex::default(),
            by_uuid: HashTable::new(),
            flow_hasher: FlowHasher::new(hash_seed),
            hasher: FixedState::with_seed(hash_seed),
            base,
            clock: (base, 0),
            timeouts,
            timeouts_ms: TimeoutsMs::from(&timeouts),
            limits,
            len: 0,
            half_open: 0,
            per_tenant: Vec::new(),
            per_tenant_half_open: Vec::new(),
            sweep_cursor: 0,
        }
    }

    /// Sizes the table for `sessions` up front, so that growth never stalls the fast path.
    pub fn reserve(&mut self, sessions: usize) {
        if sessions > self.slots.capacity() {
            self.grow_slots(sessions);
        }
        let (slots, hasher) = (&self.slots, &self.flow_hasher);
        self.by_key
            .reserve(sessions.saturating_mul(2), |v| key_hash(slots, hasher, v));
    }

    /// Moves the slots to room for `capacity` (what `Vec` growth would do, but into memory
    /// advised for huge pages before it is touched).
    fn grow_slots(&mut self, capacity: usize) {
        let mut grown = with_huge_pages(capacity);
        grown.append(&mut self.slots);
        self.slots = grown;
    }

    pub fn set_limits(&mut self, limits: TableLimits, timeouts: Timeouts) {
        self.limits = limits;
        self.timeouts = timeouts;
        self.timeouts_ms = TimeoutsMs::from(&timeouts);
    }

    /// The instant `Session::last_seen_ms` counts from.
    pub fn base(&self) -> Instant {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn half_open(&self) -> u32 {
        self.half_open
    }

    /// Half-open TCP sessions of `tenant`.
    pub fn tenant_half_open(&self, tenant: u16) -> u32 {
        self.per_tenant_half_open
            .get(usize::from(tenant))
            .copied()
            .unwrap_or(0)
    }

    fn half_open_ended(&mut self, tenant: u16) {
        self.half_open = self.half_open.saturating_sub(1);
        if let Some(n) = self.per_tenant_half_open.get_mut(usize::from(tenant)) {
            *n = n.saturating_sub(1);
        }
    }

    pub fn tenant_sessions(&self, tenant: u16) -> u32 {
        self.per_tenant
            .get(usize::from(tenant))
            .copied()
            .unwrap_or(0)
    }

    /// Bytes of memory the table holds (slots, free list, both indexes), for budgets and benches.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<Session<S>>>()
            + self.free.capacity() * size_of::<u32>()
            + self.by_key.allocation_size()
            + self.by_uuid.allocation_size()
            + (self.per_tenant.capacity() + self.per_tenant_half_open.capacity()) * size_of::<u32>()
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// [`Self::ms`], remembering the last conversion.
    #[inline]
    fn now_ms(&mut self, now: Instant) -> u64 {
        if now != self.clock.0 {
            self.clock = (now, self.ms(now));
        }
        self.clock.1
    }

    pub fn get(&self, id: SessionId) -> Option<&Session<S>> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut Session<S>> {
        self.slots.get_mut(id.0 as usize)?.as_mut()
    }

    /// Iterates live sessions (for the admin API), in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (SessionId, &Session<S>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((SessionId(i as u32), s.as_ref()?)))
    }

    /// The session a packet with 5-tuple `key` belongs to. A session found expired is removed and
    /// pushed to `expired` instead of being returned.
    pub fn lookup(
        &mut self,
        key: &FlowKey,
        now: Instant,
        expired: &mut Vec<Expired<S>>,
    ) -> Option<Hit> {
        let hash = self.hash(key);
        self.lookup_hashed(key, hash, now, expired)
    }

    /// The index hash of `key` (alike for both orientations), for [`Self::lookup_hashed`] and
    /// the prefetches.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.flow_hasher.hash(key)
    }

    /// Batched lookups, first stage: starts fetching the index bucket of `hash`.
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        self.by_key.prefetch(hash);
    }

    /// Batched lookups, second stage (once the bucket had time to arrive): starts fetching the
    /// two cache lines of the session the bucket names for `hash`, if any.
    #[inline]
    pub fn prefetch_session(&self, hash: u64) {
        let Some(value) = self.by_key.candidate(hash) else {
            return;
        };
        if let Some(slot) = self.slots.get((value >> 1) as usize) {
            let p: *const Option<Session<S>> = slot;
            prefetch(p);
            prefetch(p.cast::<u8>().wrapping_add(64));
        }
    }

    /// [`Self::lookup`] with the key's hash already computed by [`Self::hash`] (a different
    /// hash only makes the lookup miss).
    #[inline]
    pub fn lookup_hashed(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: Instant,
        expired: &mut Vec<Expired<S>>,
    ) -> Option<Hit> {
        let slots = &self.slots;
        let mut reply = false;
        let found = self.by_key.find(hash, |v| {
            match slot_key(slots, v).and_then(|k| k.orientation(key)) {
                Some(r) => {
                    reply = r;
                    true
                }
                None => false,
            }
        })?;
        let id = SessionId(found >> 1);
        let side = if found & 1 == 0 { Side::Lan } else { Side::Wan };
        let now_ms = self.now_ms(now);
        let session = self.get(id)?;
        if session.expired(now_ms, &self.timeouts_ms) {
            if let Some(gone) = self.remove(id) {
                expired.push(gone);
            }
            return None;
        }
        Some(Hit { id, side, reply })
    }

    /// Would `key` (either orientation) find a session? Expired sessions count as present until
    /// removed; waypoint allocation uses this to keep 5-tuples unique.
    pub fn contains_key(&self, key: &FlowKey) -> bool {
        let hash = self.hash(key);
        let slots = &self.slots;
        self.by_key
            .find(hash, |v| {
                slot_key(slots, v).is_some_and(|k| k.orientation(key).is_some())
            })
            .is_some()
    }

    /// The session a peer names by UUID (for re-binding a session to a new path).
    pub fn by_uuid(&self, uuid: &[u8; 16]) -> Option<SessionId> {
        let hash = self.hasher.hash_one(uuid);
        let slots = &self.slots;
        self.by_uuid
            .find(hash, |&v| {
                slots
                    .get(v as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.uuid == *uuid)
            })
            .map(|&v| SessionId(v))
    }

    /// Creates a session. TCP sessions start half-open (`SynSent`).
    pub fn insert(&mut self, now: Instant, new: Insert<S>) -> Result<SessionId, Refused> {
        if self.len >= self.limits.max_sessions {
            return Err(Refused::TableFull);
        }
        if self.limits.max_per_tenant != 0
            && self.tenant_sessions(new.tenant) >= self.limits.max_per_tenant
        {
            return Err(Refused::TenantLimit);
        }
        let tcp = new.keys[0].protocol() == ip_protocol::TCP;
        if tcp && self.limits.max_half_open != 0 && self.half_open >= self.limits.max_half_open {
            return Err(Refused::HalfOpenLimit);
        }
        if tcp
            && self.limits.max_half_open_per_tenant != 0
            && self.tenant_half_open(new.tenant) >= self.limits.max_half_open_per_tenant
        {
            return Err(Refused::TenantHalfOpenLimit);
        }
        if new.keys.iter().any(|k| self.contains_key(k)) || new.keys[0] == new.keys[1] {
            return Err(Refused::KeyInUse);
        }
        if new.index_uuid && self.by_uuid(&new.uuid).is_some() {
            return Err(Refused::KeyInUse);
        }
        let last_seen_ms = self.now_ms(now);
        let session = Session {
            keys: new.keys,
            uuid: new.uuid,
            last_seen_ms,
            bytes: [0; 2],
            tenant: new.tenant,
            tcp: TcpState::SynSent,
            replied: false,
            uuid_indexed: new.index_uuid,
            state: new.state,
        };
        let index = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slots.get_mut(i as usize) {
                    *slot = Some(session);
                }
                i
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    self.grow_slots(self.slots.capacity().max(4) * 2);
                }
                self.slots.push(Some(session));
                (self.slots.len() - 1) as u32
            }
        };
        for side in [Side::Lan, Side::Wan] {
            self.index_key(index, side);
        }
        if new.index_uuid {
            let hash = self.hasher.hash_one(new.uuid);
            let (slots, hasher) = (&self.slots, &self.hasher);
            self.by_uuid
                .insert_unique(hash, index, |&v| uuid_hash(slots, hasher, v));
        }
        self.len += 1;
        let t = usize::from(new.tenant);
        if self.per_tenant.len() <= t {
            self.per_tenant.resize(t + 1, 0);
            self.per_tenant_half_open.resize(t + 1, 0);
        }
        if let Some(n) = self.per_tenant.get_mut(t) {
            *n += 1;
        }
        if tcp {
            self.half_open += 1;
            if let Some(n) = self.per_tenant_half_open.get_mut(t) {
                *n += 1;
            }
        }
        Ok(SessionId(index))
    }

    fn index_key(&mut self, index: u32, side: Side) {
        let value = index << 1 | side as u32;
        let Some(key) = slot_key(&self.slots, value) else {
            return;
        };
        let hash = self.flow_hasher.hash(key);
        let (slots, hasher) = (&self.slots, &self.flow_hasher);
        self.by_key
            .insert(hash, value, |v| key_hash(slots, hasher, v));
    }

    fn unindex_key(&mut self, index: u32, side: Side) {
        let value = index << 1 | side as u32;
        let Some(key) = slot_key(&self.slots, value) else {
            return;
        };
        let hash = self.flow_hasher.hash(key);
        self.by_key.remove(hash, value);
    }

    /// Moves a session's WAN side to a new waypoint 5-tuple (a path change).
    pub fn rebind_wan(&mut self, id: SessionId, key: FlowKey) -> Result<(), Refused> {
        if self.contains_key(&key) {
            return Err(Refused::KeyInUse);
        }
        if self.get(id).is_none() {
            return Ok(());
        }
        self.unindex_key(id.0, Side::Wan);
        if let Some(s) = self.get_mut(id) {
            s.keys[Side::Wan as usize] = key;
        }
        self.index_key(id.0, Side::Wan);
        Ok(())
    }

    /// Records a packet: refreshes the idle timer, counts bytes, advances TCP state.
    pub fn touch(
        &mut self,
        id: SessionId,
        now: Instant,
        reply: bool,
        bytes: usize,
        tcp: Option<Segment>,
    ) {
        let now_ms = self.now_ms(now);
        let Some(Some(s)) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        s.last_seen_ms = now_ms;
        s.bytes[usize::from(reply)] += bytes as u64;
        s.replied |= reply;
        if let Some(segment) = tcp {
            let was = s.tcp.is_half_open();
            s.tcp = s.tcp.next(segment, reply);
            let is = s.tcp.is_half_open();
            if was && !is {
                let tenant = s.tenant;
                self.half_open_ended(tenant);
            }
        }
    }

    /// Records packets forwarded without passing here (the in-kernel fast path): the idle timer
    /// moves to `last_seen` unless it is later already, the bytes of direction `reply` grow.
    pub fn add_forwarded_elsewhere(
        &mut self,
        id: SessionId,
        last_seen: Instant,
        reply: bool,
        bytes: u64,
    ) {
        let at_ms = self.now_ms(last_seen);
        let Some(Some(s)) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        s.last_seen_ms = s.last_seen_ms.max(at_ms);
        s.bytes[usize::from(reply)] += bytes;
        s.replied |= reply;
    }

    /// Removes a session, returning what the pipeline needs to tell its peer.
    pub fn remove(&mut self, id: SessionId) -> Option<Expired<S>> {
        self.get(id)?;
        self.unindex_key(id.0, Side::Lan);
        self.unindex_key(id.0, Side::Wan);
        let session = self.slots.get_mut(id.0 as usize)?.take()?;
        if session.uuid_indexed {
            let hash = self.hasher.hash_one(session.uuid);
            if let Ok(entry) = self.by_uuid.find_entry(hash, |&v| v == id.0) {
                entry.remove();
            }
        }
        self.free.push(id.0);
        self.len -= 1;
        if session.half_open() {
            self.half_open_ended(session.tenant);
        }
        if let Some(n) = self.per_tenant.get_mut(usize::from(session.tenant)) {
            *n = n.saturating_sub(1);
        }
        Some(Expired {
            id,
            keys: session.keys,
            uuid: session.uuid,
            state: session.state,
        })
    }

    /// Visits up to `visits` slots from where the last sweep stopped and removes the expired
    /// sessions among them into `expired`. Call it once per batch of packets.
    pub fn sweep(&mut self, now: Instant, visits: usize, expired: &mut Vec<Expired<S>>) {
        let now_ms = self.now_ms(now);
        for _ in 0..visits.min(self.slots.len()) {
            if self.sweep_cursor >= self.slots.len() {
                self.sweep_cursor = 0;
            }
            let i = self.sweep_cursor;
            self.sweep_cursor += 1;
            let stale =
                matches!(self.slots.get(i), Some(Some(s)) if s.expired(now_ms, &self.timeouts_ms));
            if stale && let Some(gone) = self.remove(SessionId(i as u32)) {
                expired.push(gone);
            }
        }
    }
}

fn slot_key<S>(slots: &[Option<Session<S>>], value: u32) -> Option<&FlowKey> {
    let session = slots.get((value >> 1) as usize)?.as_ref()?;
    session.keys.get((value & 1) as usize)
}

fn key_hash<S>(slots: &[Option<Session<S>>], hasher: &FlowHasher, value: u32) -> u64 {
    slot_key(slots, value).map_or(0, |k| hasher.hash(k))
}

fn uuid_hash<S>(slots: &[Option<Session<S>>], hasher: &FixedState, value: u32) -> u64 {
    slots
        .get(value as usize)
        .and_then(Option::as_ref)
        .map_or(0, |s| hasher.hash_one(s.uuid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(a: u8, port: u16) -> FlowKey {
        FlowKey::v4(
            ip_protocol::UDP,
            Ipv4Addr::new(10, 1, 10, a),
            port,
            Ipv4Addr::new(10, 255, 1, 10),
            443,
        )
    }

    fn wan(port: u16) -> FlowKey {
        FlowKey::v4(
            ip_protocol::UDP,
            Ipv4Addr::new(192, 0, 2, 11),
            port,
            Ipv4Addr::new(203, 0, 113, 10),
            port,
        )
    }

    fn insert(
        t: &mut SessionTable<u32>,
        now: Instant,
        n: u16,
        tenant: u16,
    ) -> Result<SessionId, Refused> {
        t.insert(
            now,
            Insert {
                keys: [key((n % 200) as u8, 1000 + n), wan(20000 + n)],
                uuid: [n as u8; 16],
                index_uuid: true,
                tenant,
                state: u32::from(n),
            },
        )
    }

    #[test]
    fn the_fast_path_fields_fill_the_first_two_cache_lines() {
        assert_eq!(core::mem::offset_of!(Session<u64>, state), 112);
        assert_eq!(size_of::<Option<Session<[u64; 7]>>>(), 192);
        assert_eq!(align_of::<Session<u8>>(), 64);
    }

    #[test]
    fn both_keys_find_the_session_in_both_directions() {
        let now = Instant::now();
        let mut t = SessionTable::new(now, TableLimits::default(), Timeouts::default(), 1);
        let mut gone = Vec::new();
        let id = insert(&mut t, now, 1, 0).expect("room");
        let lan = key(1, 1001);
        let wan_key = wan(20001);
        assert_eq!(
            t.lookup(&lan, now, &mut gone),
            Some(Hit {
                id,
                side: Side::Lan,
                reply: false
            })
        );
        assert_eq!(
            t.lookup(&lan.reversed(), now, &mut gone),
            Some(Hit {
                id,
                side: Side::Lan,
                reply: true
            })
        );
        assert_eq!(
            t.lookup(&wan_key, now, &mut gone),
            Some(Hit {
                id,
                side: Side::Wan,
                reply: false
            })
        );
        assert_eq!(
            t.lookup(&wan_key.reversed(), now, &mut gone),
            Some(Hit {
                id,
                side: Side::Wan,
                reply: true
            })
        );
        assert_eq!(t.lookup(&key(1, 1002), now, &mut gone), None);
        assert_eq!(t.by_uuid(&[1; 16]), Some(id));
        assert_eq!(t.get(id).map(|s| s.state), Some(1));
    }

    #[test]
    fn idle_sessions_expire_lazily_and_by_sweep() {
        let now = Instant::now();
        let mut t = SessionTable::new(now, TableLimits::default(), Timeouts::default(), 1);
        let mut gone = Vec::new();
        for n in 0..10 {
            insert(&mut t, now, n, 0).expect("room");
        }
        let later = now + Duration::from_secs(29);
        assert!(t.lookup(&key(3, 1003), later, &mut gone).is_some());
        t.touch(SessionId(3), later, true, 100, None);
        let expiry = now + Duration::from_secs(31);
        assert!(t.lookup(&key(4, 1004), expiry, &mut gone).is_none());
        assert_eq!(gone.len(), 1);
        t.sweep(expiry, 100, &mut gone);
        // Session 3 was answered and refreshed: it has the 120 s UDP timeout.
        assert_eq!(t.len(), 1);
        assert_eq!(gone.len(), 10 - 1);
        assert!(t.lookup(&key(3, 1003), expiry, &mut gone).is_some());
        assert_eq!(t.by_uuid(&[4; 16]), None);
    }

    #[test]
    fn limits_refuse_and_free_slots_are_reused() {
        let now = Instant::now();
        let limits = TableLimits {
            max_sessions: 5,
            max_per_tenant: 3,
            ..TableLimits::default()
        };
        let mut t = SessionTable::new(now, limits, Timeouts::default(), 1);
        for n in 0..3 {
            insert(&mut t, now, n, 7).expect("room");
        }
        assert_eq!(insert(&mut t, now, 3, 7), Err(Refused::TenantLimit));
        insert(&mut t, now, 4, 8).expect("room");
        insert(&mut t, now, 5, 8).expect("room");
        assert_eq!(insert(&mut t, now, 6, 9), Err(Refused::TableFull));
        assert_eq!(insert(&mut t, now, 0, 9), Err(Refused::TableFull));
        t.remove(SessionId(1));
        assert_eq!(insert(&mut t, now, 0, 9), Err(Refused::KeyInUse));
        assert_eq!(insert(&mut t, now, 6, 9), Ok(SessionId(1)));
        assert_eq!(t.tenant_sessions(7), 2);
    }

    #[test]
    fn half_open_tcp_is_counted_until_the_handshake_completes() {
        let now = Instant::now();
        let limits = TableLimits {
            max_sessions: 10,
            max_per_tenant: 0,
            max_half_open: 1,
            max_half_open_per_tenant: 0,
        };
        let mut t: SessionTable<()> = SessionTable::new(now, limits, Timeouts::default(), 1);
        let tcp = |port| {
            FlowKey::v4(
                ip_protocol::TCP,
                Ipv4Addr::new(10, 1, 10, 5),
                port,
                Ipv4Addr::new(10, 255, 1, 10),
                443,
            )
        };
        let new = |port: u16| Insert {
            keys: [tcp(port), tcp(port + 1000)],
            uuid: [port as u8; 16],
            index_uuid: false,
            tenant: 0,
            state: (),
        };
        let id = t.insert(now, new(1)).expect("room");
        assert_eq!(t.insert(now, new(2)), Err(Refused::HalfOpenLimit));
        t.touch(id, now, true, 60, Some(Segment::from_flags(0x12)));
        assert_eq!(t.half_open(), 1);
        t.touch(id, now, false, 60, Some(Segment::from_flags(0x10)));
        assert_eq!(t.half_open(), 0);
        assert_eq!(
            t.get(id).map(Session::tcp_state),
            Some(TcpState::Established)
        );
        assert!(t.insert(now, new(2)).is_ok());
    }

    #[test]
    fn one_tenant_cannot_take_the_half_open_budget_of_another() {
        let now = Instant::now();
        let limits = TableLimits {
            max_sessions: 100,
            max_per_tenant: 0,
            max_half_open: 10,
            max_half_open_per_tenant: 5,
        };
        let mut t: SessionTable<()> = SessionTable::new(now, limits, Timeouts::default(), 1);
        let new = |tenant: u16, port: u16| {
            let k = |p| {
                FlowKey::v4(
                    ip_protocol::TCP,
                    Ipv4Addr::new(10, 1, tenant as u8, 5),
                    p,
                    Ipv4Addr::new(10, 255, 1, 10),
                    443,
                )
            };
            Insert {
                keys: [k(port), k(port + 10000)],
                uuid: [0; 16],
                index_uuid: false,
                tenant,
                state: (),
            }
        };
        for port in 1..=5 {
            t.insert(now, new(1, port))
                .expect("within the tenant's share");
        }
        assert_eq!(t.insert(now, new(1, 6)), Err(Refused::TenantHalfOpenLimit));
        assert_eq!(t.tenant_half_open(1), 5);
        let id = t
            .insert(now, new(2, 1))
            .expect("another tenant still has room");
        // Its handshake completes: the tenant's half-open count goes down with the total.
        t.touch(id, now, true, 60, Some(Segment::from_flags(0x12)));
        t.touch(id, now, false, 60, Some(Segment::from_flags(0x10)));
        assert_eq!((t.tenant_half_open(2), t.half_open()), (0, 5));
        // Expiry of tenant 1's half-open sessions frees its share.
        let mut gone = Vec::new();
        t.sweep(now + Duration::from_secs(6), 100, &mut gone);
        assert_eq!(gone.len(), 5);
        assert_eq!(t.tenant_half_open(1), 0);
        assert!(t.insert(now + Duration::from_secs(6), new(1, 7)).is_ok());
    }

    #[test]
    fn rebinding_moves_the_wan_key() {
        let now = Instant::now();
        let mut t = SessionTable::new(now, TableLimits::default(), Timeouts::default(), 1);
        let mut gone = Vec::new();
        let id = insert(&mut t, now, 1, 0).expect("room");
        t.rebind_wan(id, wan(30000)).expect("free key");
        assert_eq!(t.lookup(&wan(20001), now, &mut gone), None);
        assert_eq!(
            t.lookup(&wan(30000).reversed(), now, &mut gone)
                .map(|h| h.side),
            Some(Side::Wan)
        );
        assert!(t.lookup(&key(1, 1001), now, &mut gone).is_some());
    }
}
