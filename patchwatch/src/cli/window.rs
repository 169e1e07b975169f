//! `patchwatch window create|list|end`: maintenance windows, through the aggregator's HTTP API
//! (`/api/v1/windows`); `patchwatch window silence ...` (see [`super::silence`]) for silences.
//! The aggregator validates and stores; this is a thin client (over [`super::api`]) that
//! prints the aggregator's error (which names the field) when it refuses.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::api::{self, encode_segment, print_rows, set_present, ServerArgs};

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
    /// Every host in scope must have a clean latest preflight (nothing high or worse, not
    /// stale); hosts that are not are marked on the board and alerted on.
    #[arg(long)]
    pub require_clean_preflight: bool,
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
                    "require_clean_preflight": a.require_clean_preflight,
                });
                set_present(
                    &mut body,
                    [("ends_at", a.end), ("duration", a.duration), ("id", a.id)],
                );
                let path = "/api/v1/windows";
                api::write(
                    &a.server,
                    path,
                    Some(body),
                    "created window",
                    "?",
                    print_table,
                )
                .await?;
            }
            WindowCommand::List { server, json } => {
                let empty = "no maintenance windows";
                api::list(&server, "/api/v1/windows", json, empty, print_table).await?;
            }
            WindowCommand::End { id, server } => {
                let path = format!("/api/v1/windows/{}/end", encode_segment(&id));
                api::write(&server, &path, None, "ended window", &id, print_table).await?;
            }
            WindowCommand::Silence(c) => super::silence::run(c).await?,
        }
        Ok(0)
    })
}

/// `ID STATE STARTS ENDS HOSTS PREFLIGHT NAME`; PREFLIGHT is `required` for a gated window.
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
                if w["require_clean_preflight"].as_bool() == Some(true) {
                    "required".to_owned()
                } else {
                    "-".to_owned()
                },
                s(&w["name"]),
            ]
        })
        .collect();
    print_rows(
        &[
            "ID",
            "STATE",
            "STARTS",
            "ENDS",
            "HOSTS",
            "PREFLIGHT",
            "NAME",
        ],
        &rows,
    );
}
