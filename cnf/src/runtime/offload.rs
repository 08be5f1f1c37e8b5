//! A worker's side of the in-kernel fast path: it turns the pipeline's offload decisions
//! ([`crate::pipeline::offload`]) into entries of the program's `sessions` map
//! ([`crate::io::fastpath`]), with the link-layer part only the runtime knows (ports,
//! interface indexes, the next hop's address from the neighbour table), and brings the
//! program's per-entry counters back into the pipeline.
//!
//! When it runs (under the worker lock): [`Worker::sync_fast_path`] on every housekeeping visit
//! and right after the path monitor changed the path book; [`Worker::sync_noted`] from the
//! worker thread itself after a receive batch, at most every [`PROMPT`], so that a session is
//! in the kernel about a millisecond after the packet that made it offloadable and not a
//! housekeeping visit later (under a flood, a visit can wait on the worker lock for tens of
//! milliseconds, each one over a thousand packets the slow path must take). Each run
//!
//! 1. removes the entries of sessions that left the table;
//! 2. when the pipeline's offload epoch moved (config, path targets, location health), decides
//!    every installed session again: the sessions whose plan changed (a path that is no
//!    longer the target, a health change that moves the session, new rewrite fields) lose or
//!    replace their entries at that moment, so their next packet comes to user space; the
//!    rest keep theirs (flushing them all would send every busy session's traffic through
//!    user space until the next visit, far more than it can take at kernel rates);
//! 3. decides again each session whose packets reached the pipeline since the last run (the
//!    first packets of a session, a punted FIN, a packet on another WAN...): installs,
//!    replaces or removes its two entries. A session refused for what stays true until the
//!    next epoch (security, rate limit, IPv6, protocol) is remembered, so its packets cost a
//!    set lookup instead of a plan;
//! 4. on housekeeping visits only, every [`RESYNC`] at most, goes round the installed
//!    sessions, up to [`RESYNC_BUDGET`] per run (two map reads each, under the worker lock: a
//!    bounded pause for the slow path), reads their entries' counters into the session (idle
//!    timer, bytes, forwarded-packet counters, the ports' counters) and decides them again,
//!    which also follows a neighbour whose link-layer address changed, and refreshes
//!    neighbours that only the kernel uses now. A round over N sessions takes max(RESYNC,
//!    N / RESYNC_BUDGET × the housekeeping interval): 0.4 s for 10,000 sessions, 2.6 s for the
//!    65,536 the kernel's map can hold (two entries each). An idle timeout shorter than a round
//!    (the Router's `limits` allow 1 s for UDP; the default is 120 s) can expire a busy
//!    offloaded session — it is then opened again on its next packet; keep timeouts above a
//!    few seconds with the fast path.
//!
//! Counts are read as deltas: a replaced entry starts from zero, and the packets the kernel
//! forwarded between the last read and a replacement are lost to the counters (never to the
//! traffic); with RESYNC at 250 ms that is a quarter second of one session at most.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::worker::Worker;
use crate::io::fastpath::{self, FastPath, Link, OffloadEntry, OffloadKey};
use crate::pipeline::offload::{NotOffloaded, Rewrite};
use crate::runtime::neighbor::Resolution;
use crate::session::SessionId;

/// How often at most installed entries are read back and decided again.
pub const RESYNC: Duration = Duration::from_millis(250);
/// Installed sessions read back per run at most.
pub const RESYNC_BUDGET: usize = 256;
/// How often at most the worker thread decides the sessions noted since (see the module docs).
pub const PROMPT: Duration = Duration::from_millis(1);

/// One direction as installed.
#[derive(Clone, Copy, Debug)]
struct Direction {
    rewrite: Rewrite,
    key: OffloadKey,
    /// Without counters.
    entry: OffloadEntry,
    in_port: usize,
    out_port: usize,
    /// Counters already accounted.
    packets: u64,
    bytes: u64,
}

/// The entries one worker installed, by session.
pub struct Offloaded {
    fast: Arc<FastPath>,
    /// Tags this worker's entries (`OffloadEntry::owner` = base | session id).
    owner_base: u64,
    installed: HashMap<SessionId, [Direction; 2]>,
    /// Sessions refused for the rest of this epoch (see [`lasting`]).
    refused: HashSet<SessionId>,
    epoch: Option<u64>,
    last_resync: Option<Instant>,
    last_prompt: Option<Instant>,
    /// The rest of the current round over the installed sessions.
    round: Vec<SessionId>,
    scratch: Vec<SessionId>,
    /// Sessions whose entries were installed (a replacement counts again).
    pub installs: u64,
    /// Map updates the kernel refused (the map full, most likely).
    pub insert_errors: u64,
}

