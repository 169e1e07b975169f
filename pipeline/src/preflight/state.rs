//! What the preflight checks read from a server, behind one trait: registry keys and values,
//! files and their times, free space, the certificates of the machine's stores, the clock and
//! the account the command runs as.
//!
//! Service start types are read from the registry (`SYSTEM\CurrentControlSet\Services\<name>`,
//! value `Start`), where the Service Control Manager keeps them: one reader for everything,
//! the same on Windows and under Wine, and no SCM handle to open.

use std::collections::BTreeMap;

/// A registry root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hive {
    /// `HKEY_LOCAL_MACHINE`.
    LocalMachine,
    /// `HKEY_USERS`: the hive of every loaded user profile, one subkey per SID. The installing
    /// user's policies are there, whichever account reads them (the agent runs as LocalSystem).
    Users,
}

impl Hive {
    /// The short name used in messages, `HKLM` or `HKU`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hive::LocalMachine => "HKLM",
            Hive::Users => "HKU",
        }
    }
}

/// A registry value, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_QWORD`.
    Qword(u64),
    /// `REG_SZ` or `REG_EXPAND_SZ` (not expanded).
    String(String),
    /// `REG_MULTI_SZ`.
    MultiString(Vec<String>),
    /// `REG_BINARY` or any other type, as bytes.
    Binary(Vec<u8>),
}

impl RegValue {
    /// True when the value carries something: a non-zero number, a non-blank string, a list
    /// with a non-blank entry, non-empty bytes.
    pub fn is_set(&self) -> bool {
        match self {
            RegValue::Dword(n) => *n != 0,
            RegValue::Qword(n) => *n != 0,
            RegValue::String(s) => !s.trim().is_empty(),
            RegValue::MultiString(v) => v.iter().any(|s| !s.trim().is_empty()),
            RegValue::Binary(b) => !b.is_empty(),
        }
    }

    /// The value as a number, if it is one (or a string holding one).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            RegValue::Dword(n) => Some(u64::from(*n)),
            RegValue::Qword(n) => Some(*n),
            RegValue::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as text, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RegValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as shown in a finding's evidence.
    pub fn display(&self) -> String {
        match self {
            RegValue::Dword(n) => n.to_string(),
            RegValue::Qword(n) => n.to_string(),
            RegValue::String(s) => s.clone(),
            RegValue::MultiString(v) => {
                // A server can have hundreds of pending renames: the first few say enough.
                let set: Vec<&str> = v
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !s.is_empty())
                    .collect();
                let mut text = set[..set.len().min(SHOWN_ENTRIES)].join("; ");
                if set.len() > SHOWN_ENTRIES {
                    text.push_str(&format!("; and {} more", set.len() - SHOWN_ENTRIES));
                }
                text
            }
            RegValue::Binary(b) => format!("{} bytes", b.len()),
        }
    }
}

/// Entries of a `REG_MULTI_SZ` shown in evidence.
const SHOWN_ENTRIES: usize = 5;

/// A certificate of one of the machine's stores, as the checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The subject as an X.500 string, e.g. `CN=Microsoft Exchange Server Auth Certificate`.
    pub subject: String,
    /// SHA-1 thumbprint, upper-case hex (what `Get-ExchangeCertificate` shows).
    pub thumbprint: String,
    /// End of validity (`NotAfter`), Unix seconds.
    pub not_after_unix: i64,
}

/// A read that failed for a reason other than "not there" (access denied, an IO error): the
/// check that needed it is reported as not run, never as clean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {what}: {reason}")]
pub struct StateError {
    /// What was read, e.g. `HKLM\SOFTWARE\...\ExecutionPolicy`.
    pub what: String,
    /// Why it failed, as the system said.
    pub reason: String,
}

/// The server's state as the checks see it. Absent things are `Ok(None)`, `Ok(false)` or an
/// empty list; `Err` is for reads that failed.
pub trait SystemState {
    /// The value `name` of `key` (a path below `hive`, `\`-separated); `None` when the key or
    /// the value does not exist.
    fn registry_value(
        &self,
        hive: Hive,
        key: &str,
        name: &str,
    ) -> Result<Option<RegValue>, StateError>;

    /// True when `key` exists below `hive`.
    fn registry_key_exists(&self, hive: Hive, key: &str) -> Result<bool, StateError>;

    /// Names of the subkeys of `key` (`""` is the hive itself); empty when it does not exist.
    fn registry_subkeys(&self, hive: Hive, key: &str) -> Result<Vec<String>, StateError>;

    /// True when the file or folder at the Windows path `path` exists.
    fn path_exists(&self, path: &str) -> Result<bool, StateError>;

    /// Bytes free for the caller on the volume holding `path`; `None` when there is no such
    /// volume.
    fn free_bytes(&self, path: &str) -> Result<Option<u64>, StateError>;

