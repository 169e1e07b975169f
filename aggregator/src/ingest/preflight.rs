//! The preflight request an ack carries: which maintenance window covers the batch's host
//! now (`Ack.preflight_window`), so the collector takes a snapshot once at the start of each.
//!
//! Stateless: the aggregator names the window on every ack, the collector remembers the last
//! one it acted on. An aggregator restart, several aggregators on one database, or a lost
//! ack cannot lose or repeat a request.

use time::OffsetDateTime;

use crate::routing::WindowSet;

/// `<id>@<start, Unix seconds>` of the first window of `windows` covering `host` at `now`;
/// empty when none does. The start is part of it so that a window id used again for a later
/// window (a monthly "patch-tuesday") asks again.
pub(crate) fn window_key(windows: &WindowSet, host: &str, now: OffsetDateTime) -> String {
    if host.is_empty() {
        return String::new();
    }
    let Some(id) = windows.covers(host, now) else {
        return String::new();
    };
    windows
        .active(now)
        .into_iter()
        .find(|w| w.id == id)
        .map(|w| format!("{id}@{}", w.starts_at.unix_timestamp()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::MaintenanceWindow;

    fn window(id: &str, hosts: &[&str], start: OffsetDateTime, hours: i64) -> MaintenanceWindow {
        MaintenanceWindow {
            id: id.into(),
            name: id.into(),
            hosts: hosts.iter().map(|h| (*h).into()).collect(),
            starts_at: start,
            ends_at: start + time::Duration::hours(hours),
            require_clean_preflight: false,
        }
    }

    #[test]
    fn the_key_names_the_covering_window_and_its_start() {
        // The set drops windows that ended a week before the real clock: stay near it.
        let now = OffsetDateTime::now_utc();
        let set = WindowSet::default();
        assert_eq!(window_key(&set, "EX01", now), "");
        let start = now - time::Duration::minutes(5);
        set.replace(vec![
            window("later", &["ex*"], now + time::Duration::hours(1), 1),
            window("now", &["ex0?"], start, 2),
        ])
        .unwrap();
        assert_eq!(
            window_key(&set, "EX01", now),
            format!("now@{}", start.unix_timestamp())
        );
        // Another host, no host, and after the window: no request.
        assert_eq!(window_key(&set, "DC01", now), "");
        assert_eq!(window_key(&set, "", now), "");
        assert_eq!(window_key(&set, "EX01", now + time::Duration::hours(2)), "");
        // The same id reused for a later window is another request.
        let next = now + time::Duration::days(28);
        set.replace(vec![window("now", &["ex0?"], next, 2)])
            .unwrap();
        assert_eq!(
            window_key(&set, "EX01", next),
            format!("now@{}", next.unix_timestamp())
        );
    }
}
