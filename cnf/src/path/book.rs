//! The path book: what the pipeline knows about its peer paths (liveness and quality, written
//! by the path monitor) and, from that, which path each kind of session should use.
//!
//! Sessions are grouped into **SLA classes**: access rules with the same SLA and the same path
//! preference behave alike, so the book decides per class and peer, not per session. For each
//! (class, peer) it keeps a **target** path:
//!
//! 1. Paths are tried in the policy's preference order (vectors in order, then cost, then
//!    config order; with no preference every path by cost). Paths whose vector the policy does
//!    not name are never used.
//! 2. The target is the first **eligible** path: up (or not yet known) and meeting the SLA
//!    (latency, loss, jitter; an unmeasured figure does not count against it).
//! 3. When none is eligible, the target is the best path that is up, by how far it misses the
//!    SLA (the largest measured/limit ratio), marked as a *fallback* (the pipeline counts
//!    sessions set up that way). A fallback target changes only for a path at least 20 %
//!    better, so two bad paths do not trade places on noise.
//! 4. No path up: no target; the location (this peer) is down for the class.
//!
//! **Hysteresis.** A path loses eligibility at once when it goes down or breaks the SLA. It
//! regains it only after meeting the SLA *with margin* (every figure at most 80 % of its limit)
//! continuously for the hold-down time (default 5 s). So sessions leave a failing path at the
//! next packet, and return to a preferred path only once it has proven itself; a path that
//! flaps never gets traffic back. (Loss is itself averaged over 10 s, which adds to the delay
//! before a lossy path is trusted again.)
//!
//! The book is evaluated when the monitor pushes health (on every change and every 100 ms),
//! never per packet: the pipeline's per-packet question is [`PathBook::is_target`], two array
//! reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::classify::{RuleId, ServiceId};
use crate::pipeline::Tables;

use super::quality::Estimate;

/// Default time a recovered path must stay good before sessions move back to it.
pub const HOLD_DOWN: Duration = Duration::from_secs(5);
/// A recovering path must be within this fraction of every SLA limit.
const MARGIN: f64 = 0.8;
/// A fallback target is replaced only by a path this much less bad.
const FALLBACK_SWITCH: f64 = 0.8;
const NONE: u16 = u16::MAX;

/// Whether a path is up, as BFD sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Liveness {
    /// No BFD verdict yet (or no monitor): used, optimistically.
    #[default]
    Unknown,
    Down,
    Up,
}

/// What the monitor reports about one peer path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathHealth {
    pub liveness: Liveness,
    pub quality: Estimate,
}

impl PathHealth {
    pub const UP: PathHealth = PathHealth {
        liveness: Liveness::Up,
        quality: Estimate {
            latency_us: None,
            jitter_us: None,
            loss_ppm: None,
        },
    };

    pub fn usable(&self) -> bool {
        self.liveness != Liveness::Down
    }
}

/// The monitor's view of every path, in config order (peer by peer, path by path), for the
/// tables it was made for, and the service locations peers report down ([`crate::health`]).
#[derive(Clone, Debug)]
pub struct PathReport {
    pub tables: Arc<Tables>,
    pub health: Vec<PathHealth>,
    /// (service, peer) locations reported down, sorted.
    pub locations_down: Vec<(ServiceId, u16)>,
}

impl PathReport {
    /// Writes the report into a book built for the same tables. True when the down
    /// locations changed (live sessions to a newly down one must move).
    pub fn apply(&self, book: &mut PathBook) -> bool {
        if self.health.len() == book.health.len() {
            book.health.copy_from_slice(&self.health);
        }
        book.set_locations_down(&self.locations_down)
    }
}

/// A policy's SLA in the units the estimates use; 0 means no requirement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sla {
    pub max_latency_us: u32,
    pub max_loss_ppm: u32,
    pub max_jitter_us: u32,
}