    /// Last-modified time of the file at the Windows path `path`, Unix seconds; `None` when
    /// there is no such file.
    fn modified_unix(&self, path: &str) -> Result<Option<i64>, StateError>;

    /// The certificates of the local machine's system store `store` (e.g. `My`); empty when
    /// the store does not exist.
    fn certificates(&self, store: &str) -> Result<Vec<Certificate>, StateError>;

    /// The server's clock, Unix seconds (certificate lifetimes are measured against it).
    fn now_unix(&self) -> i64;

    /// The system drive, e.g. `C:` (`%SystemDrive%`).
    fn system_drive(&self) -> String {
        "C:".to_string()
    }

    /// The user name the command runs as, without its domain; `None` when it runs as a service
    /// account (LocalSystem), whose name says nothing about the installing admin.
    fn account_name(&self) -> Option<String>;
}

/// A [`SystemState`] made of plain data: tests, and `preflight` of a recorded state.
///
/// Key paths and names compare case-insensitively, like the registry and NTFS. Its clock
/// stands at [`FakeState::DEFAULT_NOW`] unless set.
#[derive(Debug, Clone)]
pub struct FakeState {
    keys: BTreeMap<(Hive, String), BTreeMap<String, RegValue>>,
    paths: BTreeMap<String, Option<i64>>,
    free: BTreeMap<String, u64>,
    failing: BTreeMap<(Hive, String), String>,
    account: Option<String>,
    stores: BTreeMap<String, Vec<Certificate>>,
    now: i64,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            keys: BTreeMap::new(),
            paths: BTreeMap::new(),
            free: BTreeMap::new(),
            failing: BTreeMap::new(),
            account: None,
            stores: BTreeMap::new(),
            now: FakeState::DEFAULT_NOW,
        }
    }
}

fn norm(s: &str) -> String {
    s.trim_matches('\\').to_ascii_lowercase()
}

impl FakeState {
    /// The fake clock's default: 2026-01-01T00:00:00Z.
    pub const DEFAULT_NOW: i64 = 1_767_225_600;

    /// An empty server: no keys, no files, no volumes.
    pub fn new() -> FakeState {
        FakeState::default()
    }

    /// Adds `key` (and its parents) without values.
    pub fn key(mut self, hive: Hive, key: &str) -> FakeState {
        let mut path = String::new();
        for part in key.split('\\').filter(|p| !p.is_empty()) {
            if !path.is_empty() {
                path.push('\\');
            }
            path.push_str(part);
            self.keys.entry((hive, path.clone())).or_default();
        }
        self
    }

    /// Sets the value `name` of `key`, creating the key.
    pub fn value(mut self, hive: Hive, key: &str, name: &str, value: RegValue) -> FakeState {
        self = self.key(hive, key);
        let k = self
            .keys
            .iter_mut()
            .find(|((h, k), _)| *h == hive && norm(k) == norm(key))
            .map(|(_, v)| v)
            .expect("the key was just added");
        k.insert(name.to_ascii_lowercase(), value);
        self
    }

    /// Makes every read below `key` fail with `reason` (e.g. access denied).
    pub fn failing(mut self, hive: Hive, key: &str, reason: &str) -> FakeState {
        self.failing.insert((hive, norm(key)), reason.to_string());
        self
    }

    /// Adds a file or folder at the Windows path `path`.
    pub fn path(mut self, path: &str) -> FakeState {
        self.paths.entry(norm(path)).or_insert(None);
        self
    }

    /// Adds a file at `path` last modified at `unix` seconds.
    pub fn file(mut self, path: &str, unix: i64) -> FakeState {
        self.paths.insert(norm(path), Some(unix));
        self
    }

    /// Adds a certificate to the local machine's store `store`.
    pub fn certificate(mut self, store: &str, cert: Certificate) -> FakeState {
        self.stores
            .entry(store.to_ascii_lowercase())
            .or_default()
            .push(cert);
        self
    }

    /// Sets the clock, Unix seconds.
    pub fn now(mut self, unix: i64) -> FakeState {
        self.now = unix;
        self
    }

    /// Sets the free bytes of the volume `drive` (e.g. `C:`).
    pub fn free(mut self, drive: &str, bytes: u64) -> FakeState {
        self.free.insert(norm(drive), bytes);
        self
    }

    /// Sets the account name.
    pub fn account(mut self, name: &str) -> FakeState {
        self.account = Some(name.to_string());
        self
    }

