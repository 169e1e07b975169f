//! JSON API handlers, the event stream, `/metrics` and `/healthz`.
//!
//! Errors are JSON objects `{"error": "..."}` with a 4xx/5xx status; bad query parameters name
//! the parameter.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::AppState;
use crate::model::{
    outcome_number, severity_number, FindingFilter, FindingQuery, RunFilter, RunQuery,
};
use crate::store::StoreError;

/// Page size when the request does not say.
const DEFAULT_PAGE: u32 = 100;

/// A JSON error: `{"error": "..."}` with a status.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (self.0, Json(Body { error: self.1 })).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// A JSON error response.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError(status, message.into()).into_response()
}

fn store_error(e: StoreError) -> Response {
    tracing::error!(message = "Store query failed.", error = %e);
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("store unavailable: {e}"),
    )
}

fn bad_query(rejection: QueryRejection) -> Response {
    bad_request(rejection.body_text()).into_response()
}

fn page_size(requested: Option<u32>, max: u32) -> Result<u32, ApiError> {
    match requested {
        None => Ok(DEFAULT_PAGE.min(max)),
        Some(0) => Err(bad_request("limit must be at least 1")),
        Some(n) if n > max => Err(bad_request(format!(
            "limit {n} is above the maximum page size {max}"
        ))),
        Some(n) => Ok(n),
    }
}

/// Parses `since`: RFC 3339, or Unix seconds.
fn parse_since(s: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1_000_000_000)
            .ok_or_else(|| bad_request("since: out of range"));
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
        .ok_or_else(|| {
            bad_request(format!(
                "since: {s:?} is neither RFC 3339 (2026-01-31T12:00:00Z) nor Unix seconds"
            ))
        })
}

fn severity_param(name: &str, value: Option<&String>) -> Result<Option<i32>, ApiError> {
    value
        .map(|v| {
            severity_number(v).ok_or_else(|| {
                bad_request(format!(
                    "{name}: {v:?} is not one of info, low, medium, high, critical"
                ))
            })
        })
        .transpose()
}

/// Turns the query string into the store's filter.
pub(crate) fn finding_filter(q: &FindingQuery, max_page: u32) -> Result<FindingFilter, ApiError> {
    Ok(FindingFilter {
        host: q.host.clone(),
        rule: q.rule.clone(),
        severity: severity_param("severity", q.severity.as_ref())?,
        min_severity: severity_param("min_severity", q.min_severity.as_ref())?,
        run: q.run.clone(),
        since_ns: q.since.as_deref().map(parse_since).transpose()?,
        before_seq: q.cursor,
        limit: page_size(q.limit, max_page)?,
        ..FindingFilter::default()
    })
}

pub(crate) async fn findings(
    State(st): State<AppState>,
    q: Result<Query<FindingQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(r),
    };
    let filter = match finding_filter(&q, st.max_page_size) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    match st.store.findings(filter).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => store_error(e),
    }
}

pub(crate) async fn finding(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.store.finding(id.clone()).await {
        Ok(Some(f)) => Json(f).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no finding with id {id:?}")),
        Err(e) => store_error(e),
    }
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

/// Query of `/api/v1/hosts`. Without any parameter it lists every host; with any, one page
/// worst first, filtered as the fleet view filters (a fleet of thousands need not come in one
/// response).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostsQuery {
    /// `failed`, `stalled`, `in_progress` or `succeeded`.
    state: Option<String>,
    /// Text in the host name or FQDN, any case.
    q: Option<String>,
    /// 1-based page number.
    page: Option<String>,
    /// Hosts a page (default 100, at most `http.max_page_size`).
    limit: Option<u32>,
}

/// One page of `/api/v1/hosts`.
#[derive(Serialize)]
struct HostPage {
    items: Vec<crate::model::HostRecord>,
    /// Hosts by state over the whole fleet, whatever the filters.
    counts: crate::model::StateCounts,
    /// Hosts matching the filters, on all pages.
    matched: u64,
    /// The page served (the last when the one asked for is past it).
    page: u64,
    /// Pass as `page` for the next page; absent on the last page.
    next_page: Option<u64>,
}

