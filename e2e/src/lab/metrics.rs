//! A router's Prometheus exposition, parsed: what the demo's summary and the tests read instead
//! of counting for themselves.

use std::collections::BTreeMap;

/// One scrape: every sample with its labels.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Metrics {
    /// Parses the text format (`name{a="b",c="d"} value`); comments and malformed lines are
    /// skipped.
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, value) = match line.rsplit_once(' ') {
                Some(parts) => parts,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (head, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Metrics { samples }
    }

    /// The sum of `name`'s samples whose labels include every `(key, value)` of `matching`.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                matching
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// `name`'s samples summed by the value of `label`.
    pub fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == name) {
            if let Some(v) = s.labels.get(label) {
                *out.entry(v.clone()).or_insert(0.0) += s.value;
            }
        }
        out
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_labels_and_sums_by_label() {
        let m = Metrics::parse(
            "# HELP x y\n\
             signpost_drops_total{reason=\"no_policy\"} 3\n\
             signpost_drops_total{reason=\"no_tenant\"} 2\n\
             signpost_sessions_by_service{service=\"payments\",tenant=\"pos\"} 4\n\
             signpost_sessions 7\n\
             garbage line\n",
        );
        assert_eq!(m.sum("signpost_drops_total", &[]), 5.0);
        assert_eq!(
            m.sum("signpost_drops_total", &[("reason", "no_policy")]),
            3.0
        );
        assert_eq!(m.sum("signpost_sessions", &[]), 7.0);
        assert_eq!(
            m.by("signpost_sessions_by_service", "tenant")
                .get("pos")
                .copied(),
            Some(4.0)
        );
    }
}