    fn check(&self, hive: Hive, key: &str) -> Result<(), StateError> {
        let key = norm(key);
        for ((h, k), reason) in &self.failing {
            if *h == hive && (key == *k || key.starts_with(&format!("{k}\\"))) {
                return Err(StateError {
                    what: format!("{}\\{key}", hive.as_str()),
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    fn find(&self, hive: Hive, key: &str) -> Option<&BTreeMap<String, RegValue>> {
        let key = norm(key);
        self.keys
            .iter()
            .find(|((h, k), _)| *h == hive && norm(k) == key)
            .map(|(_, v)| v)
    }
}

impl SystemState for FakeState {
    fn registry_value(
        &self,
        hive: Hive,
        key: &str,
        name: &str,
    ) -> Result<Option<RegValue>, StateError> {
        self.check(hive, key)?;
        Ok(self
            .find(hive, key)
            .and_then(|values| values.get(&name.to_ascii_lowercase()).cloned()))
    }

    fn registry_key_exists(&self, hive: Hive, key: &str) -> Result<bool, StateError> {
        self.check(hive, key)?;
        Ok(self.find(hive, key).is_some())
    }

    fn registry_subkeys(&self, hive: Hive, key: &str) -> Result<Vec<String>, StateError> {
        self.check(hive, key)?;
        let parent = norm(key);
        let mut names: Vec<String> = self
            .keys
            .keys()
            .filter(|(h, _)| *h == hive)
            .filter_map(|(_, k)| {
                let k = k.trim_matches('\\');
                let rest = if parent.is_empty() {
                    k
                } else {
                    let head = k.get(..parent.len())?;
                    if !head.eq_ignore_ascii_case(&parent) {
                        return None;
                    }
                    k.get(parent.len()..)?.strip_prefix('\\')?
                };
                (!rest.is_empty() && !rest.contains('\\')).then(|| rest.to_string())
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn path_exists(&self, path: &str) -> Result<bool, StateError> {
        Ok(self.paths.contains_key(&norm(path)))
    }

    fn free_bytes(&self, path: &str) -> Result<Option<u64>, StateError> {
        let drive = norm(path.get(..2).unwrap_or(path));
        Ok(self.free.get(&drive).copied())
    }

    fn modified_unix(&self, path: &str) -> Result<Option<i64>, StateError> {
        Ok(self.paths.get(&norm(path)).copied().flatten())
    }

    fn certificates(&self, store: &str) -> Result<Vec<Certificate>, StateError> {
        Ok(self
            .stores
            .get(&store.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default())
    }

    fn now_unix(&self) -> i64 {
        self.now
    }

    fn account_name(&self) -> Option<String> {
        self.account.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_reads_like_the_registry() {
        let s = FakeState::new()
            .value(
                Hive::LocalMachine,
                r"SOFTWARE\Policies\Microsoft\Windows\PowerShell",
                "ExecutionPolicy",
                RegValue::String("AllSigned".into()),
            )
            .key(Hive::Users, r"S-1-5-21-1\Software");
        let v = s
            .registry_value(
                Hive::LocalMachine,
                r"software\policies\microsoft\windows\powershell",
                "executionpolicy",
            )
            .unwrap();
        assert_eq!(v, Some(RegValue::String("AllSigned".into())));
        assert!(s
            .registry_key_exists(Hive::LocalMachine, r"SOFTWARE\Policies")
            .unwrap());
        assert!(!s
            .registry_key_exists(Hive::LocalMachine, r"SOFTWARE\Other")
            .unwrap());
        assert_eq!(
            s.registry_subkeys(Hive::LocalMachine, r"SOFTWARE\Policies\Microsoft")
                .unwrap(),
            vec!["Windows".to_string()]
        );
        assert_eq!(
            s.registry_subkeys(Hive::Users, "").unwrap(),
            vec!["S-1-5-21-1".to_string()]
        );
        let s = s.failing(Hive::LocalMachine, r"SOFTWARE\Policies", "access denied");
        assert!(s
            .registry_value(
                Hive::LocalMachine,
                r"SOFTWARE\Policies\Microsoft\Windows\PowerShell",
                "ExecutionPolicy"
            )
            .is_err());
    }

    #[test]
    fn values_are_set_only_when_they_carry_something() {
        assert!(!RegValue::Dword(0).is_set());
        assert!(RegValue::Dword(1).is_set());
        assert!(!RegValue::MultiString(vec![String::new()]).is_set());
        assert!(RegValue::MultiString(vec![r"\??\C:\a".into(), String::new()]).is_set());
        assert!(!RegValue::String("  ".into()).is_set());
    }

    #[test]
    fn long_lists_show_their_first_entries_and_a_count() {
        let v = RegValue::MultiString(
            (0..8)
                .map(|i| format!("f{i}"))
                .chain([String::new()])
                .collect(),
        );
        assert_eq!(v.display(), "f0; f1; f2; f3; f4; and 3 more");
        let v = RegValue::MultiString(vec!["a".into(), String::new(), "b".into()]);
        assert_eq!(v.display(), "a; b");
    }
}
