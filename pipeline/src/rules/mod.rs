//! Rules as data: the TOML format, validation, the embedded built-in catalog.
//!
//! A [`Catalog`] is built once per rule set and shared (`Arc`) by every [`crate::FileScanner`].
//! Building compiles every anchor (plus the log models' structural anchors) into one
//! [`AnchorMatcher`]; scanning never fails because of rules.

mod error;
pub mod explain;
pub mod format;
pub mod template;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use error::RulesError;
use format::{RemediationSpec, RuleFile, RuleSpec};
use regex::bytes::Regex;
pub(crate) use template::{fill, placeholders};

use crate::finding::{LogKind, Severity};
use crate::matcher::AnchorMatcher;
use crate::model::STRUCTURAL_ANCHORS;

/// The built-in rule files, embedded in the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "builtin:exchange.toml",
        include_str!("../../rules/exchange.toml"),
    ),
    ("builtin:msi.toml", include_str!("../../rules/msi.toml")),
    (
        "builtin:servicecontrol.toml",
        include_str!("../../rules/servicecontrol.toml"),
    ),
    (
        "builtin:explain.toml",
        include_str!("../../rules/explain.toml"),
    ),
    (
        "builtin:preflight.toml",
        include_str!("../../rules/preflight.toml"),
    ),
];

/// Run-level values that remediation templates may use besides a rule's own captures.
pub const RUN_FIELDS: &[&str] = &[
    "user",
    "setup_version",
    "installed_build",
    "mode",
    "computer",
    "domain",
    "site",
    "product",
    "product_version",
    "product_code",
    "exit_code",
    "operation",
    "failed_action",
    // The Windows Installer action that started last (its output follows it).
    "running_action",
    "path",
    "host",
];

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// Version.
    pub version: u32,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Category.
    pub category: String,
    /// Log kinds it applies to; empty means any.
    pub kinds: Vec<LogKind>,
    /// Anchors as written.
    pub anchors: Vec<String>,
    /// Confirming regex (case-insensitive), if any.
    pub regex: Option<Regex>,
    /// Suppressing literals, lower-cased.
    pub suppress: Vec<Vec<u8>>,
    /// Indices (into [`Catalog::rules`]) of rules required in the same run.
    pub requires: Vec<usize>,
    /// Maximum distance in lines back to a required match.
    pub lookback: Option<u64>,
    /// Only the first match per run counts.
    pub once_per_run: bool,
    /// Primary-cause precedence (lower wins).
    pub priority: Option<u32>,
    /// Raised by a log model, not by anchors.
    pub derived: bool,
    /// Emitted only when nothing with a priority matched in a failed run.
    pub fallback: bool,
    /// Evidence lines before the match.
    pub before: u32,
    /// Evidence lines after the match.
    pub after: u32,
    /// Only for `explain`.
    pub explain_only: bool,
    /// Remediation templates.
    pub remediation: RemediationSpec,
    /// Example texts that must match.
    pub examples_match: Vec<String>,
    /// Example texts that must not match.
    pub examples_no_match: Vec<String>,
    /// Kind to scan examples as.
    pub example_kind: LogKind,
    /// File the rule came from.
    pub source: String,
}

impl Rule {
    /// The remediation with its templates rendered from `lookup` ([`template`]: unknown values
    /// take their default or drop their optional clause). For callers outside the pipeline that
    /// raise derived rules.
    pub fn remediation_with(
        &self,
        lookup: impl Fn(&str) -> Option<String> + Copy,
    ) -> crate::Remediation {
        crate::Remediation {
            summary: fill(&self.remediation.summary, lookup),
            // A step made only of optional clauses that all dropped is left out.
            steps: self
                .remediation
                .steps
                .iter()
                .map(|s| fill(s, lookup))
                .filter(|s| !s.trim().is_empty())
                .collect(),
            links: self
                .remediation
                .links
                .iter()
                .map(|s| fill(s, lookup))
                .collect(),
        }
    }

