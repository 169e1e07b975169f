//! The embedded SQLite backend: WAL mode, one writer thread with group commit, and a small
//! pool of read connections for the HTTP API.
//!
//! Architecture invariant: the writer thread owns the only writing connection. Async code
//! never holds a SQLite connection or a lock across `.await`: writes travel to the thread over
//! a channel and come back on a oneshot; reads run on `spawn_blocking`.
//!
//! Group commit: the writer takes one request, then whatever else is already queued (up to
//! `max_group_batches` batches and `max_group_rows` rows), writes them all in one transaction
//! and fsyncs once. Under load the queue fills while a commit is in progress, so the cost of
//! the fsync is shared by every stream waiting on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::routing::MaintenanceWindow;
use futures::future::BoxFuture;
use futures::FutureExt as _;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::forward::{upsert_cursor_sql, SELECT_CURSORS};
use super::sql::{self, SqlParam};
use super::{
    FindingRow, ForwardCursor, ForwardItem, ForwardPosition, HostRow, RunRow, Store, StoreError,
    StoredSilence, FINDING_COLUMNS,
};
use crate::config::{SqliteConfig, SqliteSync};
use crate::model::{
    severity_name, FindingFilter, FindingRecord, FindingSummary, HostRecord, Page, PhaseRecord,
    RunFilter, RunRecord, ValidBatch, WriteOutcome,
};

mod annotations;
mod fleet;
mod phases;
mod silences;
mod windows;

use super::schema::SQLITE_MIGRATIONS as MIGRATIONS;

/// One finding per execution of this prepared statement. A multi-row `INSERT ... VALUES
/// (...),(...) ... RETURNING` per batch was measured slower (50k against 60–85k findings/s
/// written, groups of 256 batches of 50): a statement that writes several rows inside a
/// transaction keeps a statement journal (a copy of each page it first touches), which costs
/// more than the per-execution work it saves.
const INSERT_FINDING: &str =
    "INSERT INTO findings (id, host, rule_id, rule_version, title, severity, \
     severity_num, category, is_primary, log_kind, source_path, byte_offset, line_number, run_id, \
     event_ns, observed_ns, received_ns, collector_id, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
     ON CONFLICT (id) DO NOTHING";

/// A job for the writer thread: a batch (group-committed with others) or a small write of its
/// own (a window, silence or forwarding cursor change), so the thread stays the only writer.
enum Job {
    Write(WriteRequest),
    /// A small write of its own, run between group commits (see [`SqliteStore::write_job`]).
    Exec(Box<dyn FnOnce(&mut Connection) + Send>),
}

impl Job {
    /// Runs a job that is not a batch write.
    fn run_single(self, conn: &mut Connection) {
        match self {
            Job::Exec(f) => f(conn),
            Job::Write(_) => unreachable!("batch writes are group-committed"),
        }
    }
}

/// One write travelling to the writer thread.
struct WriteRequest {
    batch: ValidBatch,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// What the writer thread hands back: the batch itself, so that turning it into the
/// outcome's finding summaries (moving its strings) and freeing it happen on the caller's
/// runtime thread, not on the single writer thread every stream waits for.
struct Written {
    batch: ValidBatch,
    stored: Stored,
}

/// What one batch's write changed.
#[derive(Default)]
struct Stored {
    /// Index in the batch and store sequence number of each finding stored for the first time.
    new_findings: Vec<(usize, i64)>,
    runs: Vec<crate::model::RunRecord>,
    /// Statements the batch executed (for the counting tests).
    statements: usize,
}

impl Written {
    fn into_outcome(self) -> WriteOutcome {
        let Written { batch, stored } = self;
        let mut findings = batch.findings.into_iter().enumerate();
        let mut new_findings = Vec::with_capacity(stored.new_findings.len());
        for (index, seq) in stored.new_findings {
            // Indexes increase, so `find` only skips the findings that were duplicates.
            let Some((_, f)) = findings.find(|(i, _)| *i == index) else {
                break;
            };
            new_findings.push(FindingSummary {
                seq,
                observed_time: crate::model::rfc3339(f.observed_ns),
                severity: severity_name(f.severity)
                    .unwrap_or("unspecified")
                    .to_owned(),
                id: f.id,
                host: f.host,
                rule_id: f.rule_id,
                title: f.title,
                run_id: f.run_id,
                category: f.category,
                primary: f.primary,
            });
        }
        WriteOutcome {
            new_findings,
            runs: stored.runs,
        }
    }
}

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Readers>,
}

