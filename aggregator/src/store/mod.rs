//! Storage backends behind one trait: SQLite (embedded default) and PostgreSQL (shared).
//!
//! Contract of every backend:
//! - `write_batch` returns only once the whole batch is durable (committed), so the caller may
//!   acknowledge it; on error nothing of it may be assumed stored.
//! - Writes are idempotent by finding id: a finding already stored is left as it is, so a
//!   replayed batch changes no finding. A run update older than the stored run is ignored.
//! - Schemas are versioned migrations applied at open; a database newer than this build is
//!   refused rather than guessed at.

use std::sync::Arc;

use crate::routing::MaintenanceWindow;
use futures::future::BoxFuture;

pub use forward::{ForwardCursor, ForwardItem, ForwardPosition};
pub(crate) use rollup::PREFLIGHT_SOURCE;
pub use silences::StoredSilence;

use crate::config::{Config, ConfigError, StoreBackend};
use crate::model::{
    AnnotationRecord, FindingFilter, FindingRecord, FleetPage, FleetQuery, HostRecord, Page,
    PhaseRecord, RunFilter, RunRecord, ValidBatch, WriteOutcome,
};

mod annotations;
mod forward;
pub mod postgres;
mod rollup;
mod schema;
mod silences;
mod sql;
pub mod sqlite;

/// Phases kept per run. An Exchange setup reports a few dozen components; a Windows Installer
/// session can report hundreds of actions, of which the latest (where it stopped) matter most,
/// so past this many the oldest are dropped.
pub const MAX_PHASES: i64 = 256;

/// The time a run update's phase started: its last log line, else the update's own time.
pub(crate) fn phase_time(r: &crate::model::NewRun) -> i64 {
    if r.last_line_ns > 0 {
        r.last_line_ns
    } else {
        r.updated_ns
    }
}