    /// True when the rule applies to files of `kind`.
    pub fn applies_to(&self, kind: LogKind) -> bool {
        kind == LogKind::Plain || self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

/// What an anchor leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Index into [`Catalog::rules`].
    Rule(usize),
    /// Index into [`STRUCTURAL_ANCHORS`].
    Structural(usize),
}

/// The anchors that can matter in one kind of log, compiled.
#[derive(Debug, Clone)]
pub(crate) struct KindMatcher {
    pub(crate) matcher: AnchorMatcher,
    /// For each anchor id of `matcher`, what it leads to.
    pub(crate) targets: Vec<Vec<Target>>,
    tuning: Tuning,
}

/// Text of this kind matched with the built-in Teddy layout, at least, before the matcher is
/// tuned to the logs it reads ([`AnchorMatcher::tuned_to`]): tuning costs ~4 ms, about what
/// scanning 8 MiB costs, so it is kept for processes that read a lot.
const TUNE_AFTER: u64 = 4 << 20;

/// Tuning needs a piece of log at least this long (a live tail's small appends are not
/// representative, and their speed does not matter)...
const TUNE_MIN_PIECE: usize = 128 << 10;

/// ... and uses at most this much of it.
const TUNE_PIECE: usize = 512 << 10;

/// The matcher tuned to the logs this process reads, once per kind and process.
#[derive(Debug, Default)]
struct Tuning {
    matched: std::sync::atomic::AtomicU64,
    tuned: std::sync::OnceLock<AnchorMatcher>,
}

impl Clone for Tuning {
    fn clone(&self) -> Tuning {
        let t = Tuning::default();
        t.matched.store(
            self.matched.load(std::sync::atomic::Ordering::Relaxed),
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Some(m) = self.tuned.get() {
            let _ = t.tuned.set(m.clone());
        }
        t
    }
}

impl KindMatcher {
    /// The matcher to search `piece` (the next text to match) with: the tuned one once there
    /// is one, tuning it on `piece` when enough text has gone through the built-in one.
    /// Anchor ids, hence `targets`, are the same for both.
    pub(crate) fn for_piece(&self, piece: &[u8]) -> &AnchorMatcher {
        use std::sync::atomic::Ordering;
        if let Some(m) = self.tuning.tuned.get() {
            return m;
        }
        let before = self
            .tuning
            .matched
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        if before < TUNE_AFTER || piece.len() < TUNE_MIN_PIECE {
            return &self.matcher;
        }
        self.tuning.tuned.get_or_init(|| {
            // Not timed here: the pipeline reads no clock (its cost is measured in the benches).
            let m = self.matcher.tuned_to(&piece[..piece.len().min(TUNE_PIECE)]);
            tracing::debug!(
                bytes_before = before,
                "Anchor matcher tuned to the logs read."
            );
            m
        })
    }
}

/// A compiled, validated set of rules.
///
/// One [`AnchorMatcher`] per log kind: a file's kind is known before its lines are matched,
/// and each kind's smaller anchor set keeps stage one selective (see [`crate::matcher`]).
#[derive(Debug, Clone)]
pub struct Catalog {
    rules: Vec<Rule>,
    by_id: HashMap<String, usize>,
    /// Indexed by [`kind_index`].
    matchers: Vec<LazyMatcher>,
}

/// A kind's anchors, compiled on first use: a process that reads one kind of log (most
/// `scan`s) builds one matcher, not four, and starts that much sooner.
#[derive(Debug, Clone)]
struct LazyMatcher {
    kind: LogKind,
    anchors: Vec<String>,
    targets: Vec<Vec<Target>>,
    built: std::sync::OnceLock<KindMatcher>,
}

impl LazyMatcher {
    fn get(&self) -> &KindMatcher {
        self.built.get_or_init(|| {
            // Built for this matcher and dropped after it (a few MiB).
            let reference = crate::matcher::Reference::builtin();
            let matcher = AnchorMatcher::with_reference(&self.anchors, &reference);
            tracing::debug!(
                kind = self.kind.as_str(),
                anchors = self.anchors.len(),
                automata = matcher.stage_count(),
                "Anchor matcher built."
            );
            KindMatcher {
                matcher,
                targets: self.targets.clone(),
                tuning: Tuning::default(),
            }
        })
    }
}

/// Kinds that get a matcher, in the order of [`Catalog::matchers`].
const KINDS: [LogKind; 4] = [
    LogKind::ExchangeSetup,
    LogKind::Msi,
    LogKind::ServiceControl,
    LogKind::Plain,
];

fn kind_index(kind: LogKind) -> usize {
    KINDS
        .iter()
        .position(|&k| k == kind)
        .expect("every kind has a matcher")
}

impl Catalog {
    /// The built-in catalog.
    ///
    /// # Panics
    /// Only if the embedded rule files are invalid, which the test suite rules out.
    pub fn builtin() -> Catalog {
        CatalogBuilder::new()
            .with_builtin()
            .build()
            .expect("built-in rules are valid")
    }

