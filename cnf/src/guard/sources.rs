//! The per-source new-session limiter: one token bucket per (source address, access rule), in a
//! fixed-size, 4-way set-associative table — so that a flood from spoofed sources cannot grow
//! the router's memory. The set is chosen by a keyed hash (the process's random seed), so
//! sources cannot be picked to collide.
//!
//! Eviction, when a new source finds its set full: first an entry whose bucket is full again
//! (forgetting it loses nothing: a new entry starts full), else the entry closest to full.
//! Evicting an entry whose bucket was not full is counted (`evictions`): that source gets a
//! fresh bucket, so the limit leaks for it. That is the bounded table's price, paid only under a
//! flood of more distinct sources than the table holds — which is why the per-tenant rate and
//! the per-tenant half-open limit exist as well: they need no per-source state.

use std::hash::BuildHasher;
use std::net::IpAddr;

use foldhash::fast::FixedState;

use crate::qos::TokenBucket;

const WAYS: usize = 4;
/// Entries the table holds (sets × ways): 32 bytes each, 256 KiB per worker.
pub const DEFAULT_ENTRIES: usize = 8192;
const EMPTY: u16 = u16::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    addr: [u8; 16],
    /// Rule id, or [`EMPTY`].
    rule: u16,
    tat: u64,
}

const VACANT: Entry = Entry {
    addr: [0; 16],
    rule: EMPTY,
    tat: 0,
};

/// The limiter table. See the module docs.
#[derive(Clone, Debug)]
pub struct SourceLimiter {
    sets: Box<[[Entry; WAYS]]>,
    hasher: FixedState,
    evictions: u64,
}

fn key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

impl SourceLimiter {
    /// A table of about `entries` entries (rounded up to a power of two sets of 4).
    pub fn new(entries: usize, seed: u64) -> Self {
        let sets = entries.div_ceil(WAYS).next_power_of_two().max(1);
        SourceLimiter {
            sets: vec![[VACANT; WAYS]; sets].into_boxed_slice(),
            hasher: FixedState::with_seed(seed),
            evictions: 0,
        }
    }

    /// Entries the table can hold.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.sets
            .iter()
            .flatten()
            .filter(|e| e.rule != EMPTY)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries replaced while their bucket was not full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Bytes the table holds; fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        self.sets.len() * size_of::<[Entry; WAYS]>()
    }

    /// Takes one token from the bucket of (`src`, `rule`) — whose parameters are `template` —
    /// at `now` (ns). False: the source is over its rate.
    pub fn admit(&mut self, now: u64, src: IpAddr, rule: u16, template: &TokenBucket) -> bool {
        let addr = key(src);
        let hash = self.hasher.hash_one((addr, rule));
        let mask = self.sets.len() - 1;
        let Some(set) = self.sets.get_mut(hash as usize & mask) else {
            return true;
        };
        let way = match set.iter().position(|e| e.rule == rule && e.addr == addr) {
            Some(i) => i,
            None => {
                // A vacant way, else one whose bucket is full again, else the fullest.
                let victim = set
                    .iter()
                    .position(|e| e.rule == EMPTY)
                    .or_else(|| set.iter().position(|e| e.tat <= now))
                    .unwrap_or_else(|| {
                        let mut best = 0;
                        for (i, e) in set.iter().enumerate() {
                            if e.tat < set[best].tat {
                                best = i;
                            }
                        }
                        self.evictions += 1;
                        best
                    });
                set[victim] = Entry { addr, rule, tat: 0 };
                victim
            }
        };
        let entry = &mut set[way];
        let mut bucket = template.with_tat(entry.tat);
        let ok = bucket.try_take(now, 1);
        entry.tat = bucket.tat();
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: u64 = 1_000_000_000;

    #[test]
    fn each_source_gets_its_own_rate() {
        let mut t = SourceLimiter::new(1024, 1);
        let per_second = TokenBucket::new(5, 5);
        let a = IpAddr::V4(Ipv4Addr::new(10, 1, 30, 9));
        let b = IpAddr::V4(Ipv4Addr::new(10, 1, 30, 10));
        let now = 10 * S;
        let admitted = (0..20).filter(|_| t.admit(now, a, 0, &per_second)).count();
        assert_eq!(admitted, 5, "a burst of 5");
        assert!(
            t.admit(now, b, 0, &per_second),
            "another source is not affected"
        );
        assert!(
            t.admit(now, a, 1, &per_second),
            "nor the same source under another rule"
        );
        // One more token 200 ms later.
        assert!(!t.admit(now + S / 5 - 1, a, 0, &per_second));
        assert!(t.admit(now + S / 5, a, 0, &per_second));
    }

    #[test]
    fn a_spoofed_flood_keeps_the_table_at_its_size_and_counts_evictions() {
        let mut t = SourceLimiter::new(8192, 7);
        let memory = t.memory_bytes();
        let per_second = TokenBucket::new(10, 10);
        // One million distinct spoofed sources within one second.
        for i in 0..1_000_000u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i));
            assert!(
                t.admit(i as u64 * 1000, src, 0, &per_second),
                "a new source starts full"
            );
        }
        assert_eq!(t.memory_bytes(), memory, "no growth");
        assert_eq!(t.capacity(), 8192);
        assert_eq!(t.len(), 8192);
        assert!(t.evictions() > 900_000, "{}", t.evictions());
    }

    #[test]
    fn entries_whose_bucket_is_full_again_are_replaced_without_loss() {
        let mut t = SourceLimiter::new(4, 3); // one set of four
        let per_second = TokenBucket::new(1, 1);
        for i in 0..100u32 {
            let src = IpAddr::V4(Ipv4Addr::from(i));
            // Two seconds apart: every earlier bucket is full again.
            assert!(t.admit(u64::from(i) * 2 * S, src, 0, &per_second));
        }
        assert_eq!(t.evictions(), 0);
    }

    #[test]
    fn a_limited_source_stays_limited_while_others_churn_within_the_table() {
        let mut t = SourceLimiter::new(8192, 9);
        let per_second = TokenBucket::new(2, 2);
        let flooder = IpAddr::V4(Ipv4Addr::new(10, 1, 30, 9));
        let now = 5 * S;
        assert!(t.admit(now, flooder, 0, &per_second));
        assert!(t.admit(now, flooder, 0, &per_second));
        // 1,000 other sources (well under the table's size) come and go.
        for i in 0..1000u32 {
            t.admit(
                now,
                IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | i)),
                0,
                &per_second,
            );
        }
        assert!(
            !t.admit(now, flooder, 0, &per_second),
            "still over its rate"
        );
    }
}
