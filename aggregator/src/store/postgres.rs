//! The PostgreSQL backend, for several aggregators sharing one database behind a load balancer.
//!
//! Each batch is one transaction on a pooled connection; findings go in with a single
//! `INSERT ... SELECT FROM UNNEST(arrays) ON CONFLICT (id) DO NOTHING RETURNING`, so a batch
//! costs a handful of round trips whatever its size. PostgreSQL's own group commit shares
//! fsyncs between concurrent transactions. Rows that concurrent batches may both lock (hosts,
//! counts) are touched in sorted order, and a transaction that still loses a deadlock or
//! serialization race is retried.
//!
//! Events (`/api/v1/events`) are produced by the aggregator that stored the batch; an
//! aggregator does not see batches its peers stored until it queries.

use std::collections::{BTreeMap, HashMap};

use crate::routing::MaintenanceWindow;
use deadpool_postgres::{Pool, PoolConfig, Runtime};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::{error::SqlState, NoTls, Row};

use super::forward::{upsert_cursor_sql, SELECT_CURSORS};
use super::sql::{self, SqlParam};
use super::{
    ended_span, window_values, FindingRow, ForwardCursor, ForwardItem, ForwardPosition, HostRow,
    RunRow, Store, StoreError, StoredSilence, WindowRow, FINDING_COLUMNS, WINDOW_COLUMNS,
};
use crate::model::{
    severity_name, FindingFilter, FindingRecord, FindingSummary, HostRecord, Page, PhaseRecord,
    RunFilter, RunRecord, ValidBatch, WriteOutcome,
};

mod annotations;
mod fleet;
mod silences;

use super::schema::POSTGRES_MIGRATIONS as MIGRATIONS;

/// The oldest transaction id still running, as `int8`: rows of older transactions are all
/// settled, so forwarding may read them (see `store::forward`).
const SAFE_XID: &str = "(pg_snapshot_xmin(pg_current_snapshot())::text)::int8";

/// Key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x7061_7463_6877_6174; // "patchwat"

const INSERT_FINDINGS: &str =
    "INSERT INTO findings (id, host, rule_id, rule_version, title, severity, \
     severity_num, category, is_primary, log_kind, source_path, byte_offset, line_number, run_id, \
     event_ns, observed_ns, detail, received_ns, collector_id) \
     SELECT t.*, $18::int8, $19::text FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], \
     $5::text[], $6::text[], $7::int4[], $8::text[], $9::bool[], $10::int4[], $11::text[], \
     $12::int8[], $13::int8[], $14::text[], $15::int8[], $16::int8[], $17::text[]) AS t \
     ON CONFLICT (id) DO NOTHING RETURNING seq, id";

/// Attempts of a batch transaction that loses a deadlock or serialization race.
const WRITE_ATTEMPTS: usize = 5;

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    upsert_host: String,
    upsert_run: String,
    add_count: String,
    record_phase: String,
    prune_phases: String,
}

