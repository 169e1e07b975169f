//! The [`SystemState`] of the Windows server the agent runs on: the registry through
//! `windows-registry` (64-bit view, read-only), files and their times through std, free space
//! through `GetDiskFreeSpaceExW`, certificate stores through crypt32 ([`super::certs`]).

use std::os::windows::ffi::OsStrExt;

use patchwatch_pipeline::preflight::{Certificate, Hive, RegValue, StateError, SystemState};
use windows_registry::{Key, Type, LOCAL_MACHINE, USERS};

/// This machine, read live at each call.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowsState;

/// `HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)` and `(ERROR_PATH_NOT_FOUND)`: the key or value
/// is absent, which is an answer, not a failed read.
const NOT_FOUND: [u32; 2] = [0x8007_0002, 0x8007_0003];

fn root(hive: Hive) -> &'static Key {
    match hive {
        Hive::LocalMachine => LOCAL_MACHINE,
        Hive::Users => USERS,
    }
}

fn failed(what: String, e: &dyn std::fmt::Display) -> StateError {
    StateError {
        what,
        reason: e.to_string(),
    }
}

/// Opens `key` below `hive`; `None` when it does not exist.
fn open(hive: Hive, key: &str) -> Result<Option<Key>, StateError> {
    match root(hive).open(key) {
        Ok(k) => Ok(Some(k)),
        Err(e) if NOT_FOUND.contains(&(e.code().0 as u32)) => Ok(None),
        Err(e) => Err(failed(format!(r"{}\{key}", hive.as_str()), &e)),
    }
}

fn wide_text(units: &[u16]) -> String {
    let end = units.iter().rposition(|&u| u != 0).map_or(0, |i| i + 1);
    String::from_utf16_lossy(&units[..end])
}

impl SystemState for WindowsState {
    fn registry_value(
        &self,
        hive: Hive,
        key: &str,
        name: &str,
    ) -> Result<Option<RegValue>, StateError> {
        let Some(k) = open(hive, key)? else {
            return Ok(None);
        };
        let v = match k.get_value(name) {
            Ok(v) => v,
            Err(e) if NOT_FOUND.contains(&(e.code().0 as u32)) => return Ok(None),
            Err(e) => return Err(failed(format!(r"{}\{key}\{name}", hive.as_str()), &e)),
        };
        let bytes: &[u8] = &v;
        Ok(Some(match v.ty() {
            Type::U32 if bytes.len() >= 4 => {
                RegValue::Dword(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            Type::U64 if bytes.len() >= 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[..8]);
                RegValue::Qword(u64::from_le_bytes(b))
            }
            Type::String | Type::ExpandString => RegValue::String(wide_text(v.as_wide())),
            Type::MultiString => RegValue::MultiString(
                v.as_wide()
                    .split(|&u| u == 0)
                    .filter(|s| !s.is_empty())
                    .map(String::from_utf16_lossy)
                    .collect(),
            ),
            _ => RegValue::Binary(bytes.to_vec()),
        }))
    }

    fn registry_key_exists(&self, hive: Hive, key: &str) -> Result<bool, StateError> {
        Ok(open(hive, key)?.is_some())
    }

    fn registry_subkeys(&self, hive: Hive, key: &str) -> Result<Vec<String>, StateError> {
        let Some(k) = open(hive, key)? else {
            return Ok(Vec::new());
        };
        match k.keys() {
            Ok(names) => Ok(names.collect()),
            Err(e) => Err(failed(format!(r"{}\{key}", hive.as_str()), &e)),
        }
    }

    fn path_exists(&self, path: &str) -> Result<bool, StateError> {
        std::path::Path::new(path)
            .try_exists()
            .map_err(|e| StateError {
                what: path.to_string(),
                reason: e.to_string(),
            })
    }

    fn free_bytes(&self, path: &str) -> Result<Option<u64>, StateError> {
        let wide: Vec<u16> = std::ffi::OsStr::new(path)
            .encode_wide()
            .chain(Some(0))
            .collect();
        let mut free = 0u64;
        // SAFETY: `wide` is NUL-terminated and outlives the call; the out pointer is a live
        // u64; the two totals we do not need may be null.
        let ok = unsafe {
            windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW(
                wide.as_ptr(),
                &mut free,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if ok != 0 {
            return Ok(Some(free));
        }
        let e = std::io::Error::last_os_error();
        // ERROR_PATH_NOT_FOUND, ERROR_INVALID_DRIVE, ERROR_NOT_READY: no such volume here.
        match e.raw_os_error() {
            Some(3 | 15 | 21) => Ok(None),
            _ => Err(StateError {
                what: format!("free space of {path}"),
                reason: e.to_string(),
            }),
        }
    }

    fn modified_unix(&self, path: &str) -> Result<Option<i64>, StateError> {
        let failed = |e: std::io::Error| StateError {
            what: format!("modification time of {path}"),
            reason: e.to_string(),
        };
        let modified = match std::fs::metadata(path) {
            Ok(m) => m.modified().map_err(failed)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        Ok(Some(unix_seconds(modified)))
    }

    fn certificates(&self, store: &str) -> Result<Vec<Certificate>, StateError> {
        super::certs::local_machine(store)
    }

    fn now_unix(&self) -> i64 {
        unix_seconds(std::time::SystemTime::now())
    }

    fn system_drive(&self) -> String {
        std::env::var("SystemDrive")
            .ok()
            .filter(|d| d.len() == 2 && d.ends_with(':'))
            .unwrap_or_else(|| "C:".to_string())
    }

    fn account_name(&self) -> Option<String> {
        let user = std::env::var("USERNAME").ok()?;
        let computer = std::env::var("COMPUTERNAME").unwrap_or_default();
        // LocalSystem (the agent's service account) is named after the computer, with a `$`.
        if user.eq_ignore_ascii_case(&format!("{computer}$")) || user.eq_ignore_ascii_case("SYSTEM")
        {
            return None;
        }
        Some(user)
    }
}

/// Seconds since 1970 (negative before it).
fn unix_seconds(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}
