//! Generated ExchangeSetup.log runs in the shape of a cumulative-update upgrade, for a corpus
//! whose finding density is that of a real server's log rather than of a test suite.
//!
//! A run is written as `exchange-setup-log.md` §7 describes: the banner and header, the
//! prerequisite engine's `Started`/`Evaluated`/`Finished` triplets (one per rule name seen in
//! the committed samples), then component after component of cmdlet executions (script block,
//! Active Directory session settings, user parameters, begin/search/end), then the success
//! line and `End of Setup`. Most of a real log is that component phase, which the committed
//! samples (cut down to their failures) barely show.

use std::fmt::Write as _;

/// Cmdlets that setup's components run, as they appear in `Beginning processing` lines.
const CMDLETS: &[&str] = &[
    "Set-ExchangeServerRole",
    "Add-FirewallException",
    "Install-ExchangeCertificate",
    "New-PerfCounters",
    "Set-WERRegistryMarkers",
    "Install-MsiPackage",
    "Set-LocalPermissions",
    "Install-ResourceConfig",
    "Set-ServerComponentState",
    "New-ExchangeServer",
    "Get-ExchangeServer",
    "Set-OwaVirtualDirectory",
    "Install-TransportConfig",
    "Start-SetupService",
    "Stop-SetupService",
    "Set-SetupOnlyRegistryValues",
    "Install-ActiveSyncVirtualDirectory",
    "Update-RmsSharedIdentity",
    "Install-MailboxRoleConfig",
    "Set-ClientAccessServer",
];

/// Components as setup names them in `Processing component '<name>' (<phase>).` lines.
const COMPONENTS: &[(&str, &str)] = &[
    ("Stopping Services", "Stopping services."),
    ("Language Files", "Copying Exchange files."),
    ("Restoring Services", "Restoring services."),
    (
        "Bridgehead Role Setter",
        "Configuring the Mailbox role: Transport service.",
    ),
    (
        "Mailbox Role Setter",
        "Configuring the Mailbox role: Mailbox service.",
    ),
    (
        "Client Access Role Setter",
        "Configuring the Mailbox role: Client Access service.",
    ),
    (
        "Enable Remote IIS Admin RPC firewall exception",
        "Configuring the server.",
    ),
    (
        "Performance Counters",
        "Configuring the Mailbox role: Transport service.",
    ),
    (
        "Unified Messaging Configuration",
        "Configuring the Mailbox role: Unified Messaging service.",
    ),
    (
        "Front End Transport Configuration",
        "Configuring the Mailbox role: Front End Transport service.",
    ),
];

/// One successful upgrade run, about `cmdlets` cmdlet executions long (~1 KB each).
pub fn upgrade_run(seed: u32, cmdlets: u32, rules: &[String]) -> String {
    let mut out = String::with_capacity(cmdlets as usize * 1100 + 200 * 1024);
    let mut clock = Clock::new(seed);
    let star = "**********************************************";
    let line = |out: &mut String, clock: &mut Clock, level: u8, text: &str| {
        let _ = write!(out, "[{}] [{level}] {text}\r\n", clock.tick());
    };
    line(&mut out, &mut clock, 0, star);
    line(
        &mut out,
        &mut clock,
        0,
        "Starting Microsoft Exchange Server 2019 Setup",
    );
    line(&mut out, &mut clock, 0, star);
    for text in [
        "Local time zone: (UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna.",
        "Operating system version: Microsoft Windows NT 10.0.17763.0.",
        "Setup version: 15.2.1544.4.",
        "Logged on user: CONTOSO\\exadmin.",
        "Command Line Parameter Name='mode', Value='Upgrade'.",
        "Command Line Parameter Name='iacceptexchangeserverlicenseterms_diagnosticdataon', Value=''.",
        "Command Line Parameter Name='sourcedir', Value='E:\\'.",
        "RuntimeAssembly was started with the following command: '/m:upgrade /IAcceptExchangeServerLicenseTerms_DiagnosticDataON /sourcedir:E:\"'.",
        "Copying Files...",
        "Starting copy from E:\\Setup\\ServerRoles\\Common to C:\\Windows\\Temp\\ExchangeSetup.",
        "Finished copy from E:\\Setup\\ServerRoles\\Common to C:\\Windows\\Temp\\ExchangeSetup.",
        "File copy complete.  Setup will now collect additional information needed for installation.",
        "Setup is choosing the domain controller to use",
        "Setup has chosen the local domain controller DC1.contoso.com for initial queries",
        "Setup will use the domain controller 'DC1.contoso.com'.",
        "Setup will use the global catalog 'DC1.contoso.com'.",
        "Exchange configuration container for the organization is 'CN=Microsoft Exchange,CN=Services,CN=Configuration,DC=contoso,DC=com'.",
        "Setup will search for an Exchange Server object for the local machine with name 'EX01'.",
        "The installation mode is set to: 'Upgrade'.",
        "The locally installed version is 15.2.1258.12.",
        "The backup copy of the previously installed version is '15.2.1258.12'.",
        "Active Directory Initialization status : 'True'.",
        "Schema Update Required Status : 'False'.",
        "Organization Configuration Update Required Status : 'False'.",
        "Domain Configuration Update Required Status : 'False'.",
        "Performing Microsoft Exchange Server Prerequisite Check",
    ] {
        line(&mut out, &mut clock, 0, text);
    }
    for (i, rule) in rules.iter().enumerate() {
        line(
            &mut out,
            &mut clock,
            1,
            &format!("Started [{rule}] [ValueType:Boolean]"),
        );
        let value = if i % 5 == 0 { "\"\"" } else { "\"False\"" };
        line(
            &mut out,
            &mut clock,
            1,
            &format!(
                "Evaluated [{rule}] [HasException:False] [Value:{value}] [ParentValue:\"<NULL>\"] [Thread:{}] [Duration:00:00:00.{:07}]",
                i % 4 + 1,
                (seed as usize * 31 + i * 7919) % 10_000_000
            ),
        );
        line(&mut out, &mut clock, 1, &format!("Finished [{rule}]"));
    }
    let mut n = 0;
    let mut c = seed as usize;
    while n < cmdlets {
        let (name, phase) = COMPONENTS[c % COMPONENTS.len()];
        line(
            &mut out,
            &mut clock,
            1,
            &format!("Processing component '{name}' ({phase})."),
        );
        for k in 0..(3 + c % 13) {
            let cmdlet = CMDLETS[(c * 7 + k) % CMDLETS.len()];
            cmdlet_block(&mut out, &mut clock, cmdlet, c + k);
            n += 1;
        }
        c += 1;
    }
    line(
        &mut out,
        &mut clock,
        1,
        "Finished executing component tasks.",
    );
    line(&mut out, &mut clock, 1, "Ending processing Start-PostSetup");
    line(
        &mut out,
        &mut clock,
        0,
        "The Exchange Server setup operation completed successfully.",
    );
    line(&mut out, &mut clock, 0, "End of Setup");
    line(&mut out, &mut clock, 0, star);
    out
}

