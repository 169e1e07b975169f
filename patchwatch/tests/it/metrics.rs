//! `/metrics` of a running agent and aggregator (the real binary, delivering a sample log)
//! against the Prometheus conventions: every family has HELP and TYPE, names end in a unit or
//! `_total`/`_info`, latencies are histograms (not summaries), `patchwatch_build_info` is 1.
//! The text is read by a strict parser of the text exposition format written here. With
//! `PATCHWATCH_METRICS_SCRAPE_DIR` set, the scrapes are saved there for
//! `promtool check metrics` (`.ci/check-metrics.sh`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use patchwatch_testkit::{eventually_blocking, free_port};

use crate::common;

/// Unit suffixes a metric name may end in (besides `_total` and `_info`).
const UNITS: &[&str] = &[
    "seconds", "bytes", "records", "files", "findings", "rows", "streams", "lines",
];

/// One metric family as parsed: its TYPE, HELP and samples (name with suffix, labels, value).
#[derive(Debug, Default)]
struct Family {
    kind: Option<String>,
    help: Option<String>,
    samples: Vec<(String, String, f64)>,
}

/// Parses the text format strictly: every line is a HELP, a TYPE, a sample or empty; HELP and
/// TYPE come before their family's samples; every sample belongs to a family with a TYPE.
fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text"))?;
            let f = families.entry(name.to_owned()).or_default();
            if f.help.replace(help.to_owned()).is_some() || !f.samples.is_empty() {
                return Err(at("second HELP or HELP after samples"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at("unknown TYPE"));
            }
            let f = families.entry(name.to_owned()).or_default();
            if f.kind.replace(kind.to_owned()).is_some() || !f.samples.is_empty() {
                return Err(at("second TYPE or TYPE after samples"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| at("bad value"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                rest.strip_suffix('}')
                    .ok_or_else(|| at("unclosed labels"))?,
            ),
            None => (series, ""),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(at("bad metric name"));
        }
        for pair in split_labels(labels) {
            let (k, v) = pair.split_once('=').ok_or_else(|| at("label without ="))?;
            if k.is_empty() || !(v.starts_with('"') && v.ends_with('"') && v.len() >= 2) {
                return Err(at("bad label"));
            }
        }
        let family = family_of(name, &families).ok_or_else(|| at("sample without TYPE"))?;
        families
            .get_mut(&family)
            .expect("family_of returns a known family")
            .samples
            .push((name.to_owned(), labels.to_owned(), value));
    }
    Ok(families)
}

/// Splits `a="x",b="y"` at the commas between pairs (not inside quoted values).
fn split_labels(labels: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        out.push(&labels[start..]);
    }
    out
}

/// The family a sample name belongs to: itself, or a histogram/summary without its suffix.
fn family_of(name: &str, families: &BTreeMap<String, Family>) -> Option<String> {
    if families.get(name).is_some_and(|f| f.kind.is_some()) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|s| {
        let base = name.strip_suffix(s)?;
        let kind = families.get(base)?.kind.as_deref()?;
        matches!(kind, "histogram" | "summary").then(|| base.to_owned())
    })
}

/// Every convention this project keeps; returns the problems found.
fn conventions(families: &BTreeMap<String, Family>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, f) in families {
        let kind = f.kind.as_deref().unwrap_or("none");
        if f.help.as_deref().is_none_or(|h| h.trim().is_empty()) {
            problems.push(format!("{name}: no HELP"));
        }
        if f.kind.is_none() {
            problems.push(format!("{name}: no TYPE"));
        }
        if !name.starts_with("patchwatch_") {
            problems.push(format!("{name}: not under patchwatch_"));
        }
        let unit_ok = match kind {
            "counter" => name.ends_with("_total"),
            _ => name.ends_with("_info") || UNITS.iter().any(|u| name.ends_with(&format!("_{u}"))),
        };
        if !unit_ok {
            problems.push(format!("{name}: {kind} without a unit suffix (or _total)"));
        }
        if kind == "summary" {
            problems.push(format!("{name}: a summary; latencies are histograms"));
        }
        if kind == "histogram"
            && !f
                .samples
                .iter()
                .any(|(n, l, _)| n.ends_with("_bucket") && l.contains("le=\"+Inf\""))
        {
            problems.push(format!("{name}: histogram without a +Inf bucket"));
        }
        if name.ends_with("_total") && kind != "counter" {
            problems.push(format!("{name}: _total on a {kind}"));
        }
    }
    problems
}

/// `GET path` on `addr` with a plain HTTP/1.1 request; the body of a 200 answer.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    // The aggregator's server may answer chunked; the agent's never does.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(dechunk(body));
    }
    Some(body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the first sample of `family` whose labels contain `label` ("" for any).
fn value(families: &BTreeMap<String, Family>, family: &str, label: &str) -> Option<f64> {
    families
        .get(family)?
        .samples
        .iter()
        .find(|(_, l, _)| l.contains(label))
        .map(|s| s.2)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], config: &Path, log: &Path) -> Killed {
    let err = std::fs::File::create(log).unwrap();
    Killed(
        Command::new(env!("CARGO_BIN_EXE_patchwatch"))
            .args(args)
            .arg("--config")
            .arg(config)
            .env("PATCHWATCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawning patchwatch"),
    )
}

