//! What each object's status should say, from what the compiler found and what its router did
//! — pure: no client, `now` is an argument.
//!
//! # Conditions
//!
//! | kind | `Programmed` | `Degraded` | `Ready` |
//! |---|---|---|---|
//! | Tenant, Service, Policy | `True`/`Compiled` when the compiler found no error in it; else `False` with the first error's reason | `True` with the first error's reason and every error's message; else `False`/`NoErrors` (warnings in the message) | `True` when Programmed and not Degraded |
//! | Router | `True`/`Applied` when the router acknowledged the config version being served; `False`/`Rejected` with the router's Nack text, `Pending` (not connected, or not acknowledged yet), or the compiler's reason when there is no config | as for the others; workload errors count too | `True` when Programmed, not Degraded and connected; else the first failing reason |
//!
//! A condition's `lastTransitionTime` changes only when its `status` does. [`changed`] compares
//! statuses without those times, so the operator writes a status only when something a reader
//! can see has changed; [`transitions`] lists the changes worth a Kubernetes Event.

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::world::{ObjectFacts, RouterFacts};
use crate::compiler::{Diagnostic, Severity};
use crate::distribution::{Outcome, RouterState};

pub const READY: &str = "Ready";
pub const PROGRAMMED: &str = "Programmed";
pub const DEGRADED: &str = "Degraded";

/// One condition as the operator wants it, before times are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Want {
    fn new(type_: &'static str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: truncate(message.into()),
        }
    }
}

/// The API server caps a condition message at 32 KiB; keep well below.
fn truncate(message: String) -> String {
    shorten(message, 4096)
}

/// `message` cut to at most `max` bytes (an Event's note holds 1 KiB), ending in `…` when
/// cut, on a character boundary.
pub fn shorten(mut message: String, max: usize) -> String {
    const ELLIPSIS: char = '…';
    if message.len() > max {
        let mut cut = max.saturating_sub(ELLIPSIS.len_utf8());
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push(ELLIPSIS);
    }
    message
}

/// `Degraded` from diagnostics (and, for routers, workload errors).
fn degraded(diagnostics: &[Diagnostic], extra_error: Option<(&str, &str)>) -> Want {
    let mut errors: Vec<(&str, &str)> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.reason, d.message.as_str()))
        .collect();
    errors.extend(extra_error);
    if let Some((reason, _)) = errors.first() {
        let message: Vec<&str> = errors.iter().map(|(_, m)| *m).collect();
        return Want::new(DEGRADED, true, reason, message.join("; "));
    }
    let warnings: Vec<&str> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.message.as_str())
        .collect();
    let message = if warnings.is_empty() {
        String::new()
    } else {
        format!("warnings: {}", warnings.join("; "))
    };
    Want::new(DEGRADED, false, "NoErrors", message)
}

fn ready_from(programmed: &Want, degraded: &Want) -> Want {
    if degraded.status {
        Want::new(READY, false, &degraded.reason, degraded.message.clone())
    } else if !programmed.status {
        Want::new(READY, false, &programmed.reason, programmed.message.clone())
    } else {
        Want::new(READY, true, "Ready", programmed.message.clone())
    }
}

/// Tenant, Service, Policy: [Ready, Programmed, Degraded].
pub fn object_conditions(facts: &ObjectFacts) -> Vec<Want> {
    let degraded = degraded(&facts.diagnostics, None);
    let programmed = if degraded.status {
        Want::new(
            PROGRAMMED,
            false,
            &degraded.reason,
            format!("not used as written: {}", degraded.message),
        )
    } else {
        Want::new(
            PROGRAMMED,
            true,
            "Compiled",
            "compiled into the configs of the routers that need it",
        )
    };
    let ready = ready_from(&programmed, &degraded);
    vec![ready, programmed, degraded]
}

/// What a Router's status says besides its conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterFields {
    pub config_version: Option<String>,
    pub applied_version: Option<String>,
    pub peers: Option<u32>,
}

