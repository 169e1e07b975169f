//! Localized Windows Installer logs: the phrase table's languages from real lines
//! (`tests/data/real/LOCALIZED.md`), a language not in the table from the lines that stay the
//! same in every language, and the corpus seed (Japanese, with translated custom action lines).

use std::sync::Arc;

use crate::common::{catalog, corpus_file, derived_only, scan, utf16le_bom};
use patchwatch_pipeline::{
    scan_bytes, Catalog, Finding, LogKind, Outcome, ScanContext, ScanOutput,
};

fn scan_msi(catalog: Arc<Catalog>, text: &str) -> ScanOutput {
    let mut ctx = ScanContext::new("EX01", "MSI1234.LOG");
    ctx.kind = Some(LogKind::Msi);
    scan_bytes(catalog, ctx, &utf16le_bom(text))
}

fn primary(out: &ScanOutput) -> &Finding {
    let id = out.runs[0].primary_finding_id.as_deref().expect("primary");
    out.findings.iter().find(|f| f.id == id).expect("emitted")
}

const HEADER: &str = "=== Verbose logging started: 2020/2/10  21:12:00  Build type: SHIP UNICODE 5.00.10011.00  Calling process: C:\\Windows\\system32\\msiexec.exe ===\r\n";

#[test]
fn japanese_return_value_names_the_failed_action() {
    // [Y4], verbatim; no status line follows in the excerpt: the run is cut short, failed.
    let log = format!(
        "{HEADER}MSI (s) (E4:7C) [16:40:01:295]: PROPERTY CHANGE: Adding YAGURA_OS_BUILD property. Its value is '14393'.\r\n\
操作終了 16:40:01: LaunchConditions。 戻り値 3。\r\n"
    );
    let out = scan_msi(derived_only("msi.toml"), &log);
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    assert_eq!(out.runs[0].fields["failed_action"], "LaunchConditions");
    // The success line's `戻り値 1。` names nothing.
    let ok = log.replace("戻り値 3。", "戻り値 1。");
    assert!(!scan_msi(derived_only("msi.toml"), &ok).runs[0]
        .fields
        .contains_key("failed_action"));
}

#[test]
fn japanese_final_status_gives_the_outcome() {
    // [AW]: the status phrase, its line as the author wrapped it.
    let log = format!(
        "{HEADER}MSI (c) (38:F8) [09:51:55:685]: Windows インストーラーにより製品がインストールされました。\r\n  製品名: awase、製品バージョン: 1.20.5、…、インストールの成功またはエラーの状態: 0\r\n"
    );
    let out = scan_msi(derived_only("msi.toml"), &log);
    assert_eq!(out.runs[0].exit_code, Some(0));
    assert_eq!(out.runs[0].outcome, Outcome::Succeeded);
    let failed = log.replace("エラーの状態: 0", "エラーの状態: 1603");
    let out = scan_msi(derived_only("msi.toml"), &failed);
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    assert_eq!(out.runs[0].exit_code, Some(1603));
}

#[test]
fn chinese_final_status_gives_the_outcome() {
    // [TL], verbatim (without the English MainEngineThread line that follows it there).
    let log = format!(
        "{HEADER}MSI (s) (90:18) [21:12:04:880]: Product: Twitch Leecher 1.8 -- Installation failed.\r\n\r\n\
MSI (s) (90:18) [21:12:04:881]: Windows Installer 已安裝該產品。產品名稱: Twitch Leecher 1.8。產品版本: 1.8.0.0。產品語言: 1033。製造商: Franiac。安裝成功或錯誤狀態: 1603。\r\n"
    );
    let out = scan_msi(derived_only("msi.toml"), &log);
    assert_eq!(out.runs[0].exit_code, Some(1603));
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    assert_eq!(primary(&out).rule_id, "msi.install-failed");
}

