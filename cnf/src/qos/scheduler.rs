//! One WAN link's egress scheduler: a shaper at the link's capacity, one bounded queue per
//! traffic class, strict classes served first (each within its cap), the weighted ones by
//! deficit round robin over bytes.
//!
//! The fast path is [`LinkScheduler::offer`]: when no packet that would go before this one is
//! waiting and the shaper (and the class's cap) holds enough tokens, the packet is sent at once
//! — a few comparisons and two bucket updates, no copy. Otherwise its bytes are copied into a
//! slot of the link's preallocated arena and it waits in its class's queue, or, when that queue
//! holds its limit (bytes or packets), it is dropped and counted for its class.
//! [`LinkScheduler::release`] sends waiting packets as tokens allow and says when to call it
//! again. Nothing allocates after construction.
//!
//! Queue limits: a weighted class holds up to 50 ms of the link's capacity (at least 32 KiB), a
//! strict class 10 ms (at least 16 KiB) — real-time packets older than that are better
//! dropped; each at most 1,024 packets. The arena has a slot for every packet every queue may
//! hold, so one class's backlog never takes room from another.

use std::collections::VecDeque;

use super::bucket::TokenBucket;
use super::class::{ClassSpec, Classes};

/// How long after a refused send (the driver had no free buffer) to try again, ns.
const RETRY_NS: u64 = 50_000;
/// Most packets one class queue holds.
const MAX_PACKETS: usize = 1024;

/// What [`LinkScheduler::offer`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Send it now, as it is.
    Send,
    /// A copy waits in its class's queue; release the original buffer.
    Queued,
    /// Its class's queue is full (or the packet exceeds a slot): dropped, counted.
    Dropped,
}

/// Counters of one class on one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    /// Packets that had to wait (then were sent, or are still waiting).
    pub queued_packets: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// Bytes waiting now.
    pub queue_bytes: u64,
}

impl ClassStats {
    pub fn add(&mut self, o: &ClassStats) {
        self.sent_packets += o.sent_packets;
        self.sent_bytes += o.sent_bytes;
        self.queued_packets += o.queued_packets;
        self.dropped_packets += o.dropped_packets;
        self.dropped_bytes += o.dropped_bytes;
        self.queue_bytes += o.queue_bytes;
    }
}

#[derive(Debug)]
struct ClassQueue {
    spec: ClassSpec,
    /// Bytes a weighted class may send per round (≥ one slot).
    quantum: u64,
    deficit: u64,
    limit_bytes: u64,
    limit_packets: usize,
    bytes: u64,
    /// (slot, length) in arrival order.
    fifo: VecDeque<(u32, u16)>,
    cap: Option<TokenBucket>,
    stats: ClassStats,
}

impl ClassQueue {
    fn head_len(&self) -> Option<u64> {
        self.fifo.front().map(|&(_, len)| u64::from(len))
    }

    fn cap_allows(&self, now: u64, len: u64) -> bool {
        self.cap.as_ref().is_none_or(|c| c.conforms(now, len))
    }
}

/// The scheduler of one shaped WAN link. See the module docs.
#[derive(Debug)]
pub struct LinkScheduler {
    capacity_bps: u64,
    shaper: TokenBucket,
    classes: Vec<ClassQueue>,
    /// Classes `0..first_weighted` are strict.
    first_weighted: usize,
    slot_len: usize,
    arena: Box<[u8]>,
    free: Vec<u32>,
    queued: usize,
    /// Deficit round robin: the weighted class being served, and whether it got its quantum
    /// for this visit.
    cursor: usize,
    granted: bool,
}