impl PostgresStore {
    /// Connects, checks the server answers and applies migrations.
    ///
    /// # Errors
    /// The URL is invalid, the server cannot be reached, or its schema is newer than this build.
    pub async fn open(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_owned());
        cfg.pool = Some(PoolConfig::new(pool_size));
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = Self {
            pool,
            upsert_host: sql::POSTGRES.upsert_host(),
            upsert_run: sql::POSTGRES.upsert_run(),
            add_count: sql::POSTGRES.add_finding_count(),
            record_phase: sql::POSTGRES.record_phase(),
            prune_phases: sql::POSTGRES.prune_phases(),
        };
        store.migrate().await?;
        store.fill_missing_states().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Pool(other.to_string()),
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                applied_ns BIGINT NOT NULL
            )",
        )
        .await?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::int8 FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        let supported = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > supported {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported,
            });
        }
        for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, description, applied_ns) VALUES ($1, $2, $3)",
                &[version, description, &crate::model::now_unix_nano()],
            )
            .await?;
            tracing::info!(
                message = "Applied PostgreSQL migration.",
                version,
                description
            );
        }
        tx.commit().await?;
        Ok(())
    }

    async fn write_once(&self, b: &ValidBatch) -> Result<WriteOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut outcome = WriteOutcome::default();

        let mut hosts: Vec<_> = b.hosts.iter().collect();
        hosts.sort_by(|a, b| a.info.hostname.cmp(&b.info.hostname));
        let upsert_host = tx.prepare_cached(&self.upsert_host).await?;
        for h in hosts {
            let i = &h.info;
            tx.execute(
                &upsert_host,
                &[
                    &i.hostname,
                    &i.fqdn,
                    &i.os,
                    &i.agent_version,
                    &i.time_zone,
                    &i.utc_offset_seconds,
                    &b.collector_id,
                    &b.received_ns,
                ],
            )
            .await?;
        }

        if !b.findings.is_empty() {
            let f = &b.findings;
            let col =
                |g: fn(&crate::model::NewFinding) -> String| f.iter().map(g).collect::<Vec<_>>();
            let ids = col(|f| f.id.clone());
            let host = col(|f| f.host.clone());
            let rule = col(|f| f.rule_id.clone());
            let rule_version: Vec<i64> = f.iter().map(|f| f.rule_version).collect();
            let title = col(|f| f.title.clone());
            let severity = col(|f| {
                severity_name(f.severity)
                    .unwrap_or("unspecified")
                    .to_owned()
            });
            let severity_num: Vec<i32> = f.iter().map(|f| f.severity).collect();
            let category = col(|f| f.category.clone());
            let primary: Vec<bool> = f.iter().map(|f| f.primary).collect();
            let log_kind: Vec<i32> = f.iter().map(|f| f.log_kind).collect();
            let source = col(|f| f.source_path.clone());
            let offset: Vec<i64> = f.iter().map(|f| f.byte_offset).collect();
            let line: Vec<i64> = f.iter().map(|f| f.line_number).collect();
            let run = col(|f| f.run_id.clone());
            let event: Vec<i64> = f.iter().map(|f| f.event_ns).collect();
            let observed: Vec<i64> = f.iter().map(|f| f.observed_ns).collect();
            let detail = col(|f| f.detail_json.clone());
            let params: [&(dyn ToSql + Sync); 19] = [
                &ids,
                &host,
                &rule,
                &rule_version,
                &title,
                &severity,
                &severity_num,
                &category,
                &primary,
                &log_kind,
                &source,
                &offset,
                &line,
                &run,
                &event,
                &observed,
                &detail,
                &b.received_ns,
                &b.collector_id,
            ];
            let insert = tx.prepare_cached(INSERT_FINDINGS).await?;
            let inserted: HashMap<String, i64> = tx
                .query(&insert, &params)
                .await?
                .into_iter()
                .map(|r| (r.get::<_, String>(1), r.get::<_, i64>(0)))
                .collect();
            let mut counts: BTreeMap<(&str, &str, i32), i64> = BTreeMap::new();
            let mut seen = std::collections::HashSet::new();
            for f in &b.findings {
                let Some(&seq) = inserted.get(&f.id) else {
                    continue;
                };
                if !seen.insert(f.id.as_str()) {
                    continue;
                }
                *counts.entry((&f.host, &f.run_id, f.severity)).or_default() += 1;
                outcome.new_findings.push(FindingSummary {
                    seq,
                    id: f.id.clone(),
                    host: f.host.clone(),
                    rule_id: f.rule_id.clone(),
                    title: f.title.clone(),
                    severity: severity_name(f.severity)
                        .unwrap_or("unspecified")
                        .to_owned(),
                    run_id: f.run_id.clone(),
                    category: f.category.clone(),
                    primary: f.primary,
                    observed_time: crate::model::rfc3339(f.observed_ns),
                });
            }
            outcome.new_findings.sort_by_key(|s| s.seq);
            let add = tx.prepare_cached(&self.add_count).await?;
            for ((host, run, sev), n) in counts {
                tx.execute(&add, &[&host, &run, &sev, &n]).await?;
            }
        }

        let upsert_run = tx.prepare_cached(&self.upsert_run).await?;
        let record_phase = tx.prepare_cached(&self.record_phase).await?;
        for r in &b.runs {
            let row = tx
                .query_opt(
                    &upsert_run,
                    &[
                        &r.run_id,
                        &r.host,
                        &r.source_path,
                        &r.log_kind,
                        &r.run_index,
                        &r.outcome,
                        &r.mode,
                        &r.product,
                        &r.target_build,
                        &r.installed_build,
                        &r.phase,
                        &r.exit_code,
                        &r.primary_finding_id,
                        &r.started_ns,
                        &r.updated_ns,
                        &r.last_line_ns,
                    ],
                )
                .await?;
            // Only an update the run took (not an older one) can change its phase.
            if let Some(row) = row {
                let run = run_row(&row);
                let ordinal: Option<i64> = tx
                    .query_opt(
                        &record_phase,
                        &[&run.run_id, &run.phase, &super::phase_time(r)],
                    )
                    .await?
                    .map(|x| x.get(0));
                if let Some(n) = ordinal.filter(|n| *n > super::MAX_PHASES) {
                    tx.execute(&self.prune_phases, &[&run.run_id, &(n - super::MAX_PHASES)])
                        .await?;
                }
                outcome.runs.push(run.into());
            }
        }
        let changed: std::collections::BTreeSet<&str> =
            outcome.runs.iter().map(|r| r.host.as_str()).collect();
        fleet::refresh_states(&tx, b, &changed).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Host records of the hosts named in `only` (every host when empty), by name.
    async fn host_records(&self, only: Vec<String>) -> Result<Vec<HostRecord>, StoreError> {
        let only: Vec<SqlParam> = only.into_iter().map(SqlParam::Text).collect();
        let hosts = self
            .query(&sql::POSTGRES.select_hosts(only.len()), &only)
            .await?
            .iter()
            .map(|r| HostRow {
                hostname: r.get(0),
                fqdn: r.get(1),
                os: r.get(2),
                agent_version: r.get(3),
                time_zone: r.get(4),
                collector_id: r.get(5),
                first_seen_ns: r.get(6),
                last_seen_ns: r.get(7),
            })
            .collect();
        let latest = self
            .query(&sql::POSTGRES.select_latest_runs(only.len()), &only)
            .await?
            .iter()
            .map(|r| run_row(r).into())
            .collect();
        let counts = self
            .query(&sql::POSTGRES.select_finding_counts(only.len()), &only)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let file_runs = self
            .query(&sql::POSTGRES.select_file_runs(only.len()), &only)
            .await?
            .iter()
            .map(run_row)
            .collect();
        let (current, preflight) = super::rollup::current_by_host(file_runs);
        let (ids, runs) =
            super::rollup::cause_keys(current.values().flatten().chain(preflight.values()));
        let causes = match sql::POSTGRES.select_causes(ids.len(), runs.len()) {
            Some(q) => {
                let params: Vec<SqlParam> =
                    ids.into_iter().chain(runs).map(SqlParam::Text).collect();
                self.query(&q, &params)
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                    .collect()
            }
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

    async fn query(&self, sql: &str, params: &[SqlParam]) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        let boxed: Vec<Box<dyn ToSql + Sync + Send>> = params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    SqlParam::Text(s) => Box::new(s.clone()),
                    SqlParam::Int(i) => Box::new(*i),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        Ok(client.query(&stmt, &refs).await?)
    }
}