    /// All rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Looks a rule up by id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).map(|&i| &self.rules[i])
    }

    /// Index of a rule by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The anchor matcher for logs of `kind` (rules' anchors plus the log models' structural
    /// anchors that apply to it; `Plain` has all of them), with the built-in Teddy layout:
    /// scanners switch to one tuned to the logs they read ([`AnchorMatcher::tuned_to`]) after
    /// a few MiB.
    pub fn matcher(&self, kind: LogKind) -> &AnchorMatcher {
        &self.matchers[kind_index(kind)].get().matcher
    }

    /// Whether scanners of this catalog have tuned the matcher of `kind` to the logs they
    /// read (for tests and diagnostics).
    pub fn is_tuned(&self, kind: LogKind) -> bool {
        self.matchers[kind_index(kind)]
            .built
            .get()
            .is_some_and(|m| m.tuning.tuned.get().is_some())
    }

    pub(crate) fn kind_matcher(&self, kind: LogKind) -> &KindMatcher {
        self.matchers[kind_index(kind)].get()
    }

    /// The kinds whose matcher has been built so far (for tests: building is lazy).
    pub fn built_kinds(&self) -> Vec<LogKind> {
        self.matchers
            .iter()
            .filter(|m| m.built.get().is_some())
            .map(|m| m.kind)
            .collect()
    }

    /// Every distinct literal the matcher searches for (for comparisons such as `rg -F -f`).
    pub fn literals(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rules
            .iter()
            .flat_map(|r| r.anchors.iter().cloned())
            .collect();
        out.extend(STRUCTURAL_ANCHORS.iter().map(|s| s.to_string()));
        out.sort_by_key(|s| s.to_ascii_lowercase());
        out.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        out
    }
}

/// Collects rule files, then validates and compiles them into a [`Catalog`].
#[derive(Debug, Default)]
pub struct CatalogBuilder {
    specs: Vec<(String, RuleSpec)>,
    errors: Vec<RulesError>,
}

impl CatalogBuilder {
    /// An empty builder.
    pub fn new() -> CatalogBuilder {
        CatalogBuilder::default()
    }

    /// Adds the built-in rule files.
    pub fn with_builtin(mut self) -> CatalogBuilder {
        for (name, text) in BUILTIN {
            self.add_str(name, text);
        }
        self
    }

    /// Adds a rule file from disk: the one place this crate touches the file system, kept for
    /// callers that name rule files; [`CatalogBuilder::add_str`] takes text read elsewhere.
    ///
    /// A file that cannot be read is reported by [`CatalogBuilder::build`] as
    /// [`RulesError::Io`].
    pub fn add_file(&mut self, path: &Path) -> &mut CatalogBuilder {
        match std::fs::read_to_string(path) {
            Ok(text) => self.add_str(&path.display().to_string(), &text),
            Err(source) => {
                self.errors.push(RulesError::Io {
                    path: path.to_path_buf(),
                    source,
                });
                self
            }
        }
    }

    /// Adds rule-file text; `name` (a path, or `builtin:...`) is used in error messages. This
    /// is how rules reach the pipeline without IO.
    pub fn add_str(&mut self, name: &str, text: &str) -> &mut CatalogBuilder {
        match toml::from_str::<RuleFile>(text) {
            Ok(file) => self
                .specs
                .extend(file.rules.into_iter().map(|r| (name.to_string(), r))),
            Err(e) => self.errors.push(RulesError::Syntax {
                path: PathBuf::from(name),
                message: e.to_string(),
            }),
        }
        self
    }