/// A Router: [Ready, Programmed, Degraded] and its version fields. `workload_error` is a
/// reason and message when its workload could not be built (say, a name too long for a label).
pub fn router_conditions(
    facts: &ObjectFacts,
    router: &RouterFacts,
    state: Option<&RouterState>,
    workload_error: Option<(&str, &str)>,
) -> (Vec<Want>, RouterFields) {
    let degraded = degraded(&facts.diagnostics, workload_error);
    let short = |v: &str| v.chars().take(12).collect::<String>();
    let programmed = match (&router.config_version, state) {
        (None, _) => {
            let (reason, why) = if degraded.status {
                (degraded.reason.as_str(), degraded.message.clone())
            } else {
                ("NotCompiled", "it has not been compiled yet".to_string())
            };
            Want::new(
                PROGRAMMED,
                false,
                reason,
                format!("the operator has no config for this router: {why}"),
            )
        }
        (Some(_), None) => Want::new(
            PROGRAMMED,
            false,
            "Pending",
            "waiting for the router to connect to the operator",
        ),
        (Some(version), Some(state)) => match &state.outcome {
            Some(Outcome::Nacked { version: v, error }) if v == version => Want::new(
                PROGRAMMED,
                false,
                "Rejected",
                format!("the router refused config {}: {error}", short(version)),
            ),
            _ if state.applied_version.as_deref() == Some(version.as_str()) => Want::new(
                PROGRAMMED,
                true,
                "Applied",
                format!("the router applied config {}", short(version)),
            ),
            _ if !state.connected => Want::new(
                PROGRAMMED,
                false,
                "Pending",
                format!(
                    "the router is not connected; config {} waits for it{}",
                    short(version),
                    state
                        .applied_version
                        .as_deref()
                        .map(|a| format!(" (it runs {})", short(a)))
                        .unwrap_or_default()
                ),
            ),
            _ => Want::new(
                PROGRAMMED,
                false,
                "Pending",
                format!(
                    "config {} was sent; waiting for the router to apply it",
                    short(version)
                ),
            ),
        },
    };
    let connected = state.is_some_and(|s| s.connected);
    let ready = if programmed.status && !degraded.status && !connected {
        Want::new(
            READY,
            false,
            "Disconnected",
            "the router applied the current config but is not connected to the operator now",
        )
    } else {
        ready_from(&programmed, &degraded)
    };
    let fields = RouterFields {
        config_version: router.config_version.clone(),
        applied_version: state.and_then(|s| s.applied_version.clone()),
        peers: router.peers,
    };
    (vec![ready, programmed, degraded], fields)
}

