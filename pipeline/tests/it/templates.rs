//! Remediation never shows a placeholder: every built-in rule renders cleanly with no values at
//! all, and no placeholder is left outside an optional clause without a default.

use patchwatch_pipeline::rules::template::{bare_placeholders, fill};
use patchwatch_pipeline::Catalog;

fn problems(what: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for bad in ["(unknown", "  ", " . ", " ,", " ;", "[]", "()", "[ ", " ]"] {
        if text.contains(bad) {
            out.push(format!("{what} contains `{bad}`: {text}"));
        }
    }
    if text.ends_with(" .") {
        out.push(format!("{what} ends with ` .`: {text}"));
    }
    // A placeholder left over: `{name}` (code in backticks such as `{ return $true }` is fine).
    for (i, _) in text.match_indices('{') {
        let rest = &text[i + 1..];
        let end = rest.find('}').unwrap_or(rest.len());
        let name = &rest[..end];
        if !name.is_empty()
            && name.len() == end
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._|".contains(c))
            && end < rest.len()
        {
            out.push(format!("{what} contains placeholder `{{{name}}}`: {text}"));
        }
    }
    if text.trim() != text || text.is_empty() {
        out.push(format!("{what} is empty or padded: `{text}`"));
    }
    out
}

#[test]
fn every_rule_renders_without_fields() {
    let catalog = Catalog::builtin();
    let mut found = Vec::new();
    for rule in catalog.rules() {
        let r = rule.remediation_with(|_| None);
        found.extend(problems(
            &format!("{} title", rule.id),
            &fill(&rule.title, |_| None),
        ));
        found.extend(problems(&format!("{} summary", rule.id), &r.summary));
        for (i, s) in r.steps.iter().enumerate() {
            found.extend(problems(&format!("{} step {i}", rule.id), s));
        }
        let spec = &rule.remediation;
        for t in std::iter::once(&spec.summary).chain(&spec.steps) {
            for name in bare_placeholders(t) {
                found.push(format!(
                    "{}: `{{{name}}}` is outside an optional clause and has no default",
                    rule.id
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn values_fill_clauses() {
    let catalog = Catalog::builtin();
    let rule = catalog.get("msi.install-failed").expect("rule exists");
    let r = rule.remediation_with(|n| match n {
        "product" => Some("Contoso Agent".into()),
        "exit_code" => Some("1612".into()),
        _ => None,
    });
    assert!(r.summary.contains("Contoso Agent"), "{}", r.summary);
    assert!(r.summary.contains("1612"), "{}", r.summary);
    assert!(!r.summary.contains("(unknown"), "{}", r.summary);
}

#[test]
fn a_scanned_finding_drops_steps_that_render_empty() {
    let mut b = patchwatch_pipeline::CatalogBuilder::new();
    b.add_str(
        "site.toml",
        r#"
[[rule]]
id = "site.contoso.failed"
title = "Contoso setup failed"
severity = "high"
category = "msi"
anchors = ["CONTOSO FAILED"]
regex = 'CONTOSO FAILED(?: code (?P<code>\d+))?'
[rule.remediation]
summary = "Contoso setup failed[ with {code}]."
steps = ["[Look up code {code}.]", "Reinstall Contoso."]
[rule.examples]
match = ["CONTOSO FAILED"]
"#,
    );
    let catalog = std::sync::Arc::new(b.build().expect("rule file is valid"));
    let scan = |text: &str| {
        let ctx = patchwatch_pipeline::ScanContext::new("HOST", "contoso.log");
        let out =
            patchwatch_pipeline::scan_bytes(std::sync::Arc::clone(&catalog), ctx, text.as_bytes());
        out.findings
            .into_iter()
            .find(|f| f.rule_id == "site.contoso.failed")
            .expect("the rule matched")
            .remediation
            .steps
    };
    assert_eq!(scan("CONTOSO FAILED\n"), vec!["Reinstall Contoso."]);
    assert_eq!(
        scan("CONTOSO FAILED code 7\n"),
        vec!["Look up code 7.", "Reinstall Contoso."]
    );
}