impl Sla {
    pub fn from_config(sla: &signpost_proto::v1::Sla) -> Sla {
        Sla {
            max_latency_us: sla.max_latency_ms.saturating_mul(1000),
            max_loss_ppm: sla.max_loss_ppm,
            max_jitter_us: sla.max_jitter_ms.saturating_mul(1000),
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Sla::default()
    }

    /// The largest measured/limit ratio (0 when nothing is measured or required).
    pub fn excess(&self, q: &Estimate) -> f64 {
        let ratio = |value: Option<u32>, limit: u32| match value {
            Some(v) if limit > 0 => f64::from(v) / f64::from(limit),
            _ => 0.0,
        };
        ratio(q.latency_us, self.max_latency_us)
            .max(ratio(q.loss_ppm, self.max_loss_ppm))
            .max(ratio(q.jitter_us, self.max_jitter_us))
    }

    /// Meets every limit (an unmeasured figure does not count against it).
    pub fn met_by(&self, q: &Estimate) -> bool {
        self.excess(q) <= 1.0
    }
}

/// One SLA class: its SLA and, per peer, the paths it may use in preference order.
#[derive(Clone, Debug)]
struct Class {
    sla: Sla,
    preference: Vec<String>,
    /// Per peer: allowed path indexes, best first.
    order: Vec<Vec<u16>>,
    /// Flat by path: eligible now, and meeting the SLA with margin since.
    eligible: Vec<bool>,
    good_since: Vec<Option<Instant>>,
}

/// The per-pipeline path state and choices; see the module docs.
#[derive(Clone, Debug)]
pub struct PathBook {
    hold_down: Duration,
    /// Per peer: index of its first path in the flat arrays.
    first: Vec<usize>,
    health: Vec<PathHealth>,
    /// Set by [`PathBook::force`]: eligible without hold-down at the next evaluation.
    forced: Vec<bool>,
    classes: Vec<Class>,
    class_of_rule: Vec<u16>,
    /// By class × peer: target path index or `NONE`, and whether it is a fallback.
    targets: Vec<u16>,
    fallback: Vec<bool>,
    evaluated: Option<Instant>,
    /// Bumped whenever a target changes.
    epoch: u64,
    /// (service, peer) locations their router reports unhealthy, sorted: skipped by the
    /// location choice (`crate::health`).
    locations_down: Vec<(ServiceId, u16)>,
}

fn ordered(tables: &Tables, peer: usize, preference: &[String]) -> Vec<u16> {
    let Some(p) = tables.peers.get(peer) else {
        return Vec::new();
    };
    let mut out: Vec<(usize, u32, usize)> = Vec::new();
    for (i, path) in p.paths.iter().enumerate() {
        let rank = if preference.is_empty() {
            Some(0)
        } else {
            preference.iter().position(|v| *v == path.vector)
        };
        if let Some(rank) = rank {
            out.push((rank, path.cost, i));
        }
    }
    out.sort();
    out.into_iter().map(|(_, _, i)| i as u16).collect()
}

impl PathBook {
    /// A book for `tables`, every path [`Liveness::Unknown`].
    pub fn new(tables: &Tables, hold_down: Duration) -> PathBook {
        let mut first = Vec::with_capacity(tables.peers.len());
        let mut n = 0;
        for p in &tables.peers {
            first.push(n);
            n += p.paths.len();
        }
        let mut classes: Vec<Class> = Vec::new();
        let mut class_of_rule = Vec::new();
        let c = &tables.classifier;
        for r in 0..c.rule_count() {
            let info = c.rule_info(RuleId(r as u16));
            let sla = Sla::from_config(&info.sla);
            let id = match classes
                .iter()
                .position(|k| k.sla == sla && k.preference == info.path_preference)
            {
                Some(i) => i,
                None => {
                    classes.push(Class {
                        sla,
                        preference: info.path_preference.clone(),
                        order: (0..tables.peers.len())
                            .map(|p| ordered(tables, p, &info.path_preference))
                            .collect(),
                        eligible: vec![true; n],
                        good_since: vec![None; n],
                    });
                    classes.len() - 1
                }
            };
            class_of_rule.push(id as u16);
        }
        let peers = tables.peers.len();
        let mut book = PathBook {
            hold_down,
            first,
            health: vec![PathHealth::default(); n],
            forced: vec![false; n],
            targets: vec![NONE; classes.len() * peers],
            fallback: vec![false; classes.len() * peers],
            classes,
            class_of_rule,
            evaluated: None,
            epoch: 0,
            locations_down: Vec::new(),
        };
        book.choose_targets();
        book
    }

