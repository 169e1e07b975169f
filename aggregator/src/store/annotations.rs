//! Triage notes (acknowledge, assign, note) as both backends store them: one row per note,
//! never updated, so who did what and when stays visible.

use crate::model::{rfc3339, AnnotationRecord};

/// Column list of note queries, in [`note`] order.
pub(crate) const ANNOTATION_COLUMNS: &str =
    "seq, target_kind, target_id, action, value, author, created_ns";

/// The note a row reads as.
pub(crate) fn note(
    seq: i64,
    target: String,
    id: String,
    action: String,
    value: String,
    by: String,
    created_ns: i64,
) -> AnnotationRecord {
    AnnotationRecord {
        seq,
        target,
        id,
        action,
        value,
        by,
        at: rfc3339(created_ns),
    }
}

/// `SELECT` of the notes on `n` target ids (parameters 2..=n+1; parameter 1 is the kind).
pub(crate) fn select_sql(placeholder: char, n: usize) -> String {
    let ids: Vec<String> = (2..n + 2).map(|i| format!("{placeholder}{i}")).collect();
    format!(
        "SELECT {ANNOTATION_COLUMNS} FROM annotations WHERE target_kind = {placeholder}1 \
         AND target_id IN ({}) ORDER BY seq",
        ids.join(", ")
    )
}

/// `INSERT` of one note returning its seq (parameters: kind, id, action, value, author, ns).
pub(crate) fn insert_sql(placeholder: char) -> String {
    let p: Vec<String> = (1..=6).map(|i| format!("{placeholder}{i}")).collect();
    format!(
        "INSERT INTO annotations (target_kind, target_id, action, value, author, created_ns) \
         VALUES ({}) RETURNING seq",
        p.join(", ")
    )
}
