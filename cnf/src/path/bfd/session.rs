//! One BFD session (RFC 5880 §6), asynchronous mode, as a pure state machine: packets in
//! ([`Session::handle`]), packets out ([`Session::poll_transmit`]), timers
//! ([`Session::poll_timeout`], [`Session::handle_timeout`]) and events
//! ([`Session::poll_event`]). Time is an argument; nothing here reads a clock or owns a socket.
//!
//! What it implements, by section:
//!
//! - §6.2 states AdminDown / Down / Init / Up and the three-way handshake of §6.8.6;
//!   §6.8.1 discriminators (Your Discriminator is zeroed after a Detection Time without a
//!   packet); §6.1 active and passive roles (a passive session is silent until it knows the
//!   remote discriminator).
//! - §6.8.3 timers: 1 s Desired Min TX until Up, the configured rate once Up; a change of
//!   either interval starts a Poll Sequence; an increase of the TX interval (or a decrease of
//!   the RX interval, for the Detection Time) takes effect only when the sequence ends.
//! - §6.8.4 Detection Time = remote Detect Mult × max(Required Min RX, remote Desired Min TX).
//! - §6.5 Poll/Final: a received Poll is answered at once by a Final outside the periodic
//!   schedule; our own Poll rides on periodic packets until a Final arrives.
//! - §6.8.7 transmission: interval max(Desired Min TX, remote Required Min RX), jittered to
//!   75–100 % (75–90 % with Detect Mult 1); none while the remote asks for 0; none while the
//!   remote is in Demand mode and both sides are Up (outside Poll Sequences).
//!
//! Path quality (a Signpost use of §6.5, which lets a system poll at any time): a session with
//! `probe` set starts a Poll Sequence whenever none is in progress and the previous one left
//! no stray Finals behind (Polls sent after the one that was answered are answered too; the
//! next probe waits for those answers, or for two smoothed round trips after its last Poll), and
//! reports each Final as [`Event::RoundTrip`]: the round-trip time from the Poll it answered
//! and how many earlier Polls of the sequence went unanswered (lost round trips). When a
//! sequence carried several Polls, the answered one is the Poll whose age best matches the
//! smoothed round-trip time (the first one before any estimate exists). Only sequences that
//! began while Up and ended while still Up measure: a Final answering a Poll sent before a cut
//! (or at the slow rate while Down) would report the outage as a round trip of the path that
//! came back, and the smoothed round trip is forgotten when the session leaves Up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::packet::{Control, Diagnostic, State};

/// The slow rate of §6.8.3 while the session is not Up.
pub const SLOW_TX: Duration = Duration::from_secs(1);
/// Polls of one sequence remembered for matching the Final.
const POLLS_REMEMBERED: usize = 8;

/// How one session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Desired Min TX Interval once Up.
    pub desired_min_tx: Duration,
    /// Required Min RX Interval.
    pub required_min_rx: Duration,
    pub detect_mult: u8,
    /// Passive role (§6.1): send nothing until the remote's discriminator is known.
    pub passive: bool,
    /// Run Poll Sequences continuously for round-trip measurement.
    pub probe: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            desired_min_tx: Duration::from_millis(50),
            required_min_rx: Duration::from_millis(50),
            detect_mult: 3,
            passive: false,
            probe: false,
        }
    }
}

/// What happened in a session, for the path monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    StateChanged {
        from: State,
        to: State,
        diagnostic: Diagnostic,
    },
    /// A Final answered one of our Polls `rtt` after it left; `lost` earlier Polls of the
    /// same sequence were not answered.
    RoundTrip { rtt: Duration, lost: u32 },
}

