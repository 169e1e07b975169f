//! The PostgreSQL side of triage notes.

use super::PostgresStore;
use crate::model::{now_unix_nano, AnnotationRecord};
use crate::store::annotations::{insert_sql, note, select_sql};
use crate::store::sql::SqlParam;
use crate::store::StoreError;

impl PostgresStore {
    pub(super) async fn write_annotation(
        &self,
        a: AnnotationRecord,
    ) -> Result<AnnotationRecord, StoreError> {
        let ns = now_unix_nano();
        let client = self.client().await?;
        let row = client
            .query_one(
                &insert_sql('$'),
                &[&a.target, &a.id, &a.action, &a.value, &a.by, &ns],
            )
            .await?;
        Ok(note(
            row.get(0),
            a.target,
            a.id,
            a.action,
            a.value,
            a.by,
            ns,
        ))
    }

    pub(super) async fn read_annotations(
        &self,
        target: String,
        ids: Vec<String>,
    ) -> Result<Vec<AnnotationRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let n = ids.len();
        let params: Vec<SqlParam> = std::iter::once(target)
            .chain(ids)
            .map(SqlParam::Text)
            .collect();
        Ok(self
            .query(&select_sql('$', n), &params)
            .await?
            .iter()
            .map(|r| {
                note(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .collect())
    }
}
