//! `patchwatch service install|uninstall|start|stop|status`: the agent as a Windows service,
//! through the Service Control Manager. Every command is idempotent: installing again updates
//! the registration, uninstalling or stopping what is not there succeeds.
//!
//! The service is `patchwatch`, starts automatically (delayed) under LocalSystem unless an
//! account is given, runs `patchwatch.exe agent --config FILE` with the absolute config path in
//! its command line, and is restarted by the SCM when it fails (10 s, 30 s, then every 60 s;
//! the count resets after a day), also when it stops with an error rather than crashing.
//! On other systems every subcommand says it is Windows-only and exits with status 2.

use std::path::PathBuf;

use anyhow::Result;

/// The service's name (`sc query patchwatch`, `net start patchwatch`).
#[cfg_attr(not(windows), allow(dead_code))]
pub const NAME: &str = "patchwatch";
/// What services.msc shows.
#[cfg_attr(not(windows), allow(dead_code))]
pub const DISPLAY_NAME: &str = "patchwatch agent";
/// The description services.msc shows.
#[cfg_attr(not(windows), allow(dead_code))]
pub const DESCRIPTION: &str = "Tails Exchange Server setup and Windows Installer logs, \
matches known issues and streams findings to the patchwatch aggregator.";
/// Where the MSI and the README put the agent's configuration.
pub const DEFAULT_CONFIG: &str = r"C:\ProgramData\patchwatch\agent.toml";

/// Subcommands of `service`.
#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Register the service, or update its registration (needs administrator rights).
    Install(InstallArgs),
    /// Stop and remove the service; checkpoints, spool and configuration stay.
    Uninstall,
    /// Start the service and wait until it runs.
    Start,
    /// Stop the service and wait until it has stopped.
    Stop,
    /// Print the service's state: exit 0 running, 3 not running, 4 not installed.
    Status,
    /// Check the configuration, then tell the running service to read it and its rules again
    /// (the `paramchange` control); an invalid configuration is not sent.
    Reload(ReloadArgs),
}

/// Options of `service reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// The configuration the service runs with.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Extra rule files the service was installed with; repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,
}

/// Options of `service install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Agent configuration the service runs with; its absolute path goes into the service's
    /// command line. It must exist and be valid.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Account to run as (`NT AUTHORITY\NetworkService`, `DOMAIN\svc-patchwatch`, a gMSA
    /// `DOMAIN\name$`); default LocalSystem.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
    /// File whose first line is the account's password (not for built-in accounts or gMSAs).
    #[arg(long, value_name = "FILE", requires = "account")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub write: WriteConfigArgs,
}