/// Checks a scrape and saves it for promtool when asked to.
fn check_scrape(who: &str, text: &str) -> BTreeMap<String, Family> {
    if let Some(dir) = std::env::var_os("PATCHWATCH_METRICS_SCRAPE_DIR") {
        std::fs::write(Path::new(&dir).join(format!("{who}.prom")), text).unwrap();
    }
    let families = parse(text).unwrap_or_else(|e| panic!("{who} /metrics: {e}\n{text}"));
    let problems = conventions(&families);
    assert!(
        problems.is_empty(),
        "{who} /metrics breaks the conventions:\n{}\n\n{text}",
        problems.join("\n")
    );
    let info = families
        .get("patchwatch_build_info")
        .unwrap_or_else(|| panic!("{who}: no patchwatch_build_info\n{text}"));
    let (_, labels, v) = &info.samples[0];
    assert_eq!(*v, 1.0, "{who}: {labels}");
    assert!(
        labels.contains("version=\"") && labels.contains("commit=\""),
        "{labels}"
    );
    families
}

/// A running aggregator and agent (the real binary) delivering to it: the aggregator's HTTP
/// address, the agent's `metrics_listen`, the watched folder and the two processes' logs.
pub(crate) struct Pair {
    _aggregator: Killed,
    _agent: Killed,
    pub agg_addr: SocketAddr,
    pub agent_addr: SocketAddr,
    pub logs: std::path::PathBuf,
    pub agg_log: std::path::PathBuf,
    pub agent_log: std::path::PathBuf,
    /// Read by the reload test (Unix only).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub agent_config: std::path::PathBuf,
}

impl Pair {
    /// The agent's process id (to signal it: Unix only).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub fn agent_pid(&self) -> u32 {
        self._agent.0.id()
    }
}

/// Starts a [`Pair`] under `tmp`.
pub(crate) fn start_pair(tmp: &Path) -> Pair {
    let (grpc, http, agent_port) = (free_port(), free_port(), free_port());
    let agg_config = tmp.join("aggregator.toml");
    std::fs::write(
        &agg_config,
        format!(
            "data_dir = {data:?}\n[grpc]\nlisten = \"127.0.0.1:{grpc}\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n",
            data = tmp.join("agg").display().to_string(),
        ),
    )
    .unwrap();
    let agg_log = tmp.join("aggregator.log");
    let aggregator = spawn(&["aggregator"], &agg_config, &agg_log);

    let logs = common::watched_dir(tmp, "logs");
    let cfg = common::agent_config(
        &[&logs],
        &tmp.join("agent"),
        &format!("http://127.0.0.1:{grpc}"),
        "metrics-host",
    );
    let agent_config = tmp.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "metrics_listen = \"127.0.0.1:{agent_port}\"\n{}",
            common::agent_toml(&cfg)
        ),
    )
    .unwrap();
    let agent_log = tmp.join("agent.log");
    let agent = spawn(&["agent"], &agent_config, &agent_log);
    Pair {
        _aggregator: aggregator,
        _agent: agent,
        agg_addr: format!("127.0.0.1:{http}").parse().unwrap(),
        agent_addr: format!("127.0.0.1:{agent_port}").parse().unwrap(),
        logs,
        agg_log,
        agent_log,
        agent_config,
    }
}

#[test]
fn agent_and_aggregator_metrics_follow_the_conventions() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = start_pair(tmp.path());
    let (logs, agg_log) = (&pair.logs, &pair.agg_log);
    common::append(
        &logs.join("ExchangeSetup.log"),
        &common::exchange_sample(common::SAMPLES[0]),
    );

    let (agent_addr, agg_addr) = (pair.agent_addr, pair.agg_addr);
    // Delivered and acknowledged: the delivery metrics exist on both sides.
    let agent_text = eventually_blocking(Duration::from_secs(30), "an ack on the agent", || {
        let text = get(agent_addr, "/metrics")?;
        let f = parse(&text).ok()?;
        (value(&f, "patchwatch_batches_acked_total", "")? > 0.0
            && value(&f, "patchwatch_agent_last_ack_age_seconds", "").is_some())
        .then_some(text)
    });
    let agent = check_scrape("agent", &agent_text);
    assert_eq!(
        value(&agent, "patchwatch_agent_aggregator_streams", ""),
        Some(1.0),
        "{agent_text}"
    );
    assert!(
        value(
            &agent,
            "patchwatch_agent_spool_pending_records",
            "consumer="
        )
        .is_some(),
        "{agent_text}"
    );
    assert_eq!(
        agent
            .get("patchwatch_ack_latency_seconds")
            .and_then(|f| f.kind.as_deref()),
        Some("histogram")
    );

    let agg_text = eventually_blocking(Duration::from_secs(30), "aggregator metrics", || {
        let text = get(agg_addr, "/metrics")?;
        let f = parse(&text).ok()?;
        (value(&f, "patchwatch_aggregator_batches_received_total", "")? > 0.0).then_some(text)
    });
    let aggregator = check_scrape("aggregator", &agg_text);
    for histogram in [
        "patchwatch_aggregator_ack_latency_seconds",
        "patchwatch_aggregator_store_commit_seconds",
    ] {
        assert_eq!(
            aggregator.get(histogram).and_then(|f| f.kind.as_deref()),
            Some("histogram"),
            "{histogram}\n{agg_text}\n{}",
            common::log_tail(agg_log)
        );
    }
}

#[test]
fn the_parser_refuses_what_it_should() {
    assert!(
        parse("patchwatch_x_total 1\n").is_err(),
        "sample without TYPE"
    );
    assert!(
        parse("# TYPE a counter\na{b=\"c\" 1\n").is_err(),
        "unclosed labels"
    );
    assert!(parse("# TYPE a counter\na one\n").is_err(), "bad value");
    let f = parse("# TYPE patchwatch_a summary\npatchwatch_a{quantile=\"0.5\"} 1\npatchwatch_a_sum 1\npatchwatch_a_count 1\n").unwrap();
    let problems = conventions(&f);
    assert!(
        problems.iter().any(|p| p.contains("no HELP")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("summary")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("unit suffix")),
        "{problems:?}"
    );
}
