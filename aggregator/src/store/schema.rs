//! The versioned schema migrations of both backends. A migration is never edited once
//! released; a change is a new, higher version. Both lists keep the same version numbers for
//! the same change, so `schema_migrations` means the same thing on either backend.

/// SQLite's versioned migrations, applied in order, each in its own transaction.
pub(crate) const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "hosts, runs, findings and finding counts",
        "CREATE TABLE hosts (
        hostname TEXT PRIMARY KEY,
        fqdn TEXT NOT NULL DEFAULT '',
        os TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        time_zone TEXT NOT NULL DEFAULT '',
        utc_offset_seconds INTEGER NOT NULL DEFAULT 0,
        collector_id TEXT NOT NULL DEFAULT '',
        first_seen_ns INTEGER NOT NULL,
        last_seen_ns INTEGER NOT NULL
    );
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        source_path TEXT NOT NULL,
        log_kind INTEGER NOT NULL,
        run_index INTEGER NOT NULL,
        outcome INTEGER NOT NULL,
        mode TEXT NOT NULL,
        product TEXT NOT NULL,
        target_build TEXT NOT NULL,
        installed_build TEXT NOT NULL,
        phase TEXT NOT NULL,
        exit_code INTEGER,
        primary_finding_id TEXT NOT NULL,
        started_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        last_line_ns INTEGER NOT NULL
    );
    CREATE INDEX runs_by_host ON runs (host, started_ns);
    CREATE INDEX runs_by_updated ON runs (updated_ns);
    CREATE TABLE findings (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        host TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        rule_version INTEGER NOT NULL,
        title TEXT NOT NULL,
        severity TEXT NOT NULL,
        severity_num INTEGER NOT NULL,
        category TEXT NOT NULL,
        is_primary INTEGER NOT NULL,
        log_kind INTEGER NOT NULL,
        source_path TEXT NOT NULL,
        byte_offset INTEGER NOT NULL,
        line_number INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        event_ns INTEGER NOT NULL,
        observed_ns INTEGER NOT NULL,
        received_ns INTEGER NOT NULL,
        collector_id TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX findings_by_host ON findings (host, severity_num);
    CREATE INDEX findings_by_rule ON findings (rule_id);
    CREATE INDEX findings_by_run ON findings (run_id);
    CREATE INDEX findings_by_observed ON findings (observed_ns);
    CREATE TABLE finding_counts (
        host TEXT NOT NULL,
        run_id TEXT NOT NULL,
        severity_num INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (host, run_id, severity_num)
    );",
    ),
    (
        2,
        "maintenance windows",
        "CREATE TABLE maintenance_windows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hosts TEXT NOT NULL,
        starts_ns INTEGER NOT NULL,
        ends_ns INTEGER NOT NULL,
        created_ns INTEGER NOT NULL
    );
    CREATE INDEX windows_by_start ON maintenance_windows (starts_ns);",
    ),
    (
        3,
        "forwarding cursors",
        "CREATE TABLE forward_cursors (
        destination TEXT PRIMARY KEY,
        xid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL
    );",
    ),
    (
        4,
        "silences",
        // `matchers` is a JSON object (rule_ids, severities, hosts, labels): see store::silences.
        "CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        matchers TEXT NOT NULL,
        starts_ns INTEGER NOT NULL,
        ends_ns INTEGER NOT NULL,
        created_ns INTEGER NOT NULL
    );
    CREATE INDEX silences_by_start ON silences (starts_ns);",
    ),
    (
        5,
        "triage notes",
        // Acknowledgements, assignments and notes on findings and runs, kept as a log: the
        // latest of each action is its current value, and nothing is ever overwritten.
        "CREATE TABLE annotations (
        seq INTEGER PRIMARY KEY,
        target_kind TEXT NOT NULL,
        target_id TEXT NOT NULL,
        action TEXT NOT NULL,
        value TEXT NOT NULL,
        author TEXT NOT NULL,
        created_ns INTEGER NOT NULL
    );
    CREATE INDEX annotations_by_target ON annotations (target_kind, target_id);",
    ),
    (
        6,
        "run phase history; windows that require a clean preflight",
        // Each phase a run reported, in order, with the time of the log line that showed it;
        // bounded per run by `store::MAX_PHASES` (the oldest go first, `ordinal` keeps counting).
        "CREATE TABLE run_phases (
        run_id TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        phase TEXT NOT NULL,
        started_ns INTEGER NOT NULL,
        PRIMARY KEY (run_id, ordinal)
    );
    ALTER TABLE maintenance_windows ADD COLUMN require_clean_preflight INTEGER NOT NULL DEFAULT 0;",
    ),
    (
        7,
        "each host's fleet state, kept on ingest, for the paged fleet page",
        // The fleet page counts hosts by state and reads one page of them worst first; see
        // `store::rollup::state_ranks` for why the state is kept rather than computed per
        // request. NULL until computed: the store fills it in at open for hosts stored before.
        "ALTER TABLE hosts ADD COLUMN state_rank INTEGER;
    CREATE INDEX hosts_by_state ON hosts (state_rank, hostname);",
    ),
    (
        8,
        "findings: no index on observed_ns where no query plan uses it",
        // SQLite answers every time-range finding query (`ORDER BY seq DESC LIMIT n`) by
        // walking `seq` backwards: it has no statistics to prefer the index (the store never
        // runs ANALYZE), so the index was only a sixth B-tree written per finding. The plans
        // are checked by `store::sqlite::tests::finding_queries_use_the_expected_indexes`.
        "DROP INDEX IF EXISTS findings_by_observed;",
    ),
];

