//! SQL text both backends share, built for either placeholder style (`?N` or `$N`).
//!
//! The two dialects differ here only in placeholders and in `max` (SQLite's two-argument
//! scalar `max` is PostgreSQL's `GREATEST`), so the statements are written once.

use crate::model::FindingFilter;

/// The placeholder and function spelling of one SQL dialect.
#[derive(Clone, Copy)]
pub(crate) struct Dialect {
    /// `?` for SQLite, `$` for PostgreSQL; followed by the 1-based parameter number.
    pub placeholder: char,
    /// The two-argument maximum: `max` (SQLite) or `GREATEST` (PostgreSQL).
    pub greatest: &'static str,
    /// The case-insensitive `LIKE`: `LIKE` (SQLite, for ASCII) or `ILIKE` (PostgreSQL).
    pub ilike: &'static str,
    /// Whether query parameters get explicit casts (`$1::int8`). PostgreSQL infers a
    /// parameter's type from its column, and an `INTEGER` column would refuse an `i64`.
    pub casts: bool,
    /// What makes `ORDER BY hostname` byte order: nothing on SQLite (its default `BINARY`),
    /// `COLLATE "C"` on PostgreSQL (matching the `hosts_by_state` index).
    pub byte_order: &'static str,
}

pub(crate) const SQLITE: Dialect = Dialect {
    placeholder: '?',
    greatest: "max",
    ilike: "LIKE",
    casts: false,
    byte_order: "",
};
pub(crate) const POSTGRES: Dialect = Dialect {
    placeholder: '$',
    greatest: "GREATEST",
    ilike: "ILIKE",
    casts: true,
    byte_order: " COLLATE \"C\"",
};

impl Dialect {
    fn p(&self, n: usize) -> String {
        format!("{}{n}", self.placeholder)
    }

    /// Placeholder `n` for a value of `param`'s type.
    fn typed(&self, n: usize, param: &SqlParam) -> String {
        match (self.casts, param) {
            (false, _) => self.p(n),
            (true, SqlParam::Text(_)) => format!("{}::text", self.p(n)),
            (true, SqlParam::Int(_)) => format!("{}::int8", self.p(n)),
        }
    }

    fn params(&self, n: usize) -> String {
        (1..=n).map(|i| self.p(i)).collect::<Vec<_>>().join(", ")
    }

    /// Upserts a host. Parameters: hostname, fqdn, os, agent_version, time_zone,
    /// utc_offset_seconds, collector_id, seen_ns. Empty values leave stored ones alone.
    pub fn upsert_host(&self) -> String {
        format!(
            "INSERT INTO hosts (hostname, fqdn, os, agent_version, time_zone, utc_offset_seconds, \
             collector_id, first_seen_ns, last_seen_ns) VALUES ({params}, {seen}) \
             ON CONFLICT (hostname) DO UPDATE SET \
             fqdn = CASE WHEN excluded.fqdn <> '' THEN excluded.fqdn ELSE hosts.fqdn END, \
             os = CASE WHEN excluded.os <> '' THEN excluded.os ELSE hosts.os END, \
             agent_version = CASE WHEN excluded.agent_version <> '' THEN excluded.agent_version \
                 ELSE hosts.agent_version END, \
             time_zone = CASE WHEN excluded.time_zone <> '' THEN excluded.time_zone ELSE hosts.time_zone END, \
             utc_offset_seconds = CASE WHEN excluded.time_zone <> '' THEN excluded.utc_offset_seconds \
                 ELSE hosts.utc_offset_seconds END, \
             collector_id = CASE WHEN excluded.collector_id <> '' THEN excluded.collector_id \
                 ELSE hosts.collector_id END, \
             last_seen_ns = {max}(hosts.last_seen_ns, excluded.last_seen_ns)",
            params = self.params(8),
            seen = self.p(8),
            max = self.greatest,
        )
    }

