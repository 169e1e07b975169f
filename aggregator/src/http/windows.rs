//! `/api/v1/windows`: list, create and end maintenance windows.
//!
//! These are the API's only writes. They follow the read rules (a token when tokens are
//! configured) and, in addition, are refused on a listener beyond loopback that has no tokens
//! (`http.allow_unauthenticated` opens reads only). Errors name the JSON field.

use crate::routing::{MaintenanceWindow, WindowError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
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
    hosts: Option<Strings>,
    /// RFC 3339 or `now` (the default).
    starts_at: Option<String>,
    /// RFC 3339; exactly one of `ends_at` and `duration`.
    ends_at: Option<String>,
    /// e.g. `2h`, `90m`, `1h30m`, `1d`.
    duration: Option<String>,
    /// Whether hosts in scope must have a clean preflight: `true` or `false` (the default).
    /// Read as any JSON value so that a wrong one is refused naming this field.
    require_clean_preflight: Option<serde_json::Value>,
}

pub(crate) async fn list(State(st): State<AppState>) -> Response {
    let now = OffsetDateTime::now_utc();
    let stored = match st.store.windows().await {
        Ok(w) => w,
        Err(e) => return store_error(e),
    };
    let items: Vec<WindowRecord> = st
        .routing
        .windows()
        .static_windows()
        .into_iter()
        .map(|w| WindowRecord::new(w, "config", now))
        .chain(stored.into_iter().map(|w| WindowRecord::new(w, "api", now)))
        .collect();
    Json(serde_json::json!({ "items": items })).into_response()
}

pub(crate) async fn create(State(st): State<AppState>, body: Bytes) -> Response {
    let req: NewWindow = match new_body(&st, &body) {
        Ok(r) => r,
        Err(r) => return refuse(r),
    };
    let now = OffsetDateTime::now_utc();
    let window = match build(req, now) {
        Ok(w) => w,
        Err(r) => return refuse(r),
    };
    if st.routing.windows().is_static(&window.id) {
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
    if st.routing.windows().is_static(&id) {
        return in_config("window", &id);
    }
    let now = OffsetDateTime::now_utc();
    match st.store.end_window(id.clone(), unix_ns(now)).await {
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
    let hosts = Strings::into_vec(req.hosts);
    if hosts.is_empty() {
        return Err(bad("hosts", "list at least one host name or glob"));
    }
    let (starts_at, ends_at) = span(
        req.starts_at.as_deref(),
        req.ends_at.as_deref(),
        req.duration.as_deref(),
        now,
    )?;
    let require_clean_preflight = match req.require_clean_preflight {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(other) => {
            return Err(bad(
                "require_clean_preflight",
                format!("{other} is not true or false"),
            ))
        }
    };
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
        require_clean_preflight,
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

#[cfg(test)]
mod tests {
    use super::*;

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
                require_clean_preflight: false,
            }
            .validate()
            .unwrap();
        }
    }
}
