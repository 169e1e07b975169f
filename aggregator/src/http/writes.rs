//! What every API write (`/api/v1/windows`, `/api/v1/silences`) shares: the write rules, the
//! checks of the fields both bodies have, and the refusals, each naming the JSON field it is
//! about (clients print the message as it is).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::api::error;
use super::AppState;
use crate::store::StoreError;

/// A refused request: status and message (small, unlike a `Response`).
pub(super) type Refusal = (StatusCode, String);

/// A 400 whose message starts with the field it is about: `"{field}: {message}"`.
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

/// The body of a create, once the write rules allow it; a body that does not parse is
/// refused as field `body`.
pub(super) fn new_body<T: DeserializeOwned>(st: &AppState, body: &Bytes) -> Result<T, Refusal> {
    check_writable(st)?;
    serde_json::from_slice(body).map_err(|e| bad("body", e))
}

/// `DELETE /api/v1/hosts/{host}/binding`: releases the host's collector binding, so the next
/// collector to report it owns it.
pub(super) async fn release_binding(
    axum::extract::State(st): axum::extract::State<AppState>,
    axum::extract::Path(host): axum::extract::Path<String>,
) -> Response {
    if let Err(r) = check_writable(&st) {
        return refuse(r);
    }
    match st.ownership.release(st.store.as_ref(), &host).await {
        Ok(previous) => {
            tracing::info!(message = "Released a host's collector binding.", host = host.as_str(), previous = ?previous);
            axum::Json(serde_json::json!({ "host": host, "released_from": previous }))
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

/// A conflict for an id that the configuration file defines: the API cannot change it.
pub(super) fn in_config(what: &str, id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        format!("{what} `{id}` is defined in the configuration file; edit it there"),
    )
}

/// `now` in Unix nanoseconds, as the store takes an end time.
pub(super) fn unix_ns(now: OffsetDateTime) -> i64 {
    i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

pub(super) async fn reload(st: &AppState) {
    if let Err(error) = st.routing.reload(st.store.as_ref()).await {
        // The periodic reload picks the change up later.
        tracing::warn!(message = "Reloading maintenance windows and silences failed.", %error);
    }
    // A window created active that requires a clean preflight alerts at once.
    if let Err(error) = st.routing.check_gates(st.store.as_ref()).await {
        tracing::warn!(message = "Checking preflight gates failed.", %error);
    }
}

/// Strings in a request body: a list, or one comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Strings {
    List(Vec<String>),
    Csv(String),
}

impl Strings {
    /// The trimmed, non-empty entries; none when the field is absent.
    pub(super) fn into_vec(s: Option<Strings>) -> Vec<String> {
        match s {
            None => Vec::new(),
            Some(Strings::List(v)) => v,
            Some(Strings::Csv(s)) => s.split(',').map(str::to_owned).collect(),
        }
        .into_iter()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect()
    }
}

/// Checks `starts_at` (RFC 3339 or `now`, the default) and exactly one of `ends_at` (RFC 3339)
/// and `duration`, and returns the span; it must end after it starts and after `now`.
pub(super) fn span(
    starts_at: Option<&str>,
    ends_at: Option<&str>,
    duration: Option<&str>,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), Refusal> {
    let starts_at = match starts_at.map(str::trim) {
        None | Some("now") | Some("") => now,
        Some(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| bad("starts_at", format!("{s:?} is not RFC 3339 or `now`: {e}")))?,
    };
    let ends_at = match (ends_at, duration) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(bad("ends_at", "give exactly one of ends_at and duration"))
        }
        (Some(s), None) => OffsetDateTime::parse(s.trim(), &Rfc3339)
            .map_err(|e| bad("ends_at", format!("{s:?} is not RFC 3339: {e}")))?,
        (None, Some(d)) => {
            let d = parse_duration(d).map_err(|e| bad("duration", e))?;
            starts_at
                .checked_add(d)
                .ok_or_else(|| bad("duration", "ends beyond the representable time"))?
        }
    };
    if ends_at <= starts_at {
        return Err(bad("ends_at", "must be after starts_at"));
    }
    if ends_at <= now {
        return Err(bad("ends_at", "is in the past"));
    }
    if ends_at - starts_at > MAX_SPAN {
        return Err(bad("ends_at", "is more than 366d after starts_at"));
    }
    Ok((starts_at, ends_at))
}

/// Longest window or silence: a year and a day. Longer ones are mistakes (or attacks that
/// mute every alert for good); a standing exception belongs in the configuration file.
pub(crate) const MAX_SPAN: time::Duration = time::Duration::days(366);

/// Parses a duration in the config vocabulary (`2h`, `90m`, `1h30m`, `45s`, `1d`, `1w`),
/// longer than zero and at most [`MAX_SPAN`].
pub(crate) fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration; e.g. 2h, 90m, 1h30m".into());
    }
    let d = patchwatch_config::Duration::parse(text)?.get();
    if d.is_zero() {
        return Err(format!("{text:?}: must be longer than zero"));
    }
    match time::Duration::try_from(d) {
        Ok(d) if d <= MAX_SPAN => Ok(d),
        _ => Err(format!("{text:?} is too long; at most 366d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2h"), Ok(time::Duration::hours(2)));
        assert_eq!(parse_duration("1h30m"), Ok(time::Duration::minutes(90)));
        assert_eq!(parse_duration(" 1d "), Ok(time::Duration::days(1)));
        assert_eq!(parse_duration("1w"), Ok(time::Duration::weeks(1)));
        assert_eq!(parse_duration("1.5h"), Ok(time::Duration::minutes(90)));
        for bad in [
            "",
            "2",
            "h",
            "2x",
            "0m",
            "-1h",
            "2147483647w",
            "367d",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
