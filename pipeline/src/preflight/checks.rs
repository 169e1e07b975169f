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
    /// The Exchange OAuth (Auth) certificate: the newest certificate of the local machine's
    /// `My` store whose subject is `subject`. Exchange keeps the Auth configuration's
    /// thumbprint in Active Directory, not in the registry, so the store is read by subject;
    /// the newest one stands for the current certificate (a renewal leaves the old one
    /// behind until it is removed).
    AuthCertificate {
        /// Subject of the certificate Exchange setup creates.
        subject: &'static str,
        /// Found when it expires within this many days but has not expired yet; `0` means
        /// found when it has expired.
        within_days: u32,
    },
    /// A double-byte (DBCS) Windows Server 2012 or 2012 R2: OS version 6.2 or 6.3 (and no
    /// Windows 10 major version) with one of `code_pages` as the system ANSI code page, on a
    /// server with the Exchange version `exchange_major` installed.
    DbcsServer2012 {
        /// The DBCS ANSI code pages.
        code_pages: &'static [u32],
        /// `MsiProductMajor` of the affected Exchange version, read below
        /// `SOFTWARE\Microsoft\ExchangeServer\v<major>\Setup`.
        exchange_major: u64,
    },
    /// Files below the Exchange install path modified more than `grace_days` after the last
    /// Exchange update was installed: customizations the next update overwrites.
    ModifiedSinceUpdate {
        /// Paths relative to the install path; absent ones are not reported.
        files: &'static [&'static str],
        /// Days after the install date during which setup's own writes are expected.
        grace_days: u32,
    },
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
const CURRENT_VERSION: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";
const CODE_PAGE: &str = r"SYSTEM\CurrentControlSet\Control\Nls\CodePage";
const DAY: i64 = 86_400;

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
        id: "oauth-certificate-expired",
        rule_id: "explain.owa-login-loop-oauth-expired",
        condition: "The Exchange OAuth certificate has expired",
        severity: Severity::High,
        exchange_only: true,
        probe: Probe::AuthCertificate {
            subject: AUTH_CERTIFICATE,
            within_days: 0,
        },
    },
    Check {
        id: "oauth-certificate-expiring",
        rule_id: "explain.owa-login-loop-oauth-expired",
        condition: "The Exchange OAuth certificate expires soon",
        severity: Severity::Medium,
        exchange_only: true,
        // HealthChecker warns below 60 days of lifetime left.
        probe: Probe::AuthCertificate {
            subject: AUTH_CERTIFICATE,
            within_days: 60,
        },
    },
    Check {
        id: "dbcs-server-2012",
        rule_id: "explain.dbcs-system-locale",
        condition: "Exchange 2010 on a double-byte (DBCS) Windows Server 2012",
        severity: Severity::Medium,
        // Exchange 2010 records no v15 install path; the probe reads its own key.
        exchange_only: false,
        // Known issue B23: installing or removing Exchange 2010 SP3 update rollups (UR32) on
        // a DBCS Windows Server 2012; Exchange 2013 and later are not named. Code pages:
        // Japanese, Simplified Chinese, Korean, Traditional Chinese.
        probe: Probe::DbcsServer2012 {
            code_pages: &[932, 936, 949, 950],
            exchange_major: 14,
        },
    },
    Check {
        id: "customized-config",
        rule_id: "exchange.setup.customizations-overwritten",
        condition: "Customized OWA or .config files the update overwrites",
        severity: Severity::Low,
        exchange_only: true,
        // The files known issue B21 names that a cumulative update replaces. Modified after
        // the last update (its Windows Installer date, plus setup's own later writes) means
        // someone changed them since: a heuristic, hence low severity.
        probe: Probe::ModifiedSinceUpdate {
            files: &[
                r"ClientAccess\Owa\web.config",
                r"ClientAccess\ecp\web.config",
                r"FrontEnd\HttpProxy\owa\web.config",
                r"FrontEnd\HttpProxy\owa\auth\logon.aspx",
                r"FrontEnd\HttpProxy\ecp\web.config",
                r"Bin\EdgeTransport.exe.config",
            ],
            grace_days: 2,
        },
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

/// Subject of the self-signed OAuth certificate Exchange setup creates.
const AUTH_CERTIFICATE: &str = "CN=Microsoft Exchange Server Auth Certificate";

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
        Probe::AuthCertificate {
            subject,
            within_days,
        } => auth_certificate(state, subject, within_days),
        Probe::DbcsServer2012 {
            code_pages,
            exchange_major,
        } => dbcs_server_2012(state, code_pages, exchange_major),
        Probe::ModifiedSinceUpdate { files, grace_days } => {
            let root = exchange.ok_or(Outcome::Skip("Exchange Server is not installed"))?;
            modified_since_update(state, root, files, grace_days)
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

fn auth_certificate(state: &dyn SystemState, subject: &str, within_days: u32) -> Facts {
    let newest = state
        .certificates("My")?
        .into_iter()
        .filter(|c| c.subject.trim().eq_ignore_ascii_case(subject))
        .max_by_key(|c| c.not_after_unix);
    let Some(cert) = newest else {
        return Err(Outcome::Skip(
            "no Exchange OAuth certificate in LocalMachine\\My",
        ));
    };
    let now = state.now_unix();
    let left = cert.not_after_unix - now;
    let expired = left <= 0;
    let found = if within_days == 0 {
        expired
    } else {
        !expired && left < i64::from(within_days) * DAY
    };
    if !found {
        return Ok(None);
    }
    let when = date(cert.not_after_unix);
    Ok(Some(vec![if expired {
        format!(
            "LocalMachine\\My {} ({}) expired on {when}, {} day(s) ago",
            cert.subject,
            cert.thumbprint,
            (-left) / DAY
        )
    } else {
        format!(
            "LocalMachine\\My {} ({}) expires on {when}, in {} day(s)",
            cert.subject,
            cert.thumbprint,
            left / DAY
        )
    }]))
}

fn dbcs_server_2012(state: &dyn SystemState, code_pages: &[u32], exchange_major: u64) -> Facts {
    let read = |key: &str, name: &str| state.registry_value(Hive::LocalMachine, key, name);
    let setup = format!(r"SOFTWARE\Microsoft\ExchangeServer\v{exchange_major}\Setup");
    let major = read(&setup, "MsiProductMajor")?.and_then(|v| v.as_u64());
    // Without that Exchange version the condition is absent, as on any other OS.
    if major != Some(exchange_major) {
        return Ok(None);
    }
    let exchange = match read(&setup, "MsiProductMinor")?.and_then(|v| v.as_u64()) {
        Some(minor) => format!(
            r"HKLM\{setup}\MsiProductMajor = {exchange_major}, MsiProductMinor = {minor} (Exchange Server 2010)"
        ),
        None => format!(r"HKLM\{setup}\MsiProductMajor = {exchange_major} (Exchange Server 2010)"),
    };
    let version = read(CURRENT_VERSION, "CurrentVersion")?
        .and_then(|v| v.as_str().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    // Windows 10 and Server 2016 and later still say 6.3 in CurrentVersion for old
    // programs; they are told apart by CurrentMajorVersionNumber, which 2012 does not have.
    let major = read(CURRENT_VERSION, "CurrentMajorVersionNumber")?.and_then(|v| v.as_u64());
    let client = read(CURRENT_VERSION, "InstallationType")?
        .and_then(|v| v.as_str().map(|s| s.trim().eq_ignore_ascii_case("Client")))
        .unwrap_or(false);
    if !matches!(version.as_str(), "6.2" | "6.3") || major.is_some_and(|m| m >= 10) || client {
        return Ok(None);
    }
    let acp = read(CODE_PAGE, "ACP")?.and_then(|v| v.as_u64());
    match acp {
        Some(cp) if code_pages.iter().any(|&c| u64::from(c) == cp) => {
            let product = read(CURRENT_VERSION, "ProductName")?
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("Windows {version}"));
            Ok(Some(vec![
                format!(r"HKLM\{CURRENT_VERSION}\CurrentVersion = {version} ({product})"),
                format!(r"HKLM\{CODE_PAGE}\ACP = {cp} (a double-byte code page)"),
                exchange,
            ]))
        }
        _ => Ok(None),
    }
}

fn modified_since_update(
    state: &dyn SystemState,
    root: &str,
    files: &[&str],
    grace_days: u32,
) -> Facts {
    let Some((installed, day)) = last_exchange_update(state)? else {
        return Err(Outcome::Skip(
            "the date of the last Exchange update is unknown",
        ));
    };
    let after = installed + i64::from(grace_days) * DAY;
    let mut facts = Vec::new();
    for rel in files {
        let path = format!(r"{root}\{rel}");
        if let Some(modified) = state.modified_unix(&path)? {
            if modified > after {
                facts.push(format!(
                    "{path} modified on {}, after the last update ({day})",
                    date(modified)
                ));
            }
        }
    }
    Ok(Some(facts))
}

/// The day the installed Exchange build or its latest patch was installed: Unix seconds of
/// its start (UTC) and the day as written (`YYYYMMDD`). Windows Installer records the product's
/// `InstallDate` and each patch's `Installed`, in days.
fn last_exchange_update(state: &dyn SystemState) -> Result<Option<(i64, String)>, StateError> {
    let mut latest: Option<(i64, String)> = None;
    let mut consider = |v: Option<super::state::RegValue>| {
        let Some(text) = v.and_then(|v| v.as_str().map(|s| s.trim().to_string())) else {
            return;
        };
        if let Some(t) = parse_day(&text) {
            if latest.as_ref().is_none_or(|(l, _)| t > *l) {
                latest = Some((t, text));
            }
        }
    };
    for code in state.registry_subkeys(Hive::LocalMachine, INSTALLER_PRODUCTS)? {
        let product = format!(r"{INSTALLER_PRODUCTS}\{code}");
        let props = format!(r"{product}\InstallProperties");
        let name = state
            .registry_value(Hive::LocalMachine, &props, "DisplayName")?
            .and_then(|v| v.as_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        if !name.contains("exchange") {
            continue;
        }
        consider(state.registry_value(Hive::LocalMachine, &props, "InstallDate")?);
        let patches = format!(r"{product}\Patches");
        for patch in state.registry_subkeys(Hive::LocalMachine, &patches)? {
            consider(state.registry_value(
                Hive::LocalMachine,
                &format!(r"{patches}\{patch}"),
                "Installed",
            )?);
        }
    }
    Ok(latest)
}

/// `YYYYMMDD` as Unix seconds at 00:00 UTC.
fn parse_day(text: &str) -> Option<i64> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (
        text[..4].parse::<i64>().ok()?,
        text[4..6].parse::<i64>().ok()?,
        text[6..].parse::<i64>().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYY-MM-DD` (UTC).
fn date(unix: i64) -> String {
    let z = unix.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_round_trip() {
        assert_eq!(parse_day("19700101"), Some(0));
        assert_eq!(parse_day("20260101"), Some(1_767_225_600));
        assert_eq!(
            parse_day("20240229").map(date).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(date(1_767_225_600 - 1), "2025-12-31");
        for bad in ["2026011", "2026-01-01", "20261301", "20260100", ""] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
