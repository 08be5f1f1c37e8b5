//! What the compiler tells the user: which object, what is wrong, and what to do about it.
//! Controllers turn these into conditions and events; `signpostctl render` prints them.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The object (or part of it) is not used; its status is `Degraded`.
    Error,
    /// Worth knowing; nothing was dropped.
    Warning,
}

/// One finding about one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `Tenant`, `Service`, `Policy` or `Router`.
    pub kind: &'static str,
    pub name: String,
    /// A CamelCase reason for the condition (`MissingTenant`, `NoWanInterface`, ...).
    pub reason: &'static str,
    /// A sentence naming the object and the fix.
    pub message: String,
}

impl Diagnostic {
    pub fn error(kind: &'static str, name: &str, reason: &'static str, message: String) -> Self {
        Self {
            severity: Severity::Error,
            kind,
            name: name.to_string(),
            reason,
            message,
        }
    }

    pub fn warning(kind: &'static str, name: &str, reason: &'static str, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            kind,
            name: name.to_string(),
            reason,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level}: {}/{}: {} ({})",
            self.kind, self.name, self.message, self.reason
        )
    }
}

/// " (known: a, b, c)" — helps spot a typo, kept short.
pub fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.take(12).collect();
    if names.is_empty() {
        " (there are none)".to_string()
    } else {
        format!(" (known: {})", names.join(", "))
    }
}
