//! The operator's Prometheus metrics (`--metrics ADDR`: `/metrics`, `/healthz`, `/readyz`),
//! rendered with the router's exposition code (`signpost_cnf::telemetry`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `signpost_operator_reconciles_total` | counter | `kind`, `result` (`ok`, or the error's name) |
//! | `signpost_operator_compiles_total`, `signpost_operator_compile_seconds_total` | counter | — (their ratio is the mean compile time) |
//! | `signpost_operator_last_compile_seconds` | gauge | — |
//! | `signpost_operator_compile_diagnostics` | gauge | `severity` |
//! | `signpost_operator_configs` | gauge | — (routers served a config) |
//! | `signpost_operator_routers` | gauge | `state`: `connected`, `acked` (runs the config served), `nacked` (refused it) |
//! | `signpost_operator_bootstraps_total` | counter | `result`: `ok`, `refused` |
//! | `signpost_operator_leader` | gauge | — (1 on the replica that writes) |
//!
//! `/readyz` answers 200 once the first compile has been published (caches synced, configs
//! served), 503 before.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use signpost_cnf::telemetry::{Exposition, MetricKind};

use crate::compiler::{Diagnostic, Severity};
use crate::distribution::{Distribution, Outcome};

/// Counters and gauges the operator updates as it works.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    compiles: AtomicU64,
    compile_nanos: AtomicU64,
    last_compile_nanos: AtomicU64,
    errors: AtomicU64,
    warnings: AtomicU64,
    leader: AtomicBool,
    ready: AtomicBool,
}

impl Metrics {
    pub fn reconciled(&self, kind: &'static str, result: &'static str) {
        if let Ok(mut r) = self.reconciles.lock() {
            *r.entry((kind, result)).or_default() += 1;
        }
    }

    pub fn compiled(&self, took: Duration, diagnostics: &[Diagnostic]) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.compiles.fetch_add(1, Ordering::Relaxed);
        self.compile_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.last_compile_nanos.store(nanos, Ordering::Relaxed);
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        self.errors.store(errors as u64, Ordering::Relaxed);
        self.warnings
            .store((diagnostics.len() - errors) as u64, Ordering::Relaxed);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The exposition, with the router gauges read from `distribution` now.
    pub fn render(&self, distribution: &Distribution) -> String {
        let mut e = Exposition::new();
        e.family(
            "signpost_operator_reconciles_total",
            "Reconciles by kind and result.",
            MetricKind::Counter,
        );
        if let Ok(r) = self.reconciles.lock() {
            for ((kind, result), n) in r.iter() {
                e.sample(&[("kind", kind), ("result", result)], *n);
            }
        }
        let secs = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 / 1e9;
        e.family(
            "signpost_operator_compiles_total",
            "Compiles of the whole intent.",
            MetricKind::Counter,
        )
        .sample(&[], self.compiles.load(Ordering::Relaxed));
        e.family(
            "signpost_operator_compile_seconds_total",
            "Time spent compiling.",
            MetricKind::Counter,
        )
        .sample(&[], secs(&self.compile_nanos));
        e.family(
            "signpost_operator_last_compile_seconds",
            "Duration of the last compile.",
            MetricKind::Gauge,
        )
        .sample(&[], secs(&self.last_compile_nanos));
        e.family(
            "signpost_operator_compile_diagnostics",
            "Diagnostics of the last compile.",
            MetricKind::Gauge,
        )
        .sample(
            &[("severity", "error")],
            self.errors.load(Ordering::Relaxed),
        )
        .sample(
            &[("severity", "warning")],
            self.warnings.load(Ordering::Relaxed),
        );
        let bootstraps = distribution.bootstraps();
        let configs = distribution.configs();
        let routers = distribution.routers();
        let (mut connected, mut acked, mut nacked) = (0u64, 0u64, 0u64);
        for (name, state) in &routers {
            let current = configs.get(name).map(|o| o.version.as_str());
            connected += u64::from(state.connected);
            acked += u64::from(current.is_some() && state.applied_version.as_deref() == current);
            nacked += u64::from(matches!(
                (&state.outcome, current),
                (Some(Outcome::Nacked { version, .. }), Some(c)) if version == c
            ));
        }
        e.family(
            "signpost_operator_configs",
            "Routers served a config.",
            MetricKind::Gauge,
        )
        .sample(&[], configs.len());
        e.family(
            "signpost_operator_routers",
            "Routers by state of their config stream.",
            MetricKind::Gauge,
        )
        .sample(&[("state", "connected")], connected)
        .sample(&[("state", "acked")], acked)
        .sample(&[("state", "nacked")], nacked);
        e.family(
            "signpost_operator_bootstraps_total",
            "Bootstrap requests by result.",
            MetricKind::Counter,
        )
        .sample(&[("result", "ok")], bootstraps.ok)
        .sample(&[("result", "refused")], bootstraps.refused);
        e.family(
            "signpost_operator_leader",
            "1 on the replica that writes status, workloads and events.",
            MetricKind::Gauge,
        )
        .sample(&[], u64::from(self.is_leader()));
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family_with_its_values() {
        let m = Metrics::default();
        m.reconciled("Router", "ok");
        m.reconciled("Router", "ok");
        m.reconciled("Policy", "Kube");
        m.compiled(
            Duration::from_millis(250),
            &[Diagnostic::error(
                "Policy",
                "p",
                "UnknownTenant",
                "x".into(),
            )],
        );
        m.set_leader(true);
        let text = m.render(&Distribution::new());
        for line in [
            r#"signpost_operator_reconciles_total{kind="Router",result="ok"} 2"#,
            r#"signpost_operator_reconciles_total{kind="Policy",result="Kube"} 1"#,
            "signpost_operator_compiles_total 1",
            "signpost_operator_last_compile_seconds 0.25",
            r#"signpost_operator_compile_diagnostics{severity="error"} 1"#,
            r#"signpost_operator_routers{state="connected"} 0"#,
            "signpost_operator_configs 0",
            "signpost_operator_leader 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
    }
}
