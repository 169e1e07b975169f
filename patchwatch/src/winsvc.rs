//! Windows service mode (`patchwatch agent` started by the Service Control Manager).
//!
//! Kept small on purpose: it only adapts SCM start/stop to the same `Agent` the console mode
//! runs. Install with
//! `sc.exe create patchwatch binPath= "C:\Program Files\patchwatch\patchwatch.exe agent --config C:\ProgramData\patchwatch\agent.toml" start= auto`.

use std::ffi::OsString;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use anyhow::Result;
use patchwatch_collector::config::AgentConfig;
use patchwatch_pipeline::Catalog;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

const NAME: &str = "patchwatch";

static START: OnceLock<(AgentConfig, Arc<Catalog>)> = OnceLock::new();

/// Windows' answer to the dispatcher in a process the SCM did not start.
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;

/// False when the process certainly runs in a console (stdin is a terminal, or
/// `PATCHWATCH_NO_SERVICE` is set); otherwise [`run`] asks the SCM.
pub fn may_be_service() -> bool {
    std::env::var_os("PATCHWATCH_NO_SERVICE").is_none()
        && !std::io::IsTerminal::is_terminal(&std::io::stdin())
}

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM; returns when the service stops. `Ok(None)` when the SCM did
/// not start this process (a scheduled task or a script with redirected input): the caller
/// runs the agent in console mode instead.
pub fn run(config: AgentConfig, catalog: Arc<Catalog>) -> Result<Option<i32>> {
    let _ = START.set((config, catalog));
    match service_dispatcher::start(NAME, ffi_service_main) {
        Ok(()) => Ok(Some(0)),
        Err(windows_service::Error::Winapi(e))
            if e.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn service_main(_args: Vec<OsString>) {
    let (config, catalog) = START.get().cloned().expect("set before dispatch");
    if let Err(error) = serve(&config, catalog) {
        // The console is gone: keep the reason beside the checkpoints, where an admin looks.
        tracing::error!(message = "Service failed.", error = format!("{error:#}"));
        let _ = note_failure(&config, &error);
    }
}

/// Appends `error` to `service-errors.log` in the data directory.
fn note_failure(config: &AgentConfig, error: &anyhow::Error) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(&config.data_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.data_dir.join("service-errors.log"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    writeln!(f, "{now} (Unix time): the service stopped: {error:#}")
}

fn serve(config: &AgentConfig, catalog: Arc<Catalog>) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let handle = service_control_handler::register(NAME, move |c| match c {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = tx.send(());
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })?;
    let status = |state, accept, code| ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: code,
        checkpoint: 0,
        wait_hint: Duration::from_secs(10),
        process_id: None,
    };
    handle.set_service_status(status(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        ServiceExitCode::Win32(0),
    ))?;
    let stop = async move {
        let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
    };
    let result = crate::agent_loop::run_until(config, catalog, stop);
    // A failure is reported as one (service-specific exit code 1), so that the SCM's recovery
    // actions apply and `patchwatch service start` says the service stopped.
    let code = match &result {
        Ok(()) => ServiceExitCode::Win32(0),
        Err(_) => ServiceExitCode::ServiceSpecific(1),
    };
    handle.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        code,
    ))?;
    result
}