impl Offloaded {
    pub fn new(fast: Arc<FastPath>, worker: u32) -> Offloaded {
        Offloaded {
            fast,
            owner_base: u64::from(worker) << 32,
            installed: HashMap::new(),
            refused: HashSet::new(),
            epoch: None,
            last_resync: None,
            last_prompt: None,
            round: Vec::new(),
            scratch: Vec::new(),
            installs: 0,
            insert_errors: 0,
        }
    }

    /// Sessions with entries in the kernel.
    pub fn sessions(&self) -> usize {
        self.installed.len()
    }

    pub fn fast_path(&self) -> &Arc<FastPath> {
        &self.fast
    }
}

impl Worker {
    /// Brings the kernel's `sessions` map in line with the pipeline (see the module docs).
    pub fn sync_fast_path(&mut self, now: Instant) {
        let Some(mut off) = self.offloaded.take() else {
            return;
        };
        self.sync_with(&mut off, now, true);
        self.offloaded = Some(off);
    }

    /// Steps 1–3 of [`Worker::sync_fast_path`] (no read-back round), when sessions were noted
    /// and [`PROMPT`] has passed since the last such run: for the worker thread, after a batch.
    pub fn sync_noted(&mut self, now: Instant) {
        let Some(off) = self.offloaded.as_ref() else {
            return;
        };
        if off
            .last_prompt
            .is_some_and(|t| now.saturating_duration_since(t) < PROMPT)
        {
            return;
        }
        if !self
            .pipeline
            .as_mut()
            .is_some_and(|p| p.offload().has_noted())
        {
            return;
        }
        let Some(mut off) = self.offloaded.take() else {
            return;
        };
        off.last_prompt = Some(now);
        self.sync_with(&mut off, now, false);
        self.offloaded = Some(off);
    }

    fn sync_with(&mut self, off: &mut Offloaded, now: Instant, read_back: bool) {
        let Some(epoch) = self.pipeline.as_mut().map(|p| p.offload().epoch()) else {
            return;
        };
        let mut ids = std::mem::take(&mut off.scratch);
        if let Some(p) = self.pipeline.as_mut() {
            p.offload().take_removed(&mut ids);
        }
        for &id in &ids {
            off.refused.remove(&id);
            self.uninstall(off, id, now, false);
        }
        if let Some(p) = self.pipeline.as_mut() {
            p.offload().take_noted(&mut ids);
        }
        if off.epoch != Some(epoch) {
            off.epoch = Some(epoch);
            off.refused.clear();
            ids.extend(off.installed.keys().copied());
        } else if !off.refused.is_empty() {
            ids.retain(|id| !off.refused.contains(id));
        }
        if read_back
            && off.round.is_empty()
            && off
                .last_resync
                .is_none_or(|t| now.saturating_duration_since(t) >= RESYNC)
        {
            off.last_resync = Some(now);
            off.round.extend(off.installed.keys().copied());
        }
        if read_back {
            let take = off.round.len().saturating_sub(RESYNC_BUDGET);
            let batch: Vec<SessionId> = off.round.drain(take..).collect();
            for &id in &batch {
                self.account(off, id, now, true);
            }
            ids.extend(batch);
        }
        ids.sort_unstable_by_key(|id| id.0);
        ids.dedup();
        for &id in &ids {
            self.decide(off, id, now);
        }
        ids.clear();
        off.scratch = ids;
    }

    /// Installs, replaces or removes session `id`'s entries as the pipeline decides now.
    fn decide(&mut self, off: &mut Offloaded, id: SessionId, now: Instant) {
        let Some(pipeline) = self.pipeline.as_ref() else {
            return;
        };
        let plan = pipeline.offload_plan(id);
        if let Err(why) = plan
            && lasting(why)
        {
            off.refused.insert(id);
        }
        let wanted = plan.ok().and_then(|plan| {
            let [a, b] = plan.rewrites;
            Some([
                self.direction(off, id, a, now)?,
                self.direction(off, id, b, now)?,
            ])
        });
        let current = off.installed.get(&id);
        match (wanted, current) {
            (None, None) => {}
            (None, Some(_)) => self.uninstall(off, id, now, true),
            (Some(w), Some(c))
                if w.iter()
                    .zip(c)
                    .all(|(w, c)| w.key == c.key && w.entry == c.entry) => {}
            (Some(w), _) => {
                if off.installed.contains_key(&id) {
                    self.uninstall(off, id, now, true);
                }
                let mut ok = true;
                for d in &w {
                    if off.fast.insert(&d.key, &d.entry).is_err() {
                        ok = false;
                    }
                }
                if ok {
                    off.installs += 1;
                    off.installed.insert(id, w);
                } else {
                    off.insert_errors += 1;
                    for d in &w {
                        let _ = off.fast.remove(&d.key);
                    }
                }
            }
        }
    }