#[derive(Clone, Debug, Default)]
struct Poll {
    /// Send times of the sequence's Polls (the first `POLLS_REMEMBERED`).
    sent: Vec<Instant>,
    /// Polls sent in all.
    count: u32,
    /// The sequence measures the round trip: it began while Up and the session stayed Up. A
    /// Final for a Poll sent before a cut (or at the slow rate while Down) says nothing about
    /// the path that came back.
    measures: bool,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn from_micros(us: u32) -> Duration {
    Duration::from_micros(u64::from(us))
}

/// One BFD session; see the module docs.
#[derive(Clone, Debug)]
pub struct Session {
    config: SessionConfig,
    local_discr: u32,
    remote_discr: u32,
    state: State,
    remote_state: State,
    local_diag: Diagnostic,
    remote_demand: bool,
    /// µs, as received; RFC 5880 starts it at 1.
    remote_min_rx: u32,
    remote_desired_min_tx: u32,
    remote_detect_mult: u8,
    /// What we advertise (µs).
    desired_min_tx: u32,
    required_min_rx: u32,
    /// What we use until a Poll Sequence confirms an increase (TX) or a decrease (RX).
    tx_in_use: u32,
    rx_in_use: u32,
    /// A Poll Sequence is wanted (parameter change) or running.
    poll_wanted: bool,
    poll: Option<Poll>,
    final_pending: bool,
    last_tx: Option<Instant>,
    next_tx: Option<Instant>,
    last_rx: Option<Instant>,
    detect_deadline: Option<Instant>,
    next_probe: Option<Instant>,
    /// Finals still to come for Polls of a finished sequence, and until when to wait for them.
    strays: u32,
    strays_until: Option<Instant>,
    srtt: Option<Duration>,
    rng: u64,
    events: VecDeque<Event>,
}

impl Session {
    /// A session in Down. `local_discr` must be non-zero and unique on this system; `seed`
    /// drives the transmit jitter.
    pub fn new(now: Instant, config: SessionConfig, local_discr: u32, seed: u64) -> Session {
        let slow = micros(SLOW_TX);
        let rx = micros(config.required_min_rx).max(1);
        Session {
            config,
            local_discr,
            remote_discr: 0,
            state: State::Down,
            remote_state: State::Down,
            local_diag: Diagnostic::None,
            remote_demand: false,
            remote_min_rx: 1,
            remote_desired_min_tx: 0,
            remote_detect_mult: 0,
            desired_min_tx: slow,
            required_min_rx: rx,
            tx_in_use: slow,
            rx_in_use: rx,
            poll_wanted: false,
            poll: None,
            final_pending: false,
            last_tx: None,
            next_tx: (!config.passive).then_some(now),
            last_rx: None,
            detect_deadline: None,
            next_probe: None,
            strays: 0,
            strays_until: None,
            srtt: None,
            rng: seed | 1,
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    pub fn diagnostic(&self) -> Diagnostic {
        self.local_diag
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The Detection Time in force (§6.8.4); `None` before a packet from the remote.
    pub fn detection_time(&self) -> Option<Duration> {
        if self.remote_detect_mult == 0 {
            return None;
        }
        let interval = self.rx_in_use.max(self.remote_desired_min_tx);
        Some(from_micros(interval) * u32::from(self.remote_detect_mult))
    }

    /// The periodic transmit interval before jitter, or `None` when none may be sent.
    pub fn tx_interval(&self) -> Option<Duration> {
        if self.remote_min_rx == 0 {
            return None;
        }
        if self.config.passive && self.remote_discr == 0 {
            return None;
        }
        let both_up = self.state == State::Up && self.remote_state == State::Up;
        if self.remote_demand && both_up && self.poll.is_none() && !self.poll_wanted {
            return None;
        }
        Some(from_micros(self.tx_in_use.max(self.remote_min_rx)))
    }

    /// Changes the configured intervals (config reload); starts a Poll Sequence when the
    /// advertised values change.
    pub fn set_config(&mut self, now: Instant, config: SessionConfig) {
        self.config = config;
        self.update_intervals(now);
    }

    /// Administratively down (§6.8.16): AdminDown with diagnostic 7 from now on.
    pub fn set_admin_down(&mut self, now: Instant) {
        self.change_state(now, State::AdminDown, Diagnostic::AdministrativelyDown);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn random_fraction(&mut self, lo: u64, hi: u64) -> u64 {
        // xorshift64*: jitter only needs to be spread, not secret.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        lo + x.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo + 1)
    }

    fn jittered(&mut self, interval: Duration) -> Duration {
        // §6.8.7: 75–100 % of the interval, at most 90 % when Detect Mult is 1.
        let hi = if self.config.detect_mult == 1 {
            900
        } else {
            1000
        };
        let permille = self.random_fraction(750, hi);
        interval * permille as u32 / 1000
    }

    fn change_state(&mut self, now: Instant, to: State, diagnostic: Diagnostic) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.local_diag = diagnostic;
        self.events.push_back(Event::StateChanged {
            from,
            to,
            diagnostic,
        });
        if to != State::Up {
            // No probes outside Up; a sequence in flight ends without a sample, and what was
            // learnt of the round trip belongs to the path that went away.
            self.next_probe = None;
            if let Some(p) = &mut self.poll {
                p.measures = false;
                p.sent.clear();
            }
            self.strays = 0;
            self.strays_until = None;
            self.srtt = None;
        } else {
            self.next_probe = Some(now);
        }
        self.update_intervals(now);
    }

    /// Recomputes the advertised intervals from the state and config (§6.8.3).
    fn update_intervals(&mut self, now: Instant) {
        let desired = if self.state == State::Up {
            micros(self.config.desired_min_tx).max(1)
        } else {
            micros(SLOW_TX).max(micros(self.config.desired_min_tx))
        };
        let required = micros(self.config.required_min_rx).max(1);
        if desired == self.desired_min_tx && required == self.required_min_rx {
            return;
        }
        let up = self.state == State::Up;
        if desired < self.tx_in_use || !up {
            self.tx_in_use = desired;
        }
        if required > self.rx_in_use || !up {
            self.rx_in_use = required;
        }
        self.desired_min_tx = desired;
        self.required_min_rx = required;
        self.poll_wanted = true;
        self.reschedule(now);
        self.rearm_detection();
    }

    /// After an interval change: the next periodic packet no later than the new interval
    /// allows, counted from the last one.
    fn reschedule(&mut self, now: Instant) {
        let Some(interval) = self.tx_interval() else {
            self.next_tx = None;
            return;
        };
        let earliest = match self.last_tx {
            Some(last) => last + self.jittered(interval),
            None => now,
        };
        self.next_tx = Some(match self.next_tx {
            Some(t) if t <= earliest => t,
            _ => earliest,
        });
    }

    fn rearm_detection(&mut self) {
        if let (Some(last), Some(detect)) = (self.last_rx, self.detection_time()) {
            self.detect_deadline = Some(last + detect);
        }
    }

    /// A received Control packet that the monitor has demultiplexed to this session and
    /// authenticated (§6.8.6, from "set bfd.RemoteDiscr" on). Returns `false` when the packet
    /// is discarded (the session is AdminDown).
    pub fn handle(&mut self, now: Instant, c: &Control) -> bool {
        if self.state == State::AdminDown {
            return false;
        }
        self.remote_discr = c.my_discriminator;
        self.remote_state = c.state;
        self.remote_demand = c.demand;
        self.remote_desired_min_tx = c.desired_min_tx;
        self.remote_detect_mult = c.detect_mult;
        let rx_changed = self.remote_min_rx != c.required_min_rx;
        self.remote_min_rx = c.required_min_rx;
        if c.final_ && self.poll.is_some() {
            self.end_poll(now);
        } else if c.final_ && self.strays > 0 {
            self.strays -= 1;
        }
        match (self.state, c.state) {
            (State::Init | State::Up, State::AdminDown) => {
                self.change_state(now, State::Down, Diagnostic::NeighborSignaledSessionDown);
            }
            (State::Down, State::Down) => {
                self.change_state(now, State::Init, Diagnostic::None);
            }
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.change_state(now, State::Up, Diagnostic::None);
            }
            (State::Up, State::Down) => {
                self.change_state(now, State::Down, Diagnostic::NeighborSignaledSessionDown);
            }
            _ => {}
        }
        if c.poll {
            self.final_pending = true;
        }
        if rx_changed || self.next_tx.is_none() {
            self.reschedule(now);
        }
        self.last_rx = Some(now);
        self.rearm_detection();
        true
    }

    /// A Final ended our Poll Sequence: apply deferred intervals, report the round trip.
    fn end_poll(&mut self, now: Instant) {
        let Some(poll) = self.poll.take() else { return };
        self.tx_in_use = self.desired_min_tx;
        self.rx_in_use = self.required_min_rx;
        self.rearm_detection();
        if poll.sent.is_empty() {
            return;
        }
        let age = |t: &Instant| now.saturating_duration_since(*t);
        let answered = match self.srtt {
            None => 0,
            Some(srtt) => poll
                .sent
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| age(t).abs_diff(srtt))
                .map_or(0, |(i, _)| i),
        };
        let rtt = poll.sent.get(answered).map_or(Duration::ZERO, age);
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        self.events.push_back(Event::RoundTrip {
            rtt,
            lost: answered as u32,
        });
        if self.config.probe && self.state == State::Up {
            let last = poll.sent.last().copied().unwrap_or(now);
            let guard = self.srtt.unwrap_or(SLOW_TX) * 2;
            self.strays = poll.count.saturating_sub(answered as u32 + 1);
            self.strays_until = Some(last + guard);
            self.next_probe = Some(now);
        }
    }

    /// When [`Session::handle_timeout`] or [`Session::poll_transmit`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = if self.final_pending {
            self.last_rx
        } else {
            self.next_tx
        };
        match (tx, self.detect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the Detection Time: a session in Init or Up that heard nothing goes Down with
    /// diagnostic 1; in any state the remote discriminator is forgotten (§6.8.1).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.detect_deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        self.detect_deadline = None;
        self.remote_discr = 0;
        self.remote_state = State::Down;
        self.remote_demand = false;
        if matches!(self.state, State::Init | State::Up) {
            self.change_state(now, State::Down, Diagnostic::ControlDetectionTimeExpired);
        }
        self.reschedule(now);
    }

