//! Maintenance windows that require a clean preflight: which hosts in scope of such a window
//! are not clean, and the alert routed for each while the window is active or about to start
//! (within the router's `preflight_gate_lead`, so there is time to fix the host).
//!
//! A host is **clean** when its latest preflight run predicts no failure (no finding at high
//! severity or worse: the run succeeded) and is at most [`STALE_AFTER`] old. A host with no
//! preflight run at all, or only a stale one, is **not clean**: a window that asks for a clean
//! preflight accepts only hosts shown to be clean, and a host whose agent never ran one (or
//! stopped running them) is as likely to fail as any. A host is in scope when its name or
//! FQDN matches one of the window's globs.
//!
//! The alert is a finding of rule [`GATE_RULE`] handed to the router like any other, so routes,
//! silences and receivers (Alertmanager among them) apply. It is sent again at every check
//! (after each reload of the windows) while the host stays not clean, so the alert keeps firing,
//! and it resolves by its route's `resolve_after` once the host is clean or the window ends.
//! Before the window starts the alert has the same id, so it carries on into the window.

use patchwatch_proto::{Finding, HostInfo, Remediation, Severity};
use time::OffsetDateTime;

use crate::model::HostRecord;
use crate::routing::{host_glob, MaintenanceWindow, Router, MAINTENANCE_WINDOW_LABEL};

/// Rule id of the alert for a host that is not clean in a window requiring a clean preflight.
pub const GATE_RULE: &str = "patchwatch.preflight-gate";

/// How old a clean preflight may be and still count as clean: twice the agent's default
/// `[preflight] interval` of 6 h, so one missed snapshot is tolerated and two are not.
pub const STALE_AFTER: time::Duration = time::Duration::hours(12);

/// A host's preflight as a window gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// The host has reported no preflight run.
    Missing,
    /// Its latest preflight run predicts no failure, and is recent.
    Clean,
    /// Its latest preflight run predicts no failure but is older than [`STALE_AFTER`] (or
    /// carries no readable time): the server may have changed since.
    Stale {
        /// When that run was last updated (RFC 3339), if known.
        checked: Option<String>,
    },
    /// Its latest preflight run predicts a failure; the title of the finding that says so
    /// (without the "Will fail with: " prefix) and its id, when stored (else both empty).
    WillFail {
        /// What it will fail with.
        title: String,
        /// The finding, when stored.
        finding_id: Option<String>,
    },
}

impl Preflight {
    /// The verdict of `host`'s latest preflight run, now.
    pub fn of(host: &HostRecord) -> Self {
        Self::at(host, OffsetDateTime::now_utc())
    }

    /// The verdict of `host`'s latest preflight run at `now`. A predicted failure stays one
    /// however old it is: staleness only withdraws a clean verdict.
    pub fn at(host: &HostRecord, now: OffsetDateTime) -> Self {
        let Some(run) = &host.preflight else {
            return Self::Missing;
        };
        if run.outcome != "failed" {
            let checked = run.updated_time.as_ref().or(run.started_time.as_ref());
            let recent = checked
                .and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                })
                .is_some_and(|t| now - t <= STALE_AFTER);
            return if recent {
                Self::Clean
            } else {
                Self::Stale {
                    checked: checked.cloned(),
                }
            };
        }
        match &host.preflight_cause {
            Some(c) => Self::WillFail {
                title: strip_prefix(if c.title.is_empty() {
                    &c.rule_id
                } else {
                    &c.title
                })
                .to_owned(),
                finding_id: Some(c.finding_id.clone()),
            },
            // The run names a finding this aggregator has not stored (yet).
            None => Self::WillFail {
                title: String::new(),
                finding_id: None,
            },
        }
    }

    /// Whether a window requiring a clean preflight accepts the host.
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Clean)
    }

    /// Why the host is not clean, in words ("will fail: ...", "no preflight yet").
    pub fn reason(&self) -> String {
        match self {
            Self::Missing => "no preflight yet".to_owned(),
            Self::Clean => "clean".to_owned(),
            Self::Stale { .. } => format!(
                "preflight stale (none in the last {} h)",
                STALE_AFTER.whole_hours()
            ),
            Self::WillFail { title, .. } if title.is_empty() => "will fail".to_owned(),
            Self::WillFail { title, .. } => format!("will fail: {title}"),
        }
    }
}

