//! Maintenance windows: hosts (globs) and a time range during which findings are tagged.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Label added to findings (and alerts) inside a window; its value is the window id.
pub const MAINTENANCE_WINDOW_LABEL: &str = "maintenance_window";

/// A planned maintenance: findings from matching hosts between `starts_at` (inclusive) and
/// `ends_at` (exclusive) get the label `maintenance_window = <id>`, which routes can mute or
/// re-route with `in_window`. The aggregator stores windows and passes them to
/// `Router::set_windows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Stable identifier (also the label value): letters, digits, `-`, `_`, `.`; 1..=64 chars.
    pub id: String,
    /// Human name, e.g. "CU15 rollout wave 2".
    pub name: String,
    /// Host name globs, case-insensitive, e.g. `EXCH0*`, `*.corp.example`.
    pub hosts: Vec<String>,
    /// Start (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// End (RFC 3339), after `starts_at`.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

/// Why a window is invalid. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    /// `id` is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("window `{0}`: `id` must be 1 to 64 characters of letters, digits, '-', '_', '.'")]
    BadId(String),
    /// `hosts` is empty.
    #[error("window `{0}`: `hosts` must list at least one host glob")]
    NoHosts(String),
    /// A host glob does not parse.
    #[error("window `{id}`: `hosts` entry `{glob}`: {reason}")]
    BadGlob {
        /// Window id.
        id: String,
        /// The glob.
        glob: String,
        /// Parser message.
        reason: String,
    },
    /// `ends_at` is not after `starts_at`.
    #[error("window `{0}`: `ends_at` must be after `starts_at`")]
    EndsBeforeStart(String),
    /// Two windows share an id.
    #[error("window `{0}`: duplicate `id`")]
    DuplicateId(String),
}

/// Compiles a case-insensitive host glob.
pub(crate) fn host_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(pattern)
        .case_insensitive(true)
        .literal_separator(false)
        .build()?
        .compile_matcher())
}

/// A validated window with compiled globs.
#[derive(Debug, Clone)]
pub(crate) struct CompiledWindow {
    pub(crate) window: MaintenanceWindow,
    hosts: Vec<GlobMatcher>,
}

impl CompiledWindow {
    /// True when `host` matches and `at` is inside the window.
    pub(crate) fn covers(&self, host: &str, at: OffsetDateTime) -> bool {
        at >= self.window.starts_at
            && at < self.window.ends_at
            && self.hosts.iter().any(|g| g.is_match(host))
    }
}

impl MaintenanceWindow {
    /// Checks the window; the aggregator should call this before storing one so that
    /// `window create` reports errors naming the field.
    ///
    /// # Errors
    /// [`WindowError`] naming the offending field.
    pub fn validate(&self) -> Result<(), WindowError> {
        self.compile().map(|_| ())
    }

    /// True when the window covers `host` at time `at` (globs case-insensitive). An invalid
    /// window covers nothing.
    pub fn covers(&self, host: &str, at: OffsetDateTime) -> bool {
        self.compile().is_ok_and(|c| c.covers(host, at))
    }

    pub(crate) fn compile(&self) -> Result<CompiledWindow, WindowError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !id_ok {
            return Err(WindowError::BadId(self.id.clone()));
        }
        if self.hosts.is_empty() {
            return Err(WindowError::NoHosts(self.id.clone()));
        }
        if self.ends_at <= self.starts_at {
            return Err(WindowError::EndsBeforeStart(self.id.clone()));
        }
        let hosts = self
            .hosts
            .iter()
            .map(|g| {
                if g.trim().is_empty() {
                    return Err(WindowError::BadGlob {
                        id: self.id.clone(),
                        glob: g.clone(),
                        reason: "empty glob".into(),
                    });
                }
                host_glob(g).map_err(|e| WindowError::BadGlob {
                    id: self.id.clone(),
                    glob: g.clone(),
                    reason: e.kind().to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(CompiledWindow {
            window: self.clone(),
            hosts,
        })
    }
}

/// Validates a set of windows (each one, and ids unique).
pub(crate) fn compile_all(
    windows: &[MaintenanceWindow],
) -> Result<Vec<CompiledWindow>, WindowError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(windows.len());
    for w in windows {
        if !seen.insert(w.id.as_str()) {
            return Err(WindowError::DuplicateId(w.id.clone()));
        }
        out.push(w.compile()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn w() -> MaintenanceWindow {
        MaintenanceWindow {
            id: "cu15-wave2".into(),
            name: "CU15 wave 2".into(),
            hosts: vec!["exch0*".into(), "*.dag2.corp".into()],
            starts_at: datetime!(2026-11-21 02:00 UTC),
            ends_at: datetime!(2026-11-21 06:00 UTC),
        }
    }

    #[test]
    fn covers_hosts_case_insensitively_within_range() {
        let w = w();
        assert!(w.covers("EXCH01", datetime!(2026-11-21 02:00 UTC)));
        assert!(w.covers("mbx1.dag2.corp", datetime!(2026-11-21 05:59 UTC)));
        assert!(
            !w.covers("EXCH01", datetime!(2026-11-21 06:00 UTC)),
            "end is exclusive"
        );
        assert!(!w.covers("DC01", datetime!(2026-11-21 03:00 UTC)));
    }

    #[test]
    fn validation_names_the_field() {
        let mut bad = w();
        bad.ends_at = bad.starts_at;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`ends_at`"));
        let mut bad = w();
        bad.hosts.clear();
        assert!(bad.validate().unwrap_err().to_string().contains("`hosts`"));
        let mut bad = w();
        bad.hosts = vec!["exch[".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("exch["));
        let mut bad = w();
        bad.id = "has space".into();
        assert!(bad.validate().unwrap_err().to_string().contains("`id`"));
        assert!(matches!(
            compile_all(&[w(), w()]),
            Err(WindowError::DuplicateId(_))
        ));
    }

    #[test]
    fn serde_roundtrip_rfc3339() {
        let text = serde_json::to_string(&w()).unwrap();
        assert!(text.contains("2026-11-21T02:00:00Z"), "{text}");
        let back: MaintenanceWindow = serde_json::from_str(&text).unwrap();
        assert_eq!(back, w());
    }
}
