//! The rule file format (TOML), as deserialized. Validation happens in [`super::Catalog`].

use serde::Deserialize;

/// A rule file: a list of `[[rule]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The rules.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec>,
}

/// One rule, as written in a rule file. See `RULES.md` for the meaning of each field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique id, e.g. `exchange.readiness.reboot-pending`.
    pub id: String,
    /// Bumped when the rule's meaning changes.
    #[serde(default = "one")]
    pub version: u32,
    /// One-line title.
    pub title: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// Free-form grouping, e.g. `readiness`, `msi`, `services`.
    #[serde(default)]
    pub category: String,
    /// Log kinds the rule applies to: `exchange_setup`, `msi`, `service_control`, `plain`, `any`.
    #[serde(default = "any_kind")]
    pub kinds: Vec<String>,
    /// Literal strings (ASCII case-insensitive) that make a line a candidate. Required unless
    /// `derived` is set.
    #[serde(default)]
    pub anchors: Vec<String>,
    /// Regex that must match a candidate line; named groups become fields. Case-insensitive.
    pub regex: Option<String>,
    /// Literal strings (case-insensitive): a candidate line containing any of them is not a match.
    #[serde(default)]
    pub suppress: Vec<String>,
    /// Ids of rules that must also match in the same run for this rule to count.
    #[serde(default)]
    pub requires: Vec<String>,
    /// With `requires`: the required match must be at most this many lines before this one.
    pub lookback: Option<u64>,
    /// Count only the first match in each run.
    #[serde(default)]
    pub once_per_run: bool,
    /// Primary-cause precedence: lower wins. Omit for rules that are never a run's primary cause.
    pub priority: Option<u32>,
    /// Raised by a built-in log model instead of by anchors (e.g. readiness checks that combine
    /// several settings). Such rules have no anchors.
    #[serde(default)]
    pub derived: bool,
    /// Emitted only when the run ends failed and no other rule with a `priority` matched in it
    /// (SetupLogReviewer's "first error with context" fallback).
    #[serde(default)]
    pub fallback: bool,
    /// Lines of context to show as evidence.
    #[serde(default)]
    pub evidence: EvidenceSpec,
    /// Only meaningful for `patchwatch explain`: the text shows up outside setup logs.
    #[serde(default)]
    pub explain_only: bool,
    /// The fix, as templates: `{name}` is a capture or run field, `{name|text}` falls back to
    /// `text` when the value is unknown, and `[... {name} ...]` is an optional clause, dropped
    /// whole when a placeholder in it has no value (brackets without a placeholder are literal).
    /// Built-in rules keep every placeholder in a clause or give it a default, so no rendered
    /// text shows a gap; see [`super::template`].
    pub remediation: RemediationSpec,
    /// Example lines: each `match` must produce the rule, each `no_match` must not.
    #[serde(default)]
    pub examples: ExamplesSpec,
}

/// How many lines around the matched line to keep as evidence.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSpec {
    /// Lines before the match.
    #[serde(default)]
    pub before: u32,
    /// Lines after the match.
    #[serde(default)]
    pub after: u32,
}

/// Remediation as written, with placeholders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationSpec {
    /// One sentence (a template, see [`RuleSpec::remediation`]).
    pub summary: String,
    /// Ordered steps.
    #[serde(default)]
    pub steps: Vec<String>,
    /// Links.
    #[serde(default)]
    pub links: Vec<String>,
}

/// Self-tests of a rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExamplesSpec {
    /// Texts (one or more lines) that must produce this rule.
    #[serde(default, rename = "match")]
    pub matches: Vec<String>,
    /// Texts that must not produce this rule.
    #[serde(default)]
    pub no_match: Vec<String>,
    /// Log kind to scan the examples as; defaults to the first of `kinds`.
    pub kind: Option<String>,
}

fn one() -> u32 {
    1
}

fn any_kind() -> Vec<String> {
    vec!["any".to_string()]
}