    /// A book for `tables` with the hold-down its `path_monitoring` settings ask for.
    pub fn for_tables(tables: &Tables) -> PathBook {
        let settings = super::monitor::MonitorSettings::from_config(&tables.path_monitoring);
        PathBook::new(tables, settings.hold_down)
    }

    /// A book for `tables` that keeps what `old` (built for `old_tables`) knew about paths
    /// that are still there, by peer name and path id.
    pub fn carry_over(&self, old_tables: &Tables, tables: &Tables) -> PathBook {
        let mut book = PathBook::for_tables(tables);
        for (p, peer) in tables.peers.iter().enumerate() {
            let Some(op) = old_tables.peer_named(&peer.name) else {
                continue;
            };
            let Some(old_peer) = old_tables.peers.get(usize::from(op)) else {
                continue;
            };
            for (i, path) in peer.paths.iter().enumerate() {
                if let Some(oi) = old_peer.paths.iter().position(|x| x.id == path.id)
                    && let Some(h) = self.health_at(usize::from(op), oi)
                {
                    book.health[book.first[p] + i] = h;
                }
            }
        }
        let mut down: Vec<(ServiceId, u16)> = self
            .locations_down
            .iter()
            .filter_map(|&(s, p)| {
                let service = tables
                    .classifier
                    .service_named(&old_tables.classifier.service_info(s).name)?;
                let peer = tables.peer_named(&old_tables.peers.get(usize::from(p))?.name)?;
                Some((service, peer))
            })
            .collect();
        down.sort_unstable_by_key(|(s, p)| (s.0, *p));
        book.locations_down = down;
        if let Some(now) = self.evaluated {
            // Carried-over paths keep their standing: no hold-down for a config change.
            book.forced.iter_mut().for_each(|f| *f = true);
            book.evaluate(now);
        }
        book
    }

    fn index(&self, peer: usize, path: usize) -> Option<usize> {
        let first = *self.first.get(peer)?;
        let end = self
            .first
            .get(peer + 1)
            .copied()
            .unwrap_or(self.health.len());
        (first + path < end).then_some(first + path)
    }

    pub fn health_at(&self, peer: usize, path: usize) -> Option<PathHealth> {
        self.index(peer, path)
            .and_then(|k| self.health.get(k).copied())
    }

    /// Records a path's health (call [`PathBook::evaluate`] after a batch).
    pub fn set_health(&mut self, peer: usize, path: usize, health: PathHealth) -> bool {
        match self.index(peer, path) {
            Some(k) => {
                self.health[k] = health;
                true
            }
            None => false,
        }
    }

    /// An override (tests, operators): the path is up or down from now on, without hold-down.
    pub fn force(&mut self, peer: usize, path: usize, up: bool) -> bool {
        let Some(k) = self.index(peer, path) else {
            return false;
        };
        self.health[k].liveness = if up { Liveness::Up } else { Liveness::Down };
        self.forced[k] = true;
        let now = self.evaluated;
        match now {
            Some(now) => self.evaluate(now),
            None => self.evaluate_untimed(),
        }
        true
    }

    fn evaluate_untimed(&mut self) {
        for c in &mut self.classes {
            for (k, h) in self.health.iter().enumerate() {
                c.eligible[k] = h.usable() && c.sla.met_by(&h.quality);
            }
        }
        self.forced.iter_mut().for_each(|f| *f = false);
        self.choose_targets();
    }

