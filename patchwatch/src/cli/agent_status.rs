//! `patchwatch agent status`: reads a running agent's `/status` (on its `metrics_listen`)
//! and prints it as text or JSON.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::agent::{StatusArgs, StatusFormat};

/// How long to wait for the agent.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `agent status`.
pub fn run(args: &StatusArgs) -> Result<i32> {
    let listen = match (&args.listen, &args.config) {
        (Some(l), _) => l.clone(),
        (None, Some(path)) => {
            let config = patchwatch_collector::config::AgentConfig::load(path)?;
            match config.metrics_listen {
                Some(a) => a.to_string(),
                None => bail!(
                    "{}: metrics_listen is not set, so the agent serves no /status",
                    path.display()
                ),
            }
        }
        (None, None) => bail!("give --listen ADDR or --config FILE"),
    };
    let body = fetch(&listen).with_context(|| format!("asking the agent at {listen}"))?;
    let mut out = std::io::stdout().lock();
    match args.format {
        StatusFormat::Json => writeln!(out, "{}", body.trim_end())?,
        StatusFormat::Text => {
            let status: Value = serde_json::from_str(&body)
                .with_context(|| format!("{listen}/status did not answer JSON"))?;
            print_text(&status, &mut out)?;
        }
    }
    Ok(0)
}

/// `GET /status` with a minimal HTTP/1.1 request (the agent's endpoint answers one request
/// per connection and closes it).
fn fetch(listen: &str) -> Result<String> {
    let addr = listen
        .to_socket_addrs()?
        .next()
        .context("the address resolves to nothing")?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nhost: {listen}\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .context("the answer is not HTTP")?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200 ") {
        bail!("the agent answered {status_line:?}: {}", body.trim());
    }
    Ok(body.to_owned())
}

fn print_text(s: &Value, out: &mut impl Write) -> Result<()> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    writeln!(out, "health: {}", text(&s["health"]))?;
    match &s["aggregator"] {
        Value::Null => writeln!(out, "aggregator: none configured")?,
        a => writeln!(
            out,
            "aggregator: {}, last ack {} ago, {} records waiting, {}",
            if a["connected"] == Value::Bool(true) {
                "connected"
            } else {
                "not connected"
            },
            a["last_ack_age_seconds"]
                .as_f64()
                .map_or_else(|| "never".to_owned(), |s| format!("{s:.1}s")),
            text(&a["pending_records"]),
            text(&a["state"]),
        )?,
    }
    for sink in s["sinks"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "sink {}: {} records waiting, {}",
            text(&sink["name"]),
            text(&sink["pending_records"]),
            text(&sink["state"])
        )?;
    }
    let spool = &s["spool"];
    writeln!(
        out,
        "spool: {} of {} bytes",
        text(&spool["bytes"]),
        text(&spool["max_bytes"])
    )?;
    if let Some(p) = spool["pending_records"].as_object() {
        for (consumer, n) in p {
            writeln!(out, "  {consumer}: {} records pending", text(n))?;
        }
    }
    let files = s["files"].as_array().cloned().unwrap_or_default();
    writeln!(out, "files: {}", files.len())?;
    for f in &files {
        let run = match &f["run"] {
            Value::Null => "no open run".to_owned(),
            r => format!(
                "run {} {} phase {}",
                text(&r["run_id"]),
                text(&r["outcome"]),
                text(&r["phase"])
            ),
        };
        writeln!(
            out,
            "  {}\n    offset {} of {} (lag {} bytes), {}, handle {}{}; {run}",
            text(&f["path"]),
            text(&f["offset"]),
            text(&f["size"]),
            text(&f["lag_bytes"]),
            text(&f["encoding"]),
            text(&f["handle"]),
            f.get("unreadable")
                .map(|u| format!(", unreadable: {}", text(u)))
                .unwrap_or_default(),
        )?;
    }
    Ok(())
}
