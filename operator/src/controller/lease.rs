//! Leader election with a `coordination.k8s.io/v1` Lease: only the leader writes (status,
//! workloads, Events, finalizers); every replica compiles and serves the config stream.
//!
//! [`Elector`] is the decision, pure (time is an argument); [`LeaseClient`] reads and writes
//! the Lease and runs the rounds. The rules are client-go's:
//!
//! * **Acquire.** No Lease: create it naming this replica (a concurrent create loses with 409
//!   and follows). A Lease whose holder is empty, or whose record (holder, `renewTime`,
//!   `resourceVersion`) has not changed for `leaseDurationSeconds` *as measured by this
//!   replica's own clock since it first saw that record*, is taken over: clocks of different
//!   nodes are never compared. `leaseTransitions` counts takeovers.
//! * **Renew.** The holder writes `renewTime` every round (default every 2 s).
//! * **Every write is guarded by `resourceVersion`** (a replace carrying the version read):
//!   of two replicas racing for an expired Lease, one gets 409 Conflict and follows.
//! * **Stepping down.** A leader that has not renewed successfully for `renewDeadline` (default
//!   10 s, less than the 15 s lease duration) stops acting as leader before any other replica
//!   may take the Lease over: [`LeaseClient::run`] publishes `false` when that deadline passes,
//!   also while a round is still waiting for the API server, and judges each round by the time
//!   it ended, not the time it started. Each API call is bounded by the retry period.
//! * **Release.** On shutdown the leader empties `holderIdentity`, so that another replica takes
//!   over at its next round instead of after the lease duration.
//!
//! `kube-lease-manager` was not used: it reads the wall clock inside, compares renew times
//! across nodes' clocks and patches without a `resourceVersion` precondition.

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

/// Who elects and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The Lease's name (`--lease-name`), in the operator's namespace.
    pub name: String,
    /// This replica (the pod's name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseSettings {
    pub fn new(name: &str, identity: &str) -> Self {
        Self {
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Create(Lease),
    /// Replace the Lease with this one; it carries the `resourceVersion` read.
    Update(Lease),
    /// Someone else holds it.
    Follow {
        holder: Option<String>,
    },
}

/// The part of a Lease that shows its holder is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    resource_version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// The election's state on this replica.
#[derive(Debug)]
pub struct Elector {
    settings: LeaseSettings,
    /// The other holder's record as last seen, and when this replica first saw it.
    observed: Option<(Record, Instant)>,
    /// When this replica last wrote the Lease as its holder.
    renewed: Option<Instant>,
}

fn micro(t: SystemTime) -> MicroTime {
    MicroTime(Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH))
}

impl Elector {
    pub fn new(settings: LeaseSettings) -> Self {
        Self {
            settings,
            observed: None,
            renewed: None,
        }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Whether this replica may act as leader at `now`.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leader_until().is_some_and(|until| now < until)
    }

    /// When this replica stops being leader unless it renews first (`None`: it is not leader).
    pub fn leader_until(&self) -> Option<Instant> {
        self.renewed.map(|t| t + self.settings.renew_deadline)
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Decides from the Lease as read (`None`: it does not exist).
    pub fn step(&mut self, lease: Option<&Lease>, now: Instant, wall: SystemTime) -> Step {
        let me = self.settings.identity.clone();
        let Some(lease) = lease else {
            return Step::Create(Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(micro(wall)),
                    renew_time: Some(micro(wall)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            });
        };
        let record = Record::of(lease);
        let spec = lease.spec.clone().unwrap_or_default();
        if record.holder.as_deref() == Some(me.as_str()) {
            let mut renewed = lease.clone();
            renewed.spec = Some(LeaseSpec {
                renew_time: Some(micro(wall)),
                lease_duration_seconds: Some(self.duration_secs()),
                ..spec
            });
            return Step::Update(renewed);
        }
        // Someone else's (or nobody's): not ours, whatever we thought.
        self.renewed = None;
        if self.observed.as_ref().map(|(r, _)| r) != Some(&record) {
            self.observed = Some((record.clone(), now));
        }
        let seen_since = self.observed.as_ref().map_or(now, |(_, t)| *t);
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.lease_duration, Duration::from_secs);
        let expired = now.saturating_duration_since(seen_since) >= duration;
        if record.holder.is_some() && !expired {
            return Step::Follow {
                holder: record.holder,
            };
        }
        let mut taken = lease.clone();
        taken.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(self.duration_secs()),
            acquire_time: Some(micro(wall)),
            renew_time: Some(micro(wall)),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0).saturating_add(1)),
            ..spec
        });
        Step::Update(taken)
    }

    /// The Lease was written as ours at `now`.
    pub fn wrote(&mut self, now: Instant) {
        self.renewed = Some(now);
        self.observed = None;
    }

    /// A write lost a race (409): someone else holds the Lease.
    pub fn lost(&mut self) {
        self.renewed = None;
    }

    /// The Lease to write on shutdown, if this replica holds `lease`: no holder, so that the
    /// next replica need not wait out the lease duration.
    pub fn release(&mut self, lease: &Lease) -> Option<Lease> {
        let record = Record::of(lease);
        self.renewed = None;
        if record.holder.as_deref() != Some(self.settings.identity.as_str()) {
            return None;
        }
        let mut released = lease.clone();
        if let Some(spec) = released.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
        }
        Some(released)
    }
}