/// PostgreSQL's versioned migrations, applied in order under an advisory lock so that aggregators
/// starting together do not race.
pub(crate) const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "hosts, runs, findings and finding counts",
        "CREATE TABLE hosts (
        hostname TEXT PRIMARY KEY,
        fqdn TEXT NOT NULL DEFAULT '',
        os TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        time_zone TEXT NOT NULL DEFAULT '',
        utc_offset_seconds INTEGER NOT NULL DEFAULT 0,
        collector_id TEXT NOT NULL DEFAULT '',
        first_seen_ns BIGINT NOT NULL,
        last_seen_ns BIGINT NOT NULL
    );
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        source_path TEXT NOT NULL,
        log_kind INTEGER NOT NULL,
        run_index BIGINT NOT NULL,
        outcome INTEGER NOT NULL,
        mode TEXT NOT NULL,
        product TEXT NOT NULL,
        target_build TEXT NOT NULL,
        installed_build TEXT NOT NULL,
        phase TEXT NOT NULL,
        exit_code BIGINT,
        primary_finding_id TEXT NOT NULL,
        started_ns BIGINT NOT NULL,
        updated_ns BIGINT NOT NULL,
        last_line_ns BIGINT NOT NULL
    );
    CREATE INDEX runs_by_host ON runs (host, started_ns);
    CREATE INDEX runs_by_updated ON runs (updated_ns);
    CREATE TABLE findings (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        host TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        rule_version BIGINT NOT NULL,
        title TEXT NOT NULL,
        severity TEXT NOT NULL,
        severity_num INTEGER NOT NULL,
        category TEXT NOT NULL,
        is_primary BOOLEAN NOT NULL,
        log_kind INTEGER NOT NULL,
        source_path TEXT NOT NULL,
        byte_offset BIGINT NOT NULL,
        line_number BIGINT NOT NULL,
        run_id TEXT NOT NULL,
        event_ns BIGINT NOT NULL,
        observed_ns BIGINT NOT NULL,
        received_ns BIGINT NOT NULL,
        collector_id TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX findings_by_host ON findings (host, severity_num);
    CREATE INDEX findings_by_rule ON findings (rule_id);
    CREATE INDEX findings_by_run ON findings (run_id);
    CREATE INDEX findings_by_observed ON findings (observed_ns);
    CREATE TABLE finding_counts (
        host TEXT NOT NULL,
        run_id TEXT NOT NULL,
        severity_num INTEGER NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (host, run_id, severity_num)
    );",
    ),
    (
        2,
        "maintenance windows",
        "CREATE TABLE maintenance_windows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hosts TEXT NOT NULL,
        starts_ns BIGINT NOT NULL,
        ends_ns BIGINT NOT NULL,
        created_ns BIGINT NOT NULL
    );
    CREATE INDEX windows_by_start ON maintenance_windows (starts_ns);",
    ),
    (
        3,
        "forwarding cursors; findings carry the id of the transaction that wrote them",
        // Forwarding reads findings in (xid, seq) order and only from transactions older than
        // every running one: with concurrent writers a higher seq can commit before a lower
        // one, and a reader walking seq alone would step over the late one for good. Rows
        // written before this migration get xid 0 (all committed, ordered by seq).
        "ALTER TABLE findings ADD COLUMN xid BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE findings ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text)::int8;
    CREATE INDEX findings_by_xid ON findings (xid, seq);
    CREATE TABLE forward_cursors (
        destination TEXT PRIMARY KEY,
        xid BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        updated_ns BIGINT NOT NULL
    );",
    ),
    (
        4,
        "silences",
        "CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        matchers TEXT NOT NULL,
        starts_ns BIGINT NOT NULL,
        ends_ns BIGINT NOT NULL,
        created_ns BIGINT NOT NULL
    );
    CREATE INDEX silences_by_start ON silences (starts_ns);",
    ),
    (
        5,
        "triage notes",
        // Acknowledgements, assignments and notes on findings and runs, kept as a log: the
        // latest of each action is its current value, and nothing is ever overwritten.
        "CREATE TABLE annotations (
        seq BIGSERIAL PRIMARY KEY,
        target_kind TEXT NOT NULL,
        target_id TEXT NOT NULL,
        action TEXT NOT NULL,
        value TEXT NOT NULL,
        author TEXT NOT NULL,
        created_ns BIGINT NOT NULL
    );
    CREATE INDEX annotations_by_target ON annotations (target_kind, target_id);",
    ),
    (
        6,
        "run phase history; windows that require a clean preflight",
        // Each phase a run reported, in order, with the time of the log line that showed it;
        // bounded per run by `store::MAX_PHASES` (the oldest go first, `ordinal` keeps counting).
        "CREATE TABLE run_phases (
        run_id TEXT NOT NULL,
        ordinal BIGINT NOT NULL,
        phase TEXT NOT NULL,
        started_ns BIGINT NOT NULL,
        PRIMARY KEY (run_id, ordinal)
    );
    ALTER TABLE maintenance_windows ADD COLUMN require_clean_preflight BOOLEAN NOT NULL DEFAULT FALSE;",
    ),
    (
        7,
        "each host's fleet state, kept on ingest, for the paged fleet page",
        // As on SQLite; host names in byte order (`COLLATE "C"`), as SQLite and the
        // dashboard sort them, whatever the database's collation.
        "ALTER TABLE hosts ADD COLUMN state_rank INTEGER;
    CREATE INDEX hosts_by_state ON hosts (state_rank, hostname COLLATE \"C\");",
    ),
    (
        8,
        "findings: no index on observed_ns where no query plan uses it",
        // Nothing to do: with its statistics PostgreSQL's planner does use
        // `findings_by_observed` for a narrow time range (an index scan and a sort instead of
        // walking `seq` backwards), so the index stays. Kept as a version so that both lists
        // keep the same numbers.
        "SELECT 1;",
    ),
];