impl LinkScheduler {
    /// A scheduler shaping to `capacity_bps` (frame bytes, Ethernet header included) for the
    /// given classes, holding frames of up to `slot_len` bytes. `capacity_bps` must be above 0
    /// (an unshaped link needs no scheduler).
    pub fn new(capacity_bps: u64, classes: &Classes, slot_len: usize) -> Self {
        let bytes_per_s = (capacity_bps / 8).max(1);
        let slot_len = slot_len.clamp(64, usize::from(u16::MAX));
        // Enough burst to cover the driver's wake-up delay (1 ms) and two full frames.
        let burst = (bytes_per_s / 1000).max(2 * slot_len as u64);
        let shaper = TokenBucket::new(bytes_per_s, burst);
        let min_weight = classes
            .specs()
            .iter()
            .filter(|s| !s.strict)
            .map(|s| u64::from(s.weight.clamp(1, 1_000_000)))
            .min()
            .unwrap_or(1);
        let unit = (slot_len as u64).div_ceil(min_weight);
        let mut queues = Vec::with_capacity(classes.len());
        for spec in classes.specs() {
            let (ms, floor) = if spec.strict {
                (10, 16 * 1024)
            } else {
                (50, 32 * 1024)
            };
            let limit_bytes = (bytes_per_s * ms / 1000).max(floor);
            let limit_packets = (limit_bytes as usize / 512).clamp(16, MAX_PACKETS);
            let cap = (spec.limit_percent > 0 && spec.limit_percent < 100).then(|| {
                let rate = (bytes_per_s * u64::from(spec.limit_percent) / 100).max(1);
                TokenBucket::new(rate, (rate / 100).max(2 * slot_len as u64))
            });
            queues.push(ClassQueue {
                spec: *spec,
                quantum: u64::from(spec.weight.clamp(1, 1_000_000)) * unit,
                deficit: 0,
                limit_bytes,
                limit_packets,
                bytes: 0,
                fifo: VecDeque::with_capacity(limit_packets),
                cap,
                stats: ClassStats::default(),
            });
        }
        let slots: usize = queues.iter().map(|q| q.limit_packets).sum();
        let first_weighted = queues.iter().take_while(|q| q.spec.strict).count();
        LinkScheduler {
            capacity_bps,
            shaper,
            classes: queues,
            first_weighted,
            slot_len,
            arena: vec![0u8; slots * slot_len].into_boxed_slice(),
            free: (0..slots as u32).rev().collect(),
            queued: 0,
            cursor: 0,
            granted: false,
        }
    }

    pub fn capacity_bps(&self) -> u64 {
        self.capacity_bps
    }

    /// Packets waiting in all classes.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Bytes of memory the arena holds.
    pub fn arena_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Per class, in the order of [`Classes::specs`]: its spec and counters.
    pub fn stats(&self) -> impl Iterator<Item = (&ClassSpec, ClassStats)> {
        self.classes.iter().map(|q| {
            let mut s = q.stats;
            s.queue_bytes = q.bytes;
            (&q.spec, s)
        })
    }

    /// Does this scheduler run exactly these classes?
    pub fn classes_match(&self, classes: &Classes) -> bool {
        self.classes.len() == classes.len()
            && self
                .classes
                .iter()
                .zip(classes.specs())
                .all(|(q, s)| q.spec == *s)
    }

    /// Drops every waiting packet (its link is going away), counted for its class.
    pub fn drop_queued(&mut self) {
        for q in &mut self.classes {
            while let Some((slot, len)) = q.fifo.pop_front() {
                q.stats.dropped_packets += 1;
                q.stats.dropped_bytes += u64::from(len);
                self.free.push(slot);
            }
            q.bytes = 0;
            q.deficit = 0;
        }
        self.queued = 0;
    }

    /// Is a packet of `class` behind any waiting packet that must go first?
    fn behind(&self, class: usize) -> bool {
        if class < self.first_weighted {
            self.classes
                .get(..=class)
                .is_some_and(|s| s.iter().any(|q| !q.fifo.is_empty()))
        } else {
            self.queued > 0
        }
    }

    /// A frame of `class` wants to leave at `now` (ns): send it, queue a copy, or drop it.
    #[inline]
    pub fn offer(&mut self, now: u64, class: u8, frame: &[u8]) -> Offer {
        let class = usize::from(class).min(self.classes.len().saturating_sub(1));
        let len = frame.len() as u64;
        if !self.behind(class) && self.shaper.conforms(now, len) {
            let Some(q) = self.classes.get_mut(class) else {
                return Offer::Dropped;
            };
            if q.cap_allows(now, len) {
                if let Some(cap) = q.cap.as_mut() {
                    cap.force_take(now, len);
                }
                self.shaper.force_take(now, len);
                q.stats.sent_packets += 1;
                q.stats.sent_bytes += len;
                return Offer::Send;
            }
        }
        self.enqueue(class, frame)
    }

    fn enqueue(&mut self, class: usize, frame: &[u8]) -> Offer {
        let len = frame.len();
        let Some(q) = self.classes.get_mut(class) else {
            return Offer::Dropped;
        };
        let full = q.bytes + len as u64 > q.limit_bytes || q.fifo.len() >= q.limit_packets;
        let slot = if full || len > self.slot_len {
            None
        } else {
            self.free.pop()
        };
        let Some(slot) = slot else {
            q.stats.dropped_packets += 1;
            q.stats.dropped_bytes += len as u64;
            return Offer::Dropped;
        };
        let start = slot as usize * self.slot_len;
        if let Some(dst) = self.arena.get_mut(start..start + len) {
            dst.copy_from_slice(frame);
        }
        q.fifo.push_back((slot, len as u16));
        q.bytes += len as u64;
        q.stats.queued_packets += 1;
        self.queued += 1;
        Offer::Queued
    }

