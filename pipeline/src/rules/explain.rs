//! `explain`: which known issues a pasted error message matches, as a pure function.
//!
//! People paste fragments: a line cut in the middle, text wrapped by a mail client, curly quotes
//! from a chat or a document. So every rule of every log kind is tried on the text as given and
//! on a normalised copy (quotes removed, all whitespace, line breaks included, one space), and
//! `requires` is not enforced (the context of a whole log is not there). When nothing matches,
//! the closest rules by shared rare words are returned, as guesses.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{fill, Catalog, Rule};
use crate::{Remediation, Severity};

/// A rule the text matches.
#[derive(Debug, Clone)]
pub struct ExplainMatch {
    /// Rule id.
    pub rule_id: String,
    /// Title, rendered.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// The line (or normalised text) that matched.
    pub matched: String,
    /// Named captures of the rule's regex.
    pub fields: BTreeMap<String, String>,
    /// The fix, rendered from the captures.
    pub remediation: Remediation,
    /// False when an anchor matched but the rule's regex did not (a fragment of the message).
    pub exact: bool,
}

/// A rule that shares rare words with the text: a guess, not a match.
#[derive(Debug, Clone)]
pub struct ExplainGuess {
    /// Rule id.
    pub rule_id: String,
    /// Title, rendered without values.
    pub title: String,
    /// The words the text shares with the rule.
    pub shared: Vec<String>,
    /// Higher is closer.
    pub score: f64,
}

/// What [`explain`] found.
#[derive(Debug, Clone, Default)]
pub struct Explanation {
    /// Matching rules, most specific first (primary-cause priority, then severity).
    pub matches: Vec<ExplainMatch>,
    /// When nothing matched: the closest known issues, best first (at most five).
    pub guesses: Vec<ExplainGuess>,
}

/// Quotes of every kind that pasted text may carry.
const QUOTES: &[char] = &['\'', '"', '‘', '’', '“', '”', '„', '`', '´'];

/// Lower-cased, quotes removed, whitespace runs collapsed to one space.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let w: String = word.chars().filter(|c| !QUOTES.contains(c)).collect();
        if w.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&w.to_lowercase());
    }
    out
}

/// Which rules `text` matches, or the closest ones as guesses.
pub fn explain(catalog: &Catalog, text: &str) -> Explanation {
    let norm = normalise(text);
    let mut candidates: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let straight = joined
        .replace(['‘', '’', '´'], "'")
        .replace(['“', '”', '„'], "\"");
    candidates.push(&joined);
    candidates.push(&straight);
    let mut matches = Vec::new();
    for rule in catalog.rules().iter().filter(|r| !r.derived) {
        if let Some(m) = match_rule(rule, &candidates, &norm) {
            matches.push(m);
        }
    }
    let rank = |m: &ExplainMatch| {
        let r = catalog
            .get(&m.rule_id)
            .expect("matched rules are in the catalog");
        (
            !m.exact,
            r.priority.is_none(),
            r.priority.unwrap_or(u32::MAX),
            std::cmp::Reverse(m.severity),
        )
    };
    matches.sort_by_key(rank);
    let guesses = if matches.is_empty() {
        guesses(catalog, &norm)
    } else {
        Vec::new()
    };
    Explanation { matches, guesses }
}