    /// Validates and compiles. Returns the first error, naming file, rule and field.
    pub fn build(self) -> Result<Catalog, RulesError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        let mut by_id = HashMap::new();
        for (i, (file, spec)) in self.specs.iter().enumerate() {
            if by_id.insert(spec.id.clone(), i).is_some() {
                return Err(invalid(file, &spec.id, "id", "duplicate rule id".into()));
            }
        }
        let mut rules = Vec::with_capacity(self.specs.len());
        for (file, spec) in &self.specs {
            rules.push(validate(file, spec, &by_id)?);
        }
        let matchers = KINDS.iter().map(|&k| kind_anchors(&rules, k)).collect();
        Ok(Catalog {
            rules,
            by_id,
            matchers,
        })
    }
}

/// The anchors of the rules (and structural anchors) that apply to `kind`, and what each
/// leads to; compiled when a log of that kind is first matched.
fn kind_anchors(rules: &[Rule], kind: LogKind) -> LazyMatcher {
    let mut anchors: Vec<String> = Vec::new();
    let mut targets: Vec<Vec<Target>> = Vec::new();
    let mut push = |anchor: &str, t: Target| {
        if let Some(i) = anchors.iter().position(|a| a.eq_ignore_ascii_case(anchor)) {
            targets[i].push(t);
        } else {
            anchors.push(anchor.to_string());
            targets.push(vec![t]);
        }
    };
    for (i, s) in STRUCTURAL_ANCHORS.iter().enumerate() {
        if kind == LogKind::Plain || crate::model::structural_kind(i) == kind {
            push(s, Target::Structural(i));
        }
    }
    for (i, r) in rules.iter().enumerate().filter(|(_, r)| r.applies_to(kind)) {
        for a in &r.anchors {
            push(a, Target::Rule(i));
        }
    }
    LazyMatcher {
        kind,
        anchors,
        targets,
        built: std::sync::OnceLock::new(),
    }
}

fn invalid(file: &str, rule: &str, field: &'static str, message: String) -> RulesError {
    RulesError::Invalid {
        path: PathBuf::from(file),
        rule: rule.to_string(),
        field,
        message,
    }
}

fn parse_kind(s: &str) -> Option<Option<LogKind>> {
    Some(match s {
        "any" => None,
        "exchange_setup" => Some(LogKind::ExchangeSetup),
        "msi" => Some(LogKind::Msi),
        "service_control" => Some(LogKind::ServiceControl),
        "plain" => Some(LogKind::Plain),
        _ => return None,
    })
}

