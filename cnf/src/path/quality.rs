//! Path quality estimates from a BFD session's measurements: latency, jitter and loss, over
//! a sliding window, in simulated-time-testable form (`now` is an argument).
//!
//! - **Round-trip time** comes from Poll→Final exchanges ([`super::bfd::Event::RoundTrip`]);
//!   the smoothed RTT is an EWMA with gain 1/8 (RFC 6298's SRTT). **Latency** is that round
//!   trip, as a Policy's `sla.maxLatencyMs` defines it: the routers' clocks are not
//!   synchronised, so a one-way delay could not be measured anyway.
//! - **Jitter** is RFC 3550's interarrival jitter estimator (`J += (|D| - J) / 16`) applied
//!   to successive round-trip samples: the variation of the round trip.
//! - **Loss** is counted per one-second bucket over a ten-second window, from two sources:
//!   round trips (a Poll whose Final never came: the Poll or the Final was lost) and, when the
//!   peer authenticates with Meticulous Keyed SHA1, gaps in its sequence numbers (one-way
//!   loss towards us). With both, the forward direction's loss is derived from the round trip,
//!   `1 - (1 - rt) / (1 - rx)`, and the larger of the two directions is reported; with round
//!   trips only (an unauthenticated peer such as FRR), the round-trip loss is reported, an
//!   upper bound of either direction. A figure needs at least [`MIN_SAMPLES`] samples in the
//!   window; before that it is unknown.

use std::time::{Duration, Instant};

/// Window of the loss estimate.
pub const WINDOW: Duration = Duration::from_secs(10);
const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_secs(1);
/// Samples a loss figure needs in the window: one loss in 100 is 1 %, so a single unlucky
/// sample cannot make a clean path look like it breaks a 1 % SLA.
pub const MIN_SAMPLES: u32 = 100;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket-length slot since `base` this counts (`u64::MAX`: never used).
    slot: u64,
    rt_trials: u32,
    rt_lost: u32,
    rx_expected: u32,
    rx_lost: u32,
}

/// What a path looks like now. `None`: not measured (yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Round-trip latency (SRTT), microseconds.
    pub latency_us: Option<u32>,
    pub jitter_us: Option<u32>,
    /// Parts per million.
    pub loss_ppm: Option<u32>,
}

/// Estimators for one path; see the module docs.
#[derive(Clone, Debug)]
pub struct Quality {
    base: Instant,
    buckets: [Bucket; BUCKETS],
    srtt: Option<Duration>,
    last_rtt: Option<Duration>,
    /// RFC 3550 jitter, in microseconds (kept as f64 for the 1/16 gain).
    jitter_us: f64,
}

fn ppm(lost: u32, total: u32) -> f64 {
    if total == 0 {
        0.0
    } else {
        f64::from(lost.min(total)) / f64::from(total)
    }
}

impl Quality {
    pub fn new(now: Instant) -> Quality {
        Quality {
            base: now,
            buckets: [Bucket {
                slot: u64::MAX,
                ..Bucket::default()
            }; BUCKETS],
            srtt: None,
            last_rtt: None,
            jitter_us: 0.0,
        }
    }

    /// Forgets everything (the path went down: what comes back is a new path).
    pub fn reset(&mut self, now: Instant) {
        *self = Quality::new(now);
    }

