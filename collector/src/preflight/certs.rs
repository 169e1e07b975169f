//! The certificates of a local machine system store, read through crypt32
//! (`CertOpenStore`, `CertEnumCertificatesInStore`): subject, SHA-1 thumbprint and `NotAfter`.
//!
//! The unsafe code is kept to this file: one owned store handle, closed on drop, and one
//! function reading the three fields of a certificate context the enumeration lends.

use std::os::windows::ffi::OsStrExt;

use patchwatch_pipeline::preflight::{Certificate, StateError};
use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::Security::Cryptography::{
    CertCloseStore, CertEnumCertificatesInStore, CertGetCertificateContextProperty, CertNameToStrW,
    CertOpenStore, CERT_CONTEXT, CERT_SHA1_HASH_PROP_ID, CERT_STORE_OPEN_EXISTING_FLAG,
    CERT_STORE_PROV_SYSTEM_W, CERT_STORE_READONLY_FLAG, CERT_SYSTEM_STORE_LOCAL_MACHINE,
    CERT_X500_NAME_STR, HCERTSTORE, X509_ASN_ENCODING,
};

/// `ERROR_FILE_NOT_FOUND`: the store does not exist, an answer rather than a failed read.
const NOT_FOUND: i32 = 2;

/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_UNIX_OFFSET: i64 = 11_644_473_600;

struct Store(HCERTSTORE);

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle came from CertOpenStore and is closed once, here.
        unsafe { CertCloseStore(self.0, 0) };
    }
}

/// The certificates of `LocalMachine\<name>`, read-only; empty when the store does not exist.
pub(super) fn local_machine(name: &str) -> Result<Vec<Certificate>, StateError> {
    let failed = |e: std::io::Error| StateError {
        what: format!(r"certificate store LocalMachine\{name}"),
        reason: e.to_string(),
    };
    let wide: Vec<u16> = std::ffi::OsStr::new(name)
        .encode_wide()
        .chain(Some(0))
        .collect();
    // SAFETY: `wide` is NUL-terminated and outlives the call; the system provider takes the
    // store name as its parameter.
    let handle = unsafe {
        CertOpenStore(
            CERT_STORE_PROV_SYSTEM_W,
            0,
            0,
            CERT_SYSTEM_STORE_LOCAL_MACHINE
                | CERT_STORE_READONLY_FLAG
                | CERT_STORE_OPEN_EXISTING_FLAG,
            wide.as_ptr().cast(),
        )
    };
    if handle.is_null() {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(NOT_FOUND) => Ok(Vec::new()),
            _ => Err(failed(e)),
        };
    }
    let store = Store(handle);
    let mut out = Vec::new();
    let mut ctx: *const CERT_CONTEXT = std::ptr::null();
    loop {
        // SAFETY: `store` is open; `ctx` is null or the context the previous call returned,
        // which this call frees (so it is never used again).
        ctx = unsafe { CertEnumCertificatesInStore(store.0, ctx) };
        if ctx.is_null() {
            break;
        }
        // SAFETY: a non-null context from the enumeration stays valid until the next call.
        if let Some(cert) = unsafe { read(ctx) } {
            out.push(cert);
        }
    }
    Ok(out)
}

/// Reads one certificate; `None` for a context without certificate info.
///
/// # Safety
/// `ctx` is a valid certificate context.
unsafe fn read(ctx: *const CERT_CONTEXT) -> Option<Certificate> {
    let info = (*ctx).pCertInfo;
    if info.is_null() {
        return None;
    }
    let subject_blob = &(*info).Subject;
    let len = CertNameToStrW(
        X509_ASN_ENCODING,
        subject_blob,
        CERT_X500_NAME_STR,
        std::ptr::null_mut(),
        0,
    );
    let mut name = vec![0u16; len.max(1) as usize];
    let written = CertNameToStrW(
        X509_ASN_ENCODING,
        subject_blob,
        CERT_X500_NAME_STR,
        name.as_mut_ptr(),
        name.len() as u32,
    );
    name.truncate((written as usize).saturating_sub(1));
    let mut hash = [0u8; 20];
    let mut hash_len = hash.len() as u32;
    let thumbprint = if CertGetCertificateContextProperty(
        ctx,
        CERT_SHA1_HASH_PROP_ID,
        hash.as_mut_ptr().cast(),
        &mut hash_len,
    ) != 0
    {
        hash[..hash_len as usize]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    } else {
        String::new()
    };
    Some(Certificate {
        subject: String::from_utf16_lossy(&name),
        thumbprint,
        not_after_unix: unix(&(*info).NotAfter),
    })
}

fn unix(ft: &FILETIME) -> i64 {
    let ticks = (u64::from(ft.dwHighDateTime) << 32) | u64::from(ft.dwLowDateTime);
    (ticks / 10_000_000) as i64 - FILETIME_UNIX_OFFSET
}
