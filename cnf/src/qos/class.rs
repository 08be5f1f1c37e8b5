//! Traffic classes: the config's `QosClass`es (or the defaults), in the order the scheduler
//! serves them, and which class each policy priority maps to.

use signpost_proto::v1::{Priority, QosClass};

/// Most classes a router runs (one per priority in practice).
pub const MAX_CLASSES: usize = 8;

/// One traffic class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassSpec {
    pub priority: Priority,
    /// Served before every weighted class.
    pub strict: bool,
    /// Share among the weighted classes (ignored for strict ones).
    pub weight: u32,
    /// Written on egress packets of the class.
    pub dscp: u8,
    /// Most of the shaped link's capacity the class may take, percent; 0 for no cap.
    pub limit_percent: u8,
}

impl ClassSpec {
    /// The class's name: its priority's (`critical`, `high`, `normal`, `low`).
    pub fn name(&self) -> &'static str {
        priority_name(self.priority)
    }
}

pub fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "critical",
        Priority::High => "high",
        Priority::Normal | Priority::Unspecified => "normal",
        Priority::Low => "low",
    }
}

/// The classes of one config, strict ones first (by priority), then weighted ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classes {
    specs: Vec<ClassSpec>,
    /// By `Priority as usize` (0..=4): index into `specs`.
    by_priority: [u8; 5],
}

/// The classes a router runs when its config has none — the same the compiler emits: critical
/// is strict priority (EF, capped at half the link so it cannot starve the rest), high, normal
/// and low share what is left 60 : 30 : 10 (AF41, AF21, CS1).
pub fn default_classes() -> Vec<QosClass> {
    [
        (Priority::Critical, true, 0, 46, 50),
        (Priority::High, false, 60, 34, 0),
        (Priority::Normal, false, 30, 18, 0),
        (Priority::Low, false, 10, 8, 0),
    ]
    .into_iter()
    .map(|(p, strict, weight, dscp, limit_percent)| QosClass {
        priority: p as i32,
        strict,
        weight,
        dscp,
        limit_percent,
    })
    .collect()
}

impl Classes {
    /// From the config's classes (empty: [`default_classes`]). Errors name the class and field.
    pub fn new(config: &[QosClass]) -> Result<Classes, String> {
        let defaults;
        let config = if config.is_empty() {
            defaults = default_classes();
            &defaults[..]
        } else {
            config
        };
        if config.len() > MAX_CLASSES {
            return Err(format!(
                "qos_classes: {} classes, at most {MAX_CLASSES} are supported",
                config.len()
            ));
        }
        let mut specs = Vec::with_capacity(config.len());
        for c in config {
            let priority = match Priority::try_from(c.priority) {
                Ok(Priority::Unspecified) | Err(_) => {
                    return Err(format!(
                        "qos_classes: a class has priority {}, which is not critical, high, \
                         normal or low",
                        c.priority
                    ));
                }
                Ok(p) => p,
            };
            let what = format!("QoS class `{}`", priority_name(priority));
            if specs.iter().any(|s: &ClassSpec| s.priority == priority) {
                return Err(format!("{what} is listed twice"));
            }
            let dscp = u8::try_from(c.dscp)
                .ok()
                .filter(|d| *d < 64)
                .ok_or_else(|| format!("{what}: dscp {} is above 63", c.dscp))?;
            let limit_percent = u8::try_from(c.limit_percent)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| format!("{what}: limit_percent {} is above 100", c.limit_percent))?;
            if !c.strict && c.weight == 0 {
                return Err(format!(
                    "{what}: a weighted class needs a weight above 0 (or strict: true)"
                ));
            }
            specs.push(ClassSpec {
                priority,
                strict: c.strict,
                weight: c.weight,
                dscp,
                limit_percent,
            });
        }
        // Strict first, then weighted; each by priority (critical before low).
        specs.sort_by_key(|s| (!s.strict, s.priority as i32));
        let mut by_priority = [0u8; 5];
        for (p, slot) in by_priority.iter_mut().enumerate() {
            *slot = Self::nearest(&specs, p as i32);
        }
        Ok(Classes { specs, by_priority })
    }

    /// The class for priority `p`: its own, else the next less important one that exists,
    /// else the least important class. Unspecified counts as normal.
    fn nearest(specs: &[ClassSpec], p: i32) -> u8 {
        let want = if p == Priority::Unspecified as i32 {
            Priority::Normal as i32
        } else {
            p
        };
        let best = specs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.priority as i32 >= want)
            .min_by_key(|(_, s)| s.priority as i32)
            .or_else(|| {
                specs
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, s)| s.priority as i32)
            });
        best.map_or(0, |(i, _)| i as u8)
    }

    pub fn specs(&self) -> &[ClassSpec] {
        &self.specs
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The class (index) a policy priority maps to.
    pub fn for_priority(&self, p: Priority) -> u8 {
        self.by_priority.get(p as usize).copied().unwrap_or(0)
    }

    pub fn get(&self, class: u8) -> Option<&ClassSpec> {
        self.specs.get(usize::from(class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_critical_strictly_and_map_every_priority() {
        let c = Classes::new(&[]).expect("defaults are valid");
        assert_eq!(c.len(), 4);
        let critical = c.get(c.for_priority(Priority::Critical)).expect("class");
        assert!(critical.strict);
        assert_eq!((critical.dscp, critical.limit_percent), (46, 50));
        assert_eq!(c.specs()[0].priority, Priority::Critical, "strict first");
        assert_eq!(
            c.for_priority(Priority::Unspecified),
            c.for_priority(Priority::Normal)
        );
        let low = c.get(c.for_priority(Priority::Low)).expect("class");
        assert_eq!((low.weight, low.dscp), (10, 8));
    }

    #[test]
    fn a_missing_priority_falls_to_the_next_less_important_class() {
        let only = |p: Priority, strict: bool| QosClass {
            priority: p as i32,
            strict,
            weight: 1,
            dscp: 0,
            limit_percent: 0,
        };
        let c = Classes::new(&[
            only(Priority::Normal, false),
            only(Priority::Critical, true),
        ])
        .expect("valid");
        assert_eq!(
            c.get(c.for_priority(Priority::High)).map(|s| s.priority),
            Some(Priority::Normal)
        );
        assert_eq!(
            c.get(c.for_priority(Priority::Low)).map(|s| s.priority),
            Some(Priority::Normal)
        );
        assert_eq!(
            c.get(c.for_priority(Priority::Critical))
                .map(|s| s.priority),
            Some(Priority::Critical)
        );
    }

    #[test]
    fn bad_classes_are_refused_with_the_field_to_fix() {
        let class = |priority: i32, strict, weight, dscp, limit_percent| QosClass {
            priority,
            strict,
            weight,
            dscp,
            limit_percent,
        };
        let cases = [
            (vec![class(2, false, 1, 64, 0)], "dscp 64 is above 63"),
            (vec![class(2, false, 0, 10, 0)], "needs a weight above 0"),
            (vec![class(1, true, 0, 46, 101)], "limit_percent 101"),
            (vec![class(0, true, 0, 46, 0)], "not critical, high"),
            (
                vec![class(2, false, 1, 1, 0), class(2, false, 1, 2, 0)],
                "listed twice",
            ),
        ];
        for (config, text) in cases {
            let e = Classes::new(&config).expect_err(text);
            assert!(e.contains(text), "{e}");
        }
    }
}
