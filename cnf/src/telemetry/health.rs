//! Liveness from progress: [`Heartbeat`] says whether a counter that a working loop advances
//! has moved recently — pure, `now` is an argument.
//!
//! The router's packet I/O workers count every pass over their sockets (a received frame, or
//! an empty poll; an idle worker passes at least every 10 ms), so their counters' sum stands
//! still only when no worker runs: one exited with an error or is stuck. `signpost-router`
//! reads that sum when `/healthz` is asked and answers 503 when it stood still for longer than
//! the stall bound, so that the kubelet restarts a router whose data plane died while the
//! process lives on.

use std::time::{Duration, Instant};

/// The last value of a progress counter and when it last changed.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    stall: Duration,
    last: Option<(u64, Instant)>,
}

impl Heartbeat {
    /// A heartbeat that counts as stopped after `stall` without progress.
    pub fn new(stall: Duration) -> Self {
        Self { stall, last: None }
    }

    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// Records the counter's value read at `now`.
    pub fn observe(&mut self, now: Instant, progress: u64) {
        match self.last {
            Some((value, _)) if value == progress => {}
            _ => self.last = Some((progress, now)),
        }
    }

    /// How long the counter has stood still at `now` (zero before the first observation).
    pub fn still_for(&self, now: Instant) -> Duration {
        self.last.map_or(Duration::ZERO, |(_, since)| {
            now.saturating_duration_since(since)
        })
    }

    /// Whether the counter moved within the stall bound of `now` (or was never observed).
    pub fn alive(&self, now: Instant) -> bool {
        self.still_for(now) < self.stall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_stands_still_for_the_stall_bound_is_dead_and_moving_revives_it() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut h = Heartbeat::new(Duration::from_secs(5));
        assert!(h.alive(t0), "nothing observed yet: alive");
        h.observe(t0, 100);
        h.observe(s(3), 100);
        assert!(h.alive(s(4)));
        assert_eq!(h.still_for(s(4)), Duration::from_secs(4));
        h.observe(s(5), 100);
        assert!(!h.alive(s(5)), "still since t0: 5 s");
        h.observe(s(6), 101);
        assert!(h.alive(s(6)) && h.alive(s(10)));
        assert!(!h.alive(s(11)));
        // A counter wrapping around is progress too.
        h.observe(s(12), 0);
        assert!(h.alive(s(12)));
    }
}