/// A phase row as both backends read it: run, ordinal, phase, started_ns.
pub(crate) fn phase_record(run_id: String, ordinal: i64, phase: String, ns: i64) -> PhaseRecord {
    PhaseRecord {
        run_id,
        ordinal,
        phase,
        started_time: crate::model::rfc3339(ns),
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// The database's schema is newer than this build understands.
    #[error(
        "database schema version {found} is newer than this aggregator supports ({supported}); \
         upgrade the aggregator"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The store was closed (shutting down).
    #[error("store is closed")]
    Closed,
    /// A file-system or thread error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Stored data that does not decode.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A row with this key already exists (e.g. a maintenance window id).
    #[error("{0} already exists")]
    Conflict(String),
}

/// A place that keeps findings, runs and hosts. See the module doc for the contract.
pub trait Store: Send + Sync + 'static {
    /// Short backend name for `Health` and `/healthz`: `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Writes a batch in one transaction and returns once it is durable.
    fn write_batch(&self, batch: ValidBatch) -> BoxFuture<'_, Result<WriteOutcome, StoreError>>;

    /// One finding by id.
    fn finding(&self, id: String) -> BoxFuture<'_, Result<Option<FindingRecord>, StoreError>>;

    /// Findings matching `filter`, newest first.
    fn findings(
        &self,
        filter: FindingFilter,
    ) -> BoxFuture<'_, Result<Page<FindingRecord>, StoreError>>;

    /// Every host with its latest run and counts, by host name; or only `only` when given.
    fn hosts(
        &self,
        only: Option<Vec<String>>,
    ) -> BoxFuture<'_, Result<Vec<HostRecord>, StoreError>>;

    /// One page of the fleet (see [`FleetQuery`]): the whole fleet's counts by state, how
    /// many hosts match the filters, and the page's hosts worst first, read in one snapshot
    /// where the backend has one (SQLite). Costs an index range scan up to the page and the
    /// host queries of [`Store::hosts`] for the page's hosts only, not work over every host.
    fn fleet(&self, query: FleetQuery) -> BoxFuture<'_, Result<FleetPage, StoreError>>;

    /// Runs matching `filter`, most recently updated first.
    fn runs(&self, filter: RunFilter) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>>;

    /// The phase history of `run_ids`, by run and then in order (see [`MAX_PHASES`]).
    fn run_phases(
        &self,
        run_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<PhaseRecord>, StoreError>>;

    /// Every stored maintenance window, latest start first.
    fn windows(&self) -> BoxFuture<'_, Result<Vec<MaintenanceWindow>, StoreError>>;

    /// Stores a new maintenance window (already validated by the caller) and returns once it
    /// is durable.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a window with this id exists.
    fn insert_window(&self, window: MaintenanceWindow) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Ends window `id` at `at_ns` (Unix nanoseconds): `ends_at` becomes `min(ends_at, at)`,
    /// and a window that had not started yet also gets `starts_at = at` (it never ran).
    /// Ending an ended window changes nothing. `None` when no window has this id.
    fn end_window(
        &self,
        id: String,
        at_ns: i64,
    ) -> BoxFuture<'_, Result<Option<MaintenanceWindow>, StoreError>>;

    /// Every stored silence, latest start first.
    fn silences(&self) -> BoxFuture<'_, Result<Vec<StoredSilence>, StoreError>>;

    /// Stores a new silence (already validated by the caller, with `starts_at` and `ends_at`
    /// set) and returns once it is durable.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a silence with this id exists.
    fn insert_silence(&self, silence: StoredSilence) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Expires silence `id` at `at_ns` (Unix nanoseconds), like [`Store::end_window`]:
    /// `ends_at` becomes `min(ends_at, at)` and one that had not started also gets
    /// `starts_at = at`. Expiring an expired silence changes nothing. `None` when no silence
    /// has this id.
    fn expire_silence(
        &self,
        id: String,
        at_ns: i64,
    ) -> BoxFuture<'_, Result<Option<StoredSilence>, StoreError>>;

    /// Up to `limit` findings after `after` in forwarding order (see [`ForwardPosition`]),
    /// oldest first. Only findings that can no longer be preceded by a later commit are
    /// returned, so a caller that advances past the last one never skips a finding.
    fn findings_after(
        &self,
        after: ForwardPosition,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ForwardItem>, StoreError>>;

    /// A position at or after every finding [`Store::findings_after`] can return now, and
    /// before any finding it can return later; its `seq` is the store's max seq. A new
    /// destination that starts "now" starts here. On PostgreSQL findings of transactions
    /// that committed just before the call but are newer than the oldest running one still
    /// come after it (they are forwarded, never skipped).
    fn forward_head(&self) -> BoxFuture<'_, Result<ForwardPosition, StoreError>>;

    /// Every persisted forwarding cursor, by destination.
    fn forward_cursors(&self) -> BoxFuture<'_, Result<Vec<ForwardCursor>, StoreError>>;

    /// Persists `destination`'s cursor at `position` and returns once durable. A cursor never
    /// moves back: a position at or before the stored one changes nothing.
    fn set_forward_cursor(
        &self,
        destination: String,
        position: ForwardPosition,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Clears `host`'s collector binding (its row's `collector_id`), so the next collector
    /// that reports it owns it. A host not stored is not an error.
    fn release_host(&self, host: String) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Stores a triage note (already validated by the caller) and returns it as stored.
    fn annotate(
        &self,
        note: AnnotationRecord,
    ) -> BoxFuture<'_, Result<AnnotationRecord, StoreError>>;

    /// The triage notes of the `target` kind (`finding` or `run`) on `ids`, oldest first.
    fn annotations(
        &self,
        target: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<AnnotationRecord>, StoreError>>;

    /// Checks the database answers (for `/healthz`).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Finishes pending writes and releases the database. Writes after this fail with
    /// [`StoreError::Closed`].
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Opens the backend the configuration names, applying migrations.
///
/// # Errors
/// A configuration problem (a missing URL variable) or the database's refusal.
pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    use anyhow::Context as _;
    match config.store.backend {
        StoreBackend::Sqlite => {
            let path = config.sqlite_path();
            let store = sqlite::SqliteStore::open(&path, &config.store.sqlite)
                .await
                .with_context(|| format!("opening SQLite store {}", path.display()))?;
            Ok(Arc::new(store))
        }
        StoreBackend::Postgres => {
            let url = config
                .postgres_url()
                .map_err(|e: ConfigError| anyhow::anyhow!(e))?;
            let store =
                postgres::PostgresStore::open(url.expose(), config.store.postgres.pool_size)
                    .await
                    .context("opening PostgreSQL store")?;
            Ok(Arc::new(store))
        }
    }
}

/// What `aggregator --check --connect` learns of the configured database, without creating
/// or migrating anything: the server, and the schema version it holds next to the one this
/// build writes.
///
/// # Errors
/// The URL is missing or unresolvable, the server does not answer or refuses, or the SQLite
/// file is not a database.
pub async fn probe(config: &Config) -> anyhow::Result<String> {
    use anyhow::Context as _;
    match config.store.backend {
        StoreBackend::Sqlite => {
            let supported = schema::SQLITE_MIGRATIONS.last().map_or(0, |m| m.0);
            let path = config.sqlite_path();
            if !path.exists() {
                return Ok(format!(
                    "SQLite {} will be created (schema version {supported})",
                    path.display()
                ));
            }
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .with_context(|| format!("opening {}", path.display()))?;
            let version: i64 = conn
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    [],
                    |r| r.get(0),
                )
                .with_context(|| format!("{} is not a patchwatch store", path.display()))?;
            newer(version, supported)?;
            Ok(format!(
                "SQLite {}: schema version {version} (this build: {supported})",
                path.display()
            ))
        }
        StoreBackend::Postgres => {
            let supported = schema::POSTGRES_MIGRATIONS.last().map_or(0, |m| m.0);
            let url = config
                .postgres_url()
                .map_err(|e: ConfigError| anyhow::anyhow!(e))?;
            let (client, connection) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
                .await
                .context("connecting to PostgreSQL")?;
            let task = tokio::spawn(connection);
            let server: String = client
                .query_one("SHOW server_version", &[])
                .await
                .context("asking PostgreSQL its version")?
                .get(0);
            let version: i64 = match client
                .query_opt(
                    "SELECT COALESCE(MAX(version), 0)::int8 FROM schema_migrations",
                    &[],
                )
                .await
            {
                Ok(row) => row.map_or(0, |r| r.get(0)),
                // A new database: the aggregator creates the table at its first start.
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => 0,
                Err(e) => return Err(e).context("reading schema_migrations"),
            };
            drop(client);
            let _ = task.await;
            newer(version, supported)?;
            Ok(format!(
                "PostgreSQL {server}: schema version {version} (this build: {supported})"
            ))
        }
    }
}

/// A store written by a newer build is refused at start; say so before.
fn newer(version: i64, supported: i64) -> anyhow::Result<()> {
    if version > supported {
        anyhow::bail!(
            "schema version {version} was written by a newer patchwatch (this build knows \
             {supported}): upgrade the aggregator"
        );
    }
    Ok(())
}

/// Column list of window queries, in [`WindowRow`] order.
pub(crate) const WINDOW_COLUMNS: &str =
    "id, name, hosts, starts_ns, ends_ns, require_clean_preflight";

/// A maintenance window row as both backends read it; `hosts` is a JSON array.
pub(crate) struct WindowRow {
    pub id: String,
    pub name: String,
    pub hosts: String,
    pub starts_ns: i64,
    pub ends_ns: i64,
    pub require_clean_preflight: bool,
}

impl TryFrom<WindowRow> for MaintenanceWindow {
    type Error = StoreError;
    fn try_from(r: WindowRow) -> Result<Self, StoreError> {
        let time = |what: &str, ns: i64| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                .map_err(|e| StoreError::Corrupt(format!("window {}: {what}: {e}", r.id)))
        };
        Ok(MaintenanceWindow {
            hosts: serde_json::from_str(&r.hosts)
                .map_err(|e| StoreError::Corrupt(format!("window {}: hosts: {e}", r.id)))?,
            starts_at: time("starts_ns", r.starts_ns)?,
            ends_at: time("ends_ns", r.ends_ns)?,
            require_clean_preflight: r.require_clean_preflight,
            id: r.id,
            name: r.name,
        })
    }
}

/// The values a window is stored as: hosts JSON, start and end in Unix nanoseconds.
pub(crate) fn window_values(w: &MaintenanceWindow) -> (String, i64, i64) {
    let ns = |t: time::OffsetDateTime| {
        i64::try_from(t.unix_timestamp_nanos()).unwrap_or(if t.unix_timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        })
    };
    (
        serde_json::to_string(&w.hosts).expect("a list of strings serializes"),
        ns(w.starts_at),
        ns(w.ends_at),
    )
}

