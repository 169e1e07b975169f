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
        (None, Some(d)) => starts_at + parse_duration(d).map_err(|e| bad("duration", e))?,
    };
    if ends_at <= starts_at {
        return Err(bad("ends_at", "must be after starts_at"));
    }
    if ends_at <= now {
        return Err(bad("ends_at", "is in the past"));
    }
    Ok((starts_at, ends_at))
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
}