    /// The strict class to serve next, or the earliest time a capped one may go.
    fn pick_strict(&self, now: u64) -> (Option<usize>, Option<u64>) {
        let mut wait: Option<u64> = None;
        for (i, q) in self.classes.iter().enumerate().take(self.first_weighted) {
            let Some(len) = q.head_len() else { continue };
            match &q.cap {
                Some(cap) if !cap.conforms(now, len) => {
                    let at = cap.ready_at(now, len);
                    wait = Some(wait.map_or(at, |w| w.min(at)));
                }
                _ => return (Some(i), None),
            }
        }
        (None, wait)
    }

    /// The weighted class deficit round robin serves next, or the earliest time a capped one
    /// may go. Leaves the round's state on the chosen class, so that a packet the shaper holds
    /// back is the next one sent.
    fn pick_weighted(&mut self, now: u64) -> (Option<usize>, Option<u64>) {
        let n = self.classes.len() - self.first_weighted;
        if n == 0 {
            return (None, None);
        }
        let mut wait: Option<u64> = None;
        let mut eligible = false;
        for q in &self.classes[self.first_weighted..] {
            let Some(len) = q.head_len() else { continue };
            if q.cap_allows(now, len) {
                eligible = true;
            } else if let Some(cap) = &q.cap {
                let at = cap.ready_at(now, len);
                wait = Some(wait.map_or(at, |w| w.min(at)));
            }
        }
        if !eligible {
            return (None, wait);
        }
        // Each quantum is at least a slot, so an eligible class qualifies on its first grant:
        // this ends within n + 1 steps.
        for _ in 0..=2 * n {
            let i = self.first_weighted + self.cursor % n;
            let q = &mut self.classes[i];
            match q.head_len() {
                Some(len) if q.cap_allows(now, len) => {
                    if !self.granted {
                        q.deficit = (q.deficit + q.quantum).min(2 * q.quantum);
                        self.granted = true;
                    }
                    if len <= q.deficit {
                        return (Some(i), None);
                    }
                }
                Some(_) => {}
                None => q.deficit = 0,
            }
            self.cursor = (self.cursor + 1) % n;
            self.granted = false;
        }
        (None, wait)
    }

    /// Sends waiting packets through `send` (false: the driver has no room, try later) while
    /// the shaper allows, strict classes first. Returns when to call again (ns), `None` when
    /// nothing waits.
    pub fn release(&mut self, now: u64, mut send: impl FnMut(&[u8]) -> bool) -> Option<u64> {
        while self.queued > 0 {
            let (strict, strict_wait) = self.pick_strict(now);
            let (class, wait) = match strict {
                Some(i) => (Some(i), None),
                None => {
                    let (w, weighted_wait) = self.pick_weighted(now);
                    let wait = match (strict_wait, weighted_wait) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    (w, wait)
                }
            };
            let Some(i) = class else {
                return Some(wait.unwrap_or(now + RETRY_NS).max(now + 1));
            };
            let Some(&(slot, len)) = self.classes[i].fifo.front() else {
                return Some(now + RETRY_NS);
            };
            let len64 = u64::from(len);
            if !self.shaper.conforms(now, len64) {
                return Some(self.shaper.ready_at(now, len64).max(now + 1));
            }
            let start = slot as usize * self.slot_len;
            let bytes = self.arena.get(start..start + usize::from(len))?;
            if !send(bytes) {
                return Some(now + RETRY_NS);
            }
            self.shaper.force_take(now, len64);
            let q = &mut self.classes[i];
            q.fifo.pop_front();
            q.bytes -= len64;
            q.stats.sent_packets += 1;
            q.stats.sent_bytes += len64;
            if let Some(cap) = q.cap.as_mut() {
                cap.force_take(now, len64);
            }
            if i >= self.first_weighted {
                q.deficit = q.deficit.saturating_sub(len64);
                if q.fifo.is_empty() {
                    q.deficit = 0;
                    self.cursor = (self.cursor + 1) % (self.classes.len() - self.first_weighted);
                    self.granted = false;
                }
            }
            self.free.push(slot);
            self.queued -= 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_proto::v1::{Priority, QosClass};

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn classes() -> Classes {
        Classes::new(&[]).expect("defaults")
    }

    fn class(c: &Classes, p: Priority) -> u8 {
        c.for_priority(p)
    }

    /// A frame of `len` bytes whose first byte says which class sent it.
    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0] = tag;
        f
    }