/// SQL text built once.
struct Statements {
    upsert_host: String,
    upsert_run: String,
    add_count: String,
    record_phase: String,
    prune_phases: String,
    host_state: String,
    set_host_state: String,
    file_runs_of_host: String,
}

impl Statements {
    fn new() -> Self {
        Self {
            upsert_host: sql::SQLITE.upsert_host(),
            upsert_run: sql::SQLITE.upsert_run(),
            add_count: sql::SQLITE.add_finding_count(),
            record_phase: sql::SQLITE.record_phase(),
            prune_phases: sql::SQLITE.prune_phases(),
            host_state: sql::SQLITE.select_host_state(),
            set_host_state: sql::SQLITE.update_host_state(),
            file_runs_of_host: sql::SQLITE.select_file_runs(1),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies migrations and starts the
    /// writer thread.
    ///
    /// # Errors
    /// The file cannot be created or opened, or its schema is newer than this build.
    pub async fn open(path: &Path, config: &SqliteConfig) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let config = config.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, config))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }

    fn open_blocking(path: PathBuf, config: SqliteConfig) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match config.synchronous {
                SqliteSync::Full => "FULL",
                SqliteSync::Normal => "NORMAL",
            },
        )?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 64 MiB of page cache keeps the finding indexes' hot pages in memory.
        conn.pragma_update(None, "cache_size", -65536)?;
        // Checkpoints copy the WAL into the database and fsync it. Done by the writer they
        // stall every commit behind them; the checkpointer thread does them instead.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate(&mut conn)?;
        fleet::fill_missing_states(&mut conn)?;

        let sql = Statements::new();
        let (tx, rx) = mpsc::channel(1024);
        let max_idle = config.read_connections;
        let (stop_checkpoints, checkpoint_stop_rx) = std::sync::mpsc::channel::<()>();
        let checkpoint_conn = Connection::open(&path)?;
        checkpoint_conn.busy_timeout(std::time::Duration::from_secs(10))?;
        std::thread::Builder::new()
            .name("patchwatch-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint_conn, &checkpoint_stop_rx))?;
        let thread = std::thread::Builder::new()
            .name("patchwatch-sqlite-writer".into())
            .spawn(move || {
                writer_loop(conn, rx, &sql, &config);
                drop(stop_checkpoints);
            })?;
        Ok(Self {
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
                max_idle,
            }),
        })
    }

    /// Runs `f` on the writer thread and hands its result back.
    fn write_job<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, StoreError>> {
        let sender = self.writer.lock().expect("writer lock").clone();
        async move {
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            let job = move |conn: &mut Connection| {
                let _ = reply.send(f(conn));
            };
            sender
                .send(Job::Exec(Box::new(job)))
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        }
        .boxed()
    }

    fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, StoreError>> {
        let readers = Arc::clone(&self.readers);
        async move {
            tokio::task::spawn_blocking(move || readers.with(f))
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        }
        .boxed()
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn write_batch(&self, batch: ValidBatch) -> BoxFuture<'_, Result<WriteOutcome, StoreError>> {
        // Clone the sender under the lock, then await without it.
        let sender = self.writer.lock().expect("writer lock").clone();
        async move {
            let sender = sender.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(Job::Write(WriteRequest { batch, reply }))
                .await
                .map_err(|_| StoreError::Closed)?;
            let written = answer.await.map_err(|_| StoreError::Closed)??;
            Ok(written.into_outcome())
        }
        .boxed()
    }

    fn finding(&self, id: String) -> BoxFuture<'_, Result<Option<FindingRecord>, StoreError>> {
        self.read(move |c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {FINDING_COLUMNS} FROM findings WHERE id = ?1"
                ))?
                .query_row([id], finding_row)
                .optional()?;
            row.map(FindingRecord::try_from).transpose()
        })
    }

    fn findings(
        &self,
        filter: FindingFilter,
    ) -> BoxFuture<'_, Result<Page<FindingRecord>, StoreError>> {
        self.read(move |c| {
            let (sql, params) = sql::SQLITE.select_findings(&filter);
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(
                    rusqlite::params_from_iter(params.iter().map(to_sql)),
                    finding_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let mut items = rows
                .into_iter()
                .map(FindingRecord::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            let next_cursor = if items.len() > filter.limit as usize {
                items.truncate(filter.limit as usize);
                items.last().map(|f| f.seq)
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
    }

    fn hosts(
        &self,
        only: Option<Vec<String>>,
    ) -> BoxFuture<'_, Result<Vec<HostRecord>, StoreError>> {
        self.read(move |c| host_records(c, &only.unwrap_or_default()))
    }

    fn fleet(
        &self,
        query: crate::model::FleetQuery,
    ) -> BoxFuture<'_, Result<crate::model::FleetPage, StoreError>> {
        self.read_fleet(query)
    }

    fn runs(&self, filter: RunFilter) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        self.read(move |c| {
            let (sql, params) = sql::SQLITE.select_runs(&filter);
            let rows = c
                .prepare_cached(&sql)?
                .query_map(
                    rusqlite::params_from_iter(params.iter().map(to_sql)),
                    run_row,
                )?
                .map(|r| r.map(RunRecord::from))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn run_phases(
        &self,
        run_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<PhaseRecord>, StoreError>> {
        self.read_phases(run_ids)
    }

    fn windows(&self) -> BoxFuture<'_, Result<Vec<MaintenanceWindow>, StoreError>> {
        self.read_windows()
    }

    fn insert_window(&self, window: MaintenanceWindow) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write_window(window)
    }

    fn end_window(
        &self,
        id: String,
        at_ns: i64,
    ) -> BoxFuture<'_, Result<Option<MaintenanceWindow>, StoreError>> {
        self.end_window_at(id, at_ns)
    }

    fn silences(&self) -> BoxFuture<'_, Result<Vec<StoredSilence>, StoreError>> {
        self.read_silences()
    }

    fn insert_silence(&self, silence: StoredSilence) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write_silence(silence)
    }

    fn expire_silence(
        &self,
        id: String,
        at_ns: i64,
    ) -> BoxFuture<'_, Result<Option<StoredSilence>, StoreError>> {
        self.expire_silence_at(id, at_ns)
    }

    fn findings_after(
        &self,
        after: ForwardPosition,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ForwardItem>, StoreError>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {FINDING_COLUMNS} FROM findings WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))?
                .query_map(params![after.seq, limit], finding_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|r| ForwardItem::from_row(ForwardPosition { xid: 0, seq: r.seq }, r))
                .collect()
        })
    }

    fn forward_head(&self) -> BoxFuture<'_, Result<ForwardPosition, StoreError>> {
        self.read(|c| {
            let seq: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM findings", [], |r| {
                r.get(0)
            })?;
            Ok(ForwardPosition { xid: 0, seq })
        })
    }

    fn forward_cursors(&self) -> BoxFuture<'_, Result<Vec<ForwardCursor>, StoreError>> {
        self.read(|c| {
            let rows = c
                .prepare_cached(SELECT_CURSORS)?
                .query_map([], |r| {
                    Ok(ForwardCursor {
                        destination: r.get(0)?,
                        position: ForwardPosition {
                            xid: r.get(1)?,
                            seq: r.get(2)?,
                        },
                        updated_ns: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn set_forward_cursor(
        &self,
        destination: String,
        position: ForwardPosition,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write_job(move |conn| {
            conn.prepare_cached(&upsert_cursor_sql('?'))
                .and_then(|mut s| {
                    s.execute(params![
                        destination,
                        position.xid,
                        position.seq,
                        crate::model::now_unix_nano()
                    ])
                })
                .map(|_| ())
                .map_err(StoreError::from)
        })
    }

    fn annotate(
        &self,
        note: crate::model::AnnotationRecord,
    ) -> BoxFuture<'_, Result<crate::model::AnnotationRecord, StoreError>> {
        self.write_annotation(note)
    }

    fn annotations(
        &self,
        target: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<crate::model::AnnotationRecord>, StoreError>> {
        self.read_annotations(target, ids)
    }

    fn release_host(&self, host: String) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write_job(move |conn| {
            conn.execute(
                "UPDATE hosts SET collector_id = '' WHERE hostname = ?1",
                params![host],
            )
            .map(|_| ())
            .map_err(StoreError::from)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        // Dropping the last sender ends the writer loop once the queue is drained.
        drop(self.writer.lock().expect("writer lock").take());
        let thread = self.thread.lock().expect("thread lock").take();
        async move {
            if let Some(thread) = thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
        .boxed()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Without an explicit close the thread still ends: its channel closes with us.
        drop(self.writer.get_mut().map(Option::take));
    }
}

fn to_sql(p: &SqlParam) -> rusqlite::types::Value {
    match p {
        SqlParam::Text(s) => rusqlite::types::Value::Text(s.clone()),
        SqlParam::Int(i) => rusqlite::types::Value::Integer(*i),
    }
}

fn finding_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FindingRow> {
    Ok(FindingRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        host: r.get(2)?,
        rule_id: r.get(3)?,
        rule_version: r.get(4)?,
        title: r.get(5)?,
        severity_num: r.get(6)?,
        category: r.get(7)?,
        primary: r.get(8)?,
        log_kind: r.get(9)?,
        source_path: r.get(10)?,
        byte_offset: r.get(11)?,
        line_number: r.get(12)?,
        run_id: r.get(13)?,
        event_ns: r.get(14)?,
        observed_ns: r.get(15)?,
        received_ns: r.get(16)?,
        collector_id: r.get(17)?,
        detail: r.get(18)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        run_id: r.get(0)?,
        host: r.get(1)?,
        source_path: r.get(2)?,
        log_kind: r.get(3)?,
        run_index: r.get(4)?,
        outcome: r.get(5)?,
        mode: r.get(6)?,
        product: r.get(7)?,
        target_build: r.get(8)?,
        installed_build: r.get(9)?,
        phase: r.get(10)?,
        exit_code: r.get(11)?,
        primary_finding_id: r.get(12)?,
        started_ns: r.get(13)?,
        updated_ns: r.get(14)?,
        last_line_ns: r.get(15)?,
    })
}

/// Host records of the hosts named in `only` (every host when empty), by name.
fn host_records(c: &Connection, only: &[String]) -> Result<Vec<HostRecord>, StoreError> {
    let names = rusqlite::params_from_iter(only.iter());
    let hosts = c
        .prepare_cached(&sql::SQLITE.select_hosts(only.len()))?
        .query_map(names, |r| {
            Ok(HostRow {
                hostname: r.get(0)?,
                fqdn: r.get(1)?,
                os: r.get(2)?,
                agent_version: r.get(3)?,
                time_zone: r.get(4)?,
                collector_id: r.get(5)?,
                first_seen_ns: r.get(6)?,
                last_seen_ns: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let latest = c
        .prepare_cached(&sql::SQLITE.select_latest_runs(only.len()))?
        .query_map(rusqlite::params_from_iter(only.iter()), run_row)?
        .map(|r| r.map(RunRecord::from))
        .collect::<Result<Vec<_>, _>>()?;
    let counts = c
        .prepare_cached(&sql::SQLITE.select_finding_counts(only.len()))?
        .query_map(rusqlite::params_from_iter(only.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let file_runs = c
        .prepare_cached(&sql::SQLITE.select_file_runs(only.len()))?
        .query_map(rusqlite::params_from_iter(only.iter()), run_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let (current, preflight) = super::rollup::current_by_host(file_runs);
    let (ids, runs) =
        super::rollup::cause_keys(current.values().flatten().chain(preflight.values()));
    let causes = match sql::SQLITE.select_causes(ids.len(), runs.len()) {
        Some(q) => c
            .prepare_cached(&q)?
            .query_map(rusqlite::params_from_iter(ids.iter().chain(&runs)), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok(sql::assemble_hosts(sql::HostRows {
        hosts,
        latest,
        counts,
        current,
        preflight,
        causes,
    }))
}

/// Applies the migrations the database lacks.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            applied_ns INTEGER NOT NULL
        )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let supported = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_ns) VALUES (?1, ?2, ?3)",
            params![version, description, crate::model::now_unix_nano()],
        )?;
        tx.commit()?;
        tracing::info!(message = "Applied SQLite migration.", version, description);
    }
    Ok(())
}

/// The writer thread: group commit until every sender is gone.
fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    sql: &Statements,
    config: &SqliteConfig,
) {
    let mut group: Vec<WriteRequest> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let first = match first {
            Job::Write(req) => req,
            other => {
                other.run_single(&mut conn);
                continue;
            }
        };
        let mut rows = first.batch.rows();
        group.push(first);
        // A window or cursor change met while gathering the group runs right after its commit.
        let mut single_job = None;
        while group.len() < config.max_group_batches && rows < config.max_group_rows {
            match rx.try_recv() {
                Ok(Job::Write(req)) => {
                    rows += req.batch.rows();
                    group.push(req);
                }
                Ok(job) => {
                    single_job = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        match write_group(&mut conn, sql, &group) {
            Ok(outcomes) => {
                for (req, stored) in group.drain(..).zip(outcomes) {
                    let _ = req.reply.send(Ok(Written {
                        batch: req.batch,
                        stored,
                    }));
                }
            }
            Err(error) => {
                // One transaction failed as a whole; retry each batch on its own so one bad
                // batch cannot fail the others that shared its commit.
                tracing::warn!(message = "Group commit failed; retrying batches one by one.", %error, batches = group.len());
                for req in group.drain(..) {
                    let result = write_group(&mut conn, sql, std::slice::from_ref(&req))
                        .map(|mut o| o.pop().unwrap_or_default());
                    let _ = req.reply.send(result.map(|stored| Written {
                        batch: req.batch,
                        stored,
                    }));
                }
            }
        }
        metrics::histogram!("patchwatch_aggregator_store_commit_seconds", "backend" => "sqlite")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("patchwatch_aggregator_store_commit_rows", "backend" => "sqlite")
            .record(rows as f64);
        if let Some(job) = single_job {
            job.run_single(&mut conn);
        }
    }
    tracing::debug!(message = "SQLite writer stopped.");
}

/// Checkpoints the WAL every [`CHECKPOINT_INTERVAL`] until the writer stops. `PASSIVE` never
/// blocks the writer; a final `TRUNCATE` leaves a small WAL behind at shutdown.
fn checkpoint_loop(conn: &Connection, stop: &std::sync::mpsc::Receiver<()>) {
    let checkpoint = |mode: &str| {
        if let Err(error) =
            conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
        {
            tracing::warn!(message = "WAL checkpoint failed.", %error);
        }
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(CHECKPOINT_INTERVAL)
    {
        checkpoint("PASSIVE");
    }
    checkpoint("TRUNCATE");
}

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Writes every batch of a group in one transaction.
fn write_group(
    conn: &mut Connection,
    sql: &Statements,
    group: &[WriteRequest],
) -> Result<Vec<Stored>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let outcomes = group
        .iter()
        .map(|req| write_batch(&tx, sql, &req.batch))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit()?;
    Ok(outcomes)
}

fn write_batch(
    tx: &Transaction<'_>,
    sql: &Statements,
    b: &ValidBatch,
) -> Result<Stored, StoreError> {
    let mut outcome = Stored::default();
    {
        let mut host = tx.prepare_cached(&sql.upsert_host)?;
        for h in &b.hosts {
            let i = &h.info;
            outcome.statements += 1;
            host.execute(params![
                i.hostname,
                i.fqdn,
                i.os,
                i.agent_version,
                i.time_zone,
                i.utc_offset_seconds,
                b.collector_id,
                b.received_ns
            ])?;
        }
    }
    {
        let mut insert = tx.prepare_cached(INSERT_FINDING)?;
        let mut counts: HashMap<(&str, &str, i32), i64> = HashMap::new();
        for (index, f) in b.findings.iter().enumerate() {
            let severity = severity_name(f.severity).unwrap_or("unspecified");
            outcome.statements += 1;
            let inserted = insert.execute(params![
                f.id,
                f.host,
                f.rule_id,
                f.rule_version,
                f.title,
                severity,
                f.severity,
                f.category,
                f.primary,
                f.log_kind,
                f.source_path,
                f.byte_offset,
                f.line_number,
                f.run_id,
                f.event_ns,
                f.observed_ns,
                b.received_ns,
                b.collector_id,
                f.detail_json
            ])?;
            if inserted == 1 {
                *counts.entry((&f.host, &f.run_id, f.severity)).or_default() += 1;
                outcome.new_findings.push((index, tx.last_insert_rowid()));
            }
        }
        let mut add = tx.prepare_cached(&sql.add_count)?;
        for ((host, run, sev), n) in counts {
            outcome.statements += 1;
            add.execute(params![host, run, sev, n])?;
        }
    }
    {
        let mut upsert = tx.prepare_cached(&sql.upsert_run)?;
        for r in &b.runs {
            outcome.statements += 1;
            let row = upsert
                .query_row(
                    params![
                        r.run_id,
                        r.host,
                        r.source_path,
                        r.log_kind,
                        r.run_index,
                        r.outcome,
                        r.mode,
                        r.product,
                        r.target_build,
                        r.installed_build,
                        r.phase,
                        r.exit_code,
                        r.primary_finding_id,
                        r.started_ns,
                        r.updated_ns,
                        r.last_line_ns
                    ],
                    run_row,
                )
                .optional()?;
            // Only an update the run took (not an older one) can change its phase.
            if let Some(row) = row {
                outcome.statements += phases::record(tx, sql, &row, super::phase_time(r))?;
                outcome.runs.push(row.into());
            }
        }
    }
    let changed: std::collections::BTreeSet<&str> =
        outcome.runs.iter().map(|r| r.host.as_str()).collect();
    outcome.statements += fleet::refresh_states(tx, sql, b, &changed)?;
    Ok(outcome)
}

/// Read connections, opened on demand and kept up to `max_idle`.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Readers {
    fn with<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = self.idle.lock().expect("readers lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.pragma_update(None, "query_only", "ON")?;
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                c
            }
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().expect("readers lock");
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    //! The writer's work per group commit, counted: one statement per finding, host, run
    //! update and (host, run, severity) count, and nothing per finding beyond its insert.

    use super::*;
    use crate::model::{HostInfoRecord, NewFinding, NewHost, NewRun};

    fn batch(host: &str, run: &str, ids: std::ops::Range<usize>) -> ValidBatch {
        ValidBatch {
            collector_id: "c1".into(),
            received_ns: 1,
            hosts: vec![NewHost {
                info: HostInfoRecord {
                    hostname: host.into(),
                    ..HostInfoRecord::default()
                },
            }],
            findings: ids
                .map(|i| NewFinding {
                    id: format!("{host}-{i}"),
                    host: host.into(),
                    rule_id: "EX-1".into(),
                    rule_version: 1,
                    title: format!("finding {i}"),
                    severity: 4,
                    category: "setup".into(),
                    primary: false,
                    log_kind: 1,
                    source_path: "ExchangeSetup.log".into(),
                    byte_offset: i as i64,
                    line_number: i as i64 + 1,
                    run_id: run.into(),
                    event_ns: 0,
                    observed_ns: 1_700_000_000_000_000_000,
                    detail_json: "{}".into(),
                })
                .collect(),
            runs: vec![NewRun {
                run_id: run.into(),
                host: host.into(),
                source_path: "ExchangeSetup.log".into(),
                log_kind: 1,
                outcome: 1,
                phase: "Mailbox role".into(),
                updated_ns: 10,
                last_line_ns: 10,
                ..NewRun::default()
            }],
        }
    }

    fn request(batch: ValidBatch) -> WriteRequest {
        WriteRequest {
            batch,
            reply: oneshot::channel().0,
        }
    }

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("pw.db")).unwrap();
        migrate(&mut conn).unwrap();
        (dir, conn)
    }

    #[test]
    fn a_group_commit_runs_one_statement_per_row() {
        let (_dir, mut conn) = open();
        let sql = Statements::new();
        let group: Vec<WriteRequest> = (0..4)
            .map(|h| request(batch(&format!("EX{h}"), &format!("r{h}"), 0..50)))
            .collect();
        let stored = write_group(&mut conn, &sql, &group).unwrap();
        let statements: usize = stored.iter().map(|s| s.statements).sum();
        // Per batch: 1 host, 50 findings, 1 count, 1 run update, 1 phase, and the host's
        // state: its stored rank, its runs, the new rank.
        assert_eq!(statements, 4 * (1 + 50 + 1 + 1 + 1 + 3));
        assert!(stored.iter().all(|s| s.new_findings.len() == 50));
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM findings", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
    }

    #[test]
    fn a_replayed_batch_reports_only_its_new_findings() {
        let (_dir, mut conn) = open();
        let sql = Statements::new();
        let first = write_group(&mut conn, &sql, &[request(batch("EX1", "r1", 0..10))]).unwrap();
        assert_eq!(first[0].new_findings.len(), 10);
        // Half of this batch is already stored: only the other half is new.
        let b = batch("EX1", "r1", 5..15);
        let mut stored = write_group(&mut conn, &sql, &[request(b.clone())]).unwrap();
        let outcome = Written {
            batch: b,
            stored: stored.pop().unwrap(),
        }
        .into_outcome();
        let ids: Vec<&str> = outcome.new_findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["EX1-10", "EX1-11", "EX1-12", "EX1-13", "EX1-14"]);
        assert!(outcome.new_findings.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(outcome.new_findings[0].title, "finding 10");
        assert_eq!(outcome.new_findings[0].severity, "high");
        let counted: i64 = conn
            .query_row("SELECT SUM(n) FROM finding_counts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(counted, 15);
    }

    #[test]
    fn duplicates_within_a_batch_a_group_and_across_groups_are_stored_once() {
        let (_dir, mut conn) = open();
        let sql = Statements::new();
        // A batch that names finding 3 twice (the second with another title, which must
        // not be stored), and a second batch of the same group overlapping the first.
        let mut first = batch("EX1", "r1", 0..6);
        let mut again = first.findings[3].clone();
        again.title = "a replay".into();
        first.findings.insert(5, again);
        let overlapping = batch("EX1", "r1", 4..9);
        let group = [
            request(first.clone()),
            request(overlapping.clone()),
            request(batch("EX2", "r2", 0..3)),
        ];
        let stored = write_group(&mut conn, &sql, &group).unwrap();
        let indexes: Vec<Vec<usize>> = stored
            .iter()
            .map(|s| s.new_findings.iter().map(|(i, _)| *i).collect())
            .collect();
        // EX1-0..=5 from the first batch (index 5, the repeat of EX1-3, skipped), EX1-6..=8
        // from the second, all of EX2.
        assert_eq!(
            indexes,
            [vec![0, 1, 2, 3, 4, 6], vec![2, 3, 4], vec![0, 1, 2]]
        );
        // Replayed in a later group, neither batch stores anything.
        let replay = write_group(&mut conn, &sql, &[request(first), request(overlapping)]).unwrap();
        assert!(replay.iter().all(|s| s.new_findings.is_empty()));

        let title: String = conn
            .query_row("SELECT title FROM findings WHERE id = 'EX1-3'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(title, "finding 3");
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT COUNT(*) FROM findings"), 12);
        assert_eq!(
            count("SELECT n FROM finding_counts WHERE host = 'EX1' AND run_id = 'r1'"),
            9
        );
        assert_eq!(
            count("SELECT n FROM finding_counts WHERE host = 'EX2' AND run_id = 'r2'"),
            3
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM hosts WHERE state_rank IS NULL"),
            0
        );
    }

    /// The indexes on `findings` that `EXPLAIN QUERY PLAN` names for `sql`.
    fn indexes_used(conn: &Connection, sql: &str, params: &[SqlParam]) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let details = stmt
            .query_map(rusqlite::params_from_iter(params.iter().map(to_sql)), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        details
            .iter()
            .filter_map(|d| d.split(" INDEX ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter(|name| name.contains("findings"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn finding_queries_use_the_expected_indexes() {
        use crate::model::FindingFilter;
        let (_dir, mut conn) = open();
        let sql = Statements::new();
        write_group(&mut conn, &sql, &[request(batch("EX1", "r1", 0..20))]).unwrap();
        let text = |s: &str| Some(s.to_owned());
        let filters = [
            (
                "host",
                FindingFilter {
                    host: text("EX1"),
                    ..Default::default()
                },
            ),
            (
                "host and severity",
                FindingFilter {
                    host: text("EX1"),
                    min_severity: Some(3),
                    ..Default::default()
                },
            ),
            (
                "rule",
                FindingFilter {
                    rule: text("EX-1"),
                    ..Default::default()
                },
            ),
            (
                "run",
                FindingFilter {
                    run: text("r1"),
                    ..Default::default()
                },
            ),
            (
                "run outcome",
                FindingFilter {
                    run_outcome: Some(3),
                    ..Default::default()
                },
            ),
            (
                "since",
                FindingFilter {
                    since_ns: Some(5),
                    ..Default::default()
                },
            ),
            (
                "until",
                FindingFilter {
                    until_ns: Some(5),
                    ..Default::default()
                },
            ),
            (
                "time range",
                FindingFilter {
                    since_ns: Some(5),
                    until_ns: Some(6),
                    ..Default::default()
                },
            ),
            (
                "severity",
                FindingFilter {
                    severity: Some(4),
                    ..Default::default()
                },
            ),
        ];
        let mut used = std::collections::BTreeSet::new();
        let mut plans = Vec::new();
        for (name, filter) in filters {
            let filter = FindingFilter {
                limit: 100,
                ..filter
            };
            let (q, params) = sql::SQLITE.select_findings(&filter);
            let indexes = indexes_used(&conn, &q, &params);
            used.extend(indexes.iter().cloned());
            plans.push((name, indexes.join(" ")));
        }
        let causes = sql::SQLITE.select_causes(1, 1).unwrap();
        let params = [SqlParam::Text("EX1-1".into()), SqlParam::Text("r1".into())];
        used.extend(indexes_used(&conn, &causes, &params));
        let plans: Vec<(&str, &str)> = plans.iter().map(|(n, p)| (*n, p.as_str())).collect();
        // Time ranges walk `seq` backwards (the primary key): no index on `observed_ns`.
        assert_eq!(
            plans,
            [
                ("host", "findings_by_host"),
                ("host and severity", "findings_by_host"),
                ("rule", "findings_by_rule"),
                ("run", "findings_by_run"),
                ("run outcome", "findings_by_run"),
                ("since", ""),
                ("until", ""),
                ("time range", ""),
                ("severity", ""),
            ]
        );
        // Every index on `findings` serves a query; the unique one on `id` also dedups.
        let mut declared = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'findings'",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        declared.sort();
        let used: Vec<String> = used.into_iter().collect();
        assert_eq!(declared, used);
    }
}
