//! Maintenance windows at run time: the set the ingest path tags findings with and the router
//! decides with.
//!
//! The set is the static `[[routing.windows]]` of the configuration plus every window stored in
//! the database (created through `POST /api/v1/windows` or `patchwatch window create`). It is
//! loaded at start, after every change made through this aggregator, and every
//! [`RELOAD_INTERVAL`] (so aggregators sharing a PostgreSQL database see each other's changes).
//!
//! The same reload pushes the silences stored at run time (`POST /api/v1/silences`,
//! `patchwatch window silence add`) to the router, beside the configured `[[routing.silences]]`:
//! both are routing state the API changes and peers sharing a database must see.
//!
//! Tagging happens at ingest, before validation, so the label `maintenance_window = <id>` is
//! stored with the finding (the dashboard and API show it) and carried to the router and the
//! sinks. The router tags again with the same windows and the same rule (first window covering
//! the host at the finding's observed time), so both agree.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use patchwatch_proto::Batch;
use patchwatch_sinks::routing::{
    MaintenanceWindow, Router, SilenceConfig, MAINTENANCE_WINDOW_LABEL,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// How often stored windows are re-read even without a local change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(15);

/// Windows that ended longer ago than this are not loaded: no finding that late still matters.
const ENDED_RETENTION: time::Duration = time::Duration::days(7);

/// A window with its host globs compiled.
struct Compiled {
    window: MaintenanceWindow,
    hosts: Vec<GlobMatcher>,
}

impl Compiled {
    fn new(window: MaintenanceWindow) -> Option<Self> {
        // Same glob semantics as the router: case-insensitive, `*` crosses dots.
        let hosts = window
            .hosts
            .iter()
            .map(|g| {
                GlobBuilder::new(g)
                    .case_insensitive(true)
                    .literal_separator(false)
                    .build()
                    .map(|g| g.compile_matcher())
            })
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        Some(Self { window, hosts })
    }

    fn covers(&self, host: &str, at: OffsetDateTime) -> bool {
        at >= self.window.starts_at
            && at < self.window.ends_at
            && self.hosts.iter().any(|g| g.is_match(host))
    }
}

struct Inner {
    static_windows: Vec<MaintenanceWindow>,
    current: RwLock<Vec<Compiled>>,
    router: Option<Router>,
}

/// The live set of maintenance windows. Cheap to clone.
#[derive(Clone)]
pub struct WindowSet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WindowSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowSet")
            .field("windows", &self.all().len())
            .finish()
    }
}

impl WindowSet {
    /// A set holding `static_windows` (from `[[routing.windows]]`), which pushes every change to
    /// `router` when there is one.
    pub fn new(static_windows: Vec<MaintenanceWindow>, router: Option<Router>) -> Self {
        let set = Self {
            inner: Arc::new(Inner {
                static_windows,
                current: RwLock::new(Vec::new()),
                router,
            }),
        };
        set.replace(Vec::new());
        set
    }

    /// True when `id` is a static window's id (stored windows may not reuse it).
    pub fn is_static(&self, id: &str) -> bool {
        self.inner.static_windows.iter().any(|w| w.id == id)
    }

    /// The windows of `[[routing.windows]]` (read-only through the API).
    pub fn static_windows(&self) -> Vec<MaintenanceWindow> {
        self.inner.static_windows.clone()
    }

    /// Every window in the set: static ones first, then stored ones.
    pub fn all(&self) -> Vec<MaintenanceWindow> {
        self.read().iter().map(|c| c.window.clone()).collect()
    }

    /// The windows covering `now` (for the dashboard).
    pub fn active(&self, now: OffsetDateTime) -> Vec<MaintenanceWindow> {
        self.read()
            .iter()
            .filter(|c| c.window.starts_at <= now && now < c.window.ends_at)
            .map(|c| c.window.clone())
            .collect()
    }

    /// Replaces the stored part of the set. Windows that ended long ago, that have an empty
    /// span (ended before they started) or whose id is already taken are left out.
    pub fn replace(&self, stored: Vec<MaintenanceWindow>) {
        let horizon = OffsetDateTime::now_utc() - ENDED_RETENTION;
        let mut seen = std::collections::HashSet::new();
        let compiled: Vec<Compiled> = self
            .inner
            .static_windows
            .iter()
            .cloned()
            .chain(stored)
            .filter(|w| w.ends_at > w.starts_at && w.ends_at > horizon)
            .filter(|w| seen.insert(w.id.clone()))
            .filter_map(Compiled::new)
            .collect();
        if let Some(router) = &self.inner.router {
            let windows = compiled.iter().map(|c| c.window.clone()).collect();
            if let Err(error) = router.set_windows(windows) {
                // Every window was validated before it was stored; this is a bug or a
                // database edited by hand. The router keeps its previous set.
                tracing::error!(message = "Router refused the maintenance windows.", %error);
            }
        }
        *self.inner.current.write().expect("windows lock poisoned") = compiled;
    }