/// Values that (re)write the configuration file before the service is registered: the MSI
/// passes its public properties here. Empty values count as not given; without
/// `--aggregator` an existing file is kept as it is.
#[derive(Debug, Default, clap::Args)]
pub struct WriteConfigArgs {
    /// Write the config with this aggregator endpoint (`https://host:4790`).
    #[arg(long, value_name = "URL")]
    pub aggregator: Option<String>,
    /// With --aggregator: the bearer token is read from this file.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<String>,
    /// With --aggregator: host name reported in findings (default: the computer name).
    #[arg(long, value_name = "NAME")]
    pub host_name: Option<String>,
    /// With --aggregator: globs to watch, separated by `;` (default: the standard locations).
    #[arg(long, value_name = "GLOBS")]
    pub sources: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The agent configuration written from `w`, with checkpoints and spool in `data_dir`; `None`
/// when no aggregator was given (an existing file is then kept).
pub fn config_text(w: &WriteConfigArgs, data_dir: &std::path::Path) -> Option<String> {
    // JSON string syntax is valid TOML basic-string syntax (\\, \", \uXXXX).
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let endpoint = given(&w.aggregator)?;
    let mut t = String::from(
        "# Written by `patchwatch service install` (the MSI's AGGREGATOR, TOKEN_FILE, HOST_NAME,\n\
         # SOURCES); every setting is in agent.example.toml.\n",
    );
    t += &format!("data_dir = {}\n", q(&data_dir.display().to_string()));
    if let Some(h) = given(&w.host_name) {
        t += &format!("host_name = {}\n", q(h));
    }
    if let Some(s) = given(&w.sources) {
        let globs: Vec<String> = s
            .split(';')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(q)
            .collect();
        t += &format!("\n[sources]\ninclude = [{}]\n", globs.join(", "));
    }
    t += &format!("\n[aggregator]\nendpoint = {}\n", q(endpoint));
    if let Some(f) = given(&w.token_file) {
        t += &format!("token = {{ file = {} }}\n", q(f));
    }
    Some(t)
}

/// Writes the configuration at `path` from `w` (when an aggregator is given) and checks that
/// the file the service will read is valid.
#[cfg_attr(not(windows), allow(dead_code))]
fn write_config(w: &WriteConfigArgs, path: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    if let Some(text) = config_text(w, dir) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Checked before it replaces a working file.
        patchwatch_collector::config::AgentConfig::from_toml(&text, &path.display().to_string())
            .context("--aggregator, --token-file, --host-name, --sources")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    patchwatch_collector::config::AgentConfig::load(path).with_context(|| {
        format!(
            "--config: the service would not start with {} (write it first, see \
             agent.example.toml, or pass --aggregator)",
            path.display()
        )
    })?;
    Ok(())
}

/// Runs `service ...`.
pub fn run(command: ServiceCommand) -> Result<i32> {
    #[cfg(windows)]
    {
        scm::run(command)
    }
    #[cfg(not(windows))]
    {
        let _ = command;
        eprintln!(
            "patchwatch: `service` manages the Windows service and is Windows-only; on Linux use \
             deploy/patchwatch-agent.service (systemd)."
        );
        Ok(2)
    }
}

/// The password in `path`: its first line, without the line end.
#[cfg_attr(not(windows), allow(dead_code))]
fn read_password(path: &std::path::Path) -> Result<String> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--password-file: cannot read {}", path.display()))?;
    let first = text.lines().next().unwrap_or_default();
    anyhow::ensure!(
        !first.is_empty(),
        "--password-file: {} is empty (its first line is the password)",
        path.display()
    );
    Ok(first.to_string())
}