    /// Re-derives eligibility (with hold-down) and targets at `now`.
    pub fn evaluate(&mut self, now: Instant) {
        let first_time = self.evaluated.is_none();
        self.evaluated = Some(now);
        for c in &mut self.classes {
            for (k, h) in self.health.iter().enumerate() {
                let meets = h.usable() && c.sla.met_by(&h.quality);
                let with_margin = meets && c.sla.excess(&h.quality) <= MARGIN;
                if with_margin {
                    c.good_since[k].get_or_insert(now);
                } else {
                    c.good_since[k] = None;
                }
                let proven = c.good_since[k]
                    .is_some_and(|since| now.saturating_duration_since(since) >= self.hold_down);
                c.eligible[k] = if !meets {
                    false
                } else if c.eligible[k] || first_time || self.forced[k] {
                    true
                } else {
                    proven
                };
            }
        }
        self.forced.iter_mut().for_each(|f| *f = false);
        self.choose_targets();
    }

    fn choose_targets(&mut self) {
        let peers = self.first.len();
        let mut changed = false;
        for (ci, c) in self.classes.iter().enumerate() {
            for p in 0..peers {
                let slot = ci * peers + p;
                let first = self.first[p];
                let order = &c.order[p];
                let eligible = order.iter().copied().find(|&i| {
                    c.eligible
                        .get(first + usize::from(i))
                        .copied()
                        .unwrap_or(false)
                });
                let (target, fallback) = match eligible {
                    Some(i) => (i, false),
                    None => {
                        let score = |i: u16| {
                            let h = self.health.get(first + usize::from(i))?;
                            h.usable().then(|| c.sla.excess(&h.quality))
                        };
                        let best = order.iter().filter_map(|&i| score(i).map(|s| (i, s))).fold(
                            None::<(u16, f64)>,
                            |best, (i, s)| match best {
                                Some((_, b)) if b <= s => best,
                                _ => Some((i, s)),
                            },
                        );
                        let current = self.targets[slot];
                        match (best, score(current).filter(|_| self.fallback[slot])) {
                            (Some((_, b)), Some(cur)) if b > cur * FALLBACK_SWITCH => {
                                (current, true)
                            }
                            (Some((i, _)), _) => (i, true),
                            (None, _) => (NONE, false),
                        }
                    }
                };
                if self.targets[slot] != target {
                    changed = true;
                }
                self.targets[slot] = target;
                self.fallback[slot] = fallback;
            }
        }
        if changed {
            self.epoch += 1;
        }
    }

    /// The SLA class of an access rule.
    #[inline]
    pub fn class_of(&self, rule: RuleId) -> u16 {
        self.class_of_rule
            .get(usize::from(rule.0))
            .copied()
            .unwrap_or(0)
    }

    /// The path sessions of `class` to `peer` should use, and whether it is a fallback (no
    /// path meets the SLA). `None`: no path to the peer is up.
    #[inline]
    pub fn target(&self, class: u16, peer: u16) -> Option<(u16, bool)> {
        let slot = usize::from(class) * self.first.len() + usize::from(peer);
        match self.targets.get(slot) {
            Some(&t) if t != NONE => Some((t, self.fallback.get(slot).copied().unwrap_or(false))),
            _ => None,
        }
    }

    /// The per-packet check: is `path` where sessions of `class` to `peer` belong?
    #[inline]
    /// Per (class, peer), the path its sessions should use (for change detection).
    pub fn targets(&self) -> &[u16] {
        &self.targets
    }

    pub fn is_target(&self, class: u16, peer: u16, path: u16) -> bool {
        let slot = usize::from(class) * self.first.len() + usize::from(peer);
        self.targets.get(slot) == Some(&path)
    }

    /// True when `path` breaks the SLA of some class that may use it (for `Degraded`).
    pub fn degraded(&self, peer: usize, path: usize) -> bool {
        let Some(k) = self.index(peer, path) else {
            return false;
        };
        let h = self.health[k];
        h.usable()
            && self.classes.iter().any(|c| {
                c.order
                    .get(peer)
                    .is_some_and(|o| o.contains(&(path as u16)))
                    && !c.sla.met_by(&h.quality)
            })
    }

