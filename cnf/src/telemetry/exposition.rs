//! The Prometheus text exposition format, version 0.0.4: what `GET /metrics` returns.
//!
//! [`Exposition`] writes families in the order they are added, each with its `# HELP` and
//! `# TYPE` lines, then its samples:
//!
//! ```
//! use signpost_cnf::telemetry::{Exposition, MetricKind};
//!
//! let mut e = Exposition::new();
//! e.family("signpost_packets_total", "Packets received.", MetricKind::Counter)
//!     .sample(&[("interface", "wan0")], 12u64)
//!     .sample(&[("interface", "wan1")], 3u64);
//! e.family("signpost_sessions", "Active sessions.", MetricKind::Gauge)
//!     .sample(&[], 2u64);
//! let expected = [
//!     "# HELP signpost_packets_total Packets received.",
//!     "# TYPE signpost_packets_total counter",
//!     r#"signpost_packets_total{interface="wan0"} 12"#,
//!     r#"signpost_packets_total{interface="wan1"} 3"#,
//!     "# HELP signpost_sessions Active sessions.",
//!     "# TYPE signpost_sessions gauge",
//!     "signpost_sessions 2",
//! ];
//! assert_eq!(e.finish(), expected.map(|line| format!("{line}\n")).concat());
//! ```
//!
//! # Names
//!
//! Metric and label names come from our code, not from the wire, so a bad one is a bug:
//! debug builds (and tests) panic on it. Release builds never panic and never emit a scrape that
//! Prometheus would reject as a whole: a character outside `[a-zA-Z0-9_:]` (`[a-zA-Z0-9_]` for
//! labels) becomes `_`, and a leading digit gets a `_` before it. Counter names must end in
//! `_total` (debug-checked only; the name is valid either way). Label *values* are arbitrary
//! and escaped (backslash, double quote, newline).

use std::fmt::Write as _;

/// The `# TYPE` of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (or resets to zero when the process restarts); the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// A sample's value. Integers are printed exactly (a `u64` counter past 2^53 would lose digits
/// as an `f64`); floats print `NaN`, `+Inf` and `-Inf` as the format spells them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleValue {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl From<u64> for SampleValue {
    fn from(v: u64) -> Self {
        SampleValue::Unsigned(v)
    }
}

impl From<u32> for SampleValue {
    fn from(v: u32) -> Self {
        SampleValue::Unsigned(u64::from(v))
    }
}

impl From<usize> for SampleValue {
    fn from(v: usize) -> Self {
        SampleValue::Unsigned(v as u64)
    }
}

impl From<i64> for SampleValue {
    fn from(v: i64) -> Self {
        SampleValue::Signed(v)
    }
}

impl From<f64> for SampleValue {
    fn from(v: f64) -> Self {
        SampleValue::Float(v)
    }
}