#[cfg(windows)]
mod scm {
    use std::ffi::OsString;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context, Result};
    use windows_service::service::{
        Service, ServiceAccess, ServiceAction, ServiceActionType, ServiceErrorControl,
        ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo,
        ServiceStartType, ServiceState, ServiceType,
    };
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

    use super::{InstallArgs, ServiceCommand, DESCRIPTION, DISPLAY_NAME, NAME};

    const ERROR_ACCESS_DENIED: i32 = 5;
    const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
    const ERROR_SERVICE_MARKED_FOR_DELETE: i32 = 1072;
    const ERROR_INVALID_LEVEL: i32 = 124;
    /// How long start and stop wait for the service to get there.
    const WAIT: Duration = Duration::from_secs(30);

    pub fn run(command: ServiceCommand) -> Result<i32> {
        match command {
            ServiceCommand::Install(a) => install(&a),
            ServiceCommand::Uninstall => uninstall(),
            ServiceCommand::Start => start(),
            ServiceCommand::Stop => stop(),
            ServiceCommand::Status => status(),
            ServiceCommand::Reload(a) => reload(&a),
        }
    }

    fn reload(a: &super::ReloadArgs) -> Result<i32> {
        // A refused reload shows only in the service's log: refuse here, where it is seen.
        crate::cli::agent::load(Some(&a.config), &a.rule_files)
            .with_context(|| format!("not reloaded: {}", a.config.display()))?;
        let Some(s) = open(ServiceAccess::QUERY_STATUS | ServiceAccess::PAUSE_CONTINUE)? else {
            bail!("service {NAME} is not installed");
        };
        if state(&s)? != ServiceState::Running {
            bail!(
                "service {NAME} is not running; `patchwatch service start` reads the configuration"
            );
        }
        paramchange(&s).map_err(|e| explain(e, "sending paramchange to the patchwatch service"))?;
        println!("service {NAME} reloads {}", a.config.display());
        Ok(0)
    }

    fn os_error(e: &windows_service::Error) -> Option<i32> {
        match e {
            windows_service::Error::Winapi(io) => io.raw_os_error(),
            _ => None,
        }
    }

    /// Names the usual cause of a refusal.
    fn explain(e: windows_service::Error, what: &str) -> anyhow::Error {
        if os_error(&e) == Some(ERROR_ACCESS_DENIED) {
            anyhow::anyhow!(
                "{what}: access denied: managing services needs administrator rights (run from \
                 an elevated prompt, or as SYSTEM from GPO/SCCM/Intune)"
            )
        } else {
            anyhow::Error::new(e).context(what.to_string())
        }
    }

    fn manager(access: ServiceManagerAccess) -> Result<ServiceManager> {
        ServiceManager::local_computer(None::<&str>, access)
            .map_err(|e| explain(e, "opening the Service Control Manager"))
    }

    /// The service, or `None` when it is not installed.
    fn open(access: ServiceAccess) -> Result<Option<Service>> {
        match manager(ServiceManagerAccess::CONNECT)?.open_service(NAME, access) {
            Ok(s) => Ok(Some(s)),
            Err(e) if os_error(&e) == Some(ERROR_SERVICE_DOES_NOT_EXIST) => Ok(None),
            Err(e) => Err(explain(e, "opening the patchwatch service")),
        }
    }

    fn install(a: &InstallArgs) -> Result<i32> {
        let config = std::path::absolute(&a.config)
            .with_context(|| format!("--config: {}", a.config.display()))?;
        super::write_config(&a.write, &config)?;
        let exe = std::env::current_exe().context("locating patchwatch.exe")?;
        let password = a
            .password_file
            .as_deref()
            .map(super::read_password)
            .transpose()?;
        let info = ServiceInfo {
            name: NAME.into(),
            display_name: DISPLAY_NAME.into(),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe.clone(),
            launch_arguments: vec!["agent".into(), "--config".into(), config.clone().into()],
            dependencies: vec![],
            account_name: a.account.as_ref().map(OsString::from),
            account_password: password.map(OsString::from),
        };
        let access = ServiceAccess::QUERY_STATUS | ServiceAccess::CHANGE_CONFIG;
        let (service, verb) = match open(access)? {
            Some(s) => {
                s.change_config(&info)
                    .map_err(|e| explain(e, "updating the patchwatch service"))?;
                (s, "updated")
            }
            None => {
                let m =
                    manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
                let s = match m.create_service(&info, access) {
                    Err(e) if os_error(&e) == Some(ERROR_SERVICE_MARKED_FOR_DELETE) => bail!(
                        "the patchwatch service is still being deleted (close services.msc and \
                         any `sc` handle to it, or reboot), then install again"
                    ),
                    r => r.map_err(|e| explain(e, "creating the patchwatch service"))?,
                };
                (s, "installed")
            }
        };
        service
            .set_description(DESCRIPTION)
            .map_err(|e| explain(e, "setting the service description"))?;
        optional(
            service.set_delayed_auto_start(true),
            "delayed automatic start",
        )?;
        let restart = |secs| ServiceAction {
            action_type: ServiceActionType::Restart,
            delay: Duration::from_secs(secs),
        };
        optional(
            service.update_failure_actions(ServiceFailureActions {
                reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
                reboot_msg: None,
                command: None,
                actions: Some(vec![restart(10), restart(30), restart(60)]),
            }),
            "restart on failure",
        )?;
        optional(
            service.set_failure_actions_on_non_crash_failures(true),
            "restart after an error exit",
        )?;
        register_event_source(&exe);
        println!(
            "service {NAME} {verb}: \"{}\" agent --config \"{}\" (automatic, delayed start; {})",
            exe.display(),
            config.display(),
            a.account.as_deref().unwrap_or("LocalSystem")
        );
        Ok(0)
    }

    /// Sends `SERVICE_CONTROL_PARAMCHANGE` (what `sc control patchwatch paramchange` sends;
    /// `windows-service` sends only user-defined codes).
    fn paramchange(s: &Service) -> windows_service::Result<()> {
        use windows_sys::Win32::System::Services::{
            ControlService, SERVICE_CONTROL_PARAMCHANGE, SERVICE_STATUS,
        };
        // SAFETY: a handle `s` owns, opened with PAUSE_CONTINUE; the status is written into a
        // zeroed local.
        let ok = unsafe {
            let mut status: SERVICE_STATUS = std::mem::zeroed();
            ControlService(s.raw_handle(), SERVICE_CONTROL_PARAMCHANGE, &mut status)
        };
        if ok == 0 {
            return Err(windows_service::Error::Winapi(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Registers `patchwatch` as a source of the Application event log, so that Event Viewer
    /// shows its messages as written, then reports the installation there. The message file
    /// is .NET Framework's, whose every id is "%1" (what .NET's own `EventLog` sources use;
    /// Exchange servers all have .NET Framework 4.8). Best effort: without it events are
    /// still logged, with a "description cannot be found" preamble.
    fn register_event_source(exe: &std::path::Path) {
        let root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into());
        let messages = format!(r"{root}\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll");
        let key = windows_registry::LOCAL_MACHINE
            .create(r"SYSTEM\CurrentControlSet\Services\EventLog\Application\patchwatch")
            .and_then(|k| {
                k.set_string("EventMessageFile", &messages)?;
                // Errors, warnings and information.
                k.set_u32("TypesSupported", 7)
            });
        if let Err(error) = key {
            eprintln!("patchwatch: note: the Event Log source was not registered: {error}");
        }
        match crate::logging::eventlog::start() {
            Ok(()) => tracing::info!(
                event_id = crate::logging::event_id::INSTALLED,
                message = "Service installed.",
                exe = %exe.display()
            ),
            Err(error) => eprintln!("patchwatch: note: cannot report to the Event Log: {error}"),
        }
    }

    /// A service setting Windows supports but this SCM may not (Wine's answers "invalid
    /// level"): noted, and the service is registered without it.
    fn optional(r: windows_service::Result<()>, what: &str) -> Result<()> {
        match r {
            Err(e) if os_error(&e) == Some(ERROR_INVALID_LEVEL) => {
                eprintln!("patchwatch: note: this system does not support {what} for services");
                Ok(())
            }
            r => r.map_err(|e| explain(e, &format!("setting {what}"))),
        }
    }

    fn uninstall() -> Result<i32> {
        let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
        let Some(s) = open(access)? else {
            println!("service {NAME} is not installed");
            return Ok(0);
        };
        stop_and_wait(&s)?;
        match s.delete() {
            Ok(()) => {}
            Err(e) if os_error(&e) == Some(ERROR_SERVICE_MARKED_FOR_DELETE) => {}
            Err(e) => return Err(explain(e, "deleting the patchwatch service")),
        }
        println!("service {NAME} removed (configuration, checkpoints and spool kept)");
        Ok(0)
    }

    fn start() -> Result<i32> {
        let Some(s) = open(ServiceAccess::QUERY_STATUS | ServiceAccess::START)? else {
            bail!("service {NAME} is not installed (run `patchwatch service install` first)");
        };
        if state(&s)? != ServiceState::Running {
            if let Err(e) = s.start::<&str>(&[]) {
                // A service that stops at once may fail the start itself (Wine's SCM answers
                // "request timeout"): its exit code says why.
                if refused_config(&s) {
                    bail!(CONFIG_INVALID);
                }
                // Started by someone else meanwhile (ERROR_SERVICE_ALREADY_RUNNING).
                if os_error(&e) != Some(1056) {
                    return Err(explain(e, "starting the patchwatch service"));
                }
            }
            wait_for(&s, ServiceState::Running)?;
        }
        println!("service {NAME} is running");
        Ok(0)
    }

    fn stop() -> Result<i32> {
        let Some(s) = open(ServiceAccess::QUERY_STATUS | ServiceAccess::STOP)? else {
            println!("service {NAME} is not installed");
            return Ok(0);
        };
        stop_and_wait(&s)?;
        println!("service {NAME} is stopped");
        Ok(0)
    }

    fn status() -> Result<i32> {
        let Some(s) = open(ServiceAccess::QUERY_STATUS)? else {
            println!("service {NAME} is not installed");
            return Ok(4);
        };
        let st = s
            .query_status()
            .map_err(|e| explain(e, "querying the patchwatch service"))?;
        let pid = st
            .process_id
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        println!("service {NAME}: {:?}{pid}", st.current_state);
        Ok(if st.current_state == ServiceState::Running {
            0
        } else {
            3
        })
    }

    fn state(s: &Service) -> Result<ServiceState> {
        Ok(s.query_status()
            .map_err(|e| explain(e, "querying the patchwatch service"))?
            .current_state)
    }

    fn stop_and_wait(s: &Service) -> Result<()> {
        if state(s)? == ServiceState::Stopped {
            return Ok(());
        }
        if let Err(e) = s.stop() {
            // Stopped meanwhile (ERROR_SERVICE_NOT_ACTIVE).
            if os_error(&e) != Some(1062) {
                return Err(explain(e, "stopping the patchwatch service"));
            }
        }
        wait_for(s, ServiceState::Stopped)
    }

    /// What `start` says when the service stopped on its configuration.
    const CONFIG_INVALID: &str = "service patchwatch did not start: its configuration is invalid \
         (the reason is in the Event Log, source patchwatch, id 3, and in logs\\patchwatch.log \
         under the data directory; `patchwatch agent --check --config ...` shows it too)";

    /// True when the service stopped with the exit code of a bad configuration.
    fn refused_config(s: &Service) -> bool {
        s.query_status().is_ok_and(|st| {
            st.current_state == ServiceState::Stopped
                && st.exit_code == ServiceExitCode::ServiceSpecific(2)
        })
    }

    fn wait_for(s: &Service, want: ServiceState) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = state(s)?;
            if now == want {
                return Ok(());
            }
            if want == ServiceState::Running && now == ServiceState::Stopped {
                if refused_config(s) {
                    bail!(CONFIG_INVALID);
                }
                bail!(
                    "service {NAME} stopped right after starting: see the Event Log \
                     (source patchwatch) and `patchwatch agent --check --config ...`"
                );
            }
            if Instant::now() > deadline {
                bail!("service {NAME} is {now:?}, not {want:?}, after {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_config_parses_with_the_given_values() {
        let w = WriteConfigArgs {
            aggregator: Some("https://agg.contoso.local:4790".into()),
            token_file: Some(r"C:\ProgramData\patchwatch\token.txt".into()),
            host_name: Some("EX01".into()),
            sources: Some(r"D:\Logs\*.log; C:\ExchangeSetupLogs\*.log;".into()),
        };
        let text = config_text(&w, std::path::Path::new(r"C:\ProgramData\patchwatch")).unwrap();
        let c = patchwatch_collector::config::AgentConfig::from_toml(&text, "t").unwrap();
        assert_eq!(c.aggregator.endpoint, "https://agg.contoso.local:4790");
        assert_eq!(c.host_name.as_deref(), Some("EX01"));
        assert_eq!(
            c.sources.include,
            [r"D:\Logs\*.log", r"C:\ExchangeSetupLogs\*.log"]
        );
        assert_eq!(
            c.data_dir,
            std::path::PathBuf::from(r"C:\ProgramData\patchwatch")
        );
        assert!(
            text.contains(r#"token = { file = "C:\\ProgramData"#),
            "{text}"
        );
    }

    #[test]
    fn empty_values_keep_the_existing_file_or_the_defaults() {
        let none = WriteConfigArgs {
            aggregator: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(config_text(&none, std::path::Path::new("/x")), None);
        let w = WriteConfigArgs {
            aggregator: Some("http://127.0.0.1:4790".into()),
            token_file: Some(String::new()),
            host_name: Some(String::new()),
            sources: Some(String::new()),
        };
        let text = config_text(&w, std::path::Path::new("/x")).unwrap();
        assert!(
            !text.contains("[sources]") && !text.contains("token"),
            "{text}"
        );
    }
}
