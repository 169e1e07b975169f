//! Property tests of the agent's config parser in place of fuzzing (`cargo fuzz` needs a
//! nightly compiler): arbitrary text and hand-edit damage to the shipped example. Nothing
//! panics, and every refusal names the file and the line, or the field.

use patchwatch_collector::config::{AgentConfig, ConfigError};
use proptest::prelude::*;

const ORIGIN: &str = "fuzz-agent.toml";

fn example() -> &'static str {
    include_str!("../../../deploy/agent.example.toml")
}

/// A refusal says where: the parser's message carries a line, a validation error a field.
fn check(e: &ConfigError) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    match e {
        ConfigError::Parse { message, .. } => {
            prop_assert!(shown.contains(ORIGIN), "no file: {shown}");
            prop_assert!(message.contains("line "), "no line: {shown}");
        }
        ConfigError::Invalid { field, .. } => {
            prop_assert!(!field.is_empty(), "no field: {shown}");
        }
        other => prop_assert!(false, "unexpected error kind: {other}"),
    }
    Ok(())
}

/// What a hand edit gets wrong.
#[derive(Debug, Clone)]
enum Edit {
    DropLine(usize),
    /// The value after a line's `=` replaced (wrong type, bad duration, junk).
    Value(usize, String),
    DuplicateLine(usize),
    Insert(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let value = prop::sample::select(vec![
        "\"\"",
        "0",
        "-1",
        "18446744073709551616",
        "\"2147483647w\"",
        "\"-5s\"",
        "\"5 parsecs\"",
        "[]",
        "{}",
        "{ env = \"PATCHWATCH_FUZZ_UNSET\" }",
        "{ file = \"/nonexistent/secret\" }",
        "\"${PATCHWATCH_FUZZ_UNSET}\"",
        "\"not a url\"",
        "true",
        "\"[\"",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        any::<usize>().prop_map(Edit::DropLine),
        (any::<usize>(), value).prop_map(|(l, v)| Edit::Value(l, v)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), "[ -~]{0,30}").prop_map(|(l, s)| Edit::Insert(l, s)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::DropLine(l) if !lines.is_empty() => {
                lines.remove(l % n);
            }
            Edit::Value(l, v) => {
                // The n-th assignment, so that edits land on keys, not comments.
                let keyed: Vec<usize> = (0..lines.len())
                    .filter(|&i| !lines[i].trim_start().starts_with('#') && lines[i].contains('='))
                    .collect();
                if let Some(&i) = keyed.get(l % keyed.len().max(1)) {
                    let eq = lines[i].find('=').expect("filtered on '='");
                    lines[i].truncate(eq + 1);
                    lines[i].push(' ');
                    lines[i].push_str(v);
                }
            }
            Edit::DuplicateLine(l) if !lines.is_empty() => {
                let copy = lines[l % n].clone();
                lines.insert(l % n, copy);
            }
            Edit::Insert(l, s) => lines.insert(l % (lines.len() + 1), s.clone()),
            _ => {}
        }
    }
    lines.join("\n")
}

#[test]
fn the_example_config_loads() {
    AgentConfig::from_toml(example(), ORIGIN).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_is_refused_with_a_place(text in "\\PC{0,300}") {
        if let Err(e) = AgentConfig::from_toml(&text, ORIGIN) {
            check(&e)?;
        }
    }

    #[test]
    fn damaged_example_loads_or_is_refused_with_a_place(
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        if let Err(e) = AgentConfig::from_toml(&apply(example(), &edits), ORIGIN) {
            check(&e)?;
        }
    }
}