    /// Offers `per_class` (class, frame length, offered bit rate) for `secs` seconds in 100 µs
    /// steps, releasing as it goes; returns the bytes sent per class tag.
    fn run(
        s: &mut LinkScheduler,
        per_class: &[(u8, usize, u64)],
        secs: u64,
    ) -> (Vec<u64>, Vec<u64>) {
        let step = 100_000;
        let mut sent = vec![0u64; 8];
        // Offered bits × nanoseconds, so that no rate is rounded.
        let mut offered_credit = vec![0u128; per_class.len()];
        let mut now = 0;
        while now < secs * S {
            for (k, &(c, len, bps)) in per_class.iter().enumerate() {
                offered_credit[k] += u128::from(bps) * u128::from(step);
                let frame_cost = len as u128 * 8 * u128::from(S);
                while offered_credit[k] >= frame_cost {
                    offered_credit[k] -= frame_cost;
                    let f = frame(c, len);
                    if s.offer(now, c, &f) == Offer::Send {
                        sent[usize::from(c)] += len as u64;
                    }
                }
            }
            s.release(now, |b| {
                sent[usize::from(b[0])] += b.len() as u64;
                true
            });
            now += step;
        }
        let dropped = s.stats().map(|(_, st)| st.dropped_packets).collect();
        (sent, dropped)
    }

    #[test]
    fn an_idle_link_sends_at_once_without_copying() {
        let c = classes();
        let mut s = LinkScheduler::new(20_000_000, &c, 1536);
        for i in 0..3 {
            assert_eq!(
                s.offer(i * MS, class(&c, Priority::Normal), &frame(0, 1500)),
                Offer::Send
            );
        }
        assert_eq!(s.queued(), 0);
        assert_eq!(s.release(3 * MS, |_| true), None);
    }

    #[test]
    fn the_shaper_holds_the_link_to_its_capacity() {
        let c = classes();
        let normal = class(&c, Priority::Normal);
        let mut s = LinkScheduler::new(20_000_000, &c, 1536);
        // 100 Mbit/s offered into a 20 Mbit/s link for 2 s.
        let (sent, dropped) = run(&mut s, &[(normal, 1500, 100_000_000)], 2);
        let bps = sent[usize::from(normal)] * 8 / 2;
        assert!(bps.abs_diff(20_000_000) < 20_000_000 / 100, "{bps} bit/s");
        assert!(
            dropped[usize::from(normal)] > 0,
            "the excess is dropped at the queue's limit"
        );
        // The queue stays within its limit: 50 ms of the link.
        let st = s
            .stats()
            .nth(usize::from(normal))
            .map(|x| x.1)
            .expect("class");
        assert!(st.queue_bytes <= 20_000_000 / 8 / 20, "{}", st.queue_bytes);
    }

    #[test]
    fn weighted_classes_share_by_weight_within_a_few_percent() {
        let c = classes();
        let (high, normal, low) = (
            class(&c, Priority::High),
            class(&c, Priority::Normal),
            class(&c, Priority::Low),
        );
        let mut s = LinkScheduler::new(10_000_000, &c, 1536);
        // Each offers the full link, with different packet sizes: DRR counts bytes.
        let (sent, _) = run(
            &mut s,
            &[
                (high, 1500, 10_000_000),
                (normal, 600, 10_000_000),
                (low, 200, 10_000_000),
            ],
            3,
        );
        let total: u64 = [high, normal, low]
            .iter()
            .map(|&k| sent[usize::from(k)])
            .sum();
        for (k, weight) in [(high, 60.0), (normal, 30.0), (low, 10.0)] {
            let share = sent[usize::from(k)] as f64 / total as f64 * 100.0;
            assert!(
                (share - weight).abs() < 3.0,
                "class {k}: {share:.1}% for weight {weight}"
            );
        }
        assert!((total * 8 / 3).abs_diff(10_000_000) < 200_000, "{total}");
    }

    #[test]
    fn strict_priority_goes_first_and_its_cap_leaves_the_rest_to_others() {
        let c = classes();
        let (critical, normal) = (class(&c, Priority::Critical), class(&c, Priority::Normal));
        // Critical offers 8 Mbit/s into a 10 Mbit/s link: above its 50% cap.
        let mut s = LinkScheduler::new(10_000_000, &c, 1536);
        let (sent, _) = run(
            &mut s,
            &[(critical, 200, 8_000_000), (normal, 1500, 10_000_000)],
            3,
        );
        let crit = sent[usize::from(critical)] * 8 / 3;
        let rest = sent[usize::from(normal)] * 8 / 3;
        assert!(
            crit.abs_diff(5_000_000) < 150_000,
            "critical capped at 50%: {crit}"
        );
        assert!(
            rest.abs_diff(5_000_000) < 250_000,
            "normal gets the rest: {rest}"
        );

        // Under its cap, critical gets all it offers even when bulk fills the link.
        let mut s = LinkScheduler::new(10_000_000, &c, 1536);
        let (sent, dropped) = run(
            &mut s,
            &[(critical, 200, 1_000_000), (normal, 1500, 20_000_000)],
            3,
        );
        let crit = sent[usize::from(critical)] * 8 / 3;
        assert!(crit.abs_diff(1_000_000) < 20_000, "{crit}");
        assert_eq!(dropped[usize::from(critical)], 0);
        assert!(dropped[usize::from(normal)] > 0);
    }

