//! `/api/v1/windows`: list, create and end maintenance windows.
//!
//! These are the API's only writes. They follow the read rules (a token when tokens are
//! configured) and, in addition, are refused on a listener beyond loopback that has no tokens
//! (`http.allow_unauthenticated` opens reads only). Errors name the JSON field.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchwatch_sinks::routing::{MaintenanceWindow, WindowError};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::api::error;
use super::AppState;
use crate::store::StoreError;

/// A window as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct WindowRecord {
    #[serde(flatten)]
    window: MaintenanceWindow,
    /// `scheduled`, `active` or `ended`, at the time of the request.
    state: &'static str,
    /// `api` (stored) or `config` (`[[routing.windows]]`, read-only).
    source: &'static str,
}

impl WindowRecord {
    fn new(window: MaintenanceWindow, source: &'static str, now: OffsetDateTime) -> Self {
        let state = if now < window.starts_at {
            "scheduled"
        } else if now < window.ends_at {
            "active"
        } else {
            "ended"
        };
        Self {
            window,
            state,
            source,
        }
    }
}

/// The body of `POST /api/v1/windows`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWindow {
    /// Optional; generated from the name when absent.
    id: Option<String>,
    name: Option<String>,
    /// A list of host globs, or one comma-separated string.
    hosts: Option<Hosts>,
    /// RFC 3339 or `now` (the default).
    starts_at: Option<String>,
    /// RFC 3339; exactly one of `ends_at` and `duration`.
    ends_at: Option<String>,
    /// e.g. `2h`, `90m`, `1h30m`, `1d`.
    duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Hosts {
    List(Vec<String>),
    Csv(String),
}

/// A refused request: status and message (small, unlike a `Response`).
pub(super) type Refusal = (StatusCode, String);

pub(super) fn bad(field: &str, message: impl std::fmt::Display) -> Refusal {
    (StatusCode::BAD_REQUEST, format!("{field}: {message}"))
}

pub(super) fn refuse((status, message): Refusal) -> Response {
    error(status, message)
}

pub(super) fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Conflict(what) => {
            error(StatusCode::CONFLICT, format!("id: {what} already exists"))
        }
        e => {
            tracing::error!(message = "Window or silence store operation failed.", error = %e);
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable: {e}"),
            )
        }
    }
}

/// Refuses writes on a listener beyond loopback without tokens.
pub(super) fn check_writable(st: &AppState) -> Result<(), Refusal> {
    if st.writes_need_token && st.tokens.is_empty() {
        return Err((
            StatusCode::FORBIDDEN,
            "writes need a token: configure [[http.tokens]] on this non-loopback listener".into(),
        ));
    }
    Ok(())
}

pub(super) async fn reload(st: &AppState) {
    if let Err(error) = st.windows.reload(st.store.as_ref()).await {
        // The periodic reload picks the change up later.
        tracing::warn!(message = "Reloading maintenance windows and silences failed.", %error);
    }
}

pub(crate) async fn list(State(st): State<AppState>) -> Response {
    let now = OffsetDateTime::now_utc();
    let stored = match st.store.windows().await {
        Ok(w) => w,
        Err(e) => return store_error(e),
    };
    let items: Vec<WindowRecord> = st
        .windows
        .static_windows()
        .into_iter()
        .map(|w| WindowRecord::new(w, "config", now))
        .chain(stored.into_iter().map(|w| WindowRecord::new(w, "api", now)))
        .collect();
    Json(serde_json::json!({ "items": items })).into_response()
}

pub(crate) async fn create(State(st): State<AppState>, body: Bytes) -> Response {
    if let Err(r) = check_writable(&st) {
        return refuse(r);
    }
    let req: NewWindow = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(bad("body", e)),
    };
    let now = OffsetDateTime::now_utc();
    let window = match build(req, now) {
        Ok(w) => w,
        Err(r) => return refuse(r),
    };
    if st.windows.is_static(&window.id) {
        return error(
            StatusCode::CONFLICT,
            format!(
                "id: window `{}` is defined in the configuration file",
                window.id
            ),
        );
    }
    if let Err(e) = st.store.insert_window(window.clone()).await {
        return store_error(e);
    }
    tracing::info!(message = "Maintenance window created.", id = %window.id, hosts = ?window.hosts);
    reload(&st).await;
    (
        StatusCode::CREATED,
        Json(WindowRecord::new(window, "api", now)),
    )
        .into_response()
}

