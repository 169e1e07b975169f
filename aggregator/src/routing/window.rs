//! Maintenance windows, compiled: the one [`WindowSet`] that ingest tags findings with, the
//! router decides with and the HTTP API lists and changes.
//!
//! The set is the static `[[routing.windows]]` of the configuration plus the windows the
//! aggregator stored (`POST /api/v1/windows`, `patchwatch window create`). Every window in it
//! is valid: an invalid one (bad id, no hosts, a host glob that does not parse, an empty span, a
//! duplicate id) is refused with a [`WindowError`] naming the field, never left out quietly, so
//! that tagging, routing and the API cannot disagree about which windows exist.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use globset::{GlobBuilder, GlobMatcher};
use patchwatch_proto::{Batch, Finding};
use patchwatch_sinks::encoding::host_name;
use time::OffsetDateTime;

use super::config::MaintenanceWindow;
use super::error::WindowError;

/// Label added to findings (and alerts) inside a window; its value is the window id.
pub const MAINTENANCE_WINDOW_LABEL: &str = "maintenance_window";

/// Stored windows that ended longer ago than this are not loaded: no finding that late still
/// matters, and the set stays small.
const ENDED_RETENTION: time::Duration = time::Duration::days(7);

/// Compiles a case-insensitive host glob in which `*` also crosses dots (`*.corp.example`).
pub(crate) fn host_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(pattern)
        .case_insensitive(true)
        .literal_separator(false)
        .build()?
        .compile_matcher())
}

/// True for 1..=64 characters of letters, digits, `-`, `_`, `.` (window and silence ids).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl MaintenanceWindow {
    /// Checks the window; the aggregator calls this before storing one so that
    /// `window create` reports errors naming the field.
    ///
    /// # Errors
    /// [`WindowError`] naming the offending field.
    pub fn validate(&self) -> Result<(), WindowError> {
        CompiledWindow::new(self.clone()).map(|_| ())
    }
}

/// A validated window with compiled globs.
#[derive(Debug, Clone)]
struct CompiledWindow {
    window: MaintenanceWindow,
    hosts: Vec<GlobMatcher>,
}

