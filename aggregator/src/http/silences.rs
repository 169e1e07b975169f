//! `/api/v1/silences`: list, create and expire silences at run time.
//!
//! A silence stops notifications (Alertmanager alerts and every other routing receiver) for
//! the findings it matches while it is active; the findings are still stored and forwarded to
//! the `[sinks]`. Stored silences sit beside the configured `[[routing.silences]]` (listed
//! read-only with `source = "config"`), are loaded by every aggregator sharing the database
//! (see `windows::RoutingState`), and follow the same write rules as windows: a token when tokens
//! are configured, refused beyond loopback without one. Errors name the JSON field.

use std::collections::BTreeMap;

use crate::routing::{RoutingError, SilenceConfig};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::api::error;
use super::writes::{
    bad, check_writable, in_config, new_body, refuse, reload, span, store_error, unix_ns, Refusal,
    Strings,
};
use super::AppState;
use crate::store::StoredSilence;

/// A silence as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct SilenceRecord {
    #[serde(flatten)]
    silence: SilenceConfig,
    /// `pending`, `active` or `expired`, at the time of the request.
    state: &'static str,
    /// `api` (stored) or `config` (`[[routing.silences]]`, read-only).
    source: &'static str,
    /// When it was stored (RFC 3339); absent for configured silences.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    created_at: Option<OffsetDateTime>,
}

impl SilenceRecord {
    fn new(
        silence: SilenceConfig,
        source: &'static str,
        created_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Self {
        let state = if silence.starts_at.is_some_and(|s| now < s) {
            "pending"
        } else if silence.is_active(now) {
            "active"
        } else {
            "expired"
        };
        Self {
            silence,
            state,
            source,
            created_at,
        }
    }

    fn stored(s: StoredSilence, now: OffsetDateTime) -> Self {
        Self::new(s.silence, "api", Some(s.created_at), now)
    }
}

/// The body of `POST /api/v1/silences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    /// Optional; generated when absent.
    id: Option<String>,
    /// Required: why (ticket, change).
    comment: Option<String>,
    /// Who; defaults to the id of the token the request presented.
    created_by: Option<String>,
    /// Rule ids or globs: a list or one comma-separated string.
    rule_ids: Option<Strings>,
    /// Severity names: a list or one comma-separated string.
    severities: Option<Strings>,
    /// Host globs: a list or one comma-separated string.
    hosts: Option<Strings>,
    /// Labels that must all match.
    labels: Option<BTreeMap<String, String>>,
    /// RFC 3339 or `now` (the default).
    starts_at: Option<String>,
    /// RFC 3339; exactly one of `ends_at` and `duration`.
    ends_at: Option<String>,
    /// e.g. `2h`, `90m`, `1d`.
    duration: Option<String>,
}

pub(crate) async fn list(State(st): State<AppState>) -> Response {
    let now = OffsetDateTime::now_utc();
    let stored = match st.store.silences().await {
        Ok(s) => s,
        Err(e) => return store_error(e),
    };
    let items: Vec<SilenceRecord> = st
        .routing
        .config_silences()
        .into_iter()
        .map(|s| SilenceRecord::new(s, "config", None, now))
        .chain(stored.into_iter().map(|s| SilenceRecord::stored(s, now)))
        .collect();
    Json(serde_json::json!({ "items": items })).into_response()
}

pub(crate) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: NewSilence = match new_body(&st, &body) {
        Ok(r) => r,
        Err(r) => return refuse(r),
    };
    let token_id = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .and_then(|t| st.tokens.lookup(t))
        .map(str::to_owned);
    let now = OffsetDateTime::now_utc();
    let silence = match build(req, token_id, now) {
        Ok(s) => s,
        Err(r) => return refuse(r),
    };
    if st
        .routing
        .config_silences()
        .iter()
        .any(|c| c.id == silence.id)
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "id: silence `{}` is defined in the configuration file",
                silence.id
            ),
        );
    }
    let stored = StoredSilence {
        silence,
        created_at: now,
    };
    if let Err(e) = st.store.insert_silence(stored.clone()).await {
        return store_error(e);
    }
    tracing::info!(message = "Silence created.", id = %stored.silence.id,
        created_by = %stored.silence.created_by, comment = %stored.silence.comment);
    reload(&st).await;
    (
        StatusCode::CREATED,
        Json(SilenceRecord::stored(stored, now)),
    )
        .into_response()
}

