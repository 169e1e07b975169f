//! The SQLite side of maintenance windows made through the API. Writes go through the writer
//! thread (it stays the only writer), each in its own small transaction; reads use the read
//! pool.

use crate::routing::MaintenanceWindow;
use futures::future::BoxFuture;
use rusqlite::{params, OptionalExtension as _};

use super::SqliteStore;
use crate::store::{ended_span, window_values, StoreError, WindowRow, WINDOW_COLUMNS};

fn window_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WindowRow> {
    Ok(WindowRow {
        id: r.get(0)?,
        name: r.get(1)?,
        hosts: r.get(2)?,
        starts_ns: r.get(3)?,
        ends_ns: r.get(4)?,
        require_clean_preflight: r.get(5)?,
    })
}

impl SqliteStore {
    pub(super) fn read_windows(
        &self,
    ) -> BoxFuture<'static, Result<Vec<MaintenanceWindow>, StoreError>> {
        self.read(|c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {WINDOW_COLUMNS} FROM maintenance_windows ORDER BY starts_ns DESC, id"
                ))?
                .query_map([], window_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(MaintenanceWindow::try_from).collect()
        })
    }

    pub(super) fn write_window(
        &self,
        w: MaintenanceWindow,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.write_job(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (hosts, starts_ns, ends_ns) = window_values(&w);
            let inserted = tx.execute(
                "INSERT INTO maintenance_windows (id, name, hosts, starts_ns, ends_ns, created_ns, \
                 require_clean_preflight) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (id) DO NOTHING",
                params![
                    w.id,
                    w.name,
                    hosts,
                    starts_ns,
                    ends_ns,
                    crate::model::now_unix_nano(),
                    w.require_clean_preflight
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("window `{}`", w.id)));
            }
            tx.commit()?;
            Ok(())
        })
    }

    pub(super) fn end_window_at(
        &self,
        id: String,
        at_ns: i64,
    ) -> BoxFuture<'static, Result<Option<MaintenanceWindow>, StoreError>> {
        self.write_job(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row = tx
                .query_row(
                    &format!("SELECT {WINDOW_COLUMNS} FROM maintenance_windows WHERE id = ?1"),
                    [&id],
                    window_row,
                )
                .optional()?;
            let Some(mut r) = row else {
                return Ok(None);
            };
            (r.starts_ns, r.ends_ns) = ended_span(r.starts_ns, r.ends_ns, at_ns);
            tx.execute(
                "UPDATE maintenance_windows SET starts_ns = ?2, ends_ns = ?3 WHERE id = ?1",
                params![id, r.starts_ns, r.ends_ns],
            )?;
            tx.commit()?;
            MaintenanceWindow::try_from(r).map(Some)
        })
    }
}
