//! The client side of the aggregator's HTTP API shared by `patchwatch window ...` and
//! `patchwatch window silence ...`: connection options, one request function, and the
//! printers for a list and for the one record a write answers with. The aggregator validates;
//! a refusal is printed with its message, which names the field.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Where the aggregator is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the aggregator's HTTP API.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8790",
        env = "PATCHWATCH_SERVER"
    )]
    pub server: String,
    /// API token (needed when the aggregator has [[http.tokens]]).
    #[arg(long, env = "PATCHWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Sets the fields that have a value; absent ones stay out of the body so the aggregator
/// applies its own defaults.
pub(super) fn set_present<'a>(
    body: &mut Value,
    fields: impl IntoIterator<Item = (&'a str, Option<String>)>,
) {
    for (key, value) in fields {
        if let Some(v) = value {
            body[key] = Value::String(v);
        }
    }
}

/// `GET path` (a `{"items": [...]}` list) and prints it: as JSON, as a table, or `empty`
/// when there are none.
pub(super) async fn list(
    server: &ServerArgs,
    path: &str,
    json: bool,
    empty: &str,
    table: fn(&[Value]),
) -> Result<()> {
    let list = call(server, reqwest::Method::GET, path, None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let items = list["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("{empty}");
    } else {
        table(&items);
    }
    Ok(())
}

/// `POST path` (a create, end or expire) and prints `{done} <id>` and the record as a table.
/// `id` stands in when the answer has none.
pub(super) async fn write(
    server: &ServerArgs,
    path: &str,
    body: Option<Value>,
    done: &str,
    id: &str,
    table: fn(&[Value]),
) -> Result<()> {
    let record = call(server, reqwest::Method::POST, path, body).await?;
    println!("{done} {}", record["id"].as_str().unwrap_or(id));
    table(std::slice::from_ref(&record));
    Ok(())
}

/// One API call; a non-2xx answer becomes an error carrying the aggregator's message.
async fn call(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let mut req = client.request(method, &url);
    if let Some(t) = &server.token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the aggregator at {url}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .context("reading the aggregator's answer")?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let message = value["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        bail!("the aggregator refused ({status}): {message}");
    }
    Ok(value)
}

/// Prints a table with columns padded to their widest cell; the last column is not padded.
pub(super) fn print_rows(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let last = header.len().saturating_sub(1);
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, c) in cells.enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}

/// Percent-encodes an id for use as one path segment.
pub(super) fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
