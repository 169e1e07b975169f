//! The preflight checks as data ([`CHECKS`]) and the small reader that evaluates each kind of
//! [`Probe`] against a [`SystemState`].

use std::collections::BTreeMap;

#[cfg(doc)]
use super::state::RegValue;
use super::state::{Hive, StateError, SystemState};
use crate::Severity;

/// One condition that predicts a known failure.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Stable name, e.g. `execution-policy-gpo`.
    pub id: &'static str,
    /// The catalog rule of the failure it predicts; its title and remediation are reported.
    pub rule_id: &'static str,
    /// The condition in a few words, as a host's state: "ExecutionPolicy defined by Group Policy".
    pub condition: &'static str,
    /// How bad it is when found.
    pub severity: Severity,
    /// Only meaningful on an Exchange server (skipped elsewhere).
    pub exchange_only: bool,
    /// What to read.
    pub probe: Probe,
}

/// A registry key or value whose presence is the condition.
#[derive(Debug, Clone, Copy)]
pub struct RegProbe {
    /// Root; [`Hive::Users`] means "below each loaded user's hive".
    pub hive: Hive,
    /// Key path below the hive (below the user's SID for [`Hive::Users`]).
    pub key: &'static str,
    /// What about it is the condition.
    pub test: RegTest,
}

/// What makes a [`RegProbe`] true.
#[derive(Debug, Clone, Copy)]
pub enum RegTest {
    /// The key exists.
    KeyExists,
    /// The value exists, whatever it holds (a policy set to 0 is still a policy).
    ValueExists(&'static str),
    /// The value exists and carries something ([`RegValue::is_set`]).
    ValueSet(&'static str),
}

/// What a check reads and what it looks for.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// Any of these keys exists or values is set ([`RegValue::is_set`]).
    Registry(&'static [RegProbe]),
    /// Services whose name starts with `prefix` (or is in `also`) with start type Disabled,
    /// except those in `except` (disabled by default).
    DisabledServices {
        /// Name prefix, compared case-insensitively.
        prefix: &'static str,
        /// Other services setup needs.
        also: &'static [&'static str],
        /// Services that are Disabled by design.
        except: &'static [&'static str],
    },
    /// The Windows Installer cache copy (`LocalPackage`) of an installed product whose name
    /// contains `product`, or of one of its patches, is missing.
    InstallerCache {
        /// Product name fragment, compared case-insensitively.
        product: &'static str,
    },
    /// An entry of Programs and Features whose name contains every fragment.
    InstalledUpdate(&'static [&'static str]),
    /// Files below the Exchange install path missing, each checked only when its folder exists
    /// (an Edge server has no ClientAccess).
    ExchangeFiles(&'static [&'static str]),
    /// Less than `min_gib` free on the system drive or the Exchange install drive.
    FreeSpace {
        /// Minimum free space in GiB.
        min_gib: u64,
    },
    /// .NET Framework 4.x `Release` below `min`.
    DotNetRelease {
        /// Lowest acceptable release number.
        min: u64,
        /// Its name, for the message.
        name: &'static str,
    },
    /// The account name ends with `$`.
    AccountEndsWithDollar,
}

const SESSION_MANAGER: &str = r"SYSTEM\CurrentControlSet\Control\Session Manager";
/// Where services keep their configuration; `Start` is the start type (4 = Disabled).
pub(crate) const SERVICES: &str = r"SYSTEM\CurrentControlSet\Services";
const SERVICE_DISABLED: u64 = 4;
const INSTALLER_PRODUCTS: &str =
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Products";
const INSTALLER_PATCHES: &str =
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Patches";
const UNINSTALL: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
const DOTNET: &str = r"SOFTWARE\Microsoft\NET Framework Setup\NDP\v4\Full";
/// Exchange 2013, 2016, 2019 and SE record their install folder here.
const EXCHANGE_SETUP: &str = r"SOFTWARE\Microsoft\ExchangeServer\v15\Setup";
const GIB: u64 = 1 << 30;

