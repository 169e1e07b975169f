//! Builders of wire messages (findings, run updates, batches) with realistic values, so a
//! test names only what it is about.

use patchwatch_proto::{Batch, Finding, HostInfo, Remediation, RunUpdate};

use crate::now_ns;

/// Host information for `name` (FQDN under contoso.local, UTC+1).
pub fn host(name: &str) -> HostInfo {
    HostInfo {
        hostname: name.into(),
        fqdn: format!("{}.contoso.local", name.to_lowercase()),
        os: "Windows Server 2019".into(),
        agent_version: "0.1.0".into(),
        time_zone: "W. Europe Standard Time".into(),
        utc_offset_seconds: 3600,
    }
}

/// A failed-setup finding `id` of `rule` on `hostname`, in run `run`.
pub fn finding(id: &str, hostname: &str, rule: &str, severity: i32, run: &str) -> Finding {
    Finding {
        id: id.into(),
        rule_id: rule.into(),
        rule_version: 2,
        title: format!("{rule}: setup failed"),
        severity,
        host: Some(host(hostname)),
        log_kind: 1,
        source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
        byte_offset: 4096,
        line_number: 77,
        run_id: run.into(),
        event_time_unix_nano: 1_763_700_000_000_000_000,
        observed_time_unix_nano: 1_763_700_001_000_000_000,
        evidence: vec![
            "[11/21/2025 06:00:00.0000] [2] [ERROR] The following error was generated when \"$error.Clear();\"".into(),
            "[11/21/2025 06:00:00.0001] [2] [ERROR] Access to the path is denied.".into(),
        ],
        fields: [("error_code".to_owned(), "0x80070005".to_owned())].into_iter().collect(),
        remediation: Some(Remediation {
            summary: "Grant the setup account write access and rerun setup.".into(),
            steps: vec!["Check the ACL on the path.".into(), "Rerun Setup.exe /mode:Upgrade.".into()],
            links: vec!["https://learn.microsoft.com/exchange/troubleshoot".into()],
        }),
        labels: [("site".to_owned(), "dc1".to_owned())].into_iter().collect(),
        category: "permissions".into(),
        primary: false,
        ..Finding::default()
    }
}

/// A run update of `run` on `hostname`, last updated at `updated` (Unix ns).
pub fn run_update(run: &str, hostname: &str, outcome: i32, phase: &str, updated: i64) -> RunUpdate {
    RunUpdate {
        run_id: run.into(),
        host: hostname.into(),
        source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
        log_kind: 1,
        run_index: 1,
        outcome,
        mode: "Upgrade".into(),
        product: "Microsoft Exchange Server 2019".into(),
        target_build: "15.2.1544.4".into(),
        installed_build: "15.2.1258.12".into(),
        phase: phase.into(),
        exit_code: None,
        primary_finding_id: String::new(),
        started_unix_nano: 1_763_699_000_000_000_000,
        updated_unix_nano: updated,
        last_line_unix_nano: updated,
    }
}

/// A batch of `n` findings `{prefix}-{i}` on `hostname`, plus one run update.
pub fn batch(collector: &str, sequence: u64, hostname: &str, prefix: &str, n: usize) -> Batch {
    let run = format!("{hostname}-run-1");
    Batch {
        collector_id: collector.into(),
        sequence,
        findings: (0..n)
            .map(|i| {
                finding(
                    &format!("{prefix}-{i}"),
                    hostname,
                    &format!("EXCH-{:03}", i % 7),
                    (i % 5) as i32 + 1,
                    &run,
                )
            })
            .collect(),
        run_updates: vec![run_update(
            &run,
            hostname,
            1,
            &format!("phase {sequence}"),
            1_763_700_000_000_000_000 + sequence as i64,
        )],
        host: Some(host(hostname)),
    }
}

/// A [`finding`] observed now (windows and silences cover the present; its fixed times are
/// old).
pub fn fresh(id: &str, host: &str, rule: &str, severity: i32) -> Finding {
    let mut f = finding(id, host, rule, severity, &format!("{host}-run-1"));
    f.observed_time_unix_nano = now_ns();
    f
}

/// Batch `sequence` of collector `c1` with `findings` (at least one; the host is the first's).
pub fn batch_of(sequence: u64, findings: Vec<Finding>) -> Batch {
    Batch {
        collector_id: "c1".into(),
        sequence,
        host: findings[0].host.clone(),
        findings,
        run_updates: vec![],
    }
}
