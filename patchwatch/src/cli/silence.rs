//! `patchwatch window silence add|list|expire`: silences, through the aggregator's HTTP API
//! (`/api/v1/silences`). While active, a silence stops notifications (Alertmanager and the
//! other routing receivers) for the findings it matches; they are still stored and forwarded
//! to SIEM sinks. The aggregator validates and stores; this client prints its error (which
//! names the field) when it refuses.

use anyhow::Result;
use serde_json::{json, Value};

use super::api::{self, encode_segment, print_rows, set_present, ServerArgs};

/// `window silence` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SilenceCommand {
    /// Add a silence: matching findings raise no notification until it ends.
    Add(Box<AddArgs>),
    /// List silences with their state (pending, active, expired).
    List {
        /// Aggregator connection.
        #[command(flatten)]
        server: ServerArgs,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Expire a silence now.
    Expire {
        /// Silence id (see `window silence list`).
        id: String,
        /// Aggregator connection.
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Options of `window silence add`. Every matcher given must match; give at least one.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Why (ticket, change); required.
    #[arg(long)]
    pub comment: String,
    /// Rule ids or globs, comma-separated: 'EXCH-0042,MSI-*'.
    #[arg(long = "rule")]
    pub rules: Option<String>,
    /// Severities, comma-separated: 'low,medium'.
    #[arg(long)]
    pub severities: Option<String>,
    /// Host names or globs, comma-separated: 'EX0*,MBX1'.
    #[arg(long)]
    pub hosts: Option<String>,
    /// Label that must match, `key=value`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Start: RFC 3339 or `now`.
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
    /// Who creates it (default: $USER, else the token's id on the aggregator).
    #[arg(long)]
    pub created_by: Option<String>,
    /// Id (letters, digits, '-', '_', '.'); generated when absent.
    #[arg(long)]
    pub id: Option<String>,
    /// Aggregator connection.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs a `window silence` subcommand (inside the `window` runtime).
pub(super) async fn run(cmd: SilenceCommand) -> Result<()> {
    match cmd {
        SilenceCommand::Add(a) => {
            let a = *a;
            let mut labels = serde_json::Map::new();
            for l in &a.labels {
                let Some((k, v)) = l.split_once('=') else {
                    anyhow::bail!("--label: `{l}` is not KEY=VALUE");
                };
                labels.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
            }
            let created_by = a.created_by.or_else(|| {
                ["USER", "USERNAME"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            });
            // Without a name or a token the aggregator can only answer "created_by: required".
            if created_by.is_none() && a.server.token.is_none() {
                anyhow::bail!(
                    "--created-by NAME is needed: USER and USERNAME are unset and no --token was given"
                );
            }
            let mut body = json!({ "comment": a.comment, "starts_at": a.start });
            if !labels.is_empty() {
                body["labels"] = Value::Object(labels);
            }
            set_present(
                &mut body,
                [
                    ("rule_ids", a.rules),
                    ("severities", a.severities),
                    ("hosts", a.hosts),
                    ("ends_at", a.end),
                    ("duration", a.duration),
                    ("created_by", created_by),
                    ("id", a.id),
                ],
            );
            let path = "/api/v1/silences";
            api::write(
                &a.server,
                path,
                Some(body),
                "added silence",
                "?",
                print_table,
            )
            .await?;
        }
        SilenceCommand::List { server, json } => {
            api::list(
                &server,
                "/api/v1/silences",
                json,
                "no silences",
                print_table,
            )
            .await?;
        }
        SilenceCommand::Expire { id, server } => {
            let path = format!("/api/v1/silences/{}/expire", encode_segment(&id));
            api::write(&server, &path, None, "expired silence", &id, print_table).await?;
        }
    }
    Ok(())
}

/// `ID STATE ENDS MATCHERS CREATED_BY COMMENT`.
fn print_table(items: &[Value]) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let list = |v: &Value| {
        v.as_array()
            .map(|h| h.iter().map(s).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|x| {
            let mut m = Vec::new();
            for (key, name) in [
                ("rule_ids", "rule"),
                ("severities", "severity"),
                ("hosts", "host"),
            ] {
                let v = list(&x[key]);
                if !v.is_empty() {
                    m.push(format!("{name}={v}"));
                }
            }
            if let Some(labels) = x["labels"].as_object() {
                m.extend(labels.iter().map(|(k, v)| format!("{k}={}", s(v))));
            }
            let ends = match s(&x["ends_at"]) {
                e if e.is_empty() => "-".to_owned(),
                e => e,
            };
            vec![
                s(&x["id"]),
                s(&x["state"]),
                ends,
                m.join(" "),
                s(&x["created_by"]),
                s(&x["comment"]),
            ]
        })
        .collect();
    print_rows(
        &["ID", "STATE", "ENDS", "MATCHERS", "CREATED_BY", "COMMENT"],
        &rows,
    );
}