fn status_text(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// The conditions to write: `want` with `observedGeneration`, keeping each condition's
/// `lastTransitionTime` from `old` when its status did not change.
pub fn conditions(
    old: &[Condition],
    want: &[Want],
    generation: Option<i64>,
    now: SystemTime,
) -> Vec<Condition> {
    let now = Time(Timestamp::try_from(now).unwrap_or(Timestamp::UNIX_EPOCH));
    want.iter()
        .map(|w| {
            let status = status_text(w.status);
            let since = old
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.to_string(),
                status: status.to_string(),
                reason: w.reason.clone(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Whether `new` says anything `old` does not (times aside).
pub fn changed(old: &[Condition], new: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut a: Vec<_> = old.iter().map(key).collect();
    let mut b: Vec<_> = new.iter().map(key).collect();
    a.sort();
    b.sort();
    a != b
}

/// A change worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The Events for going from `old` to `new`: an error appeared or changed (Warning, with the
/// compiler's reason), errors cleared (`Recovered`), a router applied its config (`Applied`)
/// or refused it (Warning `Rejected`, with its text).
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Transition> {
    let find = |list: &[Condition], t: &str| list.iter().find(|c| c.type_ == t).cloned();
    let mut out = Vec::new();
    let was = find(old, DEGRADED);
    if let Some(now) = find(new, DEGRADED) {
        let was_true = was.as_ref().is_some_and(|c| c.status == "True");
        if now.status == "True"
            && (!was_true || was.as_ref().is_some_and(|c| c.message != now.message))
        {
            out.push(Transition {
                warning: true,
                reason: now.reason.clone(),
                note: now.message.clone(),
            });
        } else if now.status == "False" && was_true {
            out.push(Transition {
                warning: false,
                reason: "Recovered".into(),
                note: "the compiler reports no errors for it any more".into(),
            });
        }
    }
    let was = find(old, PROGRAMMED);
    if let Some(now) = find(new, PROGRAMMED) {
        let same = was.as_ref().is_some_and(|c| {
            c.status == now.status && c.reason == now.reason && c.message == now.message
        });
        if !same && (now.reason == "Applied" || now.reason == "Rejected") {
            out.push(Transition {
                warning: now.reason == "Rejected",
                reason: now.reason.clone(),
                note: now.message.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn facts(diagnostics: Vec<Diagnostic>) -> ObjectFacts {
        ObjectFacts {
            generation: Some(3),
            diagnostics,
            ..Default::default()
        }
    }

    fn state(connected: bool, applied: Option<&str>, outcome: Option<Outcome>) -> RouterState {
        let mut s = RouterState::new(SystemTime::UNIX_EPOCH);
        s.connected = connected;
        s.applied_version = applied.map(str::to_string);
        s.outcome = outcome;
        s
    }

    fn get<'a>(w: &'a [Want], t: &str) -> &'a Want {
        w.iter().find(|c| c.type_ == t).expect("condition present")
    }

    #[test]
    fn long_messages_are_cut_to_their_byte_limit_on_a_character_boundary() {
        let long = "policy `pos-pay` names tenant `pso`… ".repeat(100);
        let note = shorten(long.clone(), 1024);
        assert!(note.len() <= 1024, "{} bytes", note.len());
        assert!(note.ends_with('…') && long.starts_with(note.trim_end_matches('…')));
        assert_eq!(shorten("short".into(), 1024), "short");
        assert!(truncate(long.repeat(10)).len() <= 4096);
    }

    #[test]
    fn a_dangling_reference_degrades_with_the_compilers_message() {
        let d = Diagnostic::error(
            "Policy",
            "pos-pay",
            "UnknownTenant",
            "policy `pos-pay` names tenant `pso`, which does not exist".into(),
        );
        let w = object_conditions(&facts(vec![d]));
        let degraded = get(&w, DEGRADED);
        assert!(degraded.status);
        assert_eq!(degraded.reason, "UnknownTenant");
        assert_eq!(
            degraded.message,
            "policy `pos-pay` names tenant `pso`, which does not exist"
        );
        assert!(!get(&w, READY).status);
        assert!(!get(&w, PROGRAMMED).status);

        let clean = object_conditions(&facts(vec![]));
        assert!(get(&clean, READY).status && get(&clean, PROGRAMMED).status);
        assert!(!get(&clean, DEGRADED).status);
    }

    #[test]
    fn a_router_is_programmed_only_when_it_acked_the_current_version_and_a_nack_says_why() {
        let router = RouterFacts {
            config_version: Some("abcdef0123456789".into()),
            peers: Some(2),
        };
        let f = facts(vec![]);
        let (w, fields) = router_conditions(&f, &router, None, None);
        assert_eq!(get(&w, PROGRAMMED).reason, "Pending");
        assert_eq!(fields.peers, Some(2));

        let nacked = state(
            true,
            Some("0ld"),
            Some(Outcome::Nacked {
                version: "abcdef0123456789".into(),
                error: "interface `lte` names device `wwan0`, which this router did not open"
                    .into(),
            }),
        );
        let (w, fields) = router_conditions(&f, &router, Some(&nacked), None);
        let p = get(&w, PROGRAMMED);
        assert!(!p.status);
        assert_eq!(p.reason, "Rejected");
        assert!(
            p.message
                .contains("device `wwan0`, which this router did not open"),
            "{}",
            p.message
        );
        assert_eq!(fields.applied_version.as_deref(), Some("0ld"));
        assert_eq!(get(&w, READY).reason, "Rejected");

        let acked = state(true, Some("abcdef0123456789"), None);
        let (w, _) = router_conditions(&f, &router, Some(&acked), None);
        assert!(get(&w, PROGRAMMED).status && get(&w, READY).status);
        let gone = state(false, Some("abcdef0123456789"), None);
        let (w, _) = router_conditions(&f, &router, Some(&gone), None);
        assert!(get(&w, PROGRAMMED).status);
        assert_eq!(get(&w, READY).reason, "Disconnected");

        // A Nack of an older version does not count against the current one.
        let old_nack = state(
            true,
            Some("abcdef0123456789"),
            Some(Outcome::Nacked {
                version: "older".into(),
                error: "x".into(),
            }),
        );
        let (w, _) = router_conditions(&f, &router, Some(&old_nack), None);
        assert!(get(&w, PROGRAMMED).status);
    }

    #[test]
    fn transition_times_move_only_with_the_status_and_events_follow_changes() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t1 = t0 + Duration::from_secs(60);
        let bad = object_conditions(&facts(vec![Diagnostic::error(
            "Tenant",
            "pos",
            "UnknownNetwork",
            "tenant `pos` names network `p0s`".into(),
        )]));
        let first = conditions(&[], &bad, Some(3), t0);
        let events = transitions(&[], &first);
        assert_eq!(events.len(), 1);
        assert!(events[0].warning && events[0].reason == "UnknownNetwork");
        let same = conditions(&first, &bad, Some(3), t1);
        assert!(!changed(&first, &same), "nothing new to write");
        assert!(transitions(&first, &same).is_empty());
        assert_eq!(first[0].last_transition_time, same[0].last_transition_time);

        let good = object_conditions(&facts(vec![]));
        let fixed = conditions(&first, &good, Some(4), t1);
        assert!(changed(&first, &fixed));
        assert_ne!(fixed[0].last_transition_time, first[0].last_transition_time);
        let events = transitions(&first, &fixed);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "Recovered");
    }
}