/// A preflight finding's title without the "Will fail with: " its check puts first.
pub fn strip_prefix(title: &str) -> &str {
    title.strip_prefix("Will fail with: ").unwrap_or(title)
}

/// Whether `host` is in the scope of `window` (its name or FQDN matches a glob).
pub(crate) fn in_scope(window: &MaintenanceWindow, host: &HostRecord) -> bool {
    window
        .hosts
        .iter()
        .filter_map(|g| host_glob(g).ok())
        .any(|g| g.is_match(&host.hostname) || (!host.fqdn.is_empty() && g.is_match(&host.fqdn)))
}

/// The hosts of `hosts` in scope of `window` that are not clean, with their verdicts; empty
/// when the window does not require a clean preflight.
pub(crate) fn blocked<'a>(
    window: &MaintenanceWindow,
    hosts: &'a [HostRecord],
) -> Vec<(&'a HostRecord, Preflight)> {
    if !window.require_clean_preflight {
        return Vec::new();
    }
    hosts
        .iter()
        .filter(|h| in_scope(window, h))
        .map(|h| (h, Preflight::of(h)))
        .filter(|(_, p)| !p.is_clean())
        .collect()
}

/// The alert finding for `host` not being clean in `window`, observed at `now`. Its id is the
/// preflight finding's (so the alert links to it) or one made of window and host.
pub(crate) fn alert(
    window: &MaintenanceWindow,
    host: &HostRecord,
    verdict: &Preflight,
    now: OffsetDateTime,
) -> Finding {
    let id = match verdict {
        Preflight::WillFail {
            finding_id: Some(id),
            ..
        } => id.clone(),
        _ => format!("preflight-gate-{}-{}", window.id, host.hostname),
    };
    let starts_in = window.starts_at - now;
    let when = if starts_in.is_positive() {
        // Rounded up: "in 0 min" would read as already started.
        format!(
            ", which starts in {} min",
            (starts_in.whole_seconds() + 59) / 60
        )
    } else {
        String::new()
    };
    let mut f = Finding {
        id,
        rule_id: GATE_RULE.to_owned(),
        rule_version: 1,
        title: format!(
            "{} is not clean for maintenance window {}{when}: {}",
            host.hostname,
            window.name,
            verdict.reason()
        ),
        severity: Severity::High as i32,
        host: Some(HostInfo {
            hostname: host.hostname.clone(),
            fqdn: host.fqdn.clone(),
            ..HostInfo::default()
        }),
        run_id: host
            .preflight
            .as_ref()
            .map(|r| r.run_id.clone())
            .unwrap_or_default(),
        observed_time_unix_nano: i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        category: "preflight".to_owned(),
        remediation: Some(Remediation {
            summary: format!(
                "Fix what the preflight of {} reports, or take it out of window {} before its \
                 update runs.",
                host.hostname, window.id
            ),
            ..Remediation::default()
        }),
        ..Finding::default()
    };
    f.fields.insert("window".to_owned(), window.id.clone());
    if let Ok(t) = window
        .starts_at
        .format(&time::format_description::well_known::Rfc3339)
    {
        f.fields.insert("window_starts_at".to_owned(), t);
    }
    f.fields.insert("preflight".to_owned(), verdict.reason());
    f.labels
        .insert(MAINTENANCE_WINDOW_LABEL.to_owned(), window.id.clone());
    f
}

/// The windows of `windows` a gate watches at `now`: those requiring a clean preflight that
/// are active, or start within `lead`.
pub(crate) fn watched(
    windows: Vec<MaintenanceWindow>,
    now: OffsetDateTime,
    lead: std::time::Duration,
) -> Vec<MaintenanceWindow> {
    windows
        .into_iter()
        .filter(|w| w.require_clean_preflight && w.starts_at - lead <= now && now < w.ends_at)
        .collect()
}