pub(crate) async fn end(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(r) = check_writable(&st) {
        return refuse(r);
    }
    if st.windows.is_static(&id) {
        return error(
            StatusCode::CONFLICT,
            format!("window `{id}` is defined in the configuration file; edit it there"),
        );
    }
    let now = OffsetDateTime::now_utc();
    let at_ns = i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    match st.store.end_window(id.clone(), at_ns).await {
        Ok(Some(window)) => {
            tracing::info!(message = "Maintenance window ended.", id = %window.id);
            reload(&st).await;
            Json(WindowRecord::new(window, "api", now)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no window with id {id:?}")),
        Err(e) => store_error(e),
    }
}

/// Checks a request and turns it into a window; errors name the field.
fn build(req: NewWindow, now: OffsetDateTime) -> Result<MaintenanceWindow, Refusal> {
    let name = req.name.unwrap_or_default().trim().to_owned();
    if name.is_empty() {
        return Err(bad("name", "required"));
    }
    let hosts: Vec<String> = match req.hosts {
        None => Vec::new(),
        Some(Hosts::List(v)) => v,
        Some(Hosts::Csv(s)) => s.split(',').map(str::to_owned).collect(),
    }
    .into_iter()
    .map(|h| h.trim().to_owned())
    .filter(|h| !h.is_empty())
    .collect();
    if hosts.is_empty() {
        return Err(bad("hosts", "list at least one host name or glob"));
    }
    let starts_at = match req.starts_at.as_deref().map(str::trim) {
        None | Some("now") | Some("") => now,
        Some(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| bad("starts_at", format!("{s:?} is not RFC 3339 or `now`: {e}")))?,
    };
    let ends_at = match (req.ends_at.as_deref(), req.duration.as_deref()) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(bad("ends_at", "give exactly one of ends_at and duration"))
        }
        (Some(s), None) => OffsetDateTime::parse(s.trim(), &Rfc3339)
            .map_err(|e| bad("ends_at", format!("{s:?} is not RFC 3339: {e}")))?,
        (None, Some(d)) => starts_at + parse_duration(d).map_err(|e| bad("duration", e))?,
    };
    if ends_at <= starts_at {
        return Err(bad("ends_at", "must be after starts_at"));
    }
    if ends_at <= now {
        return Err(bad("ends_at", "is in the past"));
    }
    let id = match req.id {
        Some(id) => id.trim().to_owned(),
        None => generated_id(&name, now),
    };
    let window = MaintenanceWindow {
        id,
        name,
        hosts,
        starts_at,
        ends_at,
    };
    window.validate().map_err(|e| {
        let field = match &e {
            WindowError::NoHosts(_) | WindowError::BadGlob { .. } => "hosts",
            WindowError::EndsBeforeStart(_) => "ends_at",
            _ => "id",
        };
        bad(field, e)
    })?;
    Ok(window)
}

/// `<slug of the name>-<6 hex digits of the time>`, within the 64 characters an id may have.
fn generated_id(name: &str, now: OffsetDateTime) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(48).collect();
    let stamp = (now.unix_timestamp_nanos() / 1_000) as u64 & 0xff_ffff;
    if slug.is_empty() {
        format!("window-{stamp:06x}")
    } else {
        format!("{}-{stamp:06x}", slug.trim_end_matches('-'))
    }
}

/// Parses `2h`, `90m`, `1h30m`, `45s`, `1d`, `1w`.
pub(crate) fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let text = s.trim();
    let mut total = time::Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration; e.g. 2h, 90m, 1h30m".into());
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .count();
        if digits == 0 || unit_len == 0 {
            return Err(format!("{text:?} is not a duration; e.g. 2h, 90m, 1h30m"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        let unit = match &rest[digits..digits + unit_len] {
            "s" => time::Duration::SECOND,
            "m" => time::Duration::MINUTE,
            "h" => time::Duration::HOUR,
            "d" => time::Duration::DAY,
            "w" => time::Duration::WEEK,
            u => return Err(format!("{text:?}: unknown unit {u:?}; use s, m, h, d or w")),
        };
        total = unit
            .checked_mul(i32::try_from(n).map_err(|_| format!("{text:?}: number too large"))?)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| format!("{text:?}: too long"))?;
        rest = &rest[digits + unit_len..];
    }
    if total.is_zero() {
        return Err(format!("{text:?}: must be longer than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2h"), Ok(time::Duration::hours(2)));
        assert_eq!(parse_duration("1h30m"), Ok(time::Duration::minutes(90)));
        assert_eq!(parse_duration(" 1d "), Ok(time::Duration::days(1)));
        for bad in ["", "2", "h", "2x", "0m", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_valid() {
        let now = OffsetDateTime::now_utc();
        let id = generated_id("CU15 rollout, wave 2!", now);
        assert!(id.starts_with("cu15-rollout-wave-2-"), "{id}");
        let id2 = generated_id("   ", now);
        assert!(id2.starts_with("window-"), "{id2}");
        let long = generated_id(&"x".repeat(200), now);
        assert!(long.len() <= 64);
        for id in [id, id2, long] {
            MaintenanceWindow {
                id,
                name: "n".into(),
                hosts: vec!["h".into()],
                starts_at: now,
                ends_at: now + time::Duration::HOUR,
            }
            .validate()
            .unwrap();
        }
    }
}
