//! The SQLite side of run-time silences. Writes go through the writer thread (it stays the
//! only writer), each in its own small transaction; reads use the read pool.

use futures::future::BoxFuture;
use rusqlite::{params, OptionalExtension as _};

use super::SqliteStore;
use crate::store::ended_span;
use crate::store::silences::{silence_values, SilenceRow, StoredSilence, SILENCE_COLUMNS};
use crate::store::StoreError;

fn silence_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SilenceRow> {
    Ok(SilenceRow {
        id: r.get(0)?,
        created_by: r.get(1)?,
        comment: r.get(2)?,
        matchers: r.get(3)?,
        starts_ns: r.get(4)?,
        ends_ns: r.get(5)?,
        created_ns: r.get(6)?,
    })
}

impl SqliteStore {
    pub(super) fn read_silences(
        &self,
    ) -> BoxFuture<'static, Result<Vec<StoredSilence>, StoreError>> {
        self.read(|c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences ORDER BY starts_ns DESC, id"
                ))?
                .query_map([], silence_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(StoredSilence::try_from).collect()
        })
    }

    pub(super) fn write_silence(
        &self,
        s: StoredSilence,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.write_job(move |conn| {
            let (matchers, starts_ns, ends_ns, created_ns) = silence_values(&s);
            let c = &s.silence;
            let inserted = conn.execute(
                &format!(
                    "INSERT INTO silences ({SILENCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                params![
                    c.id,
                    c.created_by,
                    c.comment,
                    matchers,
                    starts_ns,
                    ends_ns,
                    created_ns
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("silence `{}`", c.id)));
            }
            Ok(())
        })
    }

    pub(super) fn expire_silence_at(
        &self,
        id: String,
        at_ns: i64,
    ) -> BoxFuture<'static, Result<Option<StoredSilence>, StoreError>> {
        self.write_job(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row = tx
                .query_row(
                    &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?1"),
                    [&id],
                    silence_row,
                )
                .optional()?;
            let Some(mut r) = row else {
                return Ok(None);
            };
            (r.starts_ns, r.ends_ns) = ended_span(r.starts_ns, r.ends_ns, at_ns);
            tx.execute(
                "UPDATE silences SET starts_ns = ?2, ends_ns = ?3 WHERE id = ?1",
                params![id, r.starts_ns, r.ends_ns],
            )?;
            tx.commit()?;
            StoredSilence::try_from(r).map(Some)
        })
    }
}