pub(crate) async fn hosts(
    State(st): State<AppState>,
    q: Result<Query<HostsQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(r),
    };
    let active = st.routing.windows().active(time::OffsetDateTime::now_utc());
    if q.state.is_none() && q.q.is_none() && q.page.is_none() && q.limit.is_none() {
        return match st.store.hosts(None).await {
            Ok(mut items) => {
                super::fleet::add_windows(&mut items, &active);
                Json(Items { items }).into_response()
            }
            Err(e) => store_error(e),
        };
    }
    let limit = match page_size(q.limit, st.max_page_size) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let query = match super::fleet_page::fleet_query(q.state, q.q, q.page, limit) {
        Ok(query) => query,
        Err(why) => return bad_request(why).into_response(),
    };
    match st.store.fleet(query).await {
        Ok(mut p) => {
            super::fleet::add_windows(&mut p.hosts, &active);
            let pages = p.matched.div_ceil(u64::from(limit)).max(1);
            Json(HostPage {
                next_page: (p.page < pages).then_some(p.page + 1),
                items: p.hosts,
                counts: p.counts,
                matched: p.matched,
                page: p.page,
            })
            .into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(Serialize)]
struct RunPage {
    items: Vec<crate::model::RunRecord>,
    /// Pass as `offset` for the next page; absent on the last page.
    next_offset: Option<u32>,
}

pub(crate) async fn runs(
    State(st): State<AppState>,
    q: Result<Query<RunQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(r),
    };
    let limit = match page_size(q.limit, st.max_page_size) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let outcome = match q.outcome.as_deref().map(|o| {
        outcome_number(o).ok_or_else(|| {
            bad_request(format!(
                "outcome: {o:?} is not one of in_progress, succeeded, failed, stalled"
            ))
        })
    }) {
        Some(Err(r)) => return r.into_response(),
        Some(Ok(o)) => Some(o),
        None => None,
    };
    let offset = q.offset.unwrap_or(0);
    let filter = RunFilter {
        host: q.host,
        run: None,
        outcome,
        limit,
        offset,
    };
    match st.store.runs(filter).await {
        Ok(items) => {
            let next_offset = (items.len() == limit as usize).then(|| offset.saturating_add(limit));
            Json(RunPage { items, next_offset }).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `/api/v1/runs/{run_id}/phases`: the run's phase history in order (empty for a run that
/// reported none or is unknown).
pub(crate) async fn run_phases(State(st): State<AppState>, Path(run): Path<String>) -> Response {
    match st.store.run_phases(vec![run]).await {
        Ok(items) => Json(serde_json::json!({ "items": items })).into_response(),
        Err(e) => store_error(e),
    }
}

/// `/api/v1/events`: a `ready` event, then `finding`, `run` and `host` events as batches
/// become durable. A subscriber that falls behind gets `lagged` (data: events missed) and
/// should reload its view. The stream ends when the aggregator shuts down.
pub(crate) async fn events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = st.events.subscribe();
    let ready = futures::stream::once(async { SseEvent::default().event("ready").data("{}") });
    let updates = BroadcastStream::new(rx).map(|item| match item {
        Ok(ev) => SseEvent::default()
            .event(ev.name())
            .json_data(&*ev)
            .unwrap_or_else(|e| SseEvent::default().event("error").data(e.to_string())),
        Err(BroadcastStreamRecvError::Lagged(n)) => {
            SseEvent::default().event("lagged").data(n.to_string())
        }
    });
    let stream = ready
        .chain(updates)
        .map(Ok)
        .take_until(st.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    store: &'static str,
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Each forwarding destination's cursor and lag. A destination that is behind does not
    /// make the aggregator unhealthy: ingest does not depend on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    forwarding: Vec<crate::forward::DestinationStatus>,
}

pub(crate) async fn healthz(State(st): State<AppState>) -> Response {
    let store = st.store.backend();
    let version = env!("CARGO_PKG_VERSION");
    if st.shutdown.is_cancelled() {
        let body = Health {
            status: "shutting_down",
            store,
            version,
            error: None,
            forwarding: st.forwarder.status(),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    match st.store.ping().await {
        Ok(()) => Json(Health {
            status: "ok",
            store,
            version,
            error: None,
            forwarding: st.forwarder.status(),
        })
        .into_response(),
        Err(e) => {
            let body = Health {
                status: "store_unavailable",
                store,
                version,
                error: Some(e.to_string()),
                forwarding: st.forwarder.status(),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

pub(crate) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_and_seconds() {
        assert_eq!(parse_since("10").ok(), Some(10_000_000_000));
        assert_eq!(
            parse_since("1970-01-01T00:00:01Z").ok(),
            Some(1_000_000_000)
        );
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn filters_check_severity_and_limit() {
        let q = FindingQuery {
            severity: Some("HIGH".into()),
            limit: Some(5),
            ..FindingQuery::default()
        };
        let f = finding_filter(&q, 10).unwrap();
        assert_eq!((f.severity, f.limit), (Some(4), 5));
        let q = FindingQuery {
            severity: Some("urgent".into()),
            ..FindingQuery::default()
        };
        assert!(finding_filter(&q, 10).is_err());
        let q = FindingQuery {
            limit: Some(11),
            ..FindingQuery::default()
        };
        assert!(finding_filter(&q, 10).is_err());
        assert_eq!(
            finding_filter(&FindingQuery::default(), 10).unwrap().limit,
            10
        );
    }
}