/// The checks, in report order.
pub const CHECKS: &[Check] = &[
    Check {
        id: "execution-policy-gpo",
        rule_id: "exchange.su.servicecontrol-execution-policy",
        condition: "PowerShell ExecutionPolicy defined by Group Policy",
        severity: Severity::High,
        exchange_only: false,
        probe: Probe::Registry(&[
            RegProbe {
                hive: Hive::LocalMachine,
                key: r"SOFTWARE\Policies\Microsoft\Windows\PowerShell",
                test: RegTest::ValueSet("ExecutionPolicy"),
            },
            RegProbe {
                hive: Hive::LocalMachine,
                key: r"SOFTWARE\Policies\Microsoft\Windows\PowerShell",
                test: RegTest::ValueExists("EnableScripts"),
            },
            RegProbe {
                hive: Hive::Users,
                key: r"Software\Policies\Microsoft\Windows\PowerShell",
                test: RegTest::ValueSet("ExecutionPolicy"),
            },
            RegProbe {
                hive: Hive::Users,
                key: r"Software\Policies\Microsoft\Windows\PowerShell",
                test: RegTest::ValueExists("EnableScripts"),
            },
        ]),
    },
    Check {
        id: "pending-restart",
        rule_id: "exchange.readiness.reboot-pending",
        condition: "A restart is pending",
        severity: Severity::High,
        exchange_only: false,
        probe: Probe::Registry(&[
            RegProbe {
                hive: Hive::LocalMachine,
                key: r"SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending",
                test: RegTest::KeyExists,
            },
            RegProbe {
                hive: Hive::LocalMachine,
                key: r"SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired",
                test: RegTest::KeyExists,
            },
            RegProbe {
                hive: Hive::LocalMachine,
                key: SESSION_MANAGER,
                test: RegTest::ValueSet("PendingFileRenameOperations"),
            },
            RegProbe {
                hive: Hive::LocalMachine,
                key: SESSION_MANAGER,
                test: RegTest::ValueSet("PendingFileRenameOperations2"),
            },
            RegProbe {
                hive: Hive::LocalMachine,
                key: r"SOFTWARE\Microsoft\Updates",
                test: RegTest::ValueSet("UpdateExeVolatile"),
            },
        ]),
    },
    Check {
        id: "services-disabled",
        rule_id: "exchange.error.service-disabled",
        condition: "Exchange services are Disabled",
        severity: Severity::High,
        exchange_only: false,
        probe: Probe::DisabledServices {
            prefix: "MSExchange",
            also: &["Winmgmt", "W3SVC"],
            // Off by default: leave them (known issue B10).
            except: &[
                "MSExchangeIMAP4",
                "MSExchangeIMAP4BE",
                "MSExchangePOP3",
                "MSExchangePOP3BE",
            ],
        },
    },
    Check {
        id: "installer-cache",
        rule_id: "msi.cached-package-missing",
        condition: "Windows Installer cache is missing Exchange packages",
        severity: Severity::High,
        exchange_only: false,
        probe: Probe::InstallerCache {
            product: "Exchange",
        },
    },
    Check {
        id: "interim-update",
        rule_id: "msi.su-blocked-by-interim-update",
        condition: "An Exchange Interim Update is installed",
        severity: Severity::High,
        exchange_only: true,
        probe: Probe::InstalledUpdate(&["Interim Update", "Exchange"]),
    },
    Check {
        id: "shared-web-config",
        rule_id: "explain.shared-web-config-missing",
        condition: "SharedWebConfig.config is missing",
        severity: Severity::High,
        exchange_only: true,
        probe: Probe::ExchangeFiles(&[
            r"ClientAccess\SharedWebConfig.config",
            r"FrontEnd\HttpProxy\SharedWebConfig.config",
        ]),
    },
    Check {
        id: "dotnet-release",
        rule_id: "preflight.dotnet-too-old",
        condition: ".NET Framework older than the update needs",
        severity: Severity::High,
        exchange_only: true,
        // Exchange 2016 CU23, 2019 CU12 and later need 4.8 (release 528040 and up).
        probe: Probe::DotNetRelease {
            min: 528_040,
            name: "4.8",
        },
    },
    Check {
        id: "free-space",
        rule_id: "preflight.disk-space-low",
        condition: "Little free disk space",
        severity: Severity::Medium,
        exchange_only: true,
        // A CU unpacks and backs up several GB; Exchange's own requirement is 30 GB on the
        // install drive.
        probe: Probe::FreeSpace { min_gib: 30 },
    },
    Check {
        id: "account-name-dollar",
        rule_id: "exchange.setup.admin-name-ends-with-dollar",
        condition: "The admin account's name ends with '$'",
        severity: Severity::Medium,
        exchange_only: false,
        probe: Probe::AccountEndsWithDollar,
    },
];

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The condition is absent.
    Clean,
    /// The condition is present: what was seen, one fact per line, and values for the rule's
    /// remediation template.
    Found {
        /// What was read, e.g. `HKLM\...\PowerShell\ExecutionPolicy = AllSigned`.
        facts: Vec<String>,
        /// Values for the remediation template (e.g. `cached_package`).
        fields: BTreeMap<String, String>,
    },
    /// The check does not apply here (why).
    Skipped(&'static str),
    /// A read failed: the check did not run.
    Failed(StateError),
}