    /// Merges a run update into its run, returning the run as stored, or no row when the
    /// update is older than what is stored or names another host (a run id never moves
    /// between hosts, so one collector cannot overwrite another host's run). Parameters in
    /// `RUN_COLUMNS` order. An update only overrides what it knows: empty strings, zero enums and times and a null exit code
    /// leave the stored values alone, so both full snapshots and deltas work.
    pub fn upsert_run(&self) -> String {
        let keep_text = |c: &str| {
            format!("{c} = CASE WHEN excluded.{c} <> '' THEN excluded.{c} ELSE runs.{c} END")
        };
        let keep_num = |c: &str| {
            format!("{c} = CASE WHEN excluded.{c} <> 0 THEN excluded.{c} ELSE runs.{c} END")
        };
        let sets = [
            keep_text("host"),
            keep_text("source_path"),
            keep_num("log_kind"),
            keep_num("run_index"),
            // A stalled run that wrote a later line is running again, even when the update
            // that says so carries no outcome of its own.
            "outcome = CASE WHEN excluded.outcome <> 0 THEN excluded.outcome \
             WHEN runs.outcome = 4 AND excluded.last_line_ns > runs.last_line_ns THEN 1 \
             ELSE runs.outcome END"
                .to_owned(),
            keep_text("mode"),
            keep_text("product"),
            keep_text("target_build"),
            keep_text("installed_build"),
            keep_text("phase"),
            "exit_code = COALESCE(excluded.exit_code, runs.exit_code)".to_owned(),
            keep_text("primary_finding_id"),
            keep_num("started_ns"),
            "updated_ns = excluded.updated_ns".to_owned(),
            format!(
                "last_line_ns = {}(runs.last_line_ns, excluded.last_line_ns)",
                self.greatest
            ),
        ];
        format!(
            "INSERT INTO runs ({cols}) VALUES ({params}) ON CONFLICT (run_id) DO UPDATE SET {sets} \
             WHERE excluded.updated_ns >= runs.updated_ns AND excluded.host = runs.host \
             RETURNING {cols}",
            cols = super::RUN_COLUMNS,
            params = self.params(16),
            sets = sets.join(", "),
        )
    }

    /// Placeholder `n` cast to `ty` where the dialect wants casts (a parameter used twice, or
    /// in a select list, has no column to take its type from).
    fn cast(&self, n: usize, ty: &str) -> String {
        if self.casts {
            format!("{}::{ty}", self.p(n))
        } else {
            self.p(n)
        }
    }

    /// Records a run's phase when it differs from the last one recorded, returning its
    /// ordinal (no row when the phase is empty or unchanged). Parameters: run_id, phase,
    /// started_ns.
    pub fn record_phase(&self) -> String {
        let (run, phase, at) = (
            self.cast(1, "text"),
            self.cast(2, "text"),
            self.cast(3, "int8"),
        );
        format!(
            "INSERT INTO run_phases (run_id, ordinal, phase, started_ns) \
             SELECT {run}, COALESCE((SELECT MAX(ordinal) FROM run_phases WHERE run_id = {run}), 0) + 1, \
             {phase}, {at} \
             WHERE {phase} <> '' AND {phase} <> COALESCE((SELECT p.phase FROM run_phases p \
             WHERE p.run_id = {run} ORDER BY p.ordinal DESC LIMIT 1), '') \
             RETURNING ordinal"
        )
    }

    /// Drops a run's phases up to an ordinal. Parameters: run_id, ordinal.
    pub fn prune_phases(&self) -> String {
        format!(
            "DELETE FROM run_phases WHERE run_id = {} AND ordinal <= {}",
            self.cast(1, "text"),
            self.cast(2, "int8")
        )
    }

    /// The phases of the runs given as parameters `1..=n`, by run and ordinal.
    pub fn select_phases(&self, n: usize) -> String {
        format!(
            "SELECT run_id, ordinal, phase, started_ns FROM run_phases WHERE run_id IN ({}) \
             ORDER BY run_id, ordinal",
            self.params(n)
        )
    }

