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
    /// Whether query parameters get explicit casts (`$1::int8`). PostgreSQL infers a
    /// parameter's type from its column, and an `INTEGER` column would refuse an `i64`.
    pub casts: bool,
}

pub(crate) const SQLITE: Dialect = Dialect {
    placeholder: '?',
    greatest: "max",
    casts: false,
};
pub(crate) const POSTGRES: Dialect = Dialect {
    placeholder: '$',
    greatest: "GREATEST",
    casts: true,
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
            keep_num("outcome"),
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
    pub fn select_runs(
        &self,
        host: Option<&str>,
        outcome: Option<i32>,
        limit: u32,
        offset: u32,
    ) -> (String, Vec<SqlParam>) {
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

    /// Finding counts by host, run and severity.
    pub fn select_finding_counts(&self, only: usize) -> String {
        format!(
            "SELECT host, run_id, severity_num, n FROM finding_counts{}",
            self.host_filter("host", only)
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

/// A query parameter of either backend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlParam {
    /// Text.
    Text(String),
    /// 64-bit integer.
    Int(i64),
}

/// Assembles host records from the three host queries' rows.
pub(crate) fn assemble_hosts(
    hosts: Vec<super::HostRow>,
    latest: Vec<crate::model::RunRecord>,
    counts: Vec<(String, String, i32, i64)>,
) -> Vec<crate::model::HostRecord> {
    use std::collections::HashMap;

    use crate::model::SeverityCounts;

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
            let counts = match &run {
                Some(r) => by_run
                    .remove(&(h.hostname.clone(), r.run_id.clone()))
                    .unwrap_or_default(),
                None => all.clone(),
            };
            let total = all.total();
            h.into_record(run, counts, total)
        })
        .collect()
}
