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

/// Damage to a spool segment file while the agent is down.
#[derive(Debug, Clone)]
enum SegDamage {
    Truncate(prop::sample::Index, prop::sample::Index),
    Flip(prop::sample::Index, prop::sample::Index, u8),
    AppendJunk(prop::sample::Index, Vec<u8>),
}

fn seg_damage() -> impl Strategy<Value = SegDamage> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(s, at)| SegDamage::Truncate(s, at)),
        (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            1u8..=255
        )
            .prop_map(|(s, at, x)| SegDamage::Flip(s, at, x)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(s, junk)| SegDamage::AppendJunk(s, junk)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A damaged spool opens without panicking, never returns a record that was not written
    /// (CRC32 per record), keeps ids increasing, reports any loss, and never gives again an
    /// id it still holds.
    #[test]
    fn damaged_spool_segments_are_recovered_or_reported(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..60),
        damage in prop::collection::vec(seg_damage(), 1..4),
    ) {
        use patchwatch_collector::spool::{FsyncPolicy, Spool, SpoolOptions};
        let dir = tempfile::tempdir().unwrap();
        let opts = || SpoolOptions {
            max_bytes: 1 << 20,
            segment_bytes: 1024,
            fsync: FsyncPolicy::OnSync,
            ..SpoolOptions::new(dir.path())
        };
        let (spool, _) = Spool::open(opts()).unwrap();
        let ids: Vec<u64> = payloads.iter().map(|p| spool.append(p).unwrap()).collect();
        spool.sync().unwrap();
        drop(spool);
        let mut segs: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        for d in &damage {
            let (seg, mut bytes) = match d {
                SegDamage::Truncate(s, _) | SegDamage::Flip(s, ..) | SegDamage::AppendJunk(s, _) => {
                    let seg = s.get(&segs).clone();
                    let bytes = std::fs::read(&seg).unwrap();
                    (seg, bytes)
                }
            };
            match d {
                SegDamage::Truncate(_, at) => bytes.truncate(at.index(bytes.len() + 1)),
                SegDamage::Flip(_, at, x) if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] ^= x;
                }
                SegDamage::AppendJunk(_, junk) => bytes.extend_from_slice(junk),
                SegDamage::Flip(..) => {}
            }
            std::fs::write(&seg, bytes).unwrap();
        }
        let (spool, report) = match Spool::open(opts()) {
            Ok(v) => v,
            Err(e) => {
                // Refusing to open is allowed only with the file named.
                prop_assert!(e.to_string().contains(".seg"), "error names no segment: {e}");
                return Ok(());
            }
        };
        let got = spool.read(0, usize::MAX, usize::MAX).unwrap();
        let mut last = None;
        for r in &got {
            let i = ids.iter().position(|&id| id == r.id);
            prop_assert!(i.is_some(), "record {} was never written", r.id);
            prop_assert_eq!(&r.payload, &payloads[i.unwrap()], "record {} changed", r.id);
            prop_assert!(last.is_none_or(|l| l < r.id), "ids not increasing");
            last = Some(r.id);
        }
        // A loss is reported, except the newest records cut off exactly at a record boundary:
        // the spool alone cannot tell that from fewer appends.
        if report.damage.is_empty() {
            let read: Vec<u64> = got.iter().map(|r| r.id).collect();
            prop_assert_eq!(&read[..], &ids[..read.len()], "records lost silently, not at the end");
        }
        // Ids of a lost tail that no consumer passed are given again (found by this test;
        // see the spool's module doc); an id that was read back never is.
        let next = spool.append(b"after").unwrap();
        prop_assert!(last.is_none_or(|l| next > l), "id {next} reused");
    }
}
