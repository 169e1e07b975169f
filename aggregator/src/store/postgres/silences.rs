//! The PostgreSQL side of run-time silences.

use tokio_postgres::Row;

use super::PostgresStore;
use crate::store::ended_span;
use crate::store::silences::{silence_values, SilenceRow, StoredSilence, SILENCE_COLUMNS};
use crate::store::StoreError;

fn silence_row(r: &Row) -> SilenceRow {
    SilenceRow {
        id: r.get(0),
        created_by: r.get(1),
        comment: r.get(2),
        matchers: r.get(3),
        starts_ns: r.get(4),
        ends_ns: r.get(5),
        created_ns: r.get(6),
    }
}

impl PostgresStore {
    pub(super) async fn read_silences(&self) -> Result<Vec<StoredSilence>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {SILENCE_COLUMNS} FROM silences ORDER BY starts_ns DESC, id"),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| StoredSilence::try_from(silence_row(r)))
            .collect()
    }

    pub(super) async fn write_silence(&self, s: StoredSilence) -> Result<(), StoreError> {
        let (matchers, starts_ns, ends_ns, created_ns) = silence_values(&s);
        let c = &s.silence;
        let client = self.client().await?;
        let inserted = client
            .execute(
                &format!(
                    "INSERT INTO silences ({SILENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[
                    &c.id,
                    &c.created_by,
                    &c.comment,
                    &matchers,
                    &starts_ns,
                    &ends_ns,
                    &created_ns,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("silence `{}`", c.id)));
        }
        Ok(())
    }

    pub(super) async fn expire_silence_at(
        &self,
        id: String,
        at_ns: i64,
    ) -> Result<Option<StoredSilence>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // FOR UPDATE: two aggregators expiring the same silence serialise here.
        let row = tx
            .query_opt(
                &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut r = silence_row(&row);
        (r.starts_ns, r.ends_ns) = ended_span(r.starts_ns, r.ends_ns, at_ns);
        tx.execute(
            "UPDATE silences SET starts_ns = $2, ends_ns = $3 WHERE id = $1",
            &[&id, &r.starts_ns, &r.ends_ns],
        )
        .await?;
        tx.commit().await?;
        StoredSilence::try_from(r).map(Some)
    }
}