    fn slot(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.base).as_millis() / BUCKET.as_millis()) as u64
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let slot = self.slot(now);
        let b = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if b.slot != slot {
            *b = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        b
    }

    /// A Final answered a Poll after `rtt`; `lost` earlier Polls were not answered.
    pub fn on_round_trip(&mut self, now: Instant, rtt: Duration, lost: u32) {
        let b = self.bucket(now);
        b.rt_trials = b.rt_trials.saturating_add(lost.saturating_add(1));
        b.rt_lost = b.rt_lost.saturating_add(lost);
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        if let Some(last) = self.last_rtt {
            let d = last.abs_diff(rtt).as_secs_f64() * 1e6;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_rtt = Some(rtt);
    }

    /// An authenticated packet advanced the peer's Meticulous sequence number by `advance`
    /// (1 when nothing was lost in between).
    pub fn on_sequence(&mut self, now: Instant, advance: u32) {
        let b = self.bucket(now);
        b.rx_expected = b.rx_expected.saturating_add(advance);
        b.rx_lost = b.rx_lost.saturating_add(advance.saturating_sub(1));
    }

    /// The smoothed round-trip time.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn estimate(&self, now: Instant) -> Estimate {
        let current = self.slot(now);
        let (mut rt_trials, mut rt_lost, mut rx_expected, mut rx_lost) = (0u32, 0u32, 0u32, 0u32);
        for b in &self.buckets {
            if b.slot != u64::MAX && b.slot <= current && current - b.slot < BUCKETS as u64 {
                rt_trials = rt_trials.saturating_add(b.rt_trials);
                rt_lost = rt_lost.saturating_add(b.rt_lost);
                rx_expected = rx_expected.saturating_add(b.rx_expected);
                rx_lost = rx_lost.saturating_add(b.rx_lost);
            }
        }
        let rt = (rt_trials >= MIN_SAMPLES).then(|| ppm(rt_lost, rt_trials));
        let rx = (rx_expected >= MIN_SAMPLES).then(|| ppm(rx_lost, rx_expected));
        let loss = match (rt, rx) {
            (Some(rt), Some(rx)) if rx < 1.0 => {
                let forward = (1.0 - (1.0 - rt) / (1.0 - rx)).max(0.0);
                Some(forward.max(rx))
            }
            (Some(_), Some(rx)) => Some(rx),
            (rt, rx) => rt.or(rx),
        };
        let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        Estimate {
            latency_us: self.srtt.map(us),
            jitter_us: self.last_rtt.map(|_| self.jitter_us.round() as u32),
            loss_ppm: loss.map(|l| (l * 1e6).round() as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// 20 round trips per second for `secs`, every `lose_every`-th one lost (0: none).
    fn feed(q: &mut Quality, start: Instant, secs: u64, rtt: Duration, lose_every: u32) -> Instant {
        let mut now = start;
        let mut lost = 0;
        for i in 1..=secs * 20 {
            now += 50 * MS;
            if lose_every != 0 && i % u64::from(lose_every) == 0 {
                lost += 1;
                continue;
            }
            q.on_round_trip(now, rtt, lost);
            lost = 0;
        }
        now
    }

    #[test]
    fn latency_is_the_smoothed_round_trip() {
        let t0 = Instant::now();
        let mut q = Quality::new(t0);
        assert_eq!(q.estimate(t0), Estimate::default(), "nothing measured yet");
        let now = feed(&mut q, t0, 6, 40 * MS, 0);
        let e = q.estimate(now);
        assert_eq!(e.latency_us, Some(40_000));
        assert_eq!(e.jitter_us, Some(0));
        assert_eq!(e.loss_ppm, Some(0));
        // A step to 100 ms: the EWMA follows within a couple of dozen samples.
        let now = feed(&mut q, now, 2, 100 * MS, 0);
        let l = q.estimate(now).latency_us.expect("measured");
        assert!((98_000..=100_000).contains(&l), "{l}");
    }

    #[test]
    fn jitter_follows_rfc_3550() {
        let t0 = Instant::now();
        let mut q = Quality::new(t0);
        let mut now = t0;
        // Alternating 20 / 30 ms: |D| = 10 ms each time, J converges to 10 ms.
        for i in 0..400 {
            now += 50 * MS;
            q.on_round_trip(now, if i % 2 == 0 { 20 * MS } else { 30 * MS }, 0);
        }
        let j = q.estimate(now).jitter_us.expect("measured");
        assert!((9_900..=10_000).contains(&j), "{j}");
    }

    #[test]
    fn round_trip_loss_is_counted_over_the_window_and_ages_out() {
        let t0 = Instant::now();
        let mut q = Quality::new(t0);
        let now = feed(&mut q, t0, 10, 20 * MS, 20); // 5 %
        let loss = q.estimate(now).loss_ppm.expect("200 samples");
        assert!((49_000..=51_000).contains(&loss), "{loss}");
        // Ten clean seconds later the lossy ones have left the window.
        let now = feed(&mut q, now, 10, 20 * MS, 0);
        assert_eq!(q.estimate(now).loss_ppm, Some(0));
        // A silent path keeps no figure: the buckets expire.
        assert_eq!(q.estimate(now + WINDOW + BUCKET).loss_ppm, None);
    }

    #[test]
    fn with_sequence_numbers_each_direction_counts() {
        let t0 = Instant::now();
        // 5 % lost towards us, none forward: round trips see the same 5 %.
        let mut q = Quality::new(t0);
        let mut now = t0;
        for i in 1..=200u32 {
            now += 50 * MS;
            if i % 20 == 0 {
                q.on_sequence(now, 2);
                q.on_round_trip(now, 20 * MS, 1);
            } else {
                q.on_sequence(now, 1);
                q.on_round_trip(now, 20 * MS, 0);
            }
        }
        let loss = q.estimate(now).loss_ppm.expect("measured");
        assert!((45_000..=55_000).contains(&loss), "reverse 5 %: {loss}");
        // 5 % lost forward only: our receive side sees nothing, the round trip sees 5 %.
        let mut q = Quality::new(t0);
        let mut now = t0;
        for i in 1..=200u32 {
            now += 50 * MS;
            q.on_sequence(now, 1);
            q.on_round_trip(now, 20 * MS, u32::from(i % 20 == 0));
        }
        let loss = q.estimate(now).loss_ppm.expect("measured");
        assert!((45_000..=55_000).contains(&loss), "forward 5 %: {loss}");
    }

    #[test]
    fn too_few_samples_give_no_loss_figure() {
        let t0 = Instant::now();
        let mut q = Quality::new(t0);
        for i in 0..(MIN_SAMPLES - 1) {
            q.on_round_trip(t0 + MS * i, 10 * MS, 0);
        }
        assert_eq!(q.estimate(t0 + MS * 100).loss_ppm, None);
        q.on_round_trip(t0 + MS * 100, 10 * MS, 0);
        assert_eq!(q.estimate(t0 + MS * 100).loss_ppm, Some(0));
    }
}
