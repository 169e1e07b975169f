//! What the store keeps for forwarding: each destination's cursor over the finding sequence.
//!
//! Findings are read for forwarding in [`ForwardPosition`] order. On SQLite that is simply
//! `seq` (one writer commits in `seq` order, so a reader sees a gap-free prefix). On PostgreSQL
//! concurrent transactions can commit a higher `seq` before a lower one, so each finding also
//! records the id of the transaction that wrote it (`xid`), and only findings of transactions
//! older than every running one are read, in `(xid, seq)` order: once such a row is visible,
//! no row can ever appear before it. A long-running write transaction on the same PostgreSQL
//! server therefore delays forwarding (never loses anything) until it ends.

use patchwatch_proto::{FileIdentity, Finding, HostInfo, Remediation};
use serde::Serialize;

use super::{FindingRow, StoreError};
use crate::model::FindingDetail;

/// A place in the forwarding order. `xid` is always 0 on SQLite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ForwardPosition {
    /// PostgreSQL transaction id of the writer (0 on SQLite and for rows older than the
    /// forwarding migration).
    pub xid: i64,
    /// The finding's store sequence number.
    pub seq: i64,
}

impl ForwardPosition {
    /// Before every finding.
    pub const START: ForwardPosition = ForwardPosition { xid: 0, seq: 0 };
}

/// A destination's persisted cursor: everything at or before `position` was confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardCursor {
    /// Destination name: `router` or `sink:<name>`.
    pub destination: String,
    /// Last confirmed position.
    pub position: ForwardPosition,
    /// When it was last advanced (Unix ns).
    pub updated_ns: i64,
}

/// A finding read for forwarding, with its position.
#[derive(Debug, Clone)]
pub struct ForwardItem {
    /// Where it is in the forwarding order.
    pub position: ForwardPosition,
    /// The stored finding as the collector sent it, with its host filled in (the batch's
    /// host when the finding named none) and the maintenance-window label it was stored with.
    pub finding: Finding,
}

impl ForwardItem {
    /// Rebuilds the wire finding from its row: every field of `patchwatch.v1.Finding` is
    /// stored, either in a column or in the `detail` document.
    pub(crate) fn from_row(position: ForwardPosition, r: FindingRow) -> Result<Self, StoreError> {
        let d: FindingDetail = serde_json::from_str(&r.detail)
            .map_err(|e| StoreError::Corrupt(format!("finding {}: detail: {e}", r.id)))?;
        let h = d.host_info;
        let finding = Finding {
            id: r.id,
            rule_id: r.rule_id,
            rule_version: u32::try_from(r.rule_version).unwrap_or(u32::MAX),
            title: r.title,
            severity: r.severity_num,
            host: Some(HostInfo {
                hostname: if h.hostname.is_empty() {
                    r.host
                } else {
                    h.hostname
                },
                fqdn: h.fqdn,
                os: h.os,
                agent_version: h.agent_version,
                time_zone: h.time_zone,
                utc_offset_seconds: h.utc_offset_seconds,
            }),
            log_kind: r.log_kind,
            source_path: r.source_path,
            file: Some(FileIdentity {
                device: d.file.device,
                inode: d.file.inode,
                fingerprint: d.file.fingerprint,
            }),
            byte_offset: u64::try_from(r.byte_offset).unwrap_or(0),
            line_number: u64::try_from(r.line_number).unwrap_or(0),
            run_id: r.run_id,
            event_time_unix_nano: r.event_ns,
            observed_time_unix_nano: r.observed_ns,
            evidence: d.evidence,
            fields: d.fields.into_iter().collect(),
            remediation: Some(Remediation {
                summary: d.remediation.summary,
                steps: d.remediation.steps,
                links: d.remediation.links,
            })
            .filter(|r| !(r.summary.is_empty() && r.steps.is_empty() && r.links.is_empty())),
            labels: d.labels.into_iter().collect(),
            category: r.category,
            primary: r.primary,
        };
        Ok(ForwardItem { position, finding })
    }
}

/// Upserts a cursor, never moving it back. Parameters: destination, xid, seq, updated_ns.
/// Same text for both dialects but the placeholders.
pub(crate) fn upsert_cursor_sql(p: char) -> String {
    format!(
        "INSERT INTO forward_cursors (destination, xid, seq, updated_ns) \
         VALUES ({p}1, {p}2, {p}3, {p}4) ON CONFLICT (destination) DO UPDATE SET \
         xid = excluded.xid, seq = excluded.seq, updated_ns = excluded.updated_ns \
         WHERE (excluded.xid, excluded.seq) > (forward_cursors.xid, forward_cursors.seq)"
    )
}

/// Every cursor.
pub(crate) const SELECT_CURSORS: &str =
    "SELECT destination, xid, seq, updated_ns FROM forward_cursors ORDER BY destination";