/// Runs the election against the API server.
pub struct LeaseClient {
    api: Api<Lease>,
    elector: Elector,
}

/// How a round's API call went.
#[derive(Debug)]
enum Call<T> {
    Ok(T),
    Conflict,
    Failed(String),
}

impl LeaseClient {
    /// `api` is namespaced to the operator's namespace.
    pub fn new(api: Api<Lease>, settings: LeaseSettings) -> Self {
        Self {
            api,
            elector: Elector::new(settings),
        }
    }

    pub fn elector(&self) -> &Elector {
        &self.elector
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Call<T> {
        match tokio::time::timeout(self.elector.settings.retry_period, call).await {
            Ok(Ok(v)) => Call::Ok(v),
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => Call::Conflict,
            Ok(Err(e)) => Call::Failed(e.to_string()),
            Err(_) => Call::Failed(format!(
                "no answer within {:?}",
                self.elector.settings.retry_period
            )),
        }
    }

    /// One round: read the Lease, then create, renew or take it over, or follow. Returns
    /// whether this replica is leader afterwards.
    pub async fn round(&mut self, now: Instant, wall: SystemTime) -> bool {
        let name = self.elector.settings.name.clone();
        let read = self.bounded(self.api.get_opt(&name)).await;
        let lease = match read {
            Call::Ok(lease) => lease,
            Call::Conflict | Call::Failed(_) => {
                if let Call::Failed(e) = read {
                    tracing::warn!(lease = name.as_str(), "reading the leader Lease: {e}");
                }
                return self.elector.is_leader(now);
            }
        };
        let was = self.elector.is_leader(now);
        let step = self.elector.step(lease.as_ref(), now, wall);
        let written = match step {
            Step::Follow { holder } => {
                if was {
                    tracing::warn!(
                        holder = holder.as_deref().unwrap_or(""),
                        "lost the leader Lease"
                    );
                }
                return false;
            }
            Step::Create(lease) => {
                self.bounded(self.api.create(&PostParams::default(), &lease))
                    .await
            }
            Step::Update(lease) => {
                self.bounded(self.api.replace(&name, &PostParams::default(), &lease))
                    .await
            }
        };
        match written {
            Call::Ok(_) => {
                self.elector.wrote(now);
                if !was {
                    tracing::info!(
                        identity = self.elector.settings.identity.as_str(),
                        "acquired the leader Lease `{name}`"
                    );
                }
            }
            Call::Conflict => self.elector.lost(),
            Call::Failed(e) => {
                tracing::warn!(lease = name.as_str(), "writing the leader Lease: {e}")
            }
        }
        self.elector.is_leader(now)
    }

    /// Gives the Lease up if this replica holds it.
    pub async fn release(&mut self) {
        let name = self.elector.settings.name.clone();
        if let Call::Ok(Some(lease)) = self.bounded(self.api.get_opt(&name)).await
            && let Some(released) = self.elector.release(&lease)
        {
            match self
                .bounded(self.api.replace(&name, &PostParams::default(), &released))
                .await
            {
                Call::Ok(_) => tracing::info!("released the leader Lease `{name}`"),
                Call::Conflict => {}
                Call::Failed(e) => tracing::warn!("releasing the leader Lease `{name}`: {e}"),
            }
        }
    }

    /// Runs rounds every retry period, publishing leadership on `leader`, until `shutdown`;
    /// then releases the Lease. Leadership is published `false` the moment the renew deadline
    /// passes, whether a round is under way or not.
    pub async fn run(
        mut self,
        leader: watch::Sender<bool>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let period = self.elector.settings.retry_period;
        let renew_deadline = self.elector.settings.renew_deadline;
        let step_down = |leader: &watch::Sender<bool>| {
            if leader.send_replace(false) {
                tracing::warn!(
                    "stepping down: the leader Lease was not renewed within {renew_deadline:?}"
                );
            }
        };
        loop {
            let until = self.elector.leader_until();
            {
                let mut round = std::pin::pin!(self.round(now(), SystemTime::now()));
                loop {
                    tokio::select! {
                        _ = &mut round => break,
                        () = deadline(until), if *leader.borrow() => step_down(&leader),
                    }
                }
            }
            // Judged now, not when the round started: a slow round may have outlived the lease.
            let is = self.elector.is_leader(now());
            leader.send_if_modified(|l| std::mem::replace(l, is) != is);
            let until = self.elector.leader_until();
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(period) => {}
                () = deadline(until), if *leader.borrow() => step_down(&leader),
            }
        }
        leader.send_replace(false);
        self.release().await;
    }
}

