//! The PostgreSQL side of the paged fleet: each host's state rank kept inside a batch's
//! transaction (see `store::rollup::state_ranks`), filled in at open for hosts stored before it
//! was kept, and one page of the fleet.
//!
//! Concurrent batches of one host recompute its rank one at a time: each locks the host's row
//! (`FOR UPDATE`) before it reads the host's runs, and under `READ COMMITTED` that read sees
//! every batch that recomputed before it. The last to commit read all the runs committed
//! before it and its own, so the stored rank is never older than the runs.

use std::collections::BTreeSet;

use super::{run_row, PostgresStore};
use crate::model::{state_rank, FleetPage, FleetQuery, ValidBatch};
use crate::store::rollup::state_ranks;
use crate::store::sql;
use crate::store::StoreError;

/// Recomputes the state rank of the hosts whose runs the batch changed (`changed`), and of
/// the batch's hosts that have none yet (new hosts), in host name order.
pub(super) async fn refresh_states(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &ValidBatch,
    changed: &BTreeSet<&str>,
) -> Result<(), StoreError> {
    let named = batch.hosts.iter().map(|h| h.info.hostname.as_str());
    let hosts: BTreeSet<&str> = changed.iter().copied().chain(named).collect();
    if hosts.is_empty() {
        return Ok(());
    }
    let select = tx
        .prepare_cached(&sql::POSTGRES.select_host_state())
        .await?;
    let runs_of = tx
        .prepare_cached(&sql::POSTGRES.select_file_runs(1))
        .await?;
    let set = tx
        .prepare_cached(&sql::POSTGRES.update_host_state())
        .await?;
    for host in hosts {
        // A run of a host that has no row yet: the row's first batch computes it.
        let Some(row) = tx.query_opt(&select, &[&host]).await? else {
            continue;
        };
        let stored: Option<i32> = row.get(0);
        if stored.is_some() && !changed.contains(host) {
            continue;
        }
        let runs = tx
            .query(&runs_of, &[&host])
            .await?
            .iter()
            .map(run_row)
            .collect();
        let rank = i32::from(
            state_ranks(runs)
                .remove(host)
                .unwrap_or_else(|| state_rank("unspecified")),
        );
        if stored != Some(rank) {
            tx.execute(&set, &[&host, &rank]).await?;
        }
    }
    Ok(())
}

impl PostgresStore {
    /// Computes the state rank of every host that has none (stored before ranks were kept).
    pub(super) async fn fill_missing_states(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let missing: i64 = client
            .query_one("SELECT COUNT(*) FROM hosts WHERE state_rank IS NULL", &[])
            .await?
            .get(0);
        if missing == 0 {
            return Ok(());
        }
        let tx = client.transaction().await?;
        // Aggregators starting together: one computes, the others wait and find nothing
        // left to do (the update only touches hosts still without a rank).
        tx.execute("LOCK TABLE hosts IN SHARE ROW EXCLUSIVE MODE", &[])
            .await?;
        let runs = tx
            .query(&sql::POSTGRES.select_file_runs(0), &[])
            .await?
            .iter()
            .map(run_row)
            .collect();
        let set = tx
            .prepare(
                "UPDATE hosts SET state_rank = $2::int4 WHERE hostname = $1 \
                 AND state_rank IS NULL",
            )
            .await?;
        for (host, rank) in state_ranks(runs) {
            tx.execute(&set, &[&host, &i32::from(rank)]).await?;
        }
        tx.execute(
            "UPDATE hosts SET state_rank = $1::int4 WHERE state_rank IS NULL",
            &[&i32::from(state_rank("unspecified"))],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            message = "Computed the fleet state of hosts stored before it was kept.",
            hosts = missing
        );
        Ok(())
    }

    pub(super) async fn read_fleet(&self, query: FleetQuery) -> Result<FleetPage, StoreError> {
        let ranks = self
            .query(&sql::POSTGRES.select_state_counts(), &[])
            .await?
            .iter()
            .map(|r| (r.get::<_, Option<i32>>(0).map(i64::from), r.get(1)))
            .collect();
        let (count, params) = sql::POSTGRES.count_fleet(&query);
        let matched: i64 = self
            .query(&count, &params)
            .await?
            .first()
            .map_or(0, |r| r.get(0));
        let (page, offset) = sql::fleet_span(&query, u64::try_from(matched).unwrap_or(0));
        let (select, params) = sql::POSTGRES.select_fleet_page(&query, offset);
        let names: Vec<String> = self
            .query(&select, &params)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let records = if names.is_empty() {
            Vec::new()
        } else {
            self.host_records(names.clone()).await?
        };
        Ok(sql::fleet_page(ranks, matched, page, &names, records))
    }
}