    /// The link-layer side of one direction, or `None` while its next hop is unresolved (the
    /// slow path resolves it) or its ports are not the router's.
    fn direction(
        &mut self,
        off: &Offloaded,
        id: SessionId,
        rewrite: Rewrite,
        now: Instant,
    ) -> Option<Direction> {
        let in_port = *self.iface_port.get(&rewrite.ingress)?;
        let out_port = *self.iface_port.get(&rewrite.egress.interface)?;
        let ifindex = off.fast.ifindex(in_port)?;
        let in_mac = self.ports.get(in_port)?.mac;
        let src_mac = self.ports.get(out_port)?.mac;
        let IpAddr::V4(hop) = self.next_hop(out_port, rewrite.egress.next_hop) else {
            return None;
        };
        let dst_mac = match self.neighbors.lookup(out_port, hop, now) {
            Resolution::Known(mac) => mac,
            Resolution::Refresh(mac) => {
                // Only the kernel may be using this neighbour now: keep it fresh from here.
                self.send_arp_request(out_port, hop, rewrite.egress.vlan);
                mac
            }
            Resolution::Request | Resolution::Wait => return None,
        };
        let link = Link {
            in_mac,
            egress_port: u32::try_from(out_port).ok()?,
            src_mac,
            dst_mac,
        };
        Some(Direction {
            rewrite,
            key: OffloadKey::new(ifindex, &rewrite.key)?,
            entry: OffloadEntry::new(&rewrite, &link, off.owner_base | u64::from(id.0))?,
            in_port,
            out_port,
            packets: 0,
            bytes: 0,
        })
    }

    /// Reads session `id`'s entries' counters into the pipeline (`live`: the session is still
    /// the one the entries were made for).
    fn account(&mut self, off: &mut Offloaded, id: SessionId, now: Instant, live: bool) {
        let Some(dirs) = off.installed.get_mut(&id) else {
            return;
        };
        let now_ns = fastpath::monotonic_ns();
        // Frame bytes for the ports' counters: the IP bytes plus the Ethernet header, with the
        // 802.1Q tag where the frame carries one (a direction arrives with the VLAN the other
        // leaves with).
        let l2 = |vlan: Option<u16>| if vlan.is_some() { 18 } else { 14 };
        let leaves = [dirs[0].rewrite.egress.vlan, dirs[1].rewrite.egress.vlan];
        for (i, d) in dirs.iter_mut().enumerate() {
            let (in_l2, out_l2) = (l2(leaves[1 - i]), l2(d.rewrite.egress.vlan));
            let Ok(Some(e)) = off.fast.entry(&d.key) else {
                continue;
            };
            let (packets, bytes) = (
                e.packets.saturating_sub(d.packets),
                e.bytes.saturating_sub(d.bytes),
            );
            if packets == 0 {
                continue;
            }
            (d.packets, d.bytes) = (e.packets, e.bytes);
            let ago = Duration::from_nanos(now_ns.saturating_sub(e.last_seen_ns));
            let last_seen = now.checked_sub(ago).unwrap_or(now);
            if let Some(p) = self.pipeline.as_mut() {
                p.offload_account(live.then_some(id), &d.rewrite, packets, bytes, last_seen);
            }
            if let Some(c) = off.fast.port_counters.get(d.in_port) {
                fastpath::add(&c[0], packets);
                fastpath::add(&c[1], bytes + in_l2 * packets);
            }
            if let Some(c) = off.fast.port_counters.get(d.out_port) {
                fastpath::add(&c[2], packets);
                fastpath::add(&c[3], bytes + out_l2 * packets);
            }
        }
    }

    /// Accounts and deletes session `id`'s entries.
    fn uninstall(&mut self, off: &mut Offloaded, id: SessionId, now: Instant, live: bool) {
        self.account(off, id, now, live);
        if let Some(dirs) = off.installed.remove(&id) {
            for d in &dirs {
                let _ = off.fast.remove(&d.key);
            }
        }
    }
}

/// Refusals that hold for the session until the next epoch: its addresses, protocol, security
/// and rule (its rate limit) do not change within one config. The others (not established
/// yet, metadata still to send, a shaped WAN, a path that is moving, a missing interface) can
/// end with the session's next packet.
fn lasting(why: NotOffloaded) -> bool {
    matches!(
        why,
        NotOffloaded::NotIpv4
            | NotOffloaded::Protocol
            | NotOffloaded::Security
            | NotOffloaded::RateLimited
    )
}