/// The clock of [`LeaseClient::run`]: tokio's, so that tests can move it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Completes at `until`, or never.
async fn deadline(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(id: &str) -> LeaseSettings {
        LeaseSettings::new("signpost-operator", id)
    }

    fn held_by(holder: &str, rv: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("signpost-operator".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn no_lease_is_created_and_our_own_is_renewed_with_its_resource_version() {
        let mut e = Elector::new(settings("pod-a"));
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let Step::Create(lease) = e.step(None, t0, wall) else {
            panic!("an absent Lease is created")
        };
        let spec = lease.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert!(!e.is_leader(t0), "leader only once the write succeeded");
        e.wrote(t0);
        assert!(e.is_leader(t0));

        let Step::Update(renewed) = e.step(Some(&held_by("pod-a", "7")), t0, wall) else {
            panic!("our own Lease is renewed")
        };
        assert_eq!(renewed.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(renewed.spec.and_then(|s| s.lease_transitions), Some(2));
        // Renewals failing past the deadline: no longer leader, before anyone may take over.
        assert!(e.is_leader(t0 + Duration::from_secs(9)));
        assert!(!e.is_leader(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn anothers_lease_is_taken_only_after_it_stood_still_for_the_lease_duration() {
        let mut e = Elector::new(settings("pod-b"));
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let lease = held_by("pod-a", "7");
        assert_eq!(
            e.step(Some(&lease), t0, wall),
            Step::Follow {
                holder: Some("pod-a".into())
            }
        );
        assert!(matches!(
            e.step(Some(&lease), t0 + Duration::from_secs(14), wall),
            Step::Follow { .. }
        ));
        // It was renewed (new resourceVersion): the wait starts again.
        let renewed = held_by("pod-a", "8");
        assert!(matches!(
            e.step(Some(&renewed), t0 + Duration::from_secs(14), wall),
            Step::Follow { .. }
        ));
        assert!(matches!(
            e.step(Some(&renewed), t0 + Duration::from_secs(28), wall),
            Step::Follow { .. }
        ));
        let Step::Update(taken) = e.step(Some(&renewed), t0 + Duration::from_secs(29), wall) else {
            panic!("a Lease standing still for 15 s is taken over")
        };
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("8"));
        let spec = taken.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("pod-b"));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_only_the_holder_releases() {
        let mut e = Elector::new(settings("pod-b"));
        let mut released = held_by("pod-a", "9");
        if let Some(s) = released.spec.as_mut() {
            s.holder_identity = None;
        }
        assert!(matches!(
            e.step(Some(&released), Instant::now(), SystemTime::now()),
            Step::Update(_)
        ));
        assert_eq!(e.release(&held_by("pod-a", "9")), None);
        let mine = e.release(&held_by("pod-b", "10")).expect("ours to release");
        assert_eq!(mine.spec.and_then(|s| s.holder_identity), None);
    }
}
