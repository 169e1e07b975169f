//! Silences created at run time: the stored shape shared by both backends.
//!
//! A row keeps the matchers as one JSON object (`rule_ids`, `severities`, `hosts`, `labels`)
//! and the time range as Unix nanoseconds, so that expiring a silence is one `UPDATE` of
//! `ends_ns` and a new matcher kind needs no migration.

use std::collections::BTreeMap;

use crate::routing::SilenceConfig;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::StoreError;

/// A silence as stored: the routing shape (with `starts_at` and `ends_at` always set) and
/// when it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSilence {
    /// The silence; `starts_at` and `ends_at` are `Some`.
    pub silence: SilenceConfig,
    /// When it was stored.
    pub created_at: OffsetDateTime,
}

/// Column list of silence queries, in [`SilenceRow`] order.
pub(crate) const SILENCE_COLUMNS: &str =
    "id, created_by, comment, matchers, starts_ns, ends_ns, created_ns";

/// The `matchers` column.
#[derive(Serialize, Deserialize)]
struct Matchers {
    #[serde(default)]
    rule_ids: Vec<String>,
    #[serde(default)]
    severities: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A silence row as both backends read it.
pub(crate) struct SilenceRow {
    pub id: String,
    pub created_by: String,
    pub comment: String,
    pub matchers: String,
    pub starts_ns: i64,
    pub ends_ns: i64,
    pub created_ns: i64,
}

impl TryFrom<SilenceRow> for StoredSilence {
    type Error = StoreError;
    fn try_from(r: SilenceRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("silence {}: {what}: {e}", r.id))
        };
        let time = |what: &str, ns: i64| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).map_err(|e| corrupt(what, &e))
        };
        let m: Matchers = serde_json::from_str(&r.matchers).map_err(|e| corrupt("matchers", &e))?;
        Ok(StoredSilence {
            created_at: time("created_ns", r.created_ns)?,
            silence: SilenceConfig {
                starts_at: Some(time("starts_ns", r.starts_ns)?),
                ends_at: Some(time("ends_ns", r.ends_ns)?),
                id: r.id,
                comment: r.comment,
                created_by: r.created_by,
                rule_ids: m.rule_ids,
                severities: m.severities,
                hosts: m.hosts,
                labels: m.labels,
            },
        })
    }
}

/// Unix nanoseconds, saturating outside the `i64` range.
pub(crate) fn unix_ns(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(if t.unix_timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// The values a silence is stored as: matchers JSON, start, end and creation in Unix ns.
/// An absent start is "since ever", an absent end "until expired".
pub(crate) fn silence_values(s: &StoredSilence) -> (String, i64, i64, i64) {
    let c = &s.silence;
    let matchers = serde_json::to_string(&Matchers {
        rule_ids: c.rule_ids.clone(),
        severities: c.severities.clone(),
        hosts: c.hosts.clone(),
        labels: c.labels.clone(),
    })
    .expect("lists and a string map serialize");
    (
        matchers,
        c.starts_at.map_or(i64::MIN, unix_ns),
        c.ends_at.map_or(i64::MAX, unix_ns),
        unix_ns(s.created_at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_a_row() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let s = StoredSilence {
            silence: SilenceConfig {
                id: "s1".into(),
                comment: "CHG-1".into(),
                created_by: "alice".into(),
                rule_ids: vec!["EXCH-*".into()],
                severities: vec!["low".into()],
                hosts: vec!["EX0*".into()],
                labels: [("env".to_owned(), "prod".to_owned())].into(),
                starts_at: Some(now),
                ends_at: Some(now + time::Duration::HOUR),
            },
            created_at: now,
        };
        let (matchers, starts_ns, ends_ns, created_ns) = silence_values(&s);
        let back = StoredSilence::try_from(SilenceRow {
            id: "s1".into(),
            created_by: "alice".into(),
            comment: "CHG-1".into(),
            matchers,
            starts_ns,
            ends_ns,
            created_ns,
        })
        .unwrap();
        assert_eq!(back, s);
    }
}