    /// Re-reads the stored windows and silences.
    ///
    /// # Errors
    /// The store could not be read; the sets are unchanged.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let stored = store.windows().await?;
        let silences = store.silences().await?;
        self.replace(stored);
        self.replace_silences(silences.into_iter().map(|s| s.silence).collect());
        Ok(())
    }

    /// Hands the stored silences to the router. Silences that expired long ago are left out;
    /// one that does not validate (a database edited by hand) is left out and logged, so it
    /// cannot keep the others from applying.
    pub fn replace_silences(&self, stored: Vec<SilenceConfig>) {
        let Some(router) = &self.inner.router else {
            return;
        };
        let horizon = OffsetDateTime::now_utc() - ENDED_RETENTION;
        let valid: Vec<SilenceConfig> = stored
            .into_iter()
            .filter(|s| s.ends_at.is_none_or(|e| e > horizon))
            .filter(|s| match s.validate() {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(message = "Stored silence is invalid; ignored.", id = %s.id, %error);
                    false
                }
            })
            .collect();
        if let Err(error) = router.set_stored_silences(valid) {
            tracing::error!(message = "Router refused the stored silences.", %error);
        }
    }

    /// The silences of `[[routing.silences]]` (read-only through the API); empty without
    /// `[routing]`.
    pub fn config_silences(&self) -> Vec<SilenceConfig> {
        self.inner
            .router
            .as_ref()
            .map(Router::silences)
            .unwrap_or_default()
    }

    /// Adds the label `maintenance_window = <id>` to every finding of `batch` whose host a
    /// window covers at the finding's observed time (or now, when the collector sent none).
    /// Returns how many findings were tagged.
    pub fn tag(&self, batch: &mut Batch) -> usize {
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
        let mut tagged = 0;
        for f in &mut batch.findings {
            let host = match &f.host {
                Some(h) if !h.hostname.is_empty() => h.hostname.as_str(),
                _ => batch_host.as_str(),
            };
            let at = if f.observed_time_unix_nano > 0 {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(f.observed_time_unix_nano))
                    .unwrap_or(now)
            } else {
                now
            };
            if let Some(w) = windows.iter().find(|w| w.covers(host, at)) {
                f.labels
                    .insert(MAINTENANCE_WINDOW_LABEL.to_owned(), w.window.id.clone());
                tagged += 1;
            }
        }
        tagged
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Compiled>> {
        self.inner.current.read().expect("windows lock poisoned")
    }

    /// Reloads from `store` every [`RELOAD_INTERVAL`] until `shutdown`.
    pub(crate) async fn reload_loop(self, store: Arc<dyn Store>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_INTERVAL) => {}
            }
            if let Err(error) = self.reload(store.as_ref()).await {
                tracing::warn!(message = "Reloading maintenance windows and silences failed.", %error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchwatch_proto::{Finding, HostInfo};

    fn window(id: &str, hosts: &[&str], from_now_s: i64, len_s: i64) -> MaintenanceWindow {
        let now = OffsetDateTime::now_utc();
        MaintenanceWindow {
            id: id.into(),
            name: id.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            starts_at: now + time::Duration::seconds(from_now_s),
            ends_at: now + time::Duration::seconds(from_now_s + len_s),
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
    fn tags_only_covered_hosts_inside_the_span() {
        let set = WindowSet::new(vec![window("static", &["mbx1"], -10, 60)], None);
        set.replace(vec![
            window("cu15", &["EX0*"], -10, 60),
            window("later", &["*"], 3600, 60),
            window("ended", &["*"], -120, 60),
        ]);
        let mut batch = Batch {
            findings: vec![finding("ex01"), finding("MBX1"), finding("dc01")],
            ..Default::default()
        };
        assert_eq!(set.tag(&mut batch), 2);
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
    fn empty_spans_and_duplicate_ids_are_left_out() {
        let set = WindowSet::new(vec![window("a", &["x"], 0, 60)], None);
        let mut empty = window("b", &["x"], 0, 60);
        empty.ends_at = empty.starts_at;
        set.replace(vec![window("a", &["y"], 0, 60), empty]);
        let all = set.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].hosts, ["x"]);
        assert!(set.is_static("a") && !set.is_static("b"));
    }
}