    #[test]
    fn an_uncapped_strict_class_waits_only_for_the_frame_on_the_wire() {
        let c = Classes::new(&[
            QosClass {
                priority: Priority::Critical as i32,
                strict: true,
                weight: 0,
                dscp: 46,
                limit_percent: 0,
            },
            QosClass {
                priority: Priority::Normal as i32,
                strict: false,
                weight: 1,
                dscp: 0,
                limit_percent: 0,
            },
        ])
        .expect("valid");
        let (critical, normal) = (class(&c, Priority::Critical), class(&c, Priority::Normal));
        let mut s = LinkScheduler::new(20_000_000, &c, 1536);
        let mut now = 0;
        let (mut worst, mut waited) = (0, 0);
        for _ in 0..50 {
            // Bulk keeps its queue full and the link busy...
            while s.offer(now, normal, &frame(normal, 1500)) != Offer::Dropped {}
            s.release(now, |_| true);
            // ...when a full-size critical packet arrives: the shaper has less than a frame's
            // tokens left, so it waits, but ahead of every bulk packet.
            if s.offer(now, critical, &frame(critical, 1500)) == Offer::Queued {
                waited += 1;
                let start = now;
                let mut first = None;
                while first.is_none() {
                    now += 10_000;
                    s.release(now, |b| {
                        first.get_or_insert(b[0]);
                        true
                    });
                }
                assert_eq!(first, Some(critical), "critical leaves before queued bulk");
                worst = worst.max(now - start);
            }
            now += MS;
        }
        assert!(waited > 0, "the case under test happened");
        // At most one full frame's time at 20 Mbit/s (600 µs), plus the 10 µs step.
        assert!(worst <= 610_000, "critical waited up to {worst} ns");
    }

    #[test]
    fn a_capped_weighted_class_stays_under_its_cap_and_leaves_the_rest() {
        let weighted = |p: Priority, weight, limit_percent| QosClass {
            priority: p as i32,
            strict: false,
            weight,
            dscp: 0,
            limit_percent,
        };
        // High would take 90% by weight; its cap holds it to 20%.
        let c = Classes::new(&[
            weighted(Priority::High, 90, 20),
            weighted(Priority::Low, 10, 0),
        ])
        .expect("valid");
        let (high, low) = (class(&c, Priority::High), class(&c, Priority::Low));
        let mut s = LinkScheduler::new(10_000_000, &c, 1536);
        let (sent, _) = run(
            &mut s,
            &[(high, 1500, 10_000_000), (low, 1500, 10_000_000)],
            3,
        );
        let (h, l) = (
            sent[usize::from(high)] * 8 / 3,
            sent[usize::from(low)] * 8 / 3,
        );
        assert!(h.abs_diff(2_000_000) < 100_000, "high {h}");
        assert!(l.abs_diff(8_000_000) < 250_000, "low {l}");
    }

    #[test]
    fn a_driver_without_room_keeps_the_frames_queued() {
        let c = classes();
        let normal = class(&c, Priority::Normal);
        let mut s = LinkScheduler::new(1_000_000, &c, 1536);
        for _ in 0..10 {
            s.offer(0, normal, &frame(normal, 1000));
        }
        let before = s.queued();
        assert!(before > 0);
        let next = s.release(10 * S, |_| false);
        assert_eq!(s.queued(), before);
        assert_eq!(next, Some(10 * S + RETRY_NS));
        let mut n = 0;
        s.release(20 * S, |_| {
            n += 1;
            true
        });
        assert!(n > 0);
    }

    #[test]
    fn memory_is_fixed_at_construction() {
        let c = classes();
        let s = LinkScheduler::new(20_000_000, &c, 1536);
        // 20 Mbit/s: 2.5 MB/s; strict 10 ms → 25 KB (48 packets); weighted 50 ms → 125 KB
        // (244 packets) each.
        assert_eq!(s.arena_bytes(), (48 + 3 * 244) * 1536);
    }
}
