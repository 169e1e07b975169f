//! The HTTP listener (axum): JSON API, Server-Sent Events, `/metrics`, `/healthz` and the
//! dashboard. The only writes are the maintenance windows (`/api/v1/windows`) and silences
//! (`/api/v1/silences`), which also need a token on a listener beyond loopback.
//!
//! When read tokens are configured every route but `/healthz`, `/login` and `/assets/*` needs
//! one, either as `Authorization: Bearer <token>` (API clients, Prometheus) or as the cookie
//! the sign-in page sets (browsers: `EventSource` cannot send headers).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{bearer, TokenTable};
use crate::config::Scope;
use crate::events::EventBus;
use crate::store::Store;

mod annotations;
mod api;
mod board_pages;
mod dashboard;
mod fleet;
mod fleet_page;
mod guard;
mod host;
mod silences;
pub mod tls;
mod triage;
mod windows;
mod writes;

/// Name of the cookie that carries a read token for browsers.
pub(crate) const TOKEN_COOKIE: &str = "patchwatch_token";

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub events: EventBus,
    pub tokens: TokenTable,
    pub max_page_size: u32,
    pub metrics: PrometheusHandle,
    pub shutdown: CancellationToken,
    /// Whether the listener uses TLS (the sign-in cookie is then `Secure`).
    pub tls: bool,
    /// The live maintenance windows (shared with ingest and the router) and the router's
    /// silences.
    pub routing: crate::windows::RoutingState,
    /// Forwarding status for `/healthz`.
    pub forwarder: crate::forward::Forwarder,
    /// The listener is beyond loopback: writes are refused unless tokens are configured.
    pub writes_need_token: bool,
    /// Which collector owns which host (bindings are released through the API).
    pub ownership: crate::ingest::HostOwnership,
}

/// Builds the router.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(fleet_page::fleet))
        .route("/fleet/rows", get(fleet_page::rows))
        .route("/hosts/{host}", get(host::host))
        .route("/runs/{run_id}", get(host::run))
        .route("/findings", get(triage::findings))
        .route("/windows", get(board_pages::windows))
        .route("/windows/{id}", get(board_pages::window))
        .route("/silences", get(board_pages::silences))
        .route("/findings/{id}", get(dashboard::finding))
        .route("/login", get(dashboard::login_form).post(dashboard::login))
        .route("/assets/dashboard.css", get(dashboard::css))
        .route("/assets/dashboard.js", get(dashboard::js))
        .route("/api/v1/findings", get(api::findings))
        .route("/api/v1/findings/{id}", get(api::finding))
        .route("/api/v1/hosts", get(api::hosts))
        .route(
            "/api/v1/hosts/{host}/binding",
            axum::routing::delete(writes::release_binding),
        )
        .route("/api/v1/runs", get(api::runs))
        .route("/api/v1/runs/{run_id}/phases", get(api::run_phases))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/windows", get(windows::list).post(windows::create))
        .route("/api/v1/windows/{id}/end", post(windows::end))
        .route(
            "/api/v1/silences",
            get(silences::list).post(silences::create),
        )
        .route("/api/v1/silences/{id}/expire", post(silences::expire))
        .route(
            "/api/v1/annotations",
            get(annotations::list).post(annotations::create),
        )
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::same_origin_writes,
        ))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .with_state(state)
}

/// An unknown path: a JSON error under `/api/`, a page elsewhere (people type those).
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return api::not_found().await;
    }
    let body = format!(
        r#"<section class="card"><h1>Not found</h1><p>There is no page <span class="mono">{}</span>.</p><p><a href="/">Back to the fleet</a></p></section>"#,
        dashboard::esc(uri.path())
    );
    (StatusCode::NOT_FOUND, dashboard::page("Not found", &body)).into_response()
}

/// Paths readable without a token.
fn is_public(path: &str) -> bool {
    path == "/healthz" || path == "/login" || path.starts_with("/assets/")
}

/// The token a request presents: the bearer header, else the sign-in cookie.
pub(crate) fn presented_token(headers: &axum::http::HeaderMap) -> Option<String> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
    {
        return Some(t.to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .and_then(|(_, v)| hex_decode(v))
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.tokens.is_empty() || is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let presented = presented_token(req.headers());
    if let Some((id, scopes)) = presented
        .as_deref()
        .and_then(|t| state.tokens.lookup_scoped(t))
    {
        let write = !matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        );
        let need = if write { Scope::Write } else { Scope::Read };
        if scopes.contains(&need) {
            return next.run(req).await;
        }
        metrics::counter!("patchwatch_aggregator_scope_refusals_total", "listener" => "http")
            .increment(1);
        let what = if write { "write" } else { "read" };
        return api::error(
            StatusCode::FORBIDDEN,
            format!("token `{id}` may not {what}: its scopes lack \"{what}\""),
        );
    }
    metrics::counter!("patchwatch_aggregator_auth_failures_total", "listener" => "http")
        .increment(1);
    let path = req.uri().path();
    if path.starts_with("/api/") || path == "/metrics" {
        let mut resp = api::error(
            StatusCode::UNAUTHORIZED,
            "a read token is required: send `Authorization: Bearer <token>`",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    let next_path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    Redirect::to(&format!("/login?next={}", percent_encode(next_path))).into_response()
}

/// Hex encoding keeps any token byte safe inside a cookie value.
pub(crate) fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        for s in ["", "abc", "tok;en =\u{e9}"] {
            assert_eq!(hex_decode(&hex_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("abc"), None);
    }

    #[test]
    fn percent_encoding_keeps_paths_readable() {
        assert_eq!(
            percent_encode("/findings/a b?x=1"),
            "/findings/a%20b%3Fx%3D1"
        );
    }
}