fn retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Postgres(e) => matches!(
            e.code(),
            Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
        ),
        _ => false,
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn write_batch(&self, batch: ValidBatch) -> BoxFuture<'_, Result<WriteOutcome, StoreError>> {
        async move {
            let started = std::time::Instant::now();
            let mut attempt = 1;
            let result = loop {
                match self.write_once(&batch).await {
                    Err(e) if retryable(&e) && attempt < WRITE_ATTEMPTS => {
                        tracing::debug!(message = "Retrying batch transaction.", error = %e, attempt);
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(5 * attempt as u64)).await;
                    }
                    other => break other,
                }
            };
            metrics::histogram!("patchwatch_aggregator_store_commit_seconds", "backend" => "postgres")
                .record(started.elapsed().as_secs_f64());
            result
        }
        .boxed()
    }

    fn finding(&self, id: String) -> BoxFuture<'_, Result<Option<FindingRecord>, StoreError>> {
        async move {
            let rows = self
                .query(
                    &format!("SELECT {FINDING_COLUMNS} FROM findings WHERE id = $1"),
                    &[SqlParam::Text(id)],
                )
                .await?;
            rows.first()
                .map(|r| FindingRecord::try_from(finding_row(r)))
                .transpose()
        }
        .boxed()
    }

    fn findings(
        &self,
        filter: FindingFilter,
    ) -> BoxFuture<'_, Result<Page<FindingRecord>, StoreError>> {
        async move {
            let (sql, params) = sql::POSTGRES.select_findings(&filter);
            let rows = self.query(&sql, &params).await?;
            let mut items = rows
                .iter()
                .map(|r| FindingRecord::try_from(finding_row(r)))
                .collect::<Result<Vec<_>, _>>()?;
            let next_cursor = if items.len() > filter.limit as usize {
                items.truncate(filter.limit as usize);
                items.last().map(|f| f.seq)
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        }
        .boxed()
    }

    fn hosts(
        &self,
        only: Option<Vec<String>>,
    ) -> BoxFuture<'_, Result<Vec<HostRecord>, StoreError>> {
        async move { self.host_records(only.unwrap_or_default()).await }.boxed()
    }

    fn fleet(
        &self,
        query: crate::model::FleetQuery,
    ) -> BoxFuture<'_, Result<crate::model::FleetPage, StoreError>> {
        async move { self.read_fleet(query).await }.boxed()
    }

    fn runs(&self, filter: RunFilter) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        async move {
            let (sql, params) = sql::POSTGRES.select_runs(&filter);
            Ok(self
                .query(&sql, &params)
                .await?
                .iter()
                .map(|r| run_row(r).into())
                .collect())
        }
        .boxed()
    }

    fn run_phases(
        &self,
        run_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<PhaseRecord>, StoreError>> {
        async move {
            if run_ids.is_empty() {
                return Ok(Vec::new());
            }
            let params: Vec<SqlParam> = run_ids.into_iter().map(SqlParam::Text).collect();
            Ok(self
                .query(&sql::POSTGRES.select_phases(params.len()), &params)
                .await?
                .iter()
                .map(|r| super::phase_record(r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect())
        }
        .boxed()
    }

    fn windows(&self) -> BoxFuture<'_, Result<Vec<MaintenanceWindow>, StoreError>> {
        async move {
            let rows = self
                .query(
                    &format!(
                        "SELECT {WINDOW_COLUMNS} FROM maintenance_windows ORDER BY starts_ns DESC, id"
                    ),
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| MaintenanceWindow::try_from(window_row(r)))
                .collect()
        }
        .boxed()
    }

    fn insert_window(&self, window: MaintenanceWindow) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let (hosts, starts_ns, ends_ns) = window_values(&window);
            let client = self.client().await?;
            let inserted = client
                .execute(
                    "INSERT INTO maintenance_windows (id, name, hosts, starts_ns, ends_ns, created_ns, \
                     require_clean_preflight) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &window.id,
                        &window.name,
                        &hosts,
                        &starts_ns,
                        &ends_ns,
                        &crate::model::now_unix_nano(),
                        &window.require_clean_preflight,
                    ],
                )
                .await?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("window `{}`", window.id)));
            }
            Ok(())
        }
        .boxed()
    }

    fn end_window(
        &self,
        id: String,
        at_ns: i64,
    ) -> BoxFuture<'_, Result<Option<MaintenanceWindow>, StoreError>> {
        async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // FOR UPDATE: two aggregators ending the same window serialise here.
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT {WINDOW_COLUMNS} FROM maintenance_windows WHERE id = $1 FOR UPDATE"
                    ),
                    &[&id],
                )
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut r = window_row(&row);
            (r.starts_ns, r.ends_ns) = ended_span(r.starts_ns, r.ends_ns, at_ns);
            tx.execute(
                "UPDATE maintenance_windows SET starts_ns = $2, ends_ns = $3 WHERE id = $1",
                &[&id, &r.starts_ns, &r.ends_ns],
            )
            .await?;
            tx.commit().await?;
            MaintenanceWindow::try_from(r).map(Some)
        }
        .boxed()
    }

    fn silences(&self) -> BoxFuture<'_, Result<Vec<StoredSilence>, StoreError>> {
        self.read_silences().boxed()
    }

    fn insert_silence(&self, silence: StoredSilence) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write_silence(silence).boxed()
    }

    fn expire_silence(
        &self,
        id: String,
        at_ns: i64,
    ) -> BoxFuture<'_, Result<Option<StoredSilence>, StoreError>> {
        self.expire_silence_at(id, at_ns).boxed()
    }

    fn findings_after(
        &self,
        after: ForwardPosition,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ForwardItem>, StoreError>> {
        async move {
            // The xid column comes last so that `finding_row` reads the usual columns.
            let sql = format!(
                "SELECT {FINDING_COLUMNS}, xid FROM findings \
                 WHERE (xid, seq) > ($1::int8, $2::int8) AND xid < {SAFE_XID} \
                 ORDER BY xid, seq LIMIT $3::int8"
            );
            let rows = self
                .query(
                    &sql,
                    &[
                        SqlParam::Int(after.xid),
                        SqlParam::Int(after.seq),
                        SqlParam::Int(i64::from(limit)),
                    ],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let position = ForwardPosition {
                        xid: r.get(19),
                        seq: r.get(0),
                    };
                    ForwardItem::from_row(position, finding_row(r))
                })
                .collect()
        }
        .boxed()
    }

    fn forward_head(&self) -> BoxFuture<'_, Result<ForwardPosition, StoreError>> {
        async move {
            // Every row of a transaction older than the horizon is at or before
            // (horizon - 1, max seq); rows of newer transactions, even ones already
            // committed, come after it and are forwarded.
            let sql =
                format!("SELECT ({SAFE_XID} - 1)::int8, COALESCE(MAX(seq), 0)::int8 FROM findings");
            let rows = self.query(&sql, &[]).await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::Corrupt("no head row".into()))?;
            Ok(ForwardPosition {
                xid: row.get(0),
                seq: row.get(1),
            })
        }
        .boxed()
    }

    fn forward_cursors(&self) -> BoxFuture<'_, Result<Vec<ForwardCursor>, StoreError>> {
        async move {
            let rows = self.query(SELECT_CURSORS, &[]).await?;
            Ok(rows
                .iter()
                .map(|r| ForwardCursor {
                    destination: r.get(0),
                    position: ForwardPosition {
                        xid: r.get(1),
                        seq: r.get(2),
                    },
                    updated_ns: r.get(3),
                })
                .collect())
        }
        .boxed()
    }

    fn set_forward_cursor(
        &self,
        destination: String,
        position: ForwardPosition,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let client = self.client().await?;
            client
                .execute(
                    &upsert_cursor_sql('$'),
                    &[
                        &destination,
                        &position.xid,
                        &position.seq,
                        &crate::model::now_unix_nano(),
                    ],
                )
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn annotate(
        &self,
        note: crate::model::AnnotationRecord,
    ) -> BoxFuture<'_, Result<crate::model::AnnotationRecord, StoreError>> {
        self.write_annotation(note).boxed()
    }

    fn annotations(
        &self,
        target: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<crate::model::AnnotationRecord>, StoreError>> {
        self.read_annotations(target, ids).boxed()
    }

    fn release_host(&self, host: String) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE hosts SET collector_id = '' WHERE hostname = $1",
                    &[&host],
                )
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            self.query("SELECT 1", &[]).await?;
            Ok(())
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.pool.close();
        async {}.boxed()
    }
}

