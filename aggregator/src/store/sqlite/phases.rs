//! The SQLite side of run phase histories: recorded by the writer inside a batch's
//! transaction, read from the read pool.

use futures::future::BoxFuture;
use rusqlite::{params, OptionalExtension as _, Transaction};

use super::{SqliteStore, Statements};
use crate::model::PhaseRecord;
use crate::store::{phase_record, sql, RunRow, StoreError, MAX_PHASES};

/// Records `run`'s stored phase (started at `at_ns`) when it differs from the last one
/// recorded, and drops the run's oldest phases beyond [`MAX_PHASES`]. Returns the
/// statements it ran.
pub(super) fn record(
    tx: &Transaction<'_>,
    sql: &Statements,
    run: &RunRow,
    at_ns: i64,
) -> Result<usize, StoreError> {
    let ordinal: Option<i64> = tx
        .prepare_cached(&sql.record_phase)?
        .query_row(params![run.run_id, run.phase, at_ns], |r| r.get(0))
        .optional()?;
    if let Some(n) = ordinal.filter(|n| *n > MAX_PHASES) {
        tx.prepare_cached(&sql.prune_phases)?
            .execute(params![run.run_id, n - MAX_PHASES])?;
        return Ok(2);
    }
    Ok(1)
}

impl SqliteStore {
    pub(super) fn read_phases(
        &self,
        run_ids: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<PhaseRecord>, StoreError>> {
        self.read(move |c| {
            if run_ids.is_empty() {
                return Ok(Vec::new());
            }
            let rows = c
                .prepare_cached(&sql::SQLITE.select_phases(run_ids.len()))?
                .query_map(rusqlite::params_from_iter(run_ids.iter()), |r| {
                    Ok(phase_record(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }
}
