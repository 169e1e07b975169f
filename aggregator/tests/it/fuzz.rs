//! Property tests of batch validation in place of fuzzing (`cargo fuzz` needs a nightly
//! compiler): arbitrary wire bytes and batches with hostile field values. Decoding never
//! panics; every item is either accepted or rejected once, with a reason naming the field;
//! nothing accepted breaks a rule the store relies on.

use std::collections::HashSet;

use patchwatch_aggregator::ingest::validate::{
    validate_with, ItemRules, TimeBounds, Validated, MAX_ID_BYTES,
};
use patchwatch_proto::{Batch, Finding, HostInfo, RunUpdate};
use proptest::prelude::*;
use prost::Message;

/// Receive time of every batch: 2026-01-01T00:00:00Z.
const NOW_NS: i64 = 1_767_225_600_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   ".to_owned()),
        "[a-f0-9]{1,40}",
        Just("x".repeat(MAX_ID_BYTES)),
        Just("x".repeat(MAX_ID_BYTES + 1)),
        "\\PC{0,12}",
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "EX-A", "EX-B", "ex-a", "EVIL"]).prop_map(str::to_owned)
}

fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(-1),
        (-48i64..48).prop_map(|h| NOW_NS + h * HOUR_NS),
        any::<i64>(),
    ]
}

fn finding() -> impl Strategy<Value = Finding> {
    (
        (id(), id(), -2i32..8, host(), any::<i32>(), id()),
        (time(), time(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |((id, rule_id, severity, host, log_kind, run_id), (ev, obs, off, line))| Finding {
                id,
                rule_id,
                severity,
                host: (!host.is_empty()).then(|| HostInfo {
                    hostname: host,
                    ..HostInfo::default()
                }),
                log_kind,
                run_id,
                event_time_unix_nano: ev,
                observed_time_unix_nano: obs,
                byte_offset: off,
                line_number: line,
                evidence: vec!["<script>\u{0}".to_owned()],
                ..Finding::default()
            },
        )
}

fn run_update() -> impl Strategy<Value = RunUpdate> {
    (
        id(),
        host(),
        any::<i32>(),
        any::<i32>(),
        time(),
        time(),
        time(),
    )
        .prop_map(
            |(run_id, host, log_kind, outcome, started, updated, last)| RunUpdate {
                run_id,
                host,
                log_kind,
                outcome,
                started_unix_nano: started,
                updated_unix_nano: updated,
                last_line_unix_nano: last,
                ..RunUpdate::default()
            },
        )
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        prop::collection::vec(finding(), 0..12),
        prop::collection::vec(run_update(), 0..12),
        host(),
    )
        .prop_map(|(findings, run_updates, h)| Batch {
            collector_id: "fuzz".to_owned(),
            sequence: 1,
            findings,
            run_updates,
            host: Some(HostInfo {
                hostname: h,
                ..HostInfo::default()
            }),
        })
}

/// Validates as a collector owning `EX-A` only, with one day of past and one hour of future.
fn check(batch: Batch) -> Result<(), TestCaseError> {
    let (n_findings, n_runs) = (batch.findings.len(), batch.run_updates.len());
    let owns = |h: &str| {
        if h == "EX-A" {
            Ok(())
        } else {
            Err(format!("host {h} belongs to another collector"))
        }
    };
    let times = TimeBounds {
        max_future_ns: HOUR_NS,
        max_past_ns: 24 * HOUR_NS,
    };
    let Validated {
        batch: valid,
        rejected,
    } = validate_with(
        batch,
        "fuzz".to_owned(),
        NOW_NS,
        &ItemRules { owns: &owns, times },
    );
    prop_assert_eq!(
        valid.findings.len() + valid.runs.len() + rejected.len(),
        n_findings + n_runs,
        "every item accepted or rejected, once"
    );
    let mut seen = HashSet::new();
    for r in &rejected {
        let bound = if r.run_update { n_runs } else { n_findings };
        prop_assert!((r.index as usize) < bound, "rejection index out of range");
        prop_assert!(seen.insert((r.run_update, r.index)), "item rejected twice");
        prop_assert!(
            ["id", "rule_id", "severity", "host", "unix_nano"]
                .iter()
                .any(|w| r.reason.contains(w)),
            "reason names no field: {}",
            r.reason
        );
    }
    let in_bounds = |t: i64| t == 0 || (NOW_NS - 24 * HOUR_NS..=NOW_NS + HOUR_NS).contains(&t);
    for f in &valid.findings {
        prop_assert!(!f.id.trim().is_empty() && f.id.len() <= MAX_ID_BYTES);
        prop_assert!((1..=5).contains(&f.severity));
        prop_assert_eq!(&f.host, "EX-A");
        prop_assert!((0..=4).contains(&f.log_kind));
        prop_assert!(in_bounds(f.event_ns) && in_bounds(f.observed_ns));
        prop_assert!(f.byte_offset >= 0 && f.line_number >= 0);
    }
    for r in &valid.runs {
        prop_assert!(!r.run_id.trim().is_empty() && r.run_id.len() <= MAX_ID_BYTES);
        prop_assert_eq!(&r.host, "EX-A");
        prop_assert!((0..=4).contains(&r.outcome) && (0..=4).contains(&r.log_kind));
        prop_assert!(in_bounds(r.started_ns) && in_bounds(r.updated_ns));
    }
    prop_assert!(
        valid.hosts.iter().all(|h| h.info.hostname == "EX-A"),
        "host info stored only for an owned host"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Hostile field values in well-formed batches.
    #[test]
    fn hostile_batches_are_sorted_into_valid_and_rejected(b in batch()) {
        check(b)?;
    }

    /// Arbitrary bytes on the wire, and real batches with bytes flipped: decoding fails
    /// cleanly or gives a batch that validation handles.
    #[test]
    fn arbitrary_wire_bytes_decode_or_fail_cleanly(
        b in batch(),
        noise in prop::collection::vec(any::<u8>(), 0..200),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
    ) {
        if let Ok(decoded) = Batch::decode(noise.as_slice()) {
            check(decoded)?;
        }
        let mut wire = b.encode_to_vec();
        for (at, x) in flips {
            if !wire.is_empty() {
                let i = at % wire.len();
                wire[i] ^= x;
            }
        }
        if let Ok(decoded) = Batch::decode(wire.as_slice()) {
            check(decoded)?;
        }
    }
}
