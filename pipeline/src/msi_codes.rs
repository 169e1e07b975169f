//! Every Windows Installer error message and msiexec return value that Microsoft documents, as
//! data: message, class, cause, fix, noise flag and link (`pipeline/data/msi_codes.toml`,
//! generated from Microsoft's documentation, CC-BY-4.0; see `pipeline/data/README.md`).
//!
//! The table is embedded and parsed once, on first use. The same number can be both an exit
//! code and an Error-table message (1601-1611, 1651): [`exit`] and [`message`] look up one kind,
//! [`lookup`] the one a log line most likely means.

use std::sync::OnceLock;

use serde::Deserialize;

/// Which list of Microsoft's documentation a code comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    /// A value returned by msiexec.exe or the MSI API (`MainEngineThread is returning N`,
    /// `success or error status: N`).
    Exit,
    /// An Error-table message, 1000-1999 (`Error NNNN.`, `Info NNNN.`, `Note: 1: NNNN`).
    Error,
    /// An internal error, 2000 and up (`DEBUG: Error NNNN`, `Note: 1: NNNN`).
    Internal,
}

/// One documented code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsiCode {
    /// The number.
    pub code: u32,
    /// Exit code, Error-table message or internal error.
    pub kind: CodeKind,
    /// Symbolic name of an exit code, e.g. `ERROR_INSTALL_SOURCE_ABSENT`.
    #[serde(default)]
    pub name: Option<String>,
    /// Microsoft's text; messages keep their `[2]`, `[3]` parameters.
    pub message: String,
    /// An older text of the same message, where Microsoft lists two.
    #[serde(default)]
    pub message_alt: Option<String>,
    /// Microsoft's remarks, where there are any.
    #[serde(default)]
    pub remarks: Option<String>,
    /// The failure class, e.g. `source_missing`, `access_denied`, `info` ([`CLASSES`]).
    pub class: String,
    /// True for codes that show up in healthy logs (`Note: 1: 2205`, `DEBUG: Error 2826`).
    pub noise: bool,
    /// Why such a code is noise.
    #[serde(default)]
    pub noise_note: Option<String>,
    /// What makes it happen.
    pub cause: String,
    /// What to do.
    pub fix: String,
    /// `specific` when cause and fix were written for this code, `class` when they are the
    /// generic advice of its class.
    pub advice: String,
    /// Microsoft's page that documents it.
    pub link: String,
}

impl MsiCode {
    /// True when cause and fix were written for this code rather than for its class.
    pub fn is_specific(&self) -> bool {
        self.advice == "specific"
    }

    /// The message with its `[n]` parameters replaced by `args` (`args[0]` is `[2]`, as in
    /// `Note: 1: 1714 2: X 3: 1612`); parameters without a value are dropped with the spaces
    /// and quotes around them, so no bracket is left.
    pub fn message_with(&self, args: &[&str]) -> String {
        let mut out = String::with_capacity(self.message.len());
        let mut rest = self.message.as_str();
        while let Some(open) = rest.find('[') {
            let after = &rest[open + 1..];
            let Some(close) = after.find(']') else { break };
            let value = after[..close]
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 2)
                .and_then(|n| args.get(n - 2))
                .map(|s| s.trim())
                .filter(|s| !s.is_empty());
            match value {
                Some(v) => {
                    out.push_str(&rest[..open]);
                    out.push_str(v);
                }
                None => {
                    let before = rest[..open].trim_end_matches(['\'', '"', ' ']);
                    out.push_str(before);
                }
            }
            rest = &after[close + 1..];
            if value.is_none() {
                rest = rest.trim_start_matches(['\'', '"']);
            }
        }
        out.push_str(rest);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// The failure classes of [`MsiCode::class`].
pub const CLASSES: &[&str] = &[
    "success",
    "info",
    "restart_required",
    "user_cancel",
    "install_in_progress",
    "access_denied",
    "file_in_use",
    "disk_space",
    "source_missing",
    "file_write",
    "package_invalid",
    "internal_error",
    "custom_action",
    "service_start",
    "policy",
    "launch_condition",
    "newer_version",
    "patch_not_applicable",
    "generic_failure",
];

#[derive(Deserialize)]
struct Table {
    code: Vec<MsiCode>,
}

fn table() -> &'static [MsiCode] {
    static TABLE: OnceLock<Vec<MsiCode>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Table = toml::from_str(include_str!("../data/msi_codes.toml"))
            .expect("msi_codes.toml is valid (checked by the test suite)");
        t.code.sort_by_key(|c| c.code);
        t.code
    })
}

/// Every documented code, exit codes and messages mixed, ordered by code.
pub fn all() -> &'static [MsiCode] {
    table()
}

/// The code of `kind` numbered `code`.
pub fn get(kind: CodeKind, code: u32) -> Option<&'static MsiCode> {
    let t = table();
    let start = t.partition_point(|c| c.code < code);
    t[start..]
        .iter()
        .take_while(|c| c.code == code)
        .find(|c| c.kind == kind)
}

/// An msiexec return value (`MainEngineThread is returning N`, `success or error status: N`).
pub fn exit(code: u32) -> Option<&'static MsiCode> {
    get(CodeKind::Exit, code)
}

/// A message as logged in `Error NNNN.`, `DEBUG: Error NNNN` or `Note: 1: NNNN`: an
/// Error-table message below 2000, an internal error from 2000 on.
pub fn message(code: u32) -> Option<&'static MsiCode> {
    get(CodeKind::Error, code).or_else(|| get(CodeKind::Internal, code))
}

/// What `code` most likely means in a log line that does not say which kind it is: a message
/// (`Error NNNN.`) when one has that number, else an exit code.
pub fn lookup(code: u32) -> Option<&'static MsiCode> {
    message(code).or_else(|| exit(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_with_fills_and_drops_parameters() {
        let c = message(1714).expect("1714 is documented");
        assert_eq!(
            c.message_with(&["Contoso 1.0", "1612"]),
            "The older version of Contoso 1.0 cannot be removed. Contact your technical support group. System Error 1612."
        );
        let s = c.message_with(&[]);
        assert!(!s.contains('[') && !s.contains("  "), "{s}");
    }

    #[test]
    fn kinds_are_told_apart() {
        assert_eq!(exit(1602).map(|c| c.kind), Some(CodeKind::Exit));
        assert_eq!(message(1602).map(|c| c.kind), Some(CodeKind::Error));
        assert_eq!(lookup(2205).map(|c| c.kind), Some(CodeKind::Internal));
        assert_eq!(lookup(3010).map(|c| c.kind), Some(CodeKind::Exit));
        assert!(lookup(999_999).is_none());
    }
}