/// Every (window, host, verdict) where `host` is not clean in `window`, over the windows of
/// `active` that require a clean preflight.
pub(crate) fn all_blocked<'a>(
    active: &'a [MaintenanceWindow],
    hosts: &'a [HostRecord],
) -> Vec<(&'a MaintenanceWindow, &'a HostRecord, Preflight)> {
    active
        .iter()
        .filter(|w| w.require_clean_preflight)
        .flat_map(|w| blocked(w, hosts).into_iter().map(move |(h, p)| (w, h, p)))
        .collect()
}

/// Routes an alert for each of `blocked` (see [`all_blocked`]); returns how many were queued.
pub(crate) fn route(
    router: &Router,
    blocked: &[(&MaintenanceWindow, &HostRecord, Preflight)],
    now: OffsetDateTime,
) -> usize {
    let mut queued = 0;
    for (w, h, verdict) in blocked {
        match router.submit(alert(w, h, verdict, now)) {
            Ok(()) => queued += 1,
            Err(error) => {
                // The next check sends it again.
                tracing::warn!(message = "Preflight gate alert not queued.", window = %w.id, host = %h.hostname, %error);
            }
        }
    }
    queued
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CauseRecord, RunRecord};

    fn rfc3339(t: OffsetDateTime) -> String {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    fn host(name: &str, preflight: Option<&str>) -> HostRecord {
        let run = preflight.map(|outcome| RunRecord {
            run_id: format!("preflight-{name}-1"),
            host: name.into(),
            source_path: "preflight".into(),
            log_kind: "plain".into(),
            run_index: 0,
            outcome: outcome.into(),
            mode: "preflight".into(),
            product: String::new(),
            target_build: String::new(),
            installed_build: String::new(),
            phase: String::new(),
            exit_code: None,
            primary_finding_id: String::new(),
            started_time: None,
            updated_time: Some(rfc3339(OffsetDateTime::now_utc())),
            last_line_time: None,
        });
        let cause = (preflight == Some("failed")).then(|| CauseRecord {
            run_id: format!("preflight-{name}-1"),
            finding_id: format!("{name}-f"),
            rule_id: "exchange.su.servicecontrol-execution-policy".into(),
            title: "Will fail with: ExecutionPolicy defined by Group Policy".into(),
            severity: "high".into(),
            primary: true,
        });
        HostRecord {
            hostname: name.into(),
            fqdn: format!("{name}.corp.example"),
            os: String::new(),
            agent_version: String::new(),
            time_zone: String::new(),
            collector_id: String::new(),
            first_seen: None,
            last_seen: None,
            latest_run: None,
            findings: Default::default(),
            findings_total: 0,
            state: "unspecified".into(),
            current_runs: Vec::new(),
            causes: Vec::new(),
            preflight: run,
            preflight_cause: cause,
            windows: Vec::new(),
        }
    }

    fn window(require: bool) -> MaintenanceWindow {
        let now = OffsetDateTime::now_utc();
        MaintenanceWindow {
            id: "cu15".into(),
            name: "CU15".into(),
            hosts: vec!["EX0*".into()],
            starts_at: now - time::Duration::minutes(1),
            ends_at: now + time::Duration::hours(1),
            require_clean_preflight: require,
        }
    }

    #[test]
    fn missing_and_failing_preflights_block_a_gated_window_only() {
        let hosts = [
            host("EX01", Some("succeeded")),
            host("EX02", None),
            host("EX03", Some("failed")),
            host("DC01", Some("failed")),
        ];
        let got: Vec<(&str, String)> = blocked(&window(true), &hosts)
            .into_iter()
            .map(|(h, p)| (h.hostname.as_str(), p.reason()))
            .collect();
        assert_eq!(
            got,
            [
                ("EX02", "no preflight yet".to_owned()),
                (
                    "EX03",
                    "will fail: ExecutionPolicy defined by Group Policy".to_owned()
                ),
            ]
        );
        assert!(blocked(&window(false), &hosts).is_empty());
    }

    #[test]
    fn the_alert_links_to_the_preflight_finding_and_names_the_window() {
        let w = window(true);
        let h = host("EX03", Some("failed"));
        let f = alert(&w, &h, &Preflight::of(&h), OffsetDateTime::now_utc());
        assert_eq!(f.id, "EX03-f");
        assert_eq!(f.rule_id, GATE_RULE);
        assert_eq!(f.severity(), Severity::High);
        assert_eq!(f.labels[MAINTENANCE_WINDOW_LABEL], "cu15");
        assert!(
            f.title.contains("EX03") && f.title.contains("CU15"),
            "{}",
            f.title
        );
        let missing = host("EX02", None);
        let f = alert(
            &w,
            &missing,
            &Preflight::of(&missing),
            OffsetDateTime::now_utc(),
        );
        assert_eq!(f.id, "preflight-gate-cu15-EX02");
    }

    #[test]
    fn a_clean_preflight_older_than_the_bound_is_stale_and_blocks() {
        let now = OffsetDateTime::now_utc();
        let checked = |age: time::Duration| {
            let mut h = host("EX01", Some("succeeded"));
            h.preflight.as_mut().unwrap().updated_time = Some(rfc3339(now - age));
            h
        };
        let fresh = checked(STALE_AFTER - time::Duration::minutes(1));
        assert_eq!(Preflight::at(&fresh, now), Preflight::Clean);
        let old = checked(STALE_AFTER + time::Duration::minutes(1));
        let verdict = Preflight::at(&old, now);
        assert!(matches!(verdict, Preflight::Stale { .. }), "{verdict:?}");
        assert!(verdict.reason().contains("stale"), "{}", verdict.reason());
        assert_eq!(blocked(&window(true), std::slice::from_ref(&old)).len(), 1);
        // A run with no readable time cannot show it is recent.
        let mut unknown = checked(time::Duration::ZERO);
        unknown.preflight.as_mut().unwrap().updated_time = Some("yesterday".into());
        assert!(!Preflight::at(&unknown, now).is_clean());
        // A predicted failure stays one, however old.
        let mut failing = host("EX03", Some("failed"));
        failing.preflight.as_mut().unwrap().updated_time = Some(rfc3339(now - STALE_AFTER * 2));
        assert!(matches!(
            Preflight::at(&failing, now),
            Preflight::WillFail { .. }
        ));
    }

    #[test]
    fn a_gated_window_is_watched_from_its_lead_time_until_it_ends() {
        let now = OffsetDateTime::now_utc();
        let at = |id: &str, starts_in: time::Duration, require: bool| MaintenanceWindow {
            id: id.into(),
            starts_at: now + starts_in,
            ends_at: now + starts_in + time::Duration::hours(2),
            ..window(require)
        };
        let windows = vec![
            at("active", -time::Duration::minutes(5), true),
            at("soon", time::Duration::minutes(30), true),
            at("later", time::Duration::hours(2), true),
            at("ungated", time::Duration::minutes(30), false),
            at("over", -time::Duration::hours(3), true),
        ];
        let ids = |lead| -> Vec<String> {
            watched(windows.clone(), now, lead)
                .into_iter()
                .map(|w| w.id)
                .collect()
        };
        assert_eq!(
            ids(std::time::Duration::from_secs(3600)),
            ["active", "soon"]
        );
        assert_eq!(ids(std::time::Duration::ZERO), ["active"]);
        // The alert before the start says when the window starts.
        let soon = at("soon", time::Duration::minutes(30), true);
        let h = host("EX02", None);
        let f = alert(&soon, &h, &Preflight::of(&h), now);
        assert!(f.title.contains("starts in 30 min"), "{}", f.title);
        assert_eq!(
            f.id, "preflight-gate-soon-EX02",
            "the same alert as once it starts"
        );
        let f = alert(&window(true), &h, &Preflight::of(&h), now);
        assert!(!f.title.contains("starts in"), "{}", f.title);
    }
}
