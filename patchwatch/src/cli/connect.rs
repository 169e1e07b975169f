//! `agent --check --connect`: beyond the files, ask the aggregator's gRPC `Health` (with the
//! configured TLS and token) and probe each direct sink, printing who answered and with which
//! TLS identity the agent presented itself.

use std::io::Write;
use std::time::Duration;

use patchwatch_collector::config::AgentConfig;
use patchwatch_collector::delivery::DeliveryOptions;
use patchwatch_proto::ingest_client::IngestClient;
use patchwatch_proto::HealthRequest;

use super::check::Checks;

/// How long one probe may take.
const PROBE: Duration = Duration::from_secs(10);

/// Probes the aggregator and the sinks of `config`; problems go to `checks`.
pub fn agent(
    config: &AgentConfig,
    checks: &mut Checks,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if config.aggregator_enabled() {
            aggregator(config, checks, out).await?;
        }
        sinks(&config.sinks, checks, out).await
    })
}

/// Probes each sink of `sinks` (its own health check: an HTTP request, a TCP connect).
pub async fn sinks(
    sinks: &std::collections::BTreeMap<String, patchwatch_sinks::SinkConfig>,
    checks: &mut Checks,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for (name, sink) in sinks {
        let setting = format!("sinks.{name}");
        let probe = match patchwatch_sinks::build(name, sink) {
            Ok((handle, healthcheck)) => {
                let r = tokio::time::timeout(PROBE, healthcheck).await;
                drop(handle);
                r
            }
            Err(e) => {
                checks.problem(&setting, e.to_string());
                continue;
            }
        };
        match probe {
            Ok(Ok(())) => writeln!(out, "connect: sink {name} answered")?,
            Ok(Err(e)) => checks.problem(&setting, format!("does not answer: {e}")),
            Err(_) => checks.problem(&setting, format!("no answer within {PROBE:?}")),
        }
    }
    Ok(())
}

async fn aggregator(
    config: &AgentConfig,
    checks: &mut Checks,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let a = &config.aggregator;
    let host = patchwatch_collector::convert::host_info(config.host_name.as_deref(), 0);
    let opts = match DeliveryOptions::from_config(config, "check", host) {
        Ok(o) => o,
        // The file checks already named what is wrong with TLS files or the token.
        Err(_) => return Ok(()),
    };
    let identity = match a.tls.as_ref().and_then(|t| t.cert_file.as_ref()) {
        Some(cert) => format!("client certificate {}", cert.display()),
        None if a.endpoint.starts_with("https://") => "TLS without a client certificate".into(),
        None => "plaintext".into(),
    };
    let channel = match opts.endpoint() {
        Ok(ep) => match tokio::time::timeout(PROBE, ep.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                checks.problem("aggregator.endpoint", format!("{}: {e:#}", a.endpoint));
                return Ok(());
            }
            Err(_) => {
                checks.problem(
                    "aggregator.endpoint",
                    format!("{}: no connection within {PROBE:?}", a.endpoint),
                );
                return Ok(());
            }
        },
        Err(e) => {
            checks.problem("aggregator.endpoint", e.to_string());
            return Ok(());
        }
    };
    let mut request = tonic::Request::new(HealthRequest {});
    if let Some(token) = &a.token {
        if let Ok(v) = token.resolve("aggregator.token") {
            if let Ok(mut value) =
                tonic::metadata::MetadataValue::try_from(format!("Bearer {}", v.expose()))
            {
                value.set_sensitive(true);
                request.metadata_mut().insert("authorization", value);
            }
        }
    }
    match tokio::time::timeout(PROBE, IngestClient::new(channel).health(request)).await {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            writeln!(
                out,
                "connect: aggregator {} answered (serving: {}, version {}, store {}) using {identity}",
                a.endpoint, r.serving, r.version, r.store
            )?;
            if !r.serving {
                checks.problem(
                    "aggregator.endpoint",
                    "the aggregator says it is not serving",
                );
            }
        }
        Ok(Err(status)) => checks.problem(
            "aggregator.endpoint",
            format!(
                "{} refused the health check ({:?}: {}) using {identity}",
                a.endpoint,
                status.code(),
                status.message()
            ),
        ),
        Err(_) => checks.problem(
            "aggregator.endpoint",
            format!("{}: no health answer within {PROBE:?}", a.endpoint),
        ),
    }
    Ok(())
}