    /// Adds to a (host, run, severity) finding count. Parameters: host, run_id, severity_num, n.
    pub fn add_finding_count(&self) -> String {
        format!(
            "INSERT INTO finding_counts (host, run_id, severity_num, n) VALUES ({}) \
             ON CONFLICT (host, run_id, severity_num) DO UPDATE SET n = finding_counts.n + excluded.n",
            self.params(4)
        )
    }

    /// The finding list query for `filter` and its parameters.
    pub fn select_findings(&self, filter: &FindingFilter) -> (String, Vec<SqlParam>) {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let mut push = |clause: &str, value: SqlParam| {
            clauses.push(format!("{clause} {}", self.typed(params.len() + 1, &value)));
            params.push(value);
        };
        if let Some(h) = &filter.host {
            push("host =", SqlParam::Text(h.clone()));
        }
        if let Some(r) = &filter.rule {
            push("rule_id =", SqlParam::Text(r.clone()));
        }
        if let Some(s) = filter.severity {
            push("severity_num =", SqlParam::Int(i64::from(s)));
        }
        if let Some(s) = filter.min_severity {
            push("severity_num >=", SqlParam::Int(i64::from(s)));
        }
        if let Some(r) = &filter.run {
            push("run_id =", SqlParam::Text(r.clone()));
        }
        if let Some(t) = filter.since_ns {
            push("observed_ns >=", SqlParam::Int(t));
        }
        if let Some(c) = filter.before_seq {
            push("seq <", SqlParam::Int(c));
        }
        if let Some(t) = filter.until_ns {
            push("observed_ns <", SqlParam::Int(t));
        }
        if let Some(o) = filter.run_outcome {
            push(
                "run_id IN (SELECT run_id FROM runs WHERE outcome =",
                SqlParam::Int(i64::from(o)),
            );
            if let Some(last) = clauses.last_mut() {
                last.push(')');
            }
        }
        if !filter.host_globs.is_empty() {
            let any: Vec<String> = filter
                .host_globs
                .iter()
                .map(|g| {
                    let n = params.len() + 1;
                    let v = SqlParam::Text(glob_to_like(g));
                    let clause = format!("host {} {} ESCAPE '\\'", self.ilike, self.typed(n, &v));
                    params.push(v);
                    clause
                })
                .collect();
            clauses.push(format!("({})", any.join(" OR ")));
        }
        if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
            let pattern = format!("%{}%", like_escape(text));
            let a = SqlParam::Text(pattern.clone());
            let pa = self.typed(params.len() + 1, &a);
            params.push(a);
            let b = SqlParam::Text(pattern);
            let pb = self.typed(params.len() + 1, &b);
            params.push(b);
            clauses.push(format!(
                "(title {like} {pa} ESCAPE '\\' OR detail {like} {pb} ESCAPE '\\')",
                like = self.ilike
            ));
        }
        let where_ = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        // One row more than the page tells whether a next page exists.
        let limit = SqlParam::Int(i64::from(filter.limit) + 1);
        let sql = format!(
            "SELECT {} FROM findings{where_} ORDER BY seq DESC LIMIT {}",
            super::FINDING_COLUMNS,
            self.typed(params.len() + 1, &limit)
        );
        params.push(limit);
        (sql, params)
    }

    /// The run list query for a filter and its parameters.
    pub fn select_runs(&self, filter: &crate::model::RunFilter) -> (String, Vec<SqlParam>) {
        let (host, outcome, limit, offset) = (
            filter.host.as_deref(),
            filter.outcome,
            filter.limit,
            filter.offset,
        );
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let push = |params: &mut Vec<SqlParam>, value: SqlParam| {
            let placeholder = self.typed(params.len() + 1, &value);
            params.push(value);
            placeholder
        };
        if let Some(h) = host {
            clauses.push(format!(
                "host = {}",
                push(&mut params, SqlParam::Text(h.to_owned()))
            ));
        }
        if let Some(r) = &filter.run {
            clauses.push(format!(
                "run_id = {}",
                push(&mut params, SqlParam::Text(r.clone()))
            ));
        }
        if let Some(o) = outcome {
            clauses.push(format!(
                "outcome = {}",
                push(&mut params, SqlParam::Int(i64::from(o)))
            ));
        }
        let where_ = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let lim = push(&mut params, SqlParam::Int(i64::from(limit)));
        let off = push(&mut params, SqlParam::Int(i64::from(offset)));
        (
            format!(
                "SELECT {} FROM runs{where_} ORDER BY updated_ns DESC, run_id LIMIT {lim} OFFSET {off}",
                super::RUN_COLUMNS
            ),
            params,
        )
    }

    /// Hosts (all, or those named by the parameters `1..=only`), by name.
    pub fn select_hosts(&self, only: usize) -> String {
        format!(
            "SELECT hostname, fqdn, os, agent_version, time_zone, collector_id, first_seen_ns, \
             last_seen_ns FROM hosts{} ORDER BY hostname",
            self.host_filter("hostname", only)
        )
    }

    /// Each host's latest run: the one that started last (ties: last updated, then run id).
    pub fn select_latest_runs(&self, only: usize) -> String {
        format!(
            "SELECT {cols} FROM runs WHERE run_id IN (SELECT (SELECT r.run_id FROM runs r \
             WHERE r.host = h.hostname ORDER BY r.started_ns DESC, r.updated_ns DESC, r.run_id DESC \
             LIMIT 1) FROM hosts h{filter})",
            cols = super::RUN_COLUMNS,
            filter = self.host_filter("h.hostname", only),
        )
    }

    /// The latest run of each (host, log file): highest run index, then latest start, then
    /// highest run id.
    pub fn select_file_runs(&self, only: usize) -> String {
        format!(
            "SELECT {cols} FROM runs r WHERE NOT EXISTS (SELECT 1 FROM runs n \
             WHERE n.host = r.host AND n.source_path = r.source_path AND \
             (n.run_index > r.run_index OR (n.run_index = r.run_index AND \
             (n.started_ns > r.started_ns OR (n.started_ns = r.started_ns AND n.run_id > r.run_id))))){filter}",
            cols = super::RUN_COLUMNS,
            filter = if only == 0 {
                String::new()
            } else {
                format!(" AND r.host IN ({})", self.params(only))
            },
        )
    }

    /// The findings that can be a run's cause: those with the `ids` given as parameters
    /// `1..=ids`, and those of medium severity or worse of the runs given as the `runs`
    /// parameters after them. Columns as [`super::rollup::CauseRow`]. `None` when both are empty.
    pub fn select_causes(&self, ids: usize, runs: usize) -> Option<String> {
        let mut clauses = Vec::new();
        if ids > 0 {
            clauses.push(format!("id IN ({})", self.params(ids)));
        }
        if runs > 0 {
            let ps: Vec<String> = (ids + 1..=ids + runs).map(|i| self.p(i)).collect();
            clauses.push(format!(
                "(run_id IN ({}) AND severity_num >= 3)",
                ps.join(", ")
            ));
        }
        (!clauses.is_empty()).then(|| {
            format!(
                "SELECT id, run_id, rule_id, title, severity_num, seq FROM findings WHERE {}",
                clauses.join(" OR ")
            )
        })
    }

    /// Finding counts by host, run and severity.
    pub fn select_finding_counts(&self, only: usize) -> String {
        format!(
            "SELECT host, run_id, severity_num, n FROM finding_counts{}",
            self.host_filter("host", only)
        )
    }

    /// A host's stored state rank. Parameter: hostname. On PostgreSQL the row is locked
    /// (`FOR UPDATE`), so the rank is recomputed by one transaction at a time and from runs
    /// read after every earlier recomputation committed.
    pub fn select_host_state(&self) -> String {
        format!(
            "SELECT state_rank FROM hosts WHERE hostname = {}{}",
            self.p(1),
            if self.casts { " FOR UPDATE" } else { "" }
        )
    }

    /// Sets a host's state rank. Parameters: hostname, rank.
    pub fn update_host_state(&self) -> String {
        format!(
            "UPDATE hosts SET state_rank = {} WHERE hostname = {}",
            self.cast(2, "int4"),
            self.p(1)
        )
    }

    /// Hosts by state rank, over the whole fleet: rank (NULL: not computed yet), count.
    pub fn select_state_counts(&self) -> String {
        "SELECT state_rank, COUNT(*) FROM hosts GROUP BY state_rank".to_owned()
    }

    /// The `WHERE` clause of a fleet query's filters and its parameters.
    fn fleet_filter(&self, q: &crate::model::FleetQuery) -> (String, Vec<SqlParam>) {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        if let Some(rank) = q.state {
            let v = SqlParam::Int(i64::from(rank));
            clauses.push(format!("state_rank = {}", self.typed(1, &v)));
            params.push(v);
        }
        if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
            let v = SqlParam::Text(format!("%{}%", like_escape(text)));
            let n = params.len() + 1;
            clauses.push(format!(
                "(hostname {like} {p} ESCAPE '\\' OR fqdn {like} {p} ESCAPE '\\')",
                like = self.ilike,
                p = self.typed(n, &v)
            ));
            params.push(v);
        }
        let where_ = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        (where_, params)
    }

    /// How many hosts match a fleet query's filters.
    pub fn count_fleet(&self, q: &crate::model::FleetQuery) -> (String, Vec<SqlParam>) {
        let (where_, params) = self.fleet_filter(q);
        (format!("SELECT COUNT(*) FROM hosts{where_}"), params)
    }

    /// The names of one page of hosts matching a fleet query's filters, worst first, then by
    /// name in byte order; `offset` hosts skipped. `OFFSET` walks the `hosts_by_state` index
    /// up to the page, which at 10,000 hosts is well under a millisecond, and keeps page
    /// numbers (what an admin asks for) simple.
    pub fn select_fleet_page(
        &self,
        q: &crate::model::FleetQuery,
        offset: u64,
    ) -> (String, Vec<SqlParam>) {
        let (where_, mut params) = self.fleet_filter(q);
        let limit = SqlParam::Int(i64::from(q.per_page));
        let lim = self.typed(params.len() + 1, &limit);
        params.push(limit);
        let offset = SqlParam::Int(i64::try_from(offset).unwrap_or(i64::MAX));
        let off = self.typed(params.len() + 1, &offset);
        params.push(offset);
        (
            format!(
                "SELECT hostname FROM hosts{where_} ORDER BY state_rank, hostname{order} \
                 LIMIT {lim} OFFSET {off}",
                order = self.byte_order
            ),
            params,
        )
    }

    fn host_filter(&self, column: &str, only: usize) -> String {
        if only == 0 {
            String::new()
        } else {
            format!(" WHERE {column} IN ({})", self.params(only))
        }
    }
}