#[test]
fn simplified_chinese_final_status_gives_the_outcome() {
    // winfsp/winfsp#560, verbatim (zh-CN system, English product line).
    let log = format!(
        "{HEADER}MSI (s) (54:F0) [11:02:23:343]: Product: WinFsp 2022+ARM64 Beta2 -- Installation failed.\r\n\
MSI (s) (54:F0) [11:02:23:344]: Windows Installer 已安装产品。产品名称: WinFsp 2022+ARM64 Beta2。产品版本: 1.11.22103。产品语言: 1033。制造商: Navimatics LLC。安装成功或错误状态: 1603。\r\n"
    );
    let out = scan_msi(derived_only("msi.toml"), &log);
    assert_eq!(out.runs[0].exit_code, Some(1603));
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    let f = primary(&out);
    assert_eq!(f.rule_id, "msi.install-failed");
    // The Chinese status line is the evidence, not only the English product line.
    assert!(
        f.evidence
            .iter()
            .any(|e| e.text.contains("安装成功或错误状态: 1603")),
        "{:#?}",
        f.evidence
    );
    // Without the English product line the Chinese status line alone settles it; 0 succeeds.
    let zh_only: String = log
        .lines()
        .filter(|l| !l.contains("Product:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ok = zh_only.replace("错误状态: 1603", "错误状态: 0");
    let out = scan_msi(derived_only("msi.toml"), &ok);
    assert_eq!(out.runs[0].exit_code, Some(0));
    assert_eq!(out.runs[0].outcome, Outcome::Succeeded);
}

#[test]
fn french_error_and_status_title_the_failure_by_what_it_says() {
    // [NC], verbatim: `Erreur 1714.` inside the product line, `état d’erreur : 1603.`.
    let log = format!(
        "{HEADER}MSI (s) (CC:24) [17:23:00:920]: Produit : Nextcloud -- Erreur 1714. La version précédente de Nextcloud ne peut pas être supprimée. Contactez votre service de support technique. Erreur système : 1612.\r\n\
MSI (s) (CC:24) [17:23:02:074]: Windows Installer a installé le produit. Nom du produit : Nextcloud. Version du produit : 4.0.1.20251027. Langue du produit : 1033. Fabricant : Nextcloud GmbH. Réussite de l’installation ou état d’erreur : 1603.\r\n"
    );
    let out = scan_msi(derived_only("msi.toml"), &log);
    assert_eq!(out.runs[0].exit_code, Some(1603));
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    let f = primary(&out);
    assert_eq!(f.rule_id, "msi.failed.error", "beats msi.install-failed");
    assert!(
        f.title.starts_with(
            "Error 1714: La version précédente de Nextcloud ne peut pas être supprimée."
        ),
        "{}",
        f.title
    );
    assert_eq!(f.fields["error_code"], "1714");
    // The fix comes from the documented codes table.
    assert!(!f.fields["fix"].is_empty());
    assert!(f.remediation.steps.iter().any(|s| s == &f.fields["fix"]));
}

#[test]
fn german_message_names_the_error() {
    // [SS], verbatim: a German 1638 message in an otherwise English log.
    let log = format!(
        "{HEADER}Eine andere Version des Produkts ist bereits installiert. Die Installation dieser Version kann nicht fortgesetzt werden. Verwenden Sie die Systemsteuerungsoption \"Software\", um die vorhandene Version dieses Produkts zu konfigurieren oder zu entfernen.\r\n\
MSI (c) (B8:6C) [09:32:04:546]: Product: SparkleShare -- Configuration failed.\r\n\r\n\
MSI (c) (B8:6C) [09:32:04:546]: Windows Installer reconfigured the product. Product Name: SparkleShare. Product Version: 0.8.1. Product Language: 1033. Reconfiguration success or error status: 1638.\r\n"
    );
    let out = scan_msi(derived_only("msi.toml"), &log);
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    let f = primary(&out);
    assert_eq!(f.rule_id, "msi.failed.error");
    assert!(
        f.title
            .starts_with("Error 1638: Eine andere Version des Produkts ist bereits installiert."),
        "{}",
        f.title
    );
}

#[test]
fn italian_system_keeps_english_action_and_error_lines() {
    // amnweb/yasb#740, verbatim: on an it-IT Windows 11 (`SystemLanguageID = 1040`) the
    // action-end line and the internal error text stay English.
    let log = include_str!(
        "../data/real/localized/yasb-it-2502-internal-error-english-lines.excerpt.log"
    );
    let out = scan_msi(catalog(), log);
    let run = &out.runs[0];
    assert_eq!(run.outcome, Outcome::Failed);
    assert_eq!(run.exit_code, None, "no status line in the excerpt");
    let f = primary(&out);
    assert_eq!(f.rule_id, "msi.internal-error");
    assert!(f.title.contains("internal error"), "{}", f.title);
}

/// A made-up display language: only the shapes that every language keeps are left.
const INVENTED: &str = "\
=== Verbose logging started: 4.5.2023  10:15:00  Build type: SHIP UNICODE 5.00.10011.00  Calling process: C:\\Windows\\system32\\msiexec.exe ===\r
MSI (s) (B4:20) [10:15:02:000]: Farvo akzion: CA_CONTOSO_CONFIGURE\r
Akzion starto 10:15:02: CA_CONTOSO_CONFIGURE.\r
MSI (s) (B4:48) [10:15:02:100]: Invokko remoto akzion. DLL: C:\\Windows\\Installer\\MSI2978.tmp, Entrypunkto: CAQuietExec\r
CAQuietExec:  Erroro 0x80070001: Komando linio returnis erroron.\r
CustomAction CA_CONTOSO_CONFIGURE 1603 estas la vera erara kodo (noto: eble ne 100% akurata)\r
Akzion finito 10:15:03: CA_CONTOSO_CONFIGURE. Valoro 3 revenas.\r
MSI (s) (B4:20) [10:15:04:000]: Windows Installer instalis la produkton. Produkta nomo: Contoso Agent. Sukceso aŭ erara stato: 1603.\r
";

#[test]
fn an_unknown_language_falls_back_on_what_every_language_keeps() {
    let out = scan_msi(derived_only("msi.toml"), INVENTED);
    let run = &out.runs[0];
    assert_eq!(run.exit_code, Some(1603), "`Windows Installer ...: N`");
    assert_eq!(run.outcome, Outcome::Failed);
    assert_eq!(run.duration_seconds, Some(4));
    let f = primary(&out);
    assert_eq!(f.rule_id, "msi.failed.custom-action");
    assert_eq!(
        f.title,
        "Custom action CA_CONTOSO_CONFIGURE failed with 1603"
    );
    assert_eq!(f.fields["action"], "CA_CONTOSO_CONFIGURE");
    assert!(f.fields["action_error"].contains("0x80070001"));
    let lines: Vec<u64> = f.evidence.iter().map(|e| e.line).collect();
    assert_eq!(lines, (2..=6).collect::<Vec<u64>>(), "{:#?}", f.evidence);
    // Without a status line, the custom action's result alone fails the run.
    let cut: String = INVENTED
        .lines()
        .filter(|l| !l.contains("Windows Installer"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = scan_msi(derived_only("msi.toml"), &cut);
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    assert_eq!(out.runs[0].exit_code, None);
    // A status of 0 wins over a custom action whose failure was ignored.
    let ok = INVENTED.replace("stato: 1603.", "stato: 0.");
    assert_eq!(
        scan_msi(derived_only("msi.toml"), &ok).runs[0].outcome,
        Outcome::Succeeded
    );
}

/// `seed-ja-rollup1-caquietexec.log`: UTF-16LE, Japanese, its custom action lines translated.
fn check_seed(out: &ScanOutput) {
    let run = &out.runs[0];
    assert_eq!(run.outcome, Outcome::Failed);
    assert_eq!(run.fields["failed_action"], "CA_START_REMOVEDATA_SERVICES");
    let culprit = out
        .findings
        .iter()
        .find(|f| {
            f.fields.get("action").map(String::as_str) == Some("CA_START_REMOVEDATA_SERVICES")
        })
        .expect("the custom action is a finding");
    assert_eq!(culprit.fields["code"], "1603");
    assert_eq!(culprit.line, 27);
    // Its output block, from the first line naming it (`アクションを実行する: CA_...`).
    assert_eq!(culprit.evidence[0].line, 2, "{:#?}", culprit.evidence);
    assert!(culprit
        .evidence
        .iter()
        .any(|e| e.text.contains("CAQuietExec: エラー 0x80070001")));
    assert!(culprit.fields["action_error"].contains("0x80070001"));
}

#[test]
fn the_seed_fails_with_its_custom_action_and_output() {
    let Some(bytes) = corpus_file("seed/seed-ja-rollup1-caquietexec.log") else {
        return;
    };
    // With the whole catalog (a rule may name the cause) and with the model alone.
    check_seed(&scan("seed-ja-rollup1-caquietexec.log", &bytes));
    let out = scan_bytes(
        derived_only("msi.toml"),
        ScanContext::new("EX01", "seed-ja-rollup1-caquietexec.log"),
        &bytes,
    );
    check_seed(&out);
    assert_eq!(primary(&out).rule_id, "msi.failed.custom-action");
    let _ = catalog();
}