fn window_row(r: &Row) -> WindowRow {
    WindowRow {
        id: r.get(0),
        name: r.get(1),
        hosts: r.get(2),
        starts_ns: r.get(3),
        ends_ns: r.get(4),
        require_clean_preflight: r.get(5),
    }
}

fn finding_row(r: &Row) -> FindingRow {
    FindingRow {
        seq: r.get(0),
        id: r.get(1),
        host: r.get(2),
        rule_id: r.get(3),
        rule_version: r.get(4),
        title: r.get(5),
        severity_num: r.get(6),
        category: r.get(7),
        primary: r.get(8),
        log_kind: r.get(9),
        source_path: r.get(10),
        byte_offset: r.get(11),
        line_number: r.get(12),
        run_id: r.get(13),
        event_ns: r.get(14),
        observed_ns: r.get(15),
        received_ns: r.get(16),
        collector_id: r.get(17),
        detail: r.get(18),
    }
}

fn run_row(r: &Row) -> RunRow {
    RunRow {
        run_id: r.get(0),
        host: r.get(1),
        source_path: r.get(2),
        log_kind: r.get(3),
        run_index: r.get(4),
        outcome: r.get(5),
        mode: r.get(6),
        product: r.get(7),
        target_build: r.get(8),
        installed_build: r.get(9),
        phase: r.get(10),
        exit_code: r.get(11),
        primary_finding_id: r.get(12),
        started_ns: r.get(13),
        updated_ns: r.get(14),
        last_line_ns: r.get(15),
    }
}