/// Escapes `LIKE`'s wildcards and its escape character (`\`).
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A host glob (`*`, `?`) as a `LIKE` pattern escaped with `\`.
pub(crate) fn glob_to_like(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The page a fleet query is served and the hosts before it: the page asked for, or the last
/// one when it asks past the end (1 when nothing matches).
pub(crate) fn fleet_span(q: &crate::model::FleetQuery, matched: u64) -> (u64, u64) {
    let per = u64::from(q.per_page.max(1));
    let pages = matched.div_ceil(per).max(1);
    let page = q.page.clamp(1, pages);
    (page, (page - 1) * per)
}

/// A fleet page from its queries' rows: the counts by rank (NULL, not computed yet, counts
/// as unspecified), the matching hosts, the page served, and the page's host names in order
/// with their records (in any order).
pub(crate) fn fleet_page(
    ranks: Vec<(Option<i64>, i64)>,
    matched: i64,
    page: u64,
    names: &[String],
    records: Vec<crate::model::HostRecord>,
) -> crate::model::FleetPage {
    let mut counts = crate::model::StateCounts::default();
    for (rank, n) in ranks {
        let rank = rank.and_then(|r| u8::try_from(r).ok()).unwrap_or(u8::MAX);
        counts.add(rank, u64::try_from(n).unwrap_or(0));
    }
    let mut by_name: std::collections::HashMap<String, crate::model::HostRecord> = records
        .into_iter()
        .map(|h| (h.hostname.clone(), h))
        .collect();
    crate::model::FleetPage {
        counts,
        matched: u64::try_from(matched).unwrap_or(0),
        page,
        hosts: names.iter().filter_map(|n| by_name.remove(n)).collect(),
    }
}

/// A query parameter of either backend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlParam {
    /// Text.
    Text(String),
    /// 64-bit integer.
    Int(i64),
}

/// The host queries' rows, for [`assemble_hosts`].
pub(crate) struct HostRows {
    /// Hosts, by name.
    pub hosts: Vec<super::HostRow>,
    /// Each host's run that started last.
    pub latest: Vec<crate::model::RunRecord>,
    /// Finding counts: host, run, severity number, count.
    pub counts: Vec<(String, String, i32, i64)>,
    /// Each host's current runs (see [`super::rollup::current_by_host`]).
    pub current: std::collections::HashMap<String, Vec<super::RunRow>>,
    /// Each host's latest preflight run.
    pub preflight: std::collections::HashMap<String, super::RunRow>,
    /// The cause query's rows.
    pub causes: Vec<super::rollup::CauseRow>,
}

/// Assembles host records from the host queries' rows.
pub(crate) fn assemble_hosts(rows: HostRows) -> Vec<crate::model::HostRecord> {
    use std::collections::HashMap;

    use crate::model::SeverityCounts;

    let HostRows {
        hosts,
        latest,
        counts,
        mut current,
        mut preflight,
        causes,
    } = rows;
    let mut latest_by_host: HashMap<String, crate::model::RunRecord> =
        latest.into_iter().map(|r| (r.host.clone(), r)).collect();
    let mut by_run: HashMap<(String, String), SeverityCounts> = HashMap::new();
    let mut by_host: HashMap<String, SeverityCounts> = HashMap::new();
    for (host, run, sev, n) in counts {
        let n = u64::try_from(n).unwrap_or(0);
        by_run.entry((host.clone(), run)).or_default().add(sev, n);
        by_host.entry(host).or_default().add(sev, n);
    }
    hosts
        .into_iter()
        .map(|h| {
            let run = latest_by_host.remove(&h.hostname);
            let all = by_host.remove(&h.hostname).unwrap_or_default();
            let current: Vec<crate::model::RunRecord> = current
                .remove(&h.hostname)
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect();
            let counts = if current.is_empty() {
                all.clone()
            } else {
                let mut sum = SeverityCounts::default();
                for r in &current {
                    if let Some(c) = by_run.get(&(h.hostname.clone(), r.run_id.clone())) {
                        for (sev, n) in [
                            (5, c.critical),
                            (4, c.high),
                            (3, c.medium),
                            (2, c.low),
                            (1, c.info),
                        ] {
                            sum.add(sev, n);
                        }
                    }
                }
                sum
            };
            let total = all.total();
            let pre: Option<crate::model::RunRecord> =
                preflight.remove(&h.hostname).map(Into::into);
            let preflight_cause = pre
                .as_ref()
                .and_then(|p| super::rollup::causes(std::slice::from_ref(p), &causes).pop());
            let causes = super::rollup::causes(&current, &causes);
            h.into_record(super::HostParts {
                latest_run: run,
                findings: counts,
                findings_total: total,
                current_runs: current,
                causes,
                preflight: pre,
                preflight_cause,
            })
        })
        .collect()
}