pub(crate) async fn expire(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(r) = check_writable(&st) {
        return refuse(r);
    }
    if st.routing.config_silences().iter().any(|c| c.id == id) {
        return in_config("silence", &id);
    }
    let now = OffsetDateTime::now_utc();
    match st.store.expire_silence(id.clone(), unix_ns(now)).await {
        Ok(Some(s)) => {
            tracing::info!(message = "Silence expired.", id = %s.silence.id);
            reload(&st).await;
            Json(SilenceRecord::stored(s, now)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no silence with id {id:?}")),
        Err(e) => store_error(e),
    }
}

/// Checks a request and turns it into a silence; errors name the field.
fn build(
    req: NewSilence,
    token_id: Option<String>,
    now: OffsetDateTime,
) -> Result<SilenceConfig, Refusal> {
    let comment = req.comment.unwrap_or_default().trim().to_owned();
    if comment.is_empty() {
        return Err(bad("comment", "required: say why (ticket, change)"));
    }
    let created_by = req
        .created_by
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or(token_id)
        .ok_or_else(|| bad("created_by", "required (or send a token: its id is used)"))?;
    let rule_ids = Strings::into_vec(req.rule_ids);
    let severities: Vec<String> = Strings::into_vec(req.severities)
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let hosts = Strings::into_vec(req.hosts);
    let labels = req.labels.unwrap_or_default();
    if rule_ids.is_empty() && severities.is_empty() && hosts.is_empty() && labels.is_empty() {
        return Err(bad(
            "matchers",
            "give at least one of rule_ids, severities, hosts, labels (a silence of everything \
             is refused)",
        ));
    }
    let (starts_at, ends_at) = span(
        req.starts_at.as_deref(),
        req.ends_at.as_deref(),
        req.duration.as_deref(),
        now,
    )?;
    let id = match req.id {
        Some(id) => id.trim().to_owned(),
        None => format!(
            "silence-{:012x}",
            (now.unix_timestamp_nanos() / 1_000) as u64 & 0xffff_ffff_ffff
        ),
    };
    let silence = SilenceConfig {
        id,
        comment,
        created_by,
        rule_ids,
        severities,
        hosts,
        labels,
        starts_at: Some(starts_at),
        ends_at: Some(ends_at),
    };
    silence.validate().map_err(|e| match &e {
        RoutingError::Invalid { field, .. } => bad(field, &e),
        _ => bad("body", &e),
    })?;
    Ok(silence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> NewSilence {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn build_fills_defaults_and_names_fields() {
        let now = OffsetDateTime::now_utc();
        let s = build(
            req(
                serde_json::json!({"comment": "CHG-1", "hosts": "EX0*, MBX1",
                "severities": ["LOW"], "duration": "2h"}),
            ),
            Some("ops".into()),
            now,
        )
        .unwrap();
        assert_eq!(s.hosts, ["EX0*", "MBX1"]);
        assert_eq!(s.severities, ["low"]);
        assert_eq!(s.created_by, "ops", "the token id stands in");
        assert_eq!(s.ends_at, Some(now + time::Duration::hours(2)));
        assert!(s.id.starts_with("silence-"), "{}", s.id);
        s.validate().unwrap();
        for (json, field) in [
            (
                serde_json::json!({"hosts": "h", "duration": "1h"}),
                "comment",
            ),
            (
                serde_json::json!({"comment": "c", "duration": "1h"}),
                "matchers",
            ),
            (
                serde_json::json!({"comment": "c", "hosts": "h", "severities": "urgent",
                    "duration": "1h"}),
                "severities",
            ),
        ] {
            let (status, msg) = build(req(json), Some("ops".into()), now).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(msg.starts_with(&format!("{field}:")), "{msg}");
        }
        let (_, msg) = build(
            req(serde_json::json!({"comment": "c", "hosts": "h", "duration": "1h"})),
            None,
            now,
        )
        .unwrap_err();
        assert!(msg.starts_with("created_by:"), "{msg}");
    }
}
