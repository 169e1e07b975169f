//! The SQLite side of the paged fleet: each host's state rank kept by the writer inside a
//! batch's transaction (see `store::rollup::state_ranks`), filled in at open for hosts stored
//! before it was kept, and one page of the fleet read in one snapshot.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use rusqlite::{params, Connection, OptionalExtension as _, Transaction};

use super::{host_records, run_row, to_sql, SqliteStore, Statements};
use crate::model::{state_rank, FleetPage, FleetQuery, ValidBatch};
use crate::store::rollup::state_ranks;
use crate::store::sql;
use crate::store::StoreError;

/// Recomputes the state rank of the hosts whose runs the batch changed (`changed`), and of
/// the batch's hosts that have none yet (new hosts). Returns the statements it ran.
pub(super) fn refresh_states(
    tx: &Transaction<'_>,
    sql: &Statements,
    batch: &ValidBatch,
    changed: &BTreeSet<&str>,
) -> Result<usize, StoreError> {
    let mut statements = 0;
    let named = batch.hosts.iter().map(|h| h.info.hostname.as_str());
    let hosts: BTreeSet<&str> = changed.iter().copied().chain(named).collect();
    for host in hosts {
        statements += 1;
        let stored: Option<Option<i64>> = tx
            .prepare_cached(&sql.host_state)?
            .query_row([host], |r| r.get(0))
            .optional()?;
        // A run of a host that has no row yet: the row's first batch computes it.
        let Some(stored) = stored else { continue };
        if stored.is_some() && !changed.contains(host) {
            continue;
        }
        statements += 1;
        let runs = tx
            .prepare_cached(&sql.file_runs_of_host)?
            .query_map([host], run_row)?
            .collect::<Result<Vec<_>, _>>()?;
        let rank = state_ranks(runs)
            .remove(host)
            .unwrap_or_else(|| state_rank("unspecified"));
        if stored != Some(i64::from(rank)) {
            statements += 1;
            tx.prepare_cached(&sql.set_host_state)?
                .execute(params![host, rank])?;
        }
    }
    Ok(statements)
}

/// Computes the state rank of every host that has none (stored before ranks were kept), in
/// one transaction. Nothing to do, and one cheap query, once every host has one.
pub(super) fn fill_missing_states(conn: &mut Connection) -> Result<(), StoreError> {
    let missing: i64 = conn.query_row(
        "SELECT COUNT(*) FROM hosts WHERE state_rank IS NULL",
        [],
        |r| r.get(0),
    )?;
    if missing == 0 {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let runs = tx
        .prepare(&sql::SQLITE.select_file_runs(0))?
        .query_map([], run_row)?
        .collect::<Result<Vec<_>, _>>()?;
    {
        let mut set = tx.prepare(
            "UPDATE hosts SET state_rank = ?2 WHERE hostname = ?1 AND state_rank IS NULL",
        )?;
        for (host, rank) in state_ranks(runs) {
            set.execute(params![host, rank])?;
        }
    }
    tx.execute(
        "UPDATE hosts SET state_rank = ?1 WHERE state_rank IS NULL",
        [state_rank("unspecified")],
    )?;
    tx.commit()?;
    tracing::info!(
        message = "Computed the fleet state of hosts stored before it was kept.",
        hosts = missing
    );
    Ok(())
}

impl SqliteStore {
    pub(super) fn read_fleet(
        &self,
        query: FleetQuery,
    ) -> BoxFuture<'static, Result<FleetPage, StoreError>> {
        self.read(move |c| {
            // One read transaction: counts, page and rows from the same snapshot.
            let tx = c.unchecked_transaction()?;
            let ranks = tx
                .prepare_cached(&sql::SQLITE.select_state_counts())?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<(Option<i64>, i64)>, _>>()?;
            let (count, params) = sql::SQLITE.count_fleet(&query);
            let matched: i64 = tx
                .prepare_cached(&count)?
                .query_row(rusqlite::params_from_iter(params.iter().map(to_sql)), |r| {
                    r.get(0)
                })?;
            let (page, offset) = sql::fleet_span(&query, u64::try_from(matched).unwrap_or(0));
            let (select, params) = sql::SQLITE.select_fleet_page(&query, offset);
            let names = tx
                .prepare_cached(&select)?
                .query_map(rusqlite::params_from_iter(params.iter().map(to_sql)), |r| {
                    r.get(0)
                })?
                .collect::<Result<Vec<String>, _>>()?;
            let records = if names.is_empty() {
                Vec::new()
            } else {
                host_records(&tx, &names)?
            };
            Ok(sql::fleet_page(ranks, matched, page, &names, records))
        })
    }
}
