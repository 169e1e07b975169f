//! The SQLite side of triage notes: writes on the writer thread, reads on the read pool.

use futures::future::BoxFuture;
use rusqlite::params;

use super::SqliteStore;
use crate::model::{now_unix_nano, AnnotationRecord};
use crate::store::annotations::{insert_sql, note, select_sql};
use crate::store::StoreError;

impl SqliteStore {
    pub(super) fn write_annotation(
        &self,
        a: AnnotationRecord,
    ) -> BoxFuture<'static, Result<AnnotationRecord, StoreError>> {
        self.write_job(move |conn| {
            let ns = now_unix_nano();
            let seq: i64 = conn
                .prepare_cached(&insert_sql('?'))?
                .query_row(params![a.target, a.id, a.action, a.value, a.by, ns], |r| {
                    r.get(0)
                })?;
            Ok(note(seq, a.target, a.id, a.action, a.value, a.by, ns))
        })
    }

    pub(super) fn read_annotations(
        &self,
        target: String,
        ids: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<AnnotationRecord>, StoreError>> {
        self.read(move |c| {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let params = std::iter::once(&target).chain(ids.iter());
            let rows = c
                .prepare_cached(&select_sql('?', ids.len()))?
                .query_map(rusqlite::params_from_iter(params), |r| {
                    Ok(note(
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }
}