/// A text-format 0.0.4 document under construction. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    /// The family that [`Exposition::sample`] adds to (already sanitized).
    current: Option<String>,
    /// Every family name so far, to catch duplicates in debug builds.
    names: Vec<String>,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Samples added next belong to it.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricKind) -> &mut Self {
        debug_assert!(
            is_metric_name(name),
            "`{name}` is not a valid Prometheus metric name"
        );
        debug_assert!(
            kind != MetricKind::Counter || name.ends_with("_total"),
            "counter `{name}` must end in `_total`"
        );
        let name = sanitize(name, true);
        debug_assert!(
            !self.names.contains(&name),
            "family `{name}` is added twice"
        );
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self.names.push(name.clone());
        self.current = Some(name);
        self
    }

    /// Adds a sample to the current family. Label values are escaped; label names are checked
    /// as metric names are (see the [module docs](self)). A sample before any family is a bug:
    /// debug builds panic, release builds drop it.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<SampleValue>) -> &mut Self {
        let Some(name) = &self.current else {
            debug_assert!(false, "a sample was added before any family");
            return self;
        };
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                debug_assert!(
                    is_label_name(key),
                    "`{key}` is not a valid Prometheus label name"
                );
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(&sanitize(key, false));
                self.out.push_str("=\"");
                escape_label_value_into(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(&mut self.out, value.into());
        self.out.push('\n');
        self
    }

    /// The document, ending in a newline (or empty when nothing was added).
    pub fn finish(self) -> String {
        self.out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    is_name(name, true)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`; names starting with `__` are reserved for Prometheus itself.
fn is_label_name(name: &str) -> bool {
    is_name(name, false) && !name.starts_with("__")
}

fn is_name(name: &str, colon: bool) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
    !first.is_ascii_digit() && allowed(first) && chars.all(allowed)
}

/// Makes `name` valid by replacing what is not allowed; returns it as is when already valid.
fn sanitize(name: &str, colon: bool) -> String {
    if is_name(name, colon) {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len() + 1);
    if name.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':') {
            c
        } else {
            '_'
        }
    }));
    out
}

/// HELP text escapes backslash and newline (not quotes).
fn escape_help(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Label values escape backslash, double quote and newline.
fn escape_label_value_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, value: SampleValue) {
    let _ = match value {
        SampleValue::Unsigned(v) => write!(out, "{v}"),
        SampleValue::Signed(v) => write!(out, "{v}"),
        SampleValue::Float(v) if v.is_nan() => write!(out, "NaN"),
        SampleValue::Float(v) if v == f64::INFINITY => write!(out, "+Inf"),
        SampleValue::Float(v) if v == f64::NEG_INFINITY => write!(out, "-Inf"),
        // Rust prints the shortest string that reads back as the same f64, which Prometheus
        // (Go's ParseFloat) parses exactly.
        SampleValue::Float(v) => write!(out, "{v}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new();
        e.family("signpost_drops_total", "Drops.", MetricKind::Counter)
            .sample(&[("reason", "a\\b \"quoted\"\nnext")], 1u64);
        assert_eq!(
            e.finish(),
            "# HELP signpost_drops_total Drops.\n\
             # TYPE signpost_drops_total counter\n\
             signpost_drops_total{reason=\"a\\\\b \\\"quoted\\\"\\nnext\"} 1\n"
        );
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        let mut e = Exposition::new();
        e.family("x", "a \"b\" c\\d\ne", MetricKind::Gauge);
        assert_eq!(e.finish(), "# HELP x a \"b\" c\\\\d\\ne\n# TYPE x gauge\n");
    }

    #[test]
    fn a_family_with_several_samples_and_labels() {
        let mut e = Exposition::new();
        e.family(
            "signpost_path_latency_seconds",
            "Path round-trip latency, seconds.",
            MetricKind::Gauge,
        )
        .sample(&[("peer", "hub-1"), ("path", "wan0-mpls")], 0.0125)
        .sample(&[("peer", "hub-1"), ("path", "wan1-lte")], 0.25)
        .sample(&[("peer", "hub-2"), ("path", "wan0-mpls")], f64::NAN)
        .sample(&[("peer", "hub-3"), ("path", "down")], f64::INFINITY)
        .sample(&[], -3i64);
        e.family("signpost_bytes_total", "Bytes.", MetricKind::Counter)
            .sample(&[], u64::MAX);
        assert_eq!(
            e.finish(),
            "# HELP signpost_path_latency_seconds Path round-trip latency, seconds.\n\
             # TYPE signpost_path_latency_seconds gauge\n\
             signpost_path_latency_seconds{peer=\"hub-1\",path=\"wan0-mpls\"} 0.0125\n\
             signpost_path_latency_seconds{peer=\"hub-1\",path=\"wan1-lte\"} 0.25\n\
             signpost_path_latency_seconds{peer=\"hub-2\",path=\"wan0-mpls\"} NaN\n\
             signpost_path_latency_seconds{peer=\"hub-3\",path=\"down\"} +Inf\n\
             signpost_path_latency_seconds -3\n\
             # HELP signpost_bytes_total Bytes.\n\
             # TYPE signpost_bytes_total counter\n\
             signpost_bytes_total 18446744073709551615\n"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(is_metric_name("signpost:rate_5m"));
        assert!(is_metric_name("_x"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("1x"));
        assert!(!is_metric_name("a-b"));
        assert!(!is_metric_name("é"));
        assert!(is_label_name("peer_1"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name("__name__"));
        assert_eq!(sanitize("1a-b:c", false), "_1a_b_c");
        assert_eq!(sanitize("1a-b:c", true), "_1a_b:c");
        assert_eq!(sanitize("ok_name", true), "ok_name");
    }

    #[test]
    #[should_panic(expected = "must end in `_total`")]
    fn a_counter_without_total_is_a_bug() {
        Exposition::new().family("signpost_packets", "Packets.", MetricKind::Counter);
    }

    #[test]
    #[should_panic(expected = "not a valid Prometheus metric name")]
    fn an_invalid_name_is_a_bug() {
        Exposition::new().family("signpost-packets", "Packets.", MetricKind::Gauge);
    }
}