#[cfg(test)]
mod tests {
    //! A database the previous releases wrote opens with this build: one of schema version 5
    //! gains the phase history and the window flag, keeps its windows (not gated), and records
    //! phases from then on; one of version 6 gets each host's fleet state computed at open;
    //! one of version 7 keeps its findings, and on SQLite loses `findings_by_observed`.

    use super::*;
    use crate::model::{NewRun, ValidBatch};
    use crate::store::Store;

    /// A SQLite database at `path` as a release of schema `version` left it, holding `rows`.
    fn sqlite_at(path: &std::path::Path, version: i64, rows: &str) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, \
             description TEXT NOT NULL, applied_ns INTEGER NOT NULL)",
        )
        .unwrap();
        for (v, d, sql) in SQLITE_MIGRATIONS.iter().filter(|m| m.0 <= version) {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![v, d],
            )
            .unwrap();
        }
        conn.execute_batch(rows).unwrap();
        conn
    }

    /// The PostgreSQL database at `url` as a release of schema `version` left it, holding
    /// `rows`; the client and its connection task (drop the client, then await the task).
    async fn postgres_at(
        url: &str,
        version: i64,
        rows: &str,
    ) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, \
                 description TEXT NOT NULL, applied_ns BIGINT NOT NULL)",
            )
            .await
            .unwrap();
        for (v, d, sql) in POSTGRES_MIGRATIONS.iter().filter(|m| m.0 <= version) {
            client.batch_execute(sql).await.unwrap();
            client
                .execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, 0)",
                    &[v, &d.to_string()],
                )
                .await
                .unwrap();
        }
        client.batch_execute(rows).await.unwrap();
        (client, task)
    }

    fn run(phase: &str, at: i64) -> ValidBatch {
        ValidBatch {
            runs: vec![NewRun {
                run_id: "r1".into(),
                host: "EX01".into(),
                source_path: "ExchangeSetup.log".into(),
                log_kind: 1,
                outcome: 1,
                phase: phase.into(),
                updated_ns: at,
                last_line_ns: at,
                ..NewRun::default()
            }],
            ..ValidBatch::default()
        }
    }

    /// Checks a store opened over a version 5 database holding window `w5` and run `r1`.
    async fn check_migrated(store: &dyn Store) {
        let windows = store.windows().await.unwrap();
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].id, "w5");
        assert!(!windows[0].require_clean_preflight);
        // The run's phase from before the upgrade is not history; changes from now on are.
        store.write_batch(run("Language Files", 20)).await.unwrap();
        store.write_batch(run("Language Files", 21)).await.unwrap();
        store.write_batch(run("Mailbox role", 30)).await.unwrap();
        let phases: Vec<(i64, String)> = store
            .run_phases(vec!["r1".into()])
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.ordinal, p.phase))
            .collect();
        assert_eq!(
            phases,
            [
                (1, "Language Files".to_owned()),
                (2, "Mailbox role".to_owned())
            ]
        );
    }

    const V5_ROWS: &str = "INSERT INTO maintenance_windows (id, name, hosts, starts_ns, ends_ns, \
        created_ns) VALUES ('w5', 'old', '[\"EX*\"]', 1, 2000000000000000000, 1); \
        INSERT INTO runs (run_id, host, source_path, log_kind, run_index, outcome, mode, product, \
        target_build, installed_build, phase, exit_code, primary_finding_id, started_ns, \
        updated_ns, last_line_ns) VALUES ('r1', 'EX01', 'ExchangeSetup.log', 1, 0, 1, '', '', \
        '', '', 'Prerequisites', NULL, '', 1, 10, 10);";

    #[tokio::test]
    async fn a_version_5_sqlite_database_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        sqlite_at(&path, 5, V5_ROWS);
        let store = crate::store::sqlite::SqliteStore::open(&path, &Default::default())
            .await
            .unwrap();
        check_migrated(&store).await;
        store.close().await;
    }

    /// Hosts a version 6 database holds: EX01 failed (an MSI log, beside a succeeded setup),
    /// EX02 in progress, EX03 without runs, EX04 with only an old failure of an earlier
    /// maintenance and a setup run that succeeded weeks later.
    const V6_ROWS: &str = "INSERT INTO hosts (hostname, first_seen_ns, last_seen_ns) VALUES \
        ('EX01', 1, 1), ('EX02', 1, 1), ('EX03', 1, 1), ('EX04', 1, 1); \
        INSERT INTO runs (run_id, host, source_path, log_kind, run_index, outcome, mode, product, \
        target_build, installed_build, phase, exit_code, primary_finding_id, started_ns, \
        updated_ns, last_line_ns) VALUES \
        ('a', 'EX01', 'ExchangeSetup.log', 1, 0, 2, '', '', '', '', '', NULL, '', 1, 10, 10), \
        ('b', 'EX01', 'MSI1.LOG', 2, 0, 3, '', '', '', '', '', NULL, '', 1, 11, 11), \
        ('c', 'EX02', 'ExchangeSetup.log', 1, 0, 1, '', '', '', '', '', NULL, '', 1, 10, 10), \
        ('d', 'EX04', 'MSI1.LOG', 2, 0, 3, '', '', '', '', '', NULL, '', 1, 10, 10), \
        ('e', 'EX04', 'ExchangeSetup.log', 1, 0, 2, '', '', '', '', '', NULL, '', 1, \
         3000000000000000, 3000000000000000);";

    /// Checks a store opened over a version 6 database holding [`V6_ROWS`]: each host's state
    /// is computed at open, so the fleet pages and counts them.
    async fn check_v6_migrated(store: &dyn Store) {
        let page = store
            .fleet(crate::model::FleetQuery {
                state: None,
                text: None,
                page: 1,
                per_page: 10,
            })
            .await
            .unwrap();
        let order: Vec<(&str, &str)> = page
            .hosts
            .iter()
            .map(|h| (h.hostname.as_str(), h.state.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("EX01", "failed"),
                ("EX02", "in_progress"),
                ("EX04", "succeeded"),
                ("EX03", "unspecified")
            ]
        );
        assert_eq!(
            (
                page.counts.failed,
                page.counts.in_progress,
                page.counts.succeeded,
                page.counts.other
            ),
            (1, 1, 1, 1)
        );
    }

    #[tokio::test]
    async fn a_version_6_sqlite_database_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        sqlite_at(&path, 6, V6_ROWS);
        let store = crate::store::sqlite::SqliteStore::open(&path, &Default::default())
            .await
            .unwrap();
        check_v6_migrated(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn a_version_6_postgres_database_migrates() {
        let Some(url) = patchwatch_testkit::postgres::database().await else {
            return;
        };
        let (client, task) = postgres_at(&url, 6, V6_ROWS).await;
        drop(client);
        let _ = task.await;
        let store = crate::store::postgres::PostgresStore::open(&url, 2)
            .await
            .unwrap();
        check_v6_migrated(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn a_version_5_postgres_database_migrates() {
        let Some(url) = patchwatch_testkit::postgres::database().await else {
            return;
        };
        let (client, task) = postgres_at(&url, 5, V5_ROWS).await;
        drop(client);
        let _ = task.await;
        let store = crate::store::postgres::PostgresStore::open(&url, 2)
            .await
            .unwrap();
        check_migrated(&store).await;
        store.close().await;
    }

    /// A finding row for the version 7 tests (its detail: see [`v7_rows`]).
    const V7_ROWS: &str = "INSERT INTO findings (id, host, rule_id, rule_version, title, \
        severity, severity_num, category, is_primary, log_kind, source_path, byte_offset, \
        line_number, run_id, event_ns, observed_ns, received_ns, collector_id, detail) VALUES \
        ('f1', 'EX01', 'EX-1', 1, 'old', 'high', 4, 'setup', FALSE, 1, 'ExchangeSetup.log', 0, \
         1, 'r1', 5, 5, 5, 'c1', '{}');";

    /// [`V7_ROWS`] with a detail the store can read back.
    fn v7_rows() -> String {
        let detail = serde_json::to_string(&crate::model::FindingDetail::default()).unwrap();
        V7_ROWS.replace("'{}'", &format!("'{detail}'"))
    }

    /// Checks a store opened over a version 7 database holding [`v7_rows`]: its finding is
    /// still found by a time range, and a replay of it is still a duplicate.
    async fn check_v7_migrated(store: &dyn Store) {
        let page = store
            .findings(crate::model::FindingFilter {
                since_ns: Some(1),
                until_ns: Some(10),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let ids: Vec<&str> = page.items.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["f1"]);
        let replay = ValidBatch {
            findings: vec![crate::model::NewFinding {
                id: "f1".into(),
                host: "EX01".into(),
                rule_id: "EX-1".into(),
                rule_version: 1,
                title: "replayed".into(),
                severity: 4,
                category: "setup".into(),
                primary: false,
                log_kind: 1,
                source_path: "ExchangeSetup.log".into(),
                byte_offset: 0,
                line_number: 1,
                run_id: "r1".into(),
                event_ns: 5,
                observed_ns: 5,
                detail_json: "{}".into(),
            }],
            ..ValidBatch::default()
        };
        let outcome = store.write_batch(replay).await.unwrap();
        assert!(outcome.new_findings.is_empty());
    }

    #[tokio::test]
    async fn a_version_7_sqlite_database_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let index_count = |conn: &rusqlite::Connection| -> i64 {
            conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'findings_by_observed'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        {
            let conn = sqlite_at(&path, 7, &v7_rows());
            assert_eq!(index_count(&conn), 1);
        }
        let store = crate::store::sqlite::SqliteStore::open(&path, &Default::default())
            .await
            .unwrap();
        check_v7_migrated(&store).await;
        store.close().await;
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(index_count(&conn), 0);
        let version: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(version, 8);
    }

    #[tokio::test]
    async fn a_version_7_postgres_database_migrates() {
        let Some(url) = patchwatch_testkit::postgres::database().await else {
            return;
        };
        let (client, task) = postgres_at(&url, 7, &v7_rows()).await;
        let store = crate::store::postgres::PostgresStore::open(&url, 2)
            .await
            .unwrap();
        check_v7_migrated(&store).await;
        store.close().await;
        // PostgreSQL keeps the index: its planner uses it.
        let kept: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'findings_by_observed'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 1);
        let version: i64 = client
            .query_one("SELECT MAX(version) FROM schema_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, 8);
        drop(client);
        let _ = task.await;
    }
}