    /// Changes whenever some target changed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records the (service, peer) locations reported down (sorted); true when that changed.
    pub fn set_locations_down(&mut self, down: &[(ServiceId, u16)]) -> bool {
        if self.locations_down == down {
            return false;
        }
        self.locations_down = down.to_vec();
        self.epoch += 1;
        true
    }

    /// Whether `peer`'s location of `service` is reported down (for new sessions and moves,
    /// never per established packet).
    #[inline]
    pub fn location_down(&self, service: ServiceId, peer: u16) -> bool {
        !self.locations_down.is_empty()
            && self
                .locations_down
                .binary_search_by_key(&(service.0, peer), |(s, p)| (s.0, *p))
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::testbed;
    use signpost_proto::v1::{SecurityMode, Sla as ConfigSla};

    const MS: Duration = Duration::from_millis(1);

    /// The shared store config (peer `hub`, paths broadband then LTE), with an SLA on the
    /// first rule.
    fn tables(sla: Option<ConfigSla>) -> Tables {
        let mut config = testbed::edge_config(SecurityMode::None);
        if let Some(r) = config.access.first_mut() {
            r.sla = sla;
        }
        Tables::new(&config, "v1").expect("the testbed config builds")
    }

    fn lossy(ppm: u32) -> PathHealth {
        PathHealth {
            liveness: Liveness::Up,
            quality: Estimate {
                latency_us: Some(10_000),
                jitter_us: Some(1_000),
                loss_ppm: Some(ppm),
            },
        }
    }

    fn paths(t: &Tables) -> (usize, usize, usize) {
        let hub = usize::from(t.peer_named("hub").expect("hub"));
        let peer = &t.peers[hub];
        let bb = peer
            .paths
            .iter()
            .position(|p| p.vector == "broadband")
            .expect("bb");
        let lte = peer
            .paths
            .iter()
            .position(|p| p.vector == "lte")
            .expect("lte");
        (hub, bb, lte)
    }

    #[test]
    fn the_preferred_path_is_the_target_until_it_goes_down() {
        let t = tables(None);
        let (hub, bb, lte) = paths(&t);
        let mut book = PathBook::new(&t, HOLD_DOWN);
        let class = book.class_of(RuleId(0));
        assert_eq!(book.target(class, hub as u16), Some((bb as u16, false)));
        let now = Instant::now();
        book.set_health(hub, bb, PathHealth::UP);
        book.set_health(hub, lte, PathHealth::UP);
        book.evaluate(now);
        assert!(book.is_target(class, hub as u16, bb as u16));
        book.set_health(
            hub,
            bb,
            PathHealth {
                liveness: Liveness::Down,
                ..PathHealth::UP
            },
        );
        book.evaluate(now + MS);
        assert_eq!(book.target(class, hub as u16), Some((lte as u16, false)));
        book.set_health(
            hub,
            lte,
            PathHealth {
                liveness: Liveness::Down,
                ..PathHealth::UP
            },
        );
        book.evaluate(now + 2 * MS);
        assert_eq!(book.target(class, hub as u16), None, "the location is down");
    }

    #[test]
    fn a_recovered_path_gets_sessions_back_only_after_the_hold_down() {
        let t = tables(None);
        let (hub, bb, lte) = paths(&t);
        let mut book = PathBook::new(&t, HOLD_DOWN);
        let class = book.class_of(RuleId(0));
        let t0 = Instant::now();
        book.set_health(hub, lte, PathHealth::UP);
        book.set_health(
            hub,
            bb,
            PathHealth {
                liveness: Liveness::Down,
                ..PathHealth::UP
            },
        );
        book.evaluate(t0);
        assert_eq!(book.target(class, hub as u16), Some((lte as u16, false)));
        book.set_health(hub, bb, PathHealth::UP);
        let mut moved_back = None;
        for step in 1..=100u32 {
            let now = t0 + 100 * MS * step;
            // A flap at 2 s restarts the hold-down.
            if step == 20 {
                book.set_health(
                    hub,
                    bb,
                    PathHealth {
                        liveness: Liveness::Down,
                        ..PathHealth::UP
                    },
                );
            } else if step == 21 {
                book.set_health(hub, bb, PathHealth::UP);
            }
            book.evaluate(now);
            if moved_back.is_none() && book.is_target(class, hub as u16, bb as u16) {
                moved_back = Some(now - t0);
            }
        }
        assert_eq!(moved_back, Some(Duration::from_millis(2100) + HOLD_DOWN));
    }

    #[test]
    fn sessions_with_an_sla_leave_a_lossy_path_and_others_stay() {
        let t = tables(Some(ConfigSla {
            max_loss_ppm: 10_000,
            ..Default::default()
        }));
        let (hub, bb, lte) = paths(&t);
        let mut book = PathBook::new(&t, HOLD_DOWN);
        let strict = book.class_of(RuleId(0));
        let lax = (0..t.classifier.rule_count())
            .map(|r| book.class_of(RuleId(r as u16)))
            .find(|c| *c != strict)
            .expect("the testbed has rules without an SLA");
        let now = Instant::now();
        book.set_health(hub, bb, lossy(50_000));
        book.set_health(hub, lte, lossy(0));
        book.evaluate(now);
        assert_eq!(book.target(strict, hub as u16), Some((lte as u16, false)));
        assert_eq!(book.target(lax, hub as u16), Some((bb as u16, false)));
        assert!(book.degraded(hub, bb) && !book.degraded(hub, lte));
        // 0.9 % is within the SLA but not within the margin: not trusted again.
        book.set_health(hub, bb, lossy(9_000));
        book.evaluate(now + HOLD_DOWN * 2);
        assert_eq!(book.target(strict, hub as u16), Some((lte as u16, false)));
        book.set_health(hub, bb, lossy(1_000));
        book.evaluate(now + HOLD_DOWN * 3);
        book.evaluate(now + HOLD_DOWN * 4);
        assert_eq!(book.target(strict, hub as u16), Some((bb as u16, false)));
    }

    #[test]
    fn with_no_path_meeting_the_sla_the_least_bad_is_a_fallback_that_does_not_flap() {
        let t = tables(Some(ConfigSla {
            max_loss_ppm: 10_000,
            ..Default::default()
        }));
        let (hub, bb, lte) = paths(&t);
        let mut book = PathBook::new(&t, HOLD_DOWN);
        let class = book.class_of(RuleId(0));
        let now = Instant::now();
        book.set_health(hub, bb, lossy(100_000));
        book.set_health(hub, lte, lossy(50_000));
        book.evaluate(now);
        assert_eq!(book.target(class, hub as u16), Some((lte as u16, true)));
        // Broadband a little better than LTE now: not enough to switch a fallback.
        book.set_health(hub, bb, lossy(45_000));
        book.evaluate(now + MS);
        assert_eq!(book.target(class, hub as u16), Some((lte as u16, true)));
        book.set_health(hub, bb, lossy(20_000));
        book.evaluate(now + 2 * MS);
        assert_eq!(book.target(class, hub as u16), Some((bb as u16, true)));
    }

    #[test]
    fn a_config_change_keeps_what_was_known_about_the_paths() {
        let t = tables(None);
        let (hub, bb, lte) = paths(&t);
        let mut book = PathBook::new(&t, HOLD_DOWN);
        let now = Instant::now();
        book.set_health(
            hub,
            bb,
            PathHealth {
                liveness: Liveness::Down,
                ..PathHealth::UP
            },
        );
        book.set_health(hub, lte, PathHealth::UP);
        book.evaluate(now);
        let t2 = tables(None);
        let again = book.carry_over(&t, &t2);
        let class = again.class_of(RuleId(0));
        assert_eq!(again.target(class, hub as u16), Some((lte as u16, false)));
    }
}
