//! Peers' reports about the locations they front, as the ingress router keeps them: which
//! (service, peer) locations are down, until when. Keyed by names, so a config change keeps
//! them; a report that is not refreshed expires after [`HOLD`] (a lost "up" message cannot keep
//! a location out of use for longer than that).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::message::{self, HealthMessage, Refusal};
use crate::classify::ServiceId;
use crate::pipeline::Tables;
use crate::security::ReplayWindow;

/// How long a "down" report holds without a refresh (the sender refreshes every
/// [`super::REFRESH`] while the location is down).
pub const HOLD: Duration = Duration::from_millis(3500);

#[derive(Clone, Copy, Debug)]
struct Report {
    up: bool,
    at: Instant,
}

/// A peer's report as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteView {
    pub service: String,
    pub router: String,
    /// What the peer said.
    pub reported_up: bool,
    /// What this router acts on: a "down" that was not refreshed within [`HOLD`] expired.
    pub up: bool,
    pub age: Duration,
}

/// The reports of every peer; see the module docs.
#[derive(Debug, Default)]
pub struct Remote {
    /// By peer name: the replay window of its messages' sequence numbers.
    replay: HashMap<String, ReplayWindow>,
    /// By (peer, service) name.
    reports: HashMap<(String, String), Report>,
}

impl Remote {
    /// Takes an authenticated message from peer `peer` (index into `tables.peers`), given this
    /// router's wall clock `wall_us`. `Ok(true)` when a location changed state.
    pub fn receive(
        &mut self,
        now: Instant,
        wall_us: u64,
        tables: &Tables,
        peer: u16,
        payload: &[u8],
    ) -> Result<bool, Refusal> {
        let p = tables
            .peers
            .get(usize::from(peer))
            .ok_or(Refusal::AuthFailed)?;
        let (m, seq) = HealthMessage::open(payload, &p.keys, &tables.router)?;
        if !message::fresh(seq, wall_us) {
            return Err(Refusal::Stale);
        }
        let window = self.replay.entry(p.name.clone()).or_default();
        window.check(seq).map_err(|_| Refusal::Replay)?;
        // Only a location this router may use: the peer fronts the service for it.
        let known = tables
            .classifier
            .service_named(&m.service)
            .is_some_and(|s| tables.routes_of(s).iter().any(|r| r.peer == peer));
        window.accept(seq);
        if !known {
            return Err(Refusal::UnknownService);
        }
        let key = (p.name.clone(), m.service);
        let was_down = self.is_down(&key, now);
        self.reports
            .insert(key.clone(), Report { up: m.up, at: now });
        Ok(was_down != self.is_down(&key, now))
    }

    fn is_down(&self, key: &(String, String), now: Instant) -> bool {
        self.reports
            .get(key)
            .is_some_and(|r| !r.up && now.saturating_duration_since(r.at) < HOLD)
    }

    /// The (service, peer) locations reported down and not expired, sorted, for `tables`.
    pub fn down(&self, now: Instant, tables: &Tables) -> Vec<(ServiceId, u16)> {
        let mut out: Vec<(ServiceId, u16)> = self
            .reports
            .iter()
            .filter(|(k, _)| self.is_down(k, now))
            .filter_map(|((peer, service), _)| {
                Some((
                    tables.classifier.service_named(service)?,
                    tables.peer_named(peer)?,
                ))
            })
            .collect();
        out.sort_unstable_by_key(|(s, p)| (s.0, *p));
        out
    }

    /// When the next "down" report expires.
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        self.reports
            .values()
            .filter(|r| !r.up)
            .map(|r| r.at + HOLD)
            .filter(|t| *t > now)
            .min()
    }

    pub fn views(&self, now: Instant) -> Vec<RemoteView> {
        let mut out: Vec<RemoteView> = self
            .reports
            .iter()
            .map(|((router, service), r)| RemoteView {
                service: service.clone(),
                router: router.clone(),
                reported_up: r.up,
                up: !self.is_down(&(router.clone(), service.clone()), now),
                age: now.saturating_duration_since(r.at),
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.router).cmp(&(&b.service, &b.router)));
        out
    }
}