impl CompiledWindow {
    fn new(window: MaintenanceWindow) -> Result<Self, WindowError> {
        if !valid_id(&window.id) {
            return Err(WindowError::BadId(window.id));
        }
        if window.hosts.is_empty() {
            return Err(WindowError::NoHosts(window.id));
        }
        if window.ends_at <= window.starts_at {
            return Err(WindowError::EndsBeforeStart(window.id));
        }
        let bad_glob = |glob: &String, reason: String| WindowError::BadGlob {
            id: window.id.clone(),
            glob: glob.clone(),
            reason,
        };
        let hosts = window
            .hosts
            .iter()
            .map(|g| {
                if g.trim().is_empty() {
                    return Err(bad_glob(g, "empty glob".into()));
                }
                host_glob(g).map_err(|e| bad_glob(g, e.kind().to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { window, hosts })
    }

    /// True when `host` matches and `at` is inside the window.
    fn covers(&self, host: &str, at: OffsetDateTime) -> bool {
        at >= self.window.starts_at
            && at < self.window.ends_at
            && self.hosts.iter().any(|g| g.is_match(host))
    }
}

/// Compiles `windows`, refusing the first invalid one and ids already in `seen`.
fn compile_all(
    windows: Vec<MaintenanceWindow>,
    seen: &mut HashSet<String>,
) -> Result<Vec<CompiledWindow>, WindowError> {
    windows
        .into_iter()
        .map(|w| {
            if !seen.insert(w.id.clone()) {
                return Err(WindowError::DuplicateId(w.id));
            }
            CompiledWindow::new(w)
        })
        .collect()
}

#[derive(Debug)]
struct Inner {
    /// `[[routing.windows]]`, compiled once; always the first part of `current`.
    static_windows: Vec<CompiledWindow>,
    /// Static windows first, then the stored ones of the last successful [`WindowSet::replace`].
    current: RwLock<Vec<CompiledWindow>>,
}

/// The live set of maintenance windows. Cheap to clone; clones share the set, so a
/// [`replace`](WindowSet::replace) is seen at once by ingest, the router and the API.
///
/// Where windows overlap, the first one covering a host wins: static windows in configuration
/// order, then stored ones in the order the store lists them.
#[derive(Clone, Debug)]
pub struct WindowSet {
    inner: Arc<Inner>,
}

impl Default for WindowSet {
    fn default() -> Self {
        Self::new(Vec::new()).expect("an empty set is valid")
    }
}

impl WindowSet {
    /// A set holding the static windows (from `[[routing.windows]]`) and no stored ones.
    ///
    /// # Errors
    /// The first invalid window or duplicate id, naming the field.
    pub fn new(static_windows: Vec<MaintenanceWindow>) -> Result<Self, WindowError> {
        let compiled = compile_all(static_windows, &mut HashSet::new())?;
        Ok(Self {
            inner: Arc::new(Inner {
                current: RwLock::new(compiled.clone()),
                static_windows: compiled,
            }),
        })
    }

    /// Replaces the stored part of the set. All or nothing: on error the previous set stays.
    /// Windows that ended more than a week ago are left out (they can no longer matter).
    ///
    /// # Errors
    /// The first invalid window, or one whose id another window (static or stored) already
    /// has, naming the field.
    pub fn replace(&self, stored: Vec<MaintenanceWindow>) -> Result<(), WindowError> {
        let horizon = OffsetDateTime::now_utc() - ENDED_RETENTION;
        let mut seen: HashSet<String> = self
            .inner
            .static_windows
            .iter()
            .map(|c| c.window.id.clone())
            .collect();
        let stored = stored.into_iter().filter(|w| w.ends_at > horizon).collect();
        let stored = compile_all(stored, &mut seen)?;
        let mut all = self.inner.static_windows.clone();
        all.extend(stored);
        *self.inner.current.write().expect("windows lock poisoned") = all;
        Ok(())
    }

    /// True when `id` is a static window's id (stored windows may not reuse it).
    pub fn is_static(&self, id: &str) -> bool {
        self.inner.static_windows.iter().any(|c| c.window.id == id)
    }

    /// The windows of `[[routing.windows]]` (read-only through the API).
    pub fn static_windows(&self) -> Vec<MaintenanceWindow> {
        self.inner
            .static_windows
            .iter()
            .map(|c| c.window.clone())
            .collect()
    }

    /// Every window in the set: static ones first, then stored ones.
    pub fn all(&self) -> Vec<MaintenanceWindow> {
        self.read().iter().map(|c| c.window.clone()).collect()
    }

    /// The windows whose span contains `now`, whatever their hosts (for the dashboard).
    pub fn active(&self, now: OffsetDateTime) -> Vec<MaintenanceWindow> {
        self.read()
            .iter()
            .filter(|c| c.window.starts_at <= now && now < c.window.ends_at)
            .map(|c| c.window.clone())
            .collect()
    }

    /// The id of the first window covering `host` (globs case-insensitive) at `at` (start
    /// inclusive, end exclusive); `None` when no window does.
    pub fn covers(&self, host: &str, at: OffsetDateTime) -> Option<String> {
        self.read()
            .iter()
            .find(|c| c.covers(host, at))
            .map(|c| c.window.id.clone())
    }

    /// Adds the label `maintenance_window = <id>` to `finding` when a window covers its host
    /// (`host.hostname`, else `host.fqdn`) at its observed time (or now, when it has none); a
    /// label that already names a window covering it stays. Returns whether it was tagged.
    pub fn tag(&self, finding: &mut Finding) -> bool {
        let windows = self.read();
        tag_with(&windows, finding, "", OffsetDateTime::now_utc())
    }

    /// [`tag`](WindowSet::tag) for every finding of `batch`; a finding without a host name
    /// takes the batch's. Returns how many findings were tagged.
    pub fn tag_batch(&self, batch: &mut Batch) -> usize {
        let windows = self.read();
        if windows.is_empty() {
            return 0;
        }
        let batch_host = batch
            .host
            .as_ref()
            .map(|h| h.hostname.clone())
            .unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        batch
            .findings
            .iter_mut()
            .map(|f| tag_with(&windows, f, &batch_host, now))
            .filter(|&tagged| tagged)
            .count()
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<CompiledWindow>> {
        self.inner.current.read().expect("windows lock poisoned")
    }
}

/// Tags `f` with the first of `windows` covering its host (or `fallback_host`) at its observed
/// time (or `now`).
fn tag_with(
    windows: &[CompiledWindow],
    f: &mut Finding,
    fallback_host: &str,
    now: OffsetDateTime,
) -> bool {
    let host = match host_name(f) {
        "" => fallback_host,
        h => h,
    };
    let at = if f.observed_time_unix_nano > 0 {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(f.observed_time_unix_nano))
            .unwrap_or(now)
    } else {
        now
    };
    // A label that already names a window covering the host stays: when windows overlap, a
    // finding about one of them (a preflight gate alert) keeps naming it.
    if let Some(current) = f.labels.get(MAINTENANCE_WINDOW_LABEL) {
        if windows
            .iter()
            .any(|w| w.window.id == *current && w.covers(host, at))
        {
            return true;
        }
    }
    let Some(w) = windows.iter().find(|w| w.covers(host, at)) else {
        return false;
    };
    let id = w.window.id.clone();
    f.labels.insert(MAINTENANCE_WINDOW_LABEL.to_owned(), id);
    true
}

#[cfg(test)]
mod tests {
    use patchwatch_proto::HostInfo;
    use time::macros::datetime;

    use super::*;

    fn w() -> MaintenanceWindow {
        MaintenanceWindow {
            id: "cu15-wave2".into(),
            name: "CU15 wave 2".into(),
            hosts: vec!["exch0*".into(), "*.dag2.corp".into()],
            starts_at: datetime!(2026-11-21 02:00 UTC),
            ends_at: datetime!(2026-11-21 06:00 UTC),
            require_clean_preflight: false,
        }
    }

    /// Window `id` over `hosts`, starting `from_now_s` seconds from now, `len_s` long.
    fn window(id: &str, hosts: &[&str], from_now_s: i64, len_s: i64) -> MaintenanceWindow {
        let now = OffsetDateTime::now_utc();
        MaintenanceWindow {
            id: id.into(),
            name: id.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            starts_at: now + time::Duration::seconds(from_now_s),
            ends_at: now + time::Duration::seconds(from_now_s + len_s),
            require_clean_preflight: false,
        }
    }

    fn finding(host: &str) -> Finding {
        Finding {
            id: format!("f-{host}"),
            host: Some(HostInfo {
                hostname: host.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn covers_hosts_case_insensitively_within_range() {
        let set = WindowSet::new(vec![w()]).unwrap();
        let id = Some("cu15-wave2".to_owned());
        assert_eq!(set.covers("EXCH01", datetime!(2026-11-21 02:00 UTC)), id);
        assert_eq!(
            set.covers("mbx1.dag2.corp", datetime!(2026-11-21 05:59 UTC)),
            id
        );
        assert_eq!(
            set.covers("EXCH01", datetime!(2026-11-21 06:00 UTC)),
            None,
            "end is exclusive"
        );
        assert_eq!(set.covers("DC01", datetime!(2026-11-21 03:00 UTC)), None);
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
            WindowSet::new(vec![w(), w()]),
            Err(WindowError::DuplicateId(_))
        ));
    }

    /// The aggregator used to leave a stored window with a bad glob out of its tagging set while
    /// the router refused the whole set: the two then tagged differently. Now the one set
    /// refuses it, names the field, and keeps what it had.
    #[test]
    fn a_bad_glob_is_refused_everywhere_and_the_previous_set_stays() {
        let mut bad = window("bad-glob", &["exch["], -10, 60);
        let err = WindowSet::new(vec![bad.clone()]).unwrap_err();
        assert!(
            matches!(&err, WindowError::BadGlob { id, glob, .. } if id == "bad-glob" && glob == "exch["),
            "{err}"
        );
        assert!(err.to_string().contains("`hosts`"), "{err}");

        let set = WindowSet::new(vec![window("static", &["mbx1"], -10, 60)]).unwrap();
        set.replace(vec![window("cu15", &["EX0*"], -10, 60)])
            .unwrap();
        bad.id = "later".into();
        let err = set
            .replace(vec![window("cu16", &["EX0*"], -10, 60), bad])
            .unwrap_err();
        assert!(err.to_string().contains("`hosts` entry `exch[`"), "{err}");
        let ids: Vec<_> = set.all().into_iter().map(|w| w.id).collect();
        assert_eq!(ids, ["static", "cu15"], "all or nothing");

        // Ingest (`tag_batch`) and the router (`tag`) read the same set, so they agree.
        let mut batch = Batch {
            findings: vec![finding("ex01")],
            ..Default::default()
        };
        let mut single = finding("ex01");
        assert_eq!(set.tag_batch(&mut batch), 1);
        assert!(set.tag(&mut single));
        assert_eq!(batch.findings[0].labels, single.labels);
    }

    #[test]
    fn a_label_naming_a_covering_window_stays_and_any_other_is_replaced() {
        let set = WindowSet::new(vec![
            window("first", &["ex*"], -60, 3600),
            window("second", &["ex*"], -60, 3600),
        ])
        .unwrap();
        let mut f = finding("EX01");
        f.labels
            .insert(MAINTENANCE_WINDOW_LABEL.into(), "second".into());
        assert!(set.tag(&mut f));
        assert_eq!(f.labels[MAINTENANCE_WINDOW_LABEL], "second");
        // A label naming a window that does not cover the host (or none at all) is not kept.
        f.labels
            .insert(MAINTENANCE_WINDOW_LABEL.into(), "elsewhere".into());
        assert!(set.tag(&mut f));
        assert_eq!(f.labels[MAINTENANCE_WINDOW_LABEL], "first");
    }

    #[test]
    fn tags_only_covered_hosts_inside_the_span() {
        let set = WindowSet::new(vec![window("static", &["mbx1"], -10, 60)]).unwrap();
        set.replace(vec![
            window("cu15", &["EX0*"], -10, 60),
            window("later", &["*"], 3600, 60),
            window("ended", &["*"], -120, 60),
        ])
        .unwrap();
        let mut batch = Batch {
            findings: vec![finding("ex01"), finding("MBX1"), finding("dc01")],
            ..Default::default()
        };
        assert_eq!(set.tag_batch(&mut batch), 2);
        let label = |i: usize| {
            batch.findings[i]
                .labels
                .get(MAINTENANCE_WINDOW_LABEL)
                .cloned()
        };
        assert_eq!(label(0).as_deref(), Some("cu15"));
        assert_eq!(label(1).as_deref(), Some("static"));
        assert_eq!(label(2), None);
        let active: Vec<_> = set
            .active(OffsetDateTime::now_utc())
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(active, ["static", "cu15"]);
    }

    #[test]
    fn a_finding_without_a_host_takes_the_batch_host() {
        let set = WindowSet::new(vec![window("w", &["ex01"], -10, 60)]).unwrap();
        let mut batch = Batch {
            host: Some(HostInfo {
                hostname: "EX01".into(),
                ..Default::default()
            }),
            findings: vec![Finding::default()],
            ..Default::default()
        };
        assert_eq!(set.tag_batch(&mut batch), 1);
    }

    #[test]
    fn empty_spans_and_ids_taken_by_static_windows_are_errors() {
        let set = WindowSet::new(vec![window("a", &["x"], 0, 60)]).unwrap();
        let mut empty = window("b", &["x"], 0, 60);
        empty.ends_at = empty.starts_at;
        assert_eq!(
            set.replace(vec![empty]),
            Err(WindowError::EndsBeforeStart("b".into()))
        );
        assert_eq!(
            set.replace(vec![window("a", &["y"], 0, 60)]),
            Err(WindowError::DuplicateId("a".into()))
        );
        let all = set.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].hosts, ["x"]);
        assert!(set.is_static("a") && !set.is_static("b"));
    }

    #[test]
    fn serde_roundtrip_rfc3339() {
        let text = serde_json::to_string(&w()).unwrap();
        assert!(text.contains("2026-11-21T02:00:00Z"), "{text}");
        let back: MaintenanceWindow = serde_json::from_str(&text).unwrap();
        assert_eq!(back, w());
    }
}
