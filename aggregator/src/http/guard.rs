//! What every response and every write passes through before a handler: security headers,
//! and the refusal of cross-site writes.
//!
//! A write (any method but GET, HEAD and OPTIONS) is refused when the browser says it comes
//! from another origin (`Origin` not this listener's, or `Sec-Fetch-Site: cross-site` /
//! `same-site`), and an API write with a body must be `Content-Type: application/json`, which a page on
//! another origin cannot send without a CORS preflight that this server never answers. On a
//! loopback listener a write must also name a loopback `Host`, so a page whose DNS name was
//! rebound to 127.0.0.1 cannot pass as same-origin.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::api::error;
use super::AppState;

/// The dashboard's Content-Security-Policy: its own script and stylesheet only (the pages
/// carry no inline script or style), no framing, forms post only here.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ] {
        h.entry(name).or_insert(value);
    }
    resp
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses cross-site writes (see the module doc).
pub(crate) async fn same_origin_writes(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if !is_write(req.method()) {
        return next.run(req).await;
    }
    if let Err(message) = check(&st, &req) {
        metrics::counter!("patchwatch_aggregator_cross_site_writes_refused_total").increment(1);
        tracing::info!(
            message = "Refused a cross-site write.",
            reason = message.as_str(),
            path = req.uri().path()
        );
        let status = if message.starts_with("Content-Type") {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        } else {
            StatusCode::FORBIDDEN
        };
        return error(status, message);
    }
    next.run(req).await
}

fn check(st: &AppState, req: &Request) -> Result<(), String> {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !st.writes_need_token && !is_loopback_host(host) {
        return Err(format!(
            "Host {host:?} is not a loopback name; this listener accepts writes addressed to \
             127.0.0.1, [::1] or localhost only"
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(format!("a {site} request may not write"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let scheme = if st.tls { "https" } else { "http" };
        let own = format!("{scheme}://{host}");
        if origin.to_str().ok() != Some(own.as_str()) {
            return Err(format!(
                "Origin {origin:?} is not this dashboard's origin ({own})"
            ));
        }
    }
    // A body must be JSON; a bodiless write (`/end`, `/expire`, DELETE) has no type to check,
    // and browsers send `Origin` with every cross-origin POST, checked above.
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if req.uri().path().starts_with("/api/") && has_body {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err("Content-Type must be application/json".to_owned());
        }
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:8790",
            "localhost",
            "LOCALHOST:1",
            "[::1]:8790",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8790",
            "",
            "10.0.0.1",
            "[::2]:1",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