fn validate(file: &str, s: &RuleSpec, by_id: &HashMap<String, usize>) -> Result<Rule, RulesError> {
    let bad = |field, msg: String| invalid(file, &s.id, field, msg);
    if s.id.is_empty()
        || !s
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(bad(
            "id",
            "must be non-empty and use only letters, digits, '.', '_' and '-'".into(),
        ));
    }
    if s.title.trim().is_empty() {
        return Err(bad("title", "must not be empty".into()));
    }
    let severity = Severity::parse(&s.severity).ok_or_else(|| {
        bad(
            "severity",
            format!(
                "`{}` is not one of info, low, medium, high, critical",
                s.severity
            ),
        )
    })?;
    let mut kinds = Vec::new();
    for k in &s.kinds {
        match parse_kind(k) {
            Some(Some(k)) => kinds.push(k),
            Some(None) => {}
            None => {
                return Err(bad(
                    "kinds",
                    format!("`{k}` is not one of exchange_setup, msi, service_control, plain, any"),
                ))
            }
        }
    }
    if s.derived {
        if !s.anchors.is_empty() {
            return Err(bad(
                "anchors",
                "a derived rule is raised by a log model and takes no anchors".into(),
            ));
        }
    } else if s.anchors.is_empty() {
        return Err(bad(
            "anchors",
            "at least one anchor is required (or set `derived = true`)".into(),
        ));
    }
    for a in &s.anchors {
        if a.len() < 4 {
            return Err(bad(
                "anchors",
                format!("anchor `{a}` is shorter than 4 bytes: too unselective"),
            ));
        }
        if a.contains(['\n', '\r']) {
            return Err(bad(
                "anchors",
                format!("anchor `{a}` spans lines; anchors match within one line"),
            ));
        }
    }
    let regex = match &s.regex {
        Some(r) => Some(
            regex::bytes::RegexBuilder::new(r)
                .case_insensitive(true)
                .build()
                .map_err(|e| bad("regex", e.to_string()))?,
        ),
        None => None,
    };
    let mut requires = Vec::new();
    for r in &s.requires {
        match by_id.get(r) {
            Some(&i) => requires.push(i),
            None => return Err(bad("requires", format!("unknown rule id `{r}`"))),
        }
    }
    if s.lookback.is_some() && requires.is_empty() {
        return Err(bad("lookback", "only meaningful with `requires`".into()));
    }
    // Placeholders must name a capture, a run field, or (for derived rules) anything the model sets.
    let captures: Vec<String> = regex
        .as_ref()
        .map(|r| r.capture_names().flatten().map(str::to_string).collect())
        .unwrap_or_default();
    let texts = std::iter::once(&s.remediation.summary)
        .chain(&s.remediation.steps)
        .chain(&s.remediation.links);
    for t in texts {
        for name in placeholders(t) {
            let base = template::code_base(name).unwrap_or(name);
            let known = captures.iter().any(|c| c == base)
                || RUN_FIELDS.contains(&base)
                || name.starts_with("setting.")
                || s.derived;
            if !known {
                return Err(bad(
                    "remediation",
                    format!("placeholder `{{{name}}}` is neither a named capture of `regex` nor a run field"),
                ));
            }
        }
    }
    let example_kind = match &s.examples.kind {
        Some(k) => parse_kind(k)
            .ok_or_else(|| bad("examples.kind", format!("unknown kind `{k}`")))?
            .unwrap_or(LogKind::Plain),
        None => kinds.first().copied().unwrap_or(LogKind::Plain),
    };
    Ok(Rule {
        id: s.id.clone(),
        version: s.version,
        title: s.title.clone(),
        severity,
        category: s.category.clone(),
        kinds,
        anchors: s.anchors.clone(),
        regex,
        suppress: s
            .suppress
            .iter()
            .map(|x| x.as_bytes().to_ascii_lowercase())
            .collect(),
        requires,
        lookback: s.lookback,
        once_per_run: s.once_per_run,
        priority: s.priority,
        derived: s.derived,
        fallback: s.fallback,
        before: s.evidence.before.min(64),
        after: s.evidence.after.min(256),
        explain_only: s.explain_only,
        remediation: s.remediation.clone(),
        examples_match: s.examples.matches.clone(),
        examples_no_match: s.examples.no_match.clone(),
        example_kind,
        source: file.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> String {
        let mut b = CatalogBuilder::new();
        b.add_str("user.toml", text);
        b.build().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_rule_and_field() {
        let e = err_of(
            r#"[[rule]]
id = "x.y"
title = "t"
severity = "severe"
anchors = ["abcd"]
remediation = { summary = "s" }"#,
        );
        assert!(
            e.contains("user.toml") && e.contains("x.y") && e.contains("severity"),
            "{e}"
        );
        let e = err_of(
            r#"[[rule]]
id = "x.y"
title = "t"
severity = "high"
anchors = ["abcd"]
regex = "(?P<a>x"
remediation = { summary = "s" }"#,
        );
        assert!(e.contains("`regex`"), "{e}");
        let e = err_of(
            r#"[[rule]]
id = "x.y"
title = "t"
severity = "high"
anchors = ["abcd"]
remediation = { summary = "fix {nothing}" }"#,
        );
        assert!(e.contains("remediation") && e.contains("{nothing}"), "{e}");
        let e = err_of("[[rule]]\nid = 3\n");
        assert!(e.contains("user.toml") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn fill_replaces_known_and_drops_unknown() {
        let s = fill("run {a} on {b}, keep {not a name} and {", |n| {
            (n == "a").then(|| "X".to_string())
        });
        assert_eq!(s, "run X on, keep {not a name} and {");
    }

    #[test]
    fn builtin_catalog_loads() {
        let c = Catalog::builtin();
        assert!(c.rules().len() > 40);
    }
}