fn match_rule(rule: &Rule, candidates: &[&str], norm: &str) -> Option<ExplainMatch> {
    let anchored = rule
        .anchors
        .iter()
        .any(|a| norm.contains(&normalise(a)) && !normalise(a).is_empty());
    if !anchored {
        return None;
    }
    let suppressed = |s: &str| {
        let l = s.to_ascii_lowercase();
        rule.suppress
            .iter()
            .any(|x| l.contains(std::str::from_utf8(x).unwrap_or("\u{0}")))
    };
    let exact = match &rule.regex {
        None => candidates
            .iter()
            .find(|c| {
                let n = normalise(c);
                rule.anchors.iter().any(|a| n.contains(&normalise(a))) && !suppressed(c)
            })
            .map(|c| (c.to_string(), BTreeMap::new())),
        Some(re) => candidates.iter().find_map(|c| {
            let caps = re.captures(c.as_bytes())?;
            if suppressed(c) {
                return None;
            }
            let fields = re
                .capture_names()
                .flatten()
                .filter_map(|n| {
                    let v = caps.name(n)?;
                    Some((
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    ))
                })
                .collect();
            Some((c.to_string(), fields))
        }),
    };
    if exact.is_none() && suppressed(norm) {
        return None;
    }
    let is_exact = exact.is_some();
    let (matched, fields) = exact.unwrap_or_else(|| (norm.to_string(), BTreeMap::new()));
    let lookup = |n: &str| fields.get(n).cloned();
    Some(ExplainMatch {
        rule_id: rule.id.clone(),
        title: fill(&rule.title, lookup),
        severity: rule.severity,
        remediation: rule.remediation_with(|n| fields.get(n).cloned()),
        matched,
        fields: fields.clone(),
        exact: is_exact,
    })
}

/// Words of at least four letters or digits, lower-cased.
fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '.' && c != '_')
        .map(|w| w.trim_matches('.').to_lowercase())
        .filter(|w| w.chars().count() >= 4)
        .collect()
}

/// Rules ranked by the rarity (inverse document frequency) of the words they share with the
/// text; words in many rules ("error", "setup") count for little.
fn guesses(catalog: &Catalog, norm: &str) -> Vec<ExplainGuess> {
    let docs: Vec<(&Rule, HashSet<String>)> = catalog
        .rules()
        .iter()
        .map(|r| {
            let mut t = r.title.clone();
            for s in r.anchors.iter().chain(&r.examples_match) {
                t.push(' ');
                t.push_str(s);
            }
            (r, words(&t))
        })
        .collect();
    let mut df: HashMap<&str, usize> = HashMap::new();
    for (_, ws) in &docs {
        for w in ws {
            *df.entry(w.as_str()).or_default() += 1;
        }
    }
    let n = docs.len() as f64;
    let query = words(norm);
    let mut out: Vec<ExplainGuess> = docs
        .iter()
        .filter_map(|(r, ws)| {
            let mut shared: Vec<String> = query.intersection(ws).cloned().collect();
            shared.sort();
            let score: f64 = shared
                .iter()
                .map(|w| (n / df.get(w.as_str()).copied().unwrap_or(1) as f64).ln())
                .sum();
            (score > 1.0).then(|| ExplainGuess {
                rule_id: r.id.clone(),
                title: fill(&r.title, |_| None),
                shared,
                score,
            })
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.rule_id.cmp(&b.rule_id)));
    out.truncate(5);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_fragment_leads_to_the_seed_issue() {
        let c = Catalog::builtin();
        let e = explain(&c, "CAQuietExec: Error 0x80070001");
        assert_eq!(
            e.matches.first().map(|m| m.rule_id.as_str()),
            Some("exchange.su.servicecontrol-execution-policy"),
            "{:?}",
            e.matches.iter().map(|m| &m.rule_id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn quotes_and_wrapping_do_not_matter() {
        let c = Catalog::builtin();
        for text in [
            "Could not load file or assembly Microsoft.Exchange.Common",
            "Could not load file or assembly ‘Microsoft.Exchange.Common, Version=15.0.0.0’",
            "Could not load file or\n   assembly 'Microsoft.Exchange.Common, Version=15.0.0.0, Culture=neutral'",
        ] {
            let e = explain(&c, text);
            let first = e.matches.first().map(|m| m.rule_id.as_str()).unwrap_or("");
            let rule = c.get(first).map(|r| r.source.as_str()).unwrap_or("");
            assert!(rule.ends_with("explain.toml"), "{text}: {first}");
        }
    }

    #[test]
    fn no_match_gives_labelled_guesses() {
        let c = Catalog::builtin();
        let e = explain(&c, "the otherWellKnownObjects thing is broken again");
        assert!(e.matches.is_empty());
        assert!(!e.guesses.is_empty());
        assert!(e
            .guesses
            .iter()
            .any(|g| g.shared.iter().any(|w| w == "otherwellknownobjects")));
        assert!(explain(&c, "zzzz qqqq").guesses.is_empty());
    }
}