/// The Exchange install folder (`MsiInstallPath`), if Exchange is installed.
pub fn exchange_install_path(state: &dyn SystemState) -> Result<Option<String>, StateError> {
    Ok(state
        .registry_value(Hive::LocalMachine, EXCHANGE_SETUP, "MsiInstallPath")?
        .and_then(|v| v.as_str().map(|s| s.trim_end_matches('\\').to_string()))
        .filter(|s| !s.is_empty()))
}

/// Evaluates one check. `exchange` is the install path when Exchange is installed.
pub fn evaluate(check: &Check, state: &dyn SystemState, exchange: Option<&str>) -> Status {
    if check.exchange_only && exchange.is_none() {
        return Status::Skipped("Exchange Server is not installed");
    }
    let mut fields = BTreeMap::new();
    let facts = match probe(&check.probe, state, exchange, &mut fields) {
        Ok(Some(facts)) => facts,
        Ok(None) => return Status::Clean,
        Err(Outcome::Skip(why)) => return Status::Skipped(why),
        Err(Outcome::Fail(e)) => return Status::Failed(e),
    };
    if facts.is_empty() {
        Status::Clean
    } else {
        Status::Found { facts, fields }
    }
}

enum Outcome {
    Skip(&'static str),
    Fail(StateError),
}

impl From<StateError> for Outcome {
    fn from(e: StateError) -> Self {
        Outcome::Fail(e)
    }
}

type Facts = Result<Option<Vec<String>>, Outcome>;

fn probe(
    p: &Probe,
    state: &dyn SystemState,
    exchange: Option<&str>,
    fields: &mut BTreeMap<String, String>,
) -> Facts {
    match *p {
        Probe::Registry(probes) => registry(probes, state),
        Probe::DisabledServices {
            prefix,
            also,
            except,
        } => {
            let facts = disabled_services(state, prefix, also, except)?;
            if !facts.is_empty() {
                fields.insert("services".into(), facts.join(", "));
            }
            Ok(Some(
                facts
                    .into_iter()
                    .map(|s| format!("{s}: start type Disabled"))
                    .collect(),
            ))
        }
        Probe::InstallerCache { product } => {
            let (facts, first) = installer_cache(state, product)?;
            if let Some(first) = first {
                fields.insert("cached_package".into(), first);
            }
            Ok(Some(facts))
        }
        Probe::InstalledUpdate(fragments) => installed_update(state, fragments),
        Probe::ExchangeFiles(files) => {
            let root = exchange.ok_or(Outcome::Skip("Exchange Server is not installed"))?;
            let mut facts = Vec::new();
            for rel in files {
                let path = format!(r"{root}\{rel}");
                let folder = path.rsplit_once('\\').map_or(root, |(d, _)| d);
                if state.path_exists(folder)? && !state.path_exists(&path)? {
                    facts.push(format!("{path} is missing"));
                }
            }
            Ok(Some(facts))
        }
        Probe::FreeSpace { min_gib } => {
            let mut drives = vec![state.system_drive()];
            if let Some(d) = exchange.and_then(|e| e.get(..2)) {
                if !drives.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                    drives.push(d.to_string());
                }
            }
            let mut facts = Vec::new();
            for d in drives {
                if let Some(free) = state.free_bytes(&format!(r"{d}\"))? {
                    if free < min_gib * GIB {
                        facts.push(format!(
                            "{d} has {:.1} GiB free; at least {min_gib} GiB needed",
                            free as f64 / GIB as f64
                        ));
                    }
                }
            }
            Ok(Some(facts))
        }
        Probe::DotNetRelease { min, name } => {
            let release = state
                .registry_value(Hive::LocalMachine, DOTNET, "Release")?
                .and_then(|v| v.as_u64());
            Ok(Some(match release {
                Some(r) if r >= min => Vec::new(),
                Some(r) => vec![format!(
                    r"HKLM\{DOTNET}\Release = {r}; .NET Framework {name} is {min} or later"
                )],
                None => vec![format!(
                    ".NET Framework 4.5 or later is not installed (no HKLM\\{DOTNET}\\Release); {name} is needed"
                )],
            }))
        }
        Probe::AccountEndsWithDollar => {
            let Some(name) = state.account_name() else {
                return Err(Outcome::Skip("runs as a service account"));
            };
            if name.ends_with('$') {
                fields.insert("logon_user".into(), name.clone());
                Ok(Some(vec![format!("running as {name}")]))
            } else {
                Ok(None)
            }
        }
    }
}

/// The user hives to look in: each loaded profile, not the `_Classes` views of the same ones.
fn user_hives(state: &dyn SystemState) -> Result<Vec<String>, StateError> {
    Ok(state
        .registry_subkeys(Hive::Users, "")?
        .into_iter()
        .filter(|sid| !sid.to_ascii_lowercase().ends_with("_classes"))
        .collect())
}

fn registry(probes: &[RegProbe], state: &dyn SystemState) -> Facts {
    let mut facts = Vec::new();
    let users = if probes.iter().any(|p| p.hive == Hive::Users) {
        user_hives(state)?
    } else {
        Vec::new()
    };
    for p in probes {
        let keys: Vec<String> = match p.hive {
            Hive::LocalMachine => vec![p.key.to_string()],
            Hive::Users => users
                .iter()
                .map(|sid| format!(r"{sid}\{}", p.key))
                .collect(),
        };
        for key in keys {
            let shown = format!(r"{}\{key}", p.hive.as_str());
            match p.test {
                RegTest::KeyExists => {
                    if state.registry_key_exists(p.hive, &key)? {
                        facts.push(format!("{shown} exists"));
                    }
                }
                RegTest::ValueExists(name) | RegTest::ValueSet(name) => {
                    let need_set = matches!(p.test, RegTest::ValueSet(_));
                    if let Some(v) = state.registry_value(p.hive, &key, name)? {
                        if !need_set || v.is_set() {
                            facts.push(format!(r"{shown}\{name} = {}", v.display()));
                        }
                    }
                }
            }
        }
    }
    Ok(Some(facts))
}

fn disabled_services(
    state: &dyn SystemState,
    prefix: &str,
    also: &[&str],
    except: &[&str],
) -> Result<Vec<String>, StateError> {
    let mut found = Vec::new();
    for name in state.registry_subkeys(Hive::LocalMachine, SERVICES)? {
        let wanted = name
            .get(..prefix.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
            || also.iter().any(|a| a.eq_ignore_ascii_case(&name));
        if !wanted || except.iter().any(|e| e.eq_ignore_ascii_case(&name)) {
            continue;
        }
        let start = state
            .registry_value(Hive::LocalMachine, &format!(r"{SERVICES}\{name}"), "Start")?
            .and_then(|v| v.as_u64());
        if start == Some(SERVICE_DISABLED) {
            found.push(name);
        }
    }
    Ok(found)
}

fn installer_cache(
    state: &dyn SystemState,
    product: &str,
) -> Result<(Vec<String>, Option<String>), StateError> {
    let needle = product.to_ascii_lowercase();
    let mut facts = Vec::new();
    let mut first = None;
    let mut missing = |what: String, package: String, facts: &mut Vec<String>| {
        first.get_or_insert_with(|| package.clone());
        facts.push(format!("{what}: cached package {package} is missing"));
    };
    for code in state.registry_subkeys(Hive::LocalMachine, INSTALLER_PRODUCTS)? {
        let props = format!(r"{INSTALLER_PRODUCTS}\{code}\InstallProperties");
        let name = state
            .registry_value(Hive::LocalMachine, &props, "DisplayName")?
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if !name.to_ascii_lowercase().contains(&needle) {
            continue;
        }
        if let Some(pkg) = local_package(state, &props)? {
            if !state.path_exists(&pkg)? {
                missing(name.clone(), pkg, &mut facts);
            }
        }
        // The product's patches (CUs are products, SUs and IUs are patches).
        let patches = format!(r"{INSTALLER_PRODUCTS}\{code}\Patches");
        for patch in state.registry_subkeys(Hive::LocalMachine, &patches)? {
            let key = format!(r"{INSTALLER_PATCHES}\{patch}");
            if let Some(pkg) = local_package(state, &key)? {
                if !state.path_exists(&pkg)? {
                    missing(format!("{name}, patch {patch}"), pkg, &mut facts);
                }
            }
        }
    }
    Ok((facts, first))
}

fn local_package(state: &dyn SystemState, key: &str) -> Result<Option<String>, StateError> {
    Ok(state
        .registry_value(Hive::LocalMachine, key, "LocalPackage")?
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|s| !s.trim().is_empty()))
}

fn installed_update(state: &dyn SystemState, fragments: &[&str]) -> Facts {
    let mut facts = Vec::new();
    for entry in state.registry_subkeys(Hive::LocalMachine, UNINSTALL)? {
        let name = state
            .registry_value(
                Hive::LocalMachine,
                &format!(r"{UNINSTALL}\{entry}"),
                "DisplayName",
            )?
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        if fragments
            .iter()
            .all(|f| lower.contains(&f.to_ascii_lowercase()))
        {
            facts.push(format!("installed: {name}"));
        }
    }
    Ok(Some(facts))
}
