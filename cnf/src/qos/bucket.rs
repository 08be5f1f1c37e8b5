//! Token buckets, as the GCRA (the "virtual scheduling" form of ITU-T I.371): instead of a token
//! count refilled on every call, one number — the *theoretical arrival time* `tat` — says when
//! the bucket will be full again. Taking `n` tokens moves `tat` forward by `n / rate`; a take
//! conforms when it leaves `tat` no more than `burst / rate` ahead of `now`. One `u64` of state,
//! no division per packet (the cost per token is precomputed in fixed point), exact over any
//! span of time, and `ready_at` falls out for free — which is what a shaper needs to know when
//! to wake up.
//!
//! Time is nanoseconds since an instant the owner chose ([`nanos_since`]); nothing here reads a
//! clock.

use std::time::Instant;

/// Fixed-point fraction bits of the per-token cost.
const FRACTION: u32 = 24;

/// Nanoseconds from `base` to `now` (0 when `now` is earlier), saturating after 584 years.
#[inline]
pub fn nanos_since(base: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// A bucket of `burst` tokens refilled at `rate` tokens per second. Tokens are bytes for
/// bandwidth limits and sessions for session-rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Nanoseconds per token, shifted left by [`FRACTION`].
    cost: u64,
    /// How far `tat` may run ahead of now: the time `burst` tokens take to accrue.
    depth: u64,
    /// When the bucket is full again (ns since the owner's base).
    tat: u64,
    rate: u64,
    burst: u64,
}

impl TokenBucket {
    /// A full bucket. `rate` is clamped to at least 1 token/s, `burst` to at least 1 token.
    pub fn new(rate_per_second: u64, burst: u64) -> Self {
        let rate = rate_per_second.max(1);
        let burst = burst.max(1);
        let cost = ((1_000_000_000u128 << FRACTION) / u128::from(rate)).max(1);
        let cost = u64::try_from(cost).unwrap_or(u64::MAX);
        let mut b = TokenBucket {
            cost,
            depth: 0,
            tat: 0,
            rate,
            burst,
        };
        b.depth = b.time_for(burst);
        b
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Nanoseconds `tokens` take to accrue.
    #[inline]
    fn time_for(&self, tokens: u64) -> u64 {
        let t = (u128::from(tokens) * u128::from(self.cost)) >> FRACTION;
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Takes `tokens` if the bucket holds them at `now`; false (and nothing taken) otherwise.
    #[inline]
    pub fn try_take(&mut self, now: u64, tokens: u64) -> bool {
        let after = self.tat.max(now).saturating_add(self.time_for(tokens));
        if after - now > self.depth {
            return false;
        }
        self.tat = after;
        true
    }

    /// Would `tokens` conform at `now`?
    #[inline]
    pub fn conforms(&self, now: u64, tokens: u64) -> bool {
        let after = self.tat.max(now).saturating_add(self.time_for(tokens));
        after - now <= self.depth
    }

    /// When `tokens` will conform (`now` or later). A request above `burst` never conforms by
    /// itself; it is reported as conforming once the bucket is full.
    #[inline]
    pub fn ready_at(&self, now: u64, tokens: u64) -> u64 {
        let need = self.time_for(tokens.min(self.burst));
        let at = self.tat.saturating_add(need).saturating_sub(self.depth);
        at.max(now)
    }

    /// Takes `tokens` whatever the level (a shaper that sent a packet larger than the burst).
    #[inline]
    pub fn force_take(&mut self, now: u64, tokens: u64) {
        self.tat = self.tat.max(now).saturating_add(self.time_for(tokens));
    }

    /// The bucket's whole state besides its parameters: when it is full again. Lets a table of
    /// many buckets with the same parameters store one `u64` each.
    #[inline]
    pub fn tat(&self) -> u64 {
        self.tat
    }

    /// This bucket's parameters with the state `tat` (from [`TokenBucket::tat`]).
    #[inline]
    pub fn with_tat(mut self, tat: u64) -> Self {
        self.tat = tat;
        self
    }

    /// Tokens available at `now` (for display and tests).
    pub fn available(&self, now: u64) -> u64 {
        let ahead = self.tat.saturating_sub(now);
        let used = self.depth.saturating_sub(ahead);
        // Tokens that `used` nanoseconds are worth, rounded down.
        let t = (u128::from(used) << FRACTION) / u128::from(self.cost.max(1));
        u64::try_from(t).unwrap_or(u64::MAX).min(self.burst)
    }

    /// Is the bucket full at `now` (so that forgetting it loses nothing)?
    #[inline]
    pub fn is_full(&self, now: u64) -> bool {
        self.tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_gives_its_burst_at_once_and_then_nothing() {
        let mut b = TokenBucket::new(1000, 100);
        let t = 5 * S;
        for _ in 0..100 {
            assert!(b.try_take(t, 1));
        }
        assert!(!b.try_take(t, 1), "the burst is 100 tokens");
        assert_eq!(b.available(t), 0);
        // One token accrues every millisecond at 1000/s.
        assert!(!b.try_take(t + MS - 1, 1));
        assert!(b.try_take(t + MS, 1));
    }

    #[test]
    fn the_sustained_rate_is_the_configured_rate_within_a_token() {
        // 20 Mbit/s in bytes, 1,500-byte packets offered as fast as they conform, for 10 s.
        let rate = 20_000_000 / 8;
        let mut b = TokenBucket::new(rate, 3000);
        let (mut sent, mut now) = (0u64, 0u64);
        while now < 10 * S {
            if b.try_take(now, 1500) {
                sent += 1500;
            }
            now += 10_000; // offered every 10 µs: far above the rate
        }
        let expected = rate * 10 + 3000; // the rate plus the initial burst
        assert!(sent.abs_diff(expected) <= 1500, "{sent} vs {expected}");
    }

    #[test]
    fn ready_at_is_exactly_when_a_take_first_conforms() {
        let mut b = TokenBucket::new(1_000_000, 1500);
        assert!(b.try_take(0, 1500));
        let at = b.ready_at(0, 1000);
        assert_eq!(at, 1000 * 1000, "1,000 bytes at 1 MB/s take 1 ms");
        assert!(!b.conforms(at - 1, 1000));
        assert!(b.conforms(at, 1000));
        assert!(b.try_take(at, 1000));
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_its_burst() {
        let mut b = TokenBucket::new(10, 5);
        for _ in 0..5 {
            assert!(b.try_take(0, 1));
        }
        assert!(!b.try_take(0, 1));
        // An hour later: still only 5.
        let later = 3600 * S;
        assert_eq!(b.available(later), 5);
        assert!(b.is_full(later));
        for _ in 0..5 {
            assert!(b.try_take(later, 1));
        }
        assert!(!b.try_take(later, 1));
    }

    #[test]
    fn a_forced_take_puts_the_bucket_in_debt() {
        let mut b = TokenBucket::new(1000, 10);
        b.force_take(0, 30);
        assert!(!b.conforms(0, 1));
        // 30 tokens were taken from 10: 20 tokens of debt plus 1 needed = 21 ms.
        assert_eq!(b.ready_at(0, 1), 21 * MS);
    }

    #[test]
    fn extreme_rates_do_not_overflow() {
        let mut slow = TokenBucket::new(0, 0);
        assert!(slow.try_take(0, 1));
        assert!(!slow.try_take(0, 1));
        let mut fast = TokenBucket::new(u64::MAX, u64::MAX);
        assert!(fast.try_take(u64::MAX / 2, u64::MAX / 4));
        let _ = fast.ready_at(u64::MAX, u64::MAX);
    }
}