/// The new `(starts_ns, ends_ns)` of a window ended at `at_ns` (see [`Store::end_window`]).
pub(crate) fn ended_span(starts_ns: i64, ends_ns: i64, at_ns: i64) -> (i64, i64) {
    (starts_ns.min(at_ns), ends_ns.min(at_ns))
}

/// Column list shared by both backends' finding queries, in [`FindingRecord`] order.
///
/// `is_primary` also holds when the run names the finding: the agent sends a finding as soon as
/// it has its context, before the run ends and its primary cause is known, so the flag stored
/// with the finding is false and the run update that follows names it.
pub(crate) const FINDING_COLUMNS: &str =
    "seq, id, host, rule_id, rule_version, title, severity_num, category, \
     (is_primary OR EXISTS (SELECT 1 FROM runs WHERE runs.run_id = findings.run_id \
      AND runs.primary_finding_id = findings.id)) AS is_primary, \
     log_kind, source_path, byte_offset, line_number, run_id, event_ns, \
     observed_ns, received_ns, collector_id, detail";

/// Column list shared by both backends' run queries.
pub(crate) const RUN_COLUMNS: &str =
    "run_id, host, source_path, log_kind, run_index, outcome, mode, \
     product, target_build, installed_build, phase, exit_code, primary_finding_id, started_ns, \
     updated_ns, last_line_ns";

