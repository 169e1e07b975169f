//! The table of Windows Installer codes: complete over Microsoft's documented ranges, every entry
//! annotated, and the codes the rules rely on explained specifically.

use patchwatch_pipeline::msi_codes::{self, CodeKind, CLASSES};

#[test]
fn every_documented_range_is_present() {
    let all = msi_codes::all();
    assert!(all.len() >= 600, "{} entries", all.len());
    // msiexec return values: 0, 13, 87, 120, 1259, 1601-1654 (1617 is not documented), 3010, 3011.
    for code in [0, 13, 87, 120, 1259, 3010, 3011]
        .into_iter()
        .chain((1601..=1654).filter(|&c| c != 1617))
    {
        assert!(msi_codes::exit(code).is_some(), "exit code {code} missing");
    }
    // Error-table messages 1101-1946 and internal errors 2101-3002: both ends and the blocks
    // between them that Microsoft documents.
    for code in [1101, 1301, 1401, 1500, 1601, 1701, 1801, 1901, 1946] {
        assert_eq!(
            msi_codes::message(code).map(|c| c.kind),
            Some(CodeKind::Error),
            "message {code} missing"
        );
    }
    for code in [
        2101, 2200, 2302, 2401, 2501, 2601, 2701, 2801, 2901, 3001, 3002,
    ] {
        assert_eq!(
            msi_codes::message(code).map(|c| c.kind),
            Some(CodeKind::Internal),
            "internal error {code} missing"
        );
    }
    let count = |k| all.iter().filter(|c| c.kind == k).count();
    assert!(count(CodeKind::Exit) >= 60);
    assert!(count(CodeKind::Error) >= 140);
    assert!(count(CodeKind::Internal) >= 390);
}

#[test]
fn every_entry_has_class_cause_fix_and_link() {
    for c in msi_codes::all() {
        let what = format!("{:?} {}", c.kind, c.code);
        assert!(
            CLASSES.contains(&c.class.as_str()),
            "{what}: class {}",
            c.class
        );
        assert!(c.cause.len() > 20, "{what}: cause");
        assert!(c.fix.len() > 10, "{what}: fix");
        assert_ne!(c.cause, c.fix, "{what}");
        assert_ne!(c.fix, c.message, "{what}: the fix repeats the message");
        assert!(
            c.link.starts_with("https://learn.microsoft.com/"),
            "{what}: link {}",
            c.link
        );
        // Microsoft documents 2805 with no text; every other entry has one.
        assert!(
            !c.message.trim().is_empty() || c.code == 2805,
            "{what}: message"
        );
        if c.noise {
            assert!(c.noise_note.is_some(), "{what}: noise without a note");
        }
    }
}

#[test]
fn codes_the_rules_explain_are_specific() {
    for code in [
        1602, 1603, 1612, 1618, 1619, 1620, 1625, 1638, 1641, 1642, 3010,
    ] {
        let c = msi_codes::exit(code).expect("documented");
        assert!(c.is_specific(), "exit {code} has only its class's advice");
    }
    for code in [1303, 1306, 1500, 1714, 1730, 1920, 1925, 2235] {
        let c = msi_codes::message(code).expect("documented");
        assert!(
            c.is_specific(),
            "message {code} has only its class's advice"
        );
    }
    for code in [2205, 2228, 2262, 2826] {
        assert!(
            msi_codes::message(code).expect("documented").noise,
            "{code} is noise"
        );
    }
    assert_eq!(
        msi_codes::exit(1602).map(|c| c.class.as_str()),
        Some("user_cancel")
    );
    assert_eq!(
        msi_codes::exit(1612).map(|c| c.class.as_str()),
        Some("source_missing")
    );
}