    fn packet(&self, poll: bool, final_: bool) -> Control {
        Control {
            diagnostic: self.local_diag,
            state: self.state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx: self.desired_min_tx,
            required_min_rx: self.required_min_rx,
            required_min_echo_rx: 0,
            auth: None,
        }
    }

    /// The next packet to send now, if any: a pending Final first (at once, §6.5), else the
    /// periodic packet when it is due. The monitor adds authentication and addresses.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Control> {
        if self.final_pending {
            self.final_pending = false;
            return Some(self.packet(false, true));
        }
        let due = self.next_tx.is_some_and(|t| t <= now);
        if !due {
            return None;
        }
        let Some(interval) = self.tx_interval() else {
            self.next_tx = None;
            return None;
        };
        let no_strays = self.strays == 0 || self.strays_until.is_none_or(|t| t <= now);
        let probe_due = self.config.probe
            && self.state == State::Up
            && self.poll.is_none()
            && no_strays
            && self.next_probe.is_some_and(|t| t <= now);
        if probe_due {
            self.strays = 0;
        }
        if (self.poll_wanted || probe_due) && self.poll.is_none() {
            self.poll = Some(Poll {
                measures: self.state == State::Up,
                ..Poll::default()
            });
            self.poll_wanted = false;
        }
        let poll = match &mut self.poll {
            Some(p) => {
                if p.measures && p.sent.len() < POLLS_REMEMBERED {
                    p.sent.push(now);
                }
                p.count += 1;
                true
            }
            None => false,
        };
        self.last_tx = Some(now);
        self.next_tx = Some(now + self.jittered(interval));
        Some(self.packet(poll, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Two sessions joined by a lossless wire with `delay` each way, run in simulated time.
    struct Pair {
        a: Session,
        b: Session,
        now: Instant,
        delay: Duration,
        /// (arrival, to_b, packet)
        wire: Vec<(Instant, bool, Control)>,
        /// Drop every packet in this direction while set.
        cut_to_b: bool,
        cut_to_a: bool,
    }

    impl Pair {
        fn new(a: SessionConfig, b: SessionConfig, delay: Duration) -> Pair {
            let now = Instant::now();
            Pair {
                a: Session::new(now, a, 0x0a, 1),
                b: Session::new(now, b, 0x0b, 2),
                now,
                delay,
                wire: Vec::new(),
                cut_to_b: false,
                cut_to_a: false,
            }
        }

        /// Advances by 1 ms steps for `d`.
        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += MS;
                let now = self.now;
                let (arrived, pending): (Vec<_>, Vec<_>) =
                    self.wire.drain(..).partition(|(at, _, _)| *at <= now);
                self.wire = pending;
                for (_, to_b, c) in arrived {
                    if to_b {
                        self.b.handle(now, &c);
                    } else {
                        self.a.handle(now, &c);
                    }
                }
                for to_b in [true, false] {
                    let s = if to_b { &mut self.a } else { &mut self.b };
                    s.handle_timeout(now);
                    while let Some(c) = s.poll_transmit(now) {
                        let cut = if to_b { self.cut_to_b } else { self.cut_to_a };
                        if !cut {
                            self.wire.push((now + self.delay, to_b, c));
                        }
                    }
                }
            }
        }
    }

