//! `patchwatch window create|list|end`: maintenance windows, through the aggregator's HTTP API
//! (`/api/v1/windows`); `patchwatch window silence ...` (see [`super::silence`]) for silences. The aggregator validates and stores; this is a thin client that prints
//! the aggregator's error (which names the field) when it refuses.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

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

/// `window` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WindowCommand {
    /// Create a maintenance window: findings of its hosts are tagged and routed accordingly.
    Create(CreateArgs),
    /// List maintenance windows with their state (scheduled, active, ended).
    List {
        /// Aggregator connection.
        #[command(flatten)]
        server: ServerArgs,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a maintenance window now.
    End {
        /// Window id (see `window list`).
        id: String,
        /// Aggregator connection.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add, list or expire silences (no notifications for matching findings).
    #[command(subcommand)]
    Silence(super::silence::SilenceCommand),
}

/// Options of `window create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Human name, e.g. "CU15 wave 2".
    #[arg(long)]
    pub name: String,
    /// Host names or globs, comma-separated: 'EX0*,MBX1'.
    #[arg(long)]
    pub hosts: String,
    /// Start: RFC 3339 (2026-11-28T22:00:00Z) or `now`.
    #[arg(long, default_value = "now")]
    pub start: String,
    /// End: RFC 3339.
    #[arg(
        long,
        conflicts_with = "duration",
        required_unless_present = "duration"
    )]
    pub end: Option<String>,
    /// Length instead of an end: 2h, 90m, 1h30m, 1d.
    #[arg(long)]
    pub duration: Option<String>,
    /// Id (letters, digits, '-', '_', '.'); generated from the name when absent.
    #[arg(long)]
    pub id: Option<String>,
    /// Aggregator connection.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs a `window` subcommand; returns the exit code.
pub fn run(cmd: WindowCommand) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cmd {
            WindowCommand::Create(a) => {
                let mut body = json!({
                    "name": a.name,
                    "hosts": a.hosts,
                    "starts_at": a.start,
                });
                for (key, value) in [("ends_at", a.end), ("duration", a.duration), ("id", a.id)] {
                    if let Some(v) = value {
                        body[key] = Value::String(v);
                    }
                }
                let w = call(
                    &a.server,
                    reqwest::Method::POST,
                    "/api/v1/windows",
                    Some(body),
                )
                .await?;
                println!("created window {}", w["id"].as_str().unwrap_or("?"));
                print_table(std::slice::from_ref(&w));
            }
            WindowCommand::List { server, json } => {
                let list = call(&server, reqwest::Method::GET, "/api/v1/windows", None).await?;
                print_list(&list, json, "no maintenance windows", print_table)?;
            }
            WindowCommand::End { id, server } => {
                let path = format!("/api/v1/windows/{}/end", encode_segment(&id));
                let w = call(&server, reqwest::Method::POST, &path, None).await?;
                println!("ended window {}", w["id"].as_str().unwrap_or(&id));
                print_table(std::slice::from_ref(&w));
            }
            WindowCommand::Silence(c) => super::silence::run(c).await?,
        }
        Ok(0)
    })
}

/// Prints a `{"items": [...]}` answer: as JSON, as a table, or `empty` when there are none.
pub(super) fn print_list(list: &Value, json: bool, empty: &str, table: fn(&[Value])) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(list)?);
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

/// One API call; a non-2xx answer becomes an error carrying the aggregator's message.
pub(super) async fn call(
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

fn print_table(items: &[Value]) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|w| {
            let hosts = w["hosts"]
                .as_array()
                .map(|h| h.iter().map(s).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                s(&w["id"]),
                s(&w["state"]),
                s(&w["starts_at"]),
                s(&w["ends_at"]),
                hosts,
                s(&w["name"]),
            ]
        })
        .collect();
    print_rows(&["ID", "STATE", "STARTS", "ENDS", "HOSTS", "NAME"], &rows);
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