/// One cmdlet execution as setup logs it (about 1 KB).
fn cmdlet_block(out: &mut String, clock: &mut Clock, cmdlet: &str, k: usize) {
    let dc = "DC1.contoso.com";
    let _ = write!(
        out,
        "[{}] [1] Executing: \r\n          if ($RoleIsDatacenter -ne $true)\r\n          {{\r\n            {cmdlet} -DomainController $RoleDomainController\r\n          }}\r\n        \r\n",
        clock.tick()
    );
    let lower = cmdlet.to_ascii_lowercase();
    let _ = write!(
        out,
        "[{t}] [2] Active Directory session settings for '{lower}' are: View Entire Forest: 'True', Configuration Domain Controller: '{dc}', Preferred Global Catalog: '{dc}', Preferred Domain Controllers: '{{ {dc} }}'\r\n\
         [{t}] [2] User specified parameters:  -DomainController:'{dc}' -Identity:'EX01'\r\n\
         [{t}] [2] Beginning processing {cmdlet}\r\n",
        t = clock.tick()
    );
    if k.is_multiple_of(3) {
        let _ = write!(
            out,
            "[{t}] [2] Searching objects \"EX01\" of type \"Server\" under the root \"$null\".\r\n\
             [{t}] [2] Previous operation run on domain controller '{dc}'.\r\n",
            t = clock.tick()
        );
    }
    if k % 17 == 5 {
        let _ = write!(
            out,
            "[{}] [2] [WARNING] The command completed successfully but no settings of 'EX01' have been modified.\r\n",
            clock.tick()
        );
    }
    let _ = write!(out, "[{}] [2] Ending processing {cmdlet}\r\n", clock.tick());
}

/// Log timestamps (`MM/DD/YYYY HH:MM:SS.ffff`) that advance a few milliseconds per line.
struct Clock {
    ms: u64,
}

impl Clock {
    fn new(seed: u32) -> Clock {
        Clock {
            ms: u64::from(seed % 20) * 3_600_000,
        }
    }

    fn tick(&mut self) -> String {
        self.ms += 3;
        let s = self.ms / 1000;
        format!(
            "11/21/2026 {:02}:{:02}:{:02}.{:04}",
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60,
            (self.ms % 1000) * 10
        )
    }
}

/// The `[Rule:X]`/`[Setting:X]` names of every `Evaluated` line in `samples`, deduplicated.
pub fn rule_names(samples: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = samples
        .iter()
        .flat_map(|s| s.lines())
        .filter_map(|l| {
            let rest = &l[l.find("] Evaluated [")? + "] Evaluated [".len()..];
            Some(rest[..rest.find(']')?].to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{scan_bytes, Catalog, LogKind, Outcome, ScanContext, Severity};

    #[test]
    fn a_generated_run_is_one_successful_upgrade_with_no_failure_findings() {
        let rules = rule_names(&[include_str!(
            "../../tests/data/exchange/ExchangeSetup_Reboot_Pending.log"
        )]);
        assert!(rules.len() > 50, "{} rule names", rules.len());
        let text = upgrade_run(7, 200, &rules);
        let out = scan_bytes(
            std::sync::Arc::new(Catalog::builtin()),
            ScanContext::new("host", "ExchangeSetup.log"),
            text.as_bytes(),
        );
        assert_eq!(out.kind, Some(LogKind::ExchangeSetup));
        assert_eq!(out.runs.len(), 1);
        assert_eq!(out.runs[0].outcome, Outcome::Succeeded);
        let bad: Vec<_> = out
            .findings
            .iter()
            .filter(|f| f.severity > Severity::Low)
            .map(|f| &f.rule_id)
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
    }
}