    fn events(s: &mut Session) -> Vec<Event> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    /// The round trips (rtt, lost) among `s`'s events.
    fn round_trips(s: &mut Session) -> Vec<(Duration, u32)> {
        events(s)
            .into_iter()
            .filter_map(|e| match e {
                Event::RoundTrip { rtt, lost } => Some((rtt, lost)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_sessions_come_up_and_switch_to_the_fast_rate() {
        let mut p = Pair::new(SessionConfig::default(), SessionConfig::default(), 5 * MS);
        p.run(Duration::from_millis(100));
        assert_eq!(p.a.state(), State::Init, "the first Down packets crossed");
        // The next packets leave at the slow rate: Up within two of them.
        p.run(Duration::from_millis(2000));
        assert_eq!(p.a.state(), State::Up);
        assert_eq!(p.b.state(), State::Up);
        let ev = events(&mut p.a);
        assert!(
            matches!(
                ev[0],
                Event::StateChanged {
                    from: State::Down,
                    to: State::Init | State::Up,
                    ..
                }
            ),
            "{ev:?}"
        );
        p.run(Duration::from_secs(3));
        assert_eq!(
            p.a.tx_interval(),
            Some(50 * MS),
            "Up: 50 ms once the Poll ended"
        );
        assert_eq!(p.a.detection_time(), Some(150 * MS), "3 x 50 ms");
        assert_eq!(p.b.remote_discriminator(), 0x0a);
    }

    #[test]
    fn the_slow_rate_holds_until_up() {
        let now = Instant::now();
        let mut s = Session::new(now, SessionConfig::default(), 1, 7);
        assert!(
            s.poll_transmit(now).is_some(),
            "an active session speaks first"
        );
        let c = s.poll_transmit(now + 500 * MS);
        assert!(c.is_none(), "not before 750 ms: {c:?}");
        let c = s.poll_transmit(now + SLOW_TX).expect("by 1 s");
        assert_eq!(
            (c.state, c.desired_min_tx, c.your_discriminator),
            (State::Down, 1_000_000, 0)
        );
    }

    #[test]
    fn a_passive_session_is_silent_until_it_hears_the_remote() {
        let now = Instant::now();
        let cfg = SessionConfig {
            passive: true,
            ..SessionConfig::default()
        };
        let mut s = Session::new(now, cfg, 1, 7);
        assert_eq!(s.poll_timeout(), None);
        assert!(s.poll_transmit(now + SLOW_TX * 5).is_none());
        let hello = Session::new(now, SessionConfig::default(), 2, 8).packet(false, false);
        s.handle(now, &hello);
        assert_eq!(s.state(), State::Init);
        let c = s
            .poll_transmit(now)
            .expect("answers once it knows the remote");
        assert_eq!((c.state, c.your_discriminator), (State::Init, 2));
    }

    #[test]
    fn a_cut_path_goes_down_within_the_detection_time() {
        let mut p = Pair::new(SessionConfig::default(), SessionConfig::default(), 2 * MS);
        p.run(Duration::from_secs(3));
        assert_eq!(p.a.state(), State::Up);
        events(&mut p.a);
        p.cut_to_a = true;
        p.cut_to_b = true;
        let cut = p.now;
        let mut down_after = None;
        for _ in 0..400 {
            p.run(MS);
            if p.a.state() == State::Down {
                down_after = Some(p.now - cut);
                break;
            }
        }
        let after = down_after.expect("down within 400 ms");
        // The last packet was in flight at most 50 ms before the cut: 100..=150 ms + delay.
        assert!(after <= 150 * MS + 2 * MS, "{after:?}");
        assert!(after >= 90 * MS, "{after:?}");
        assert_eq!(p.a.diagnostic(), Diagnostic::ControlDetectionTimeExpired);
        assert_eq!(
            p.a.remote_discriminator(),
            0,
            "forgotten after a Detection Time"
        );
        assert_eq!(p.a.tx_interval(), Some(SLOW_TX), "back to the slow rate");
        assert!(events(&mut p.a).contains(&Event::StateChanged {
            from: State::Up,
            to: State::Down,
            diagnostic: Diagnostic::ControlDetectionTimeExpired,
        }));
        p.cut_to_a = false;
        p.cut_to_b = false;
        p.run(Duration::from_secs(4));
        assert_eq!(
            (p.a.state(), p.b.state()),
            (State::Up, State::Up),
            "and comes back"
        );
    }

    #[test]
    fn the_remote_signalling_down_takes_us_down() {
        let mut p = Pair::new(SessionConfig::default(), SessionConfig::default(), 2 * MS);
        p.run(Duration::from_secs(3));
        p.b.set_admin_down(p.now);
        p.run(Duration::from_millis(120));
        assert_eq!(p.a.state(), State::Down);
        assert_eq!(p.a.diagnostic(), Diagnostic::NeighborSignaledSessionDown);
        p.run(Duration::from_secs(3));
        assert_eq!(p.a.state(), State::Down, "AdminDown stays down");
        assert_eq!(p.b.state(), State::AdminDown);
    }

    #[test]
    fn a_poll_is_answered_at_once_and_ends_with_a_round_trip_sample() {
        let probe = SessionConfig {
            probe: true,
            ..SessionConfig::default()
        };
        let mut p = Pair::new(probe, SessionConfig::default(), 7 * MS);
        p.run(Duration::from_secs(5));
        let rtts = round_trips(&mut p.a);
        // Every ~44 ms a probe: about 100 in 5 s once Up.
        assert!(rtts.len() > 60, "{}", rtts.len());
        // 7 ms each way, answered within the 1 ms step of arrival.
        assert!(
            rtts.iter()
                .all(|&(rtt, lost)| rtt >= 14 * MS && rtt <= 16 * MS && lost == 0),
            "{rtts:?}"
        );
        let b_polls = events(&mut p.b)
            .into_iter()
            .filter(|e| matches!(e, Event::RoundTrip { .. }))
            .count();
        assert!(
            b_polls <= 2,
            "b polls only when its intervals change: {b_polls}"
        );
    }

    #[test]
    fn a_poll_left_unanswered_by_a_cut_gives_no_sample_when_the_path_returns() {
        let probe = SessionConfig {
            probe: true,
            ..SessionConfig::default()
        };
        let mut p = Pair::new(probe, SessionConfig::default(), 5 * MS);
        p.run(Duration::from_secs(5));
        assert_eq!(p.a.state(), State::Up);
        events(&mut p.a);
        // Cut both ways for 5 s: a goes Down with Polls of its last sequence unanswered.
        p.cut_to_a = true;
        p.cut_to_b = true;
        p.run(Duration::from_secs(5));
        assert_eq!(p.a.state(), State::Down);
        p.cut_to_a = false;
        p.cut_to_b = false;
        p.run(Duration::from_secs(5));
        assert_eq!(p.a.state(), State::Up);
        let rtts = round_trips(&mut p.a);
        assert!(rtts.len() > 30, "probing resumed: {}", rtts.len());
        assert!(
            rtts.iter().all(|&(rtt, lost)| rtt <= 12 * MS && lost == 0),
            "only round trips of the path that came back: {rtts:?}"
        );
    }

    #[test]
    fn a_round_trip_longer_than_the_interval_is_still_matched_to_its_poll() {
        let probe = SessionConfig {
            probe: true,
            ..SessionConfig::default()
        };
        let mut p = Pair::new(probe, SessionConfig::default(), 60 * MS);
        p.run(Duration::from_secs(8));
        let rtts: Vec<_> = events(&mut p.a)
            .into_iter()
            .filter_map(|e| match e {
                Event::RoundTrip { rtt, .. } => Some(rtt),
                _ => None,
            })
            .collect();
        assert!(rtts.len() > 10, "{rtts:?}");
        // 120 ms round trips while Polls leave every 37.5-50 ms: matched to the right one.
        assert!(
            rtts.iter().all(|rtt| *rtt >= 120 * MS && *rtt <= 122 * MS),
            "{rtts:?}"
        );
    }

    #[test]
    fn jitter_stays_within_75_to_100_percent() {
        let now = Instant::now();
        let mut s = Session::new(now, SessionConfig::default(), 1, 99);
        let mut gaps = Vec::new();
        let mut last = now;
        s.poll_transmit(now);
        let mut t = now;
        while gaps.len() < 200 {
            t += MS;
            if s.poll_transmit(t).is_some() {
                gaps.push(t - last);
                last = t;
            }
        }
        assert!(
            gaps.iter().all(|g| *g >= 750 * MS && *g <= 1001 * MS),
            "{gaps:?}"
        );
        assert!(gaps.iter().any(|g| *g < 800 * MS) && gaps.iter().any(|g| *g > 950 * MS));
    }

    #[test]
    fn a_remote_asking_for_no_packets_gets_none() {
        let now = Instant::now();
        let mut s = Session::new(now, SessionConfig::default(), 1, 3);
        let mut c = Session::new(now, SessionConfig::default(), 2, 4).packet(false, false);
        c.required_min_rx = 0;
        s.handle(now, &c);
        assert_eq!(s.tx_interval(), None);
        assert!(s.poll_transmit(now + SLOW_TX * 3).is_none());
    }
}
