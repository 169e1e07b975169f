//! Windows service mode (`patchwatch agent` started by the Service Control Manager).
//!
//! Kept small on purpose: it only adapts SCM start/stop to the same `Agent` the console mode
//! runs. Install with
//! `sc.exe create patchwatch binPath= "C:\Program Files\patchwatch\patchwatch.exe agent --config C:\ProgramData\patchwatch\agent.toml" start= auto`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use patchwatch_collector::config::AgentConfig;
use patchwatch_pipeline::Catalog;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

use crate::agent_loop::{Reload, Trigger};
use crate::cli::service::NAME;
use crate::logging::event_id;

/// The first configuration (or why it could not be read) and how to read it again.
pub type Start = (Result<(AgentConfig, Arc<Catalog>)>, Reload);

/// Handed from [`run`] to the service thread the SCM starts; taken back when it does not.
static START: Mutex<Option<Start>> = Mutex::new(None);

/// Windows' answer to the dispatcher in a process the SCM did not start.
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;

/// The service-specific exit code of a service that stopped on a bad configuration (as
/// `patchwatch agent` exits 2 in a console); 1 for any other failure.
const EXIT_CONFIG: u32 = 2;

/// False when the process certainly runs in a console (stdin is a terminal, or
/// `PATCHWATCH_NO_SERVICE` is set); otherwise [`run`] asks the SCM.
pub fn may_be_service() -> bool {
    std::env::var_os("PATCHWATCH_NO_SERVICE").is_none()
        && !std::io::IsTerminal::is_terminal(&std::io::stdin())
}

/// What [`run`] did.
pub enum Dispatch {
    /// The SCM ran the service; the process exits with this code.
    Ran(i32),
    /// The SCM did not start this process (a scheduled task or a script with redirected
    /// input): run in console mode with these.
    Console(Box<Start>),
}

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM; returns when the service stops.
pub fn run(first: Result<(AgentConfig, Arc<Catalog>)>, load: Reload) -> Result<Dispatch> {
    *START.lock().unwrap_or_else(|p| p.into_inner()) = Some((first, load));
    match service_dispatcher::start(NAME, ffi_service_main) {
        Ok(()) => Ok(Dispatch::Ran(0)),
        Err(windows_service::Error::Winapi(e))
            if e.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
        {
            let (first, load) = START
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .expect("kept when the dispatcher did not start");
            Ok(Dispatch::Console(Box::new((first, load))))
        }
        Err(e) => Err(e.into()),
    }
}

/// Where the service writes its log file: `logs\patchwatch.log` in the data directory.
fn log_file(config: Option<&AgentConfig>) -> PathBuf {
    let data_dir = config.map_or_else(
        || AgentConfig::default_for_platform().data_dir,
        |c| c.data_dir.clone(),
    );
    data_dir.join("logs").join("patchwatch.log")
}

fn service_main(_args: Vec<OsString>) {
    let Some((first, load)) = START.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    // No console: the Event Log and a file are where an admin looks.
    let file = log_file(first.as_ref().ok().map(|(c, _)| c));
    let file_error = crate::logging::start_file(&file).err();
    if let Err(error) = crate::logging::eventlog::start() {
        tracing::warn!(message = "Cannot report to the Event Log.", %error);
    }
    if let Some(error) = file_error {
        tracing::warn!(message = "Cannot write the service's log file.", path = %file.display(), %error);
    }
    if let Err(error) = serve(first, load) {
        tracing::error!(message = "Service failed.", error = format!("{error:#}"));
    }
}

fn serve(first: Result<(AgentConfig, Arc<Catalog>)>, load: Reload) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = service_control_handler::register(NAME, move |c| match c {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = tx.send(());
            ServiceControlHandlerResult::NoError
        }
        // `patchwatch service reload` (or `sc control patchwatch paramchange`).
        ServiceControl::ParamChange => {
            let _ = reload_tx.send(());
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
    let (config, catalog) = match first {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(
                event_id = event_id::CONFIG_ERROR,
                message = "The configuration is invalid; the service did not start.",
                error = format!("{error:#}")
            );
            handle.set_service_status(status(
                ServiceState::Stopped,
                ServiceControlAccept::empty(),
                ServiceExitCode::ServiceSpecific(EXIT_CONFIG),
            ))?;
            return Ok(());
        }
    };
    handle.set_service_status(status(
        ServiceState::Running,
        ServiceControlAccept::STOP
            | ServiceControlAccept::SHUTDOWN
            | ServiceControlAccept::PARAM_CHANGE,
        ServiceExitCode::Win32(0),
    ))?;
    let stop = async move {
        let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
    };
    let result = crate::agent_loop::run_reloading(
        &config,
        catalog,
        stop,
        Some((load, Trigger::Channel(reload_rx))),
    );
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
