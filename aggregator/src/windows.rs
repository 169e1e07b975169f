//! Routing state the API changes at run time: the stored maintenance windows (loaded into the
//! one [`WindowSet`] that ingest, the router and the HTTP API share) and the stored silences
//! (handed to the router).
//!
//! The window set is the static `[[routing.windows]]` of the configuration plus every window
//! stored in the database (created through `POST /api/v1/windows` or `patchwatch window
//! create`). Stored windows and silences are loaded at start, after every change made through
//! this aggregator, and every [`RELOAD_INTERVAL`] (so aggregators sharing a PostgreSQL database
//! see each other's changes).
//!
//! Tagging happens at ingest, before validation, so the label `maintenance_window = <id>` is
//! stored with the finding (the dashboard and API show it) and carried to the router and the
//! sinks. The router tags again with the same set, so both agree.
//!
//! After each reload the windows that require a clean preflight are checked
//! ([`RoutingState::check_gates`]), so a gate alert fires within one [`RELOAD_INTERVAL`] of
//! a window coming within the router's `preflight_gate_lead` of its start or a host's
//! preflight changing, and keeps firing while it holds.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::routing::{Router, SilenceConfig, WindowError, WindowSet, DEFAULT_PREFLIGHT_GATE_LEAD};
use crate::store::{Store, StoreError};

/// How often stored windows and silences are re-read even without a local change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(15);

/// Silences that expired longer ago than this are not loaded: no finding that late still
/// matters.
const ENDED_RETENTION: time::Duration = time::Duration::days(7);

/// Why the stored windows and silences could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored window is invalid (a database edited by hand, or written by another version);
    /// the previous set of windows stays.
    #[error("stored maintenance window: {0}")]
    Window(#[from] WindowError),
}

/// The window set and the router (when `[routing]` is configured). Cheap to clone.
#[derive(Clone, Debug)]
pub struct RoutingState {
    windows: WindowSet,
    router: Option<Router>,
}

impl RoutingState {
    /// The state for `router`, sharing its window set; without a router, a set of no static
    /// windows (stored ones still tag findings and show on the dashboard).
    pub fn new(router: Option<Router>) -> Self {
        let windows = router.as_ref().map(Router::windows).unwrap_or_default();
        Self { windows, router }
    }

    /// The live maintenance windows.
    pub fn windows(&self) -> &WindowSet {
        &self.windows
    }

    /// Re-reads the stored windows and silences.
    ///
    /// # Errors
    /// The store could not be read, or a stored window is invalid; the window set is then
    /// unchanged.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), ReloadError> {
        let stored = store.windows().await?;
        let silences = store.silences().await?;
        self.replace_silences(silences.into_iter().map(|s| s.silence).collect());
        self.windows.replace(stored)?;
        Ok(())
    }

    /// Hands the stored silences to the router. Silences that expired long ago are left out;
    /// one that does not validate (a database edited by hand) is left out and logged, so it
    /// cannot keep the others from applying.
    pub fn replace_silences(&self, stored: Vec<SilenceConfig>) {
        let Some(router) = &self.router else {
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

    /// Routes an alert for every host that is not clean in a window requiring a clean
    /// preflight that is active or starts within the router's `preflight_gate_lead`
    /// ([`crate::gate`]), and sets the gauge of how many there are; no alert without a router.
    /// Returns how many alerts were queued.
    ///
    /// # Errors
    /// The store could not be read.
    pub async fn check_gates(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let now = OffsetDateTime::now_utc();
        let lead = self
            .router
            .as_ref()
            .map_or(DEFAULT_PREFLIGHT_GATE_LEAD, Router::preflight_gate_lead);
        let watched = crate::gate::watched(self.windows.all(), now, lead);
        let gauge = metrics::gauge!("patchwatch_aggregator_preflight_gate_hosts");
        if watched.is_empty() {
            gauge.set(0.0);
            return Ok(0);
        }
        let hosts = store.hosts(None).await?;
        let blocked = crate::gate::all_blocked(&watched, &hosts);
        gauge.set(blocked.len() as f64);
        Ok(match &self.router {
            Some(router) => crate::gate::route(router, &blocked, now),
            None => 0,
        })
    }

    /// The silences of `[[routing.silences]]` (read-only through the API); empty without
    /// `[routing]`.
    pub fn config_silences(&self) -> Vec<SilenceConfig> {
        self.router
            .as_ref()
            .map(Router::silences)
            .unwrap_or_default()
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
            if let Err(error) = self.check_gates(store.as_ref()).await {
                tracing::warn!(message = "Checking preflight gates failed.", %error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::MaintenanceWindow;

    fn window(id: &str, host: &str) -> MaintenanceWindow {
        let now = OffsetDateTime::now_utc();
        MaintenanceWindow {
            id: id.into(),
            name: id.into(),
            hosts: vec![host.into()],
            starts_at: now - time::Duration::minutes(1),
            ends_at: now + time::Duration::hours(1),
            require_clean_preflight: false,
        }
    }

    /// A stored window with a bad glob used to be left out of ingest's tagging set while the
    /// router refused the whole set, so the two disagreed. Now the reload fails naming the
    /// field, and the set ingest, router and API share stays as it was.
    #[tokio::test]
    async fn a_stored_window_with_a_bad_glob_fails_the_reload_and_the_set_stays() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config {
            data_dir: dir.path().into(),
            ..Default::default()
        };
        let store = crate::store::open(&config).await.unwrap();
        let state = RoutingState::new(None);
        store.insert_window(window("good", "ex01")).await.unwrap();
        state.reload(store.as_ref()).await.unwrap();
        // The API validates before storing; a hand-edited database does not.
        store.insert_window(window("bad", "exch[")).await.unwrap();
        let err = state.reload(store.as_ref()).await.unwrap_err();
        assert!(
            matches!(err, ReloadError::Window(WindowError::BadGlob { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("`hosts` entry `exch[`"), "{err}");
        let ids: Vec<_> = state.windows().all().into_iter().map(|w| w.id).collect();
        assert_eq!(ids, ["good"]);
        let now = OffsetDateTime::now_utc();
        assert_eq!(state.windows().covers("EX01", now).as_deref(), Some("good"));
        store.close().await;
    }
}