/// A run row in [`RUN_COLUMNS`] order, as both backends read it.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    pub run_id: String,
    pub host: String,
    pub source_path: String,
    pub log_kind: i32,
    pub run_index: i64,
    pub outcome: i32,
    pub mode: String,
    pub product: String,
    pub target_build: String,
    pub installed_build: String,
    pub phase: String,
    pub exit_code: Option<i64>,
    pub primary_finding_id: String,
    pub started_ns: i64,
    pub updated_ns: i64,
    pub last_line_ns: i64,
}

impl From<RunRow> for RunRecord {
    fn from(r: RunRow) -> Self {
        use crate::model::{log_kind_name, outcome_name, rfc3339};
        RunRecord {
            run_id: r.run_id,
            host: r.host,
            source_path: r.source_path,
            log_kind: log_kind_name(r.log_kind).to_owned(),
            run_index: r.run_index,
            outcome: outcome_name(r.outcome).to_owned(),
            mode: r.mode,
            product: r.product,
            target_build: r.target_build,
            installed_build: r.installed_build,
            phase: r.phase,
            exit_code: r.exit_code,
            primary_finding_id: r.primary_finding_id,
            started_time: rfc3339(r.started_ns),
            updated_time: rfc3339(r.updated_ns),
            last_line_time: rfc3339(r.last_line_ns),
        }
    }
}

/// A finding row in [`FINDING_COLUMNS`] order, as both backends read it.
pub(crate) struct FindingRow {
    pub seq: i64,
    pub id: String,
    pub host: String,
    pub rule_id: String,
    pub rule_version: i64,
    pub title: String,
    pub severity_num: i32,
    pub category: String,
    pub primary: bool,
    pub log_kind: i32,
    pub source_path: String,
    pub byte_offset: i64,
    pub line_number: i64,
    pub run_id: String,
    pub event_ns: i64,
    pub observed_ns: i64,
    pub received_ns: i64,
    pub collector_id: String,
    pub detail: String,
}

impl TryFrom<FindingRow> for FindingRecord {
    type Error = StoreError;
    fn try_from(r: FindingRow) -> Result<Self, StoreError> {
        use crate::model::{log_kind_name, rfc3339, severity_name};
        let detail = serde_json::from_str(&r.detail)
            .map_err(|e| StoreError::Corrupt(format!("finding {}: detail: {e}", r.id)))?;
        Ok(FindingRecord {
            seq: r.seq,
            severity: severity_name(r.severity_num)
                .unwrap_or("unspecified")
                .to_owned(),
            severity_num: r.severity_num,
            id: r.id,
            host: r.host,
            rule_id: r.rule_id,
            rule_version: r.rule_version,
            title: r.title,
            category: r.category,
            primary: r.primary,
            log_kind: log_kind_name(r.log_kind).to_owned(),
            source_path: r.source_path,
            byte_offset: r.byte_offset,
            line_number: r.line_number,
            run_id: r.run_id,
            event_time: rfc3339(r.event_ns),
            observed_time: rfc3339(r.observed_ns),
            received_time: rfc3339(r.received_ns),
            collector_id: r.collector_id,
            detail,
        })
    }
}

/// A host row plus the pieces the fleet view adds, as both backends assemble it.
pub(crate) struct HostRow {
    pub hostname: String,
    pub fqdn: String,
    pub os: String,
    pub agent_version: String,
    pub time_zone: String,
    pub collector_id: String,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
}

/// What a host row gets beside its own columns.
pub(crate) struct HostParts {
    pub latest_run: Option<RunRecord>,
    pub findings: crate::model::SeverityCounts,
    pub findings_total: u64,
    pub current_runs: Vec<RunRecord>,
    pub causes: Vec<crate::model::CauseRecord>,
    pub preflight: Option<RunRecord>,
    pub preflight_cause: Option<crate::model::CauseRecord>,
}

impl HostRow {
    pub(crate) fn into_record(self, parts: HostParts) -> HostRecord {
        use crate::model::rfc3339;
        let HostParts {
            latest_run,
            findings,
            findings_total,
            current_runs,
            causes,
            preflight,
            preflight_cause,
        } = parts;
        let state = current_runs
            .first()
            .map_or("unspecified", |r| r.outcome.as_str())
            .to_owned();
        HostRecord {
            hostname: self.hostname,
            fqdn: self.fqdn,
            os: self.os,
            agent_version: self.agent_version,
            time_zone: self.time_zone,
            collector_id: self.collector_id,
            first_seen: rfc3339(self.first_seen_ns),
            last_seen: rfc3339(self.last_seen_ns),
            latest_run,
            findings,
            findings_total,
            state,
            current_runs,
            causes,
            preflight,
            preflight_cause,
            windows: Vec::new(),
        }
    }
}
