//! File identity: which file a path points at, and whether it is still the file we read.
//!
//! A [`FileKey`] is composite, because each signal alone has shipped data-losing bugs in other
//! shippers (inode reuse, common headers, zero-byte files; see the knowledge notes): the device
//! and file id from the OS, plus a fingerprint of the first bytes after the byte order mark. A
//! fourth signal, the hash of the bytes just before a saved offset (Fluent Bit's "offset
//! marker"), lives in the checkpoint and is checked before resuming.
//!
//! The fingerprint length is fixed when a file is first seen (up to [`FINGERPRINT_MAX`] bytes)
//! and stored in the key, so a small file that grows keeps its identity: later checks hash
//! the same prefix length.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Longest prefix (after the BOM) hashed into a fingerprint.
pub const FINGERPRINT_MAX: u64 = 256;
/// Longest run of bytes before an offset kept as its marker.
pub const MARKER_MAX: u64 = 64;

/// Device and file id of an open file or a path, as reported by the OS.
///
/// On Unix this is `st_dev`/`st_ino`. On Windows it is the volume serial number and the NTFS
/// file index, read from an open handle ([`FileId::of_file`], [`FileId::of_path`]); std's
/// stable API has no file index, and the creation time it does have is inherited by a file
/// recreated under the same name within 15 s (file-system tunnelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    /// Device / volume.
    pub device: u64,
    /// Inode / file id.
    pub inode: u64,
}

impl FileId {
    /// The id of an open file.
    ///
    /// # Errors
    /// The OS cannot describe the handle.
    pub fn of_file(file: &File) -> io::Result<Self> {
        #[cfg(windows)]
        {
            windows_file_id(file)
        }
        #[cfg(not(windows))]
        {
            Ok(Self::from_metadata(&file.metadata()?))
        }
    }

    /// The id of the file `path` names now (opened briefly, shared, on Windows).
    ///
    /// # Errors
    /// The path cannot be opened or described (`NotFound` when it is gone).
    pub fn of_path(path: &Path) -> io::Result<Self> {
        #[cfg(windows)]
        {
            Self::of_file(&open_shared(path)?)
        }
        #[cfg(not(windows))]
        {
            Ok(Self::from_metadata(&std::fs::metadata(path)?))
        }
    }

    /// Whether path metadata alone shows that `meta` is not the file `self` identifies: on
    /// Unix by comparing ids; on Windows it cannot tell (the file index needs a handle), so it
    /// answers false and the caller's size and mtime checks, then [`FileId::of_file`], decide.
    pub fn differs_from_metadata(&self, meta: &Metadata) -> bool {
        #[cfg(windows)]
        {
            let _ = meta;
            false
        }
        #[cfg(not(windows))]
        {
            Self::from_metadata(meta) != *self
        }
    }

    /// The id from metadata alone. On Unix the same id as [`FileId::of_path`]; on Windows the
    /// creation time, used only for directories (telling a watched folder from one recreated
    /// under its name: their index needs a backup-semantics handle, and nothing is read from
    /// them), never compared with the id of a log file.
    pub fn from_metadata(meta: &Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self {
                device: meta.dev(),
                inode: meta.ino(),
            }
        }
        #[cfg(windows)]
        {
            use std::os::windows::fs::MetadataExt;
            Self {
                device: 0,
                inode: meta.creation_time(),
            }
        }
    }
}

/// Volume serial number and file index of an open handle (`GetFileInformationByHandle`).
#[cfg(windows)]
fn windows_file_id(file: &File) -> io::Result<FileId> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
    };
    // SAFETY: the handle stays open while `file` is borrowed, and the call only writes the
    // plain-data struct it is given.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    if unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileId {
        device: u64::from(info.dwVolumeSerialNumber),
        inode: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
    })
}

/// The stable identity of one generation of one log file.
///
/// Two keys are equal only if device, inode, fingerprint length and fingerprint are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// Device and file id.
    #[serde(flatten)]
    pub id: FileId,
    /// Number of bytes (after the BOM) the fingerprint covers; at least 1.
    pub fp_len: u32,
    /// Lowercase hex of the first 16 bytes of BLAKE3 over those bytes.
    pub fingerprint: String,
}

impl FileKey {
    /// The fingerprint as carried on the wire (`FileIdentity.fingerprint`): `"<len>:<hex>"`.
    pub fn wire_fingerprint(&self) -> String {
        format!("{}:{}", self.fp_len, self.fingerprint)
    }

    /// The protobuf form of this key for `Finding.file`.
    pub fn to_proto(&self) -> patchwatch_proto::FileIdentity {
        patchwatch_proto::FileIdentity {
            device: self.id.device,
            inode: self.id.inode,
            fingerprint: self.wire_fingerprint(),
        }
    }
}

impl std::fmt::Display for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.id.device, self.id.inode, self.fp_len, self.fingerprint
        )
    }
}

/// Byte order mark found at the start of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Bom {
    /// No BOM: ANSI or UTF-8 text, or UTF-16 without BOM (the pipeline sniffs further).
    #[default]
    None,
    /// `EF BB BF`.
    Utf8,
    /// `FF FE`: how every native MSI log starts.
    Utf16Le,
    /// `FE FF`.
    Utf16Be,
}

impl Bom {
    /// Detects the BOM at the start of `head`. Needs at least 3 bytes to tell UTF-8 apart;
    /// with fewer it answers from what is there.
    pub fn sniff(head: &[u8]) -> Self {
        match head {
            [0xEF, 0xBB, 0xBF, ..] => Self::Utf8,
            [0xFF, 0xFE, ..] => Self::Utf16Le,
            [0xFE, 0xFF, ..] => Self::Utf16Be,
            _ => Self::None,
        }
    }

    /// Length of the BOM in bytes.
    pub fn len(self) -> u64 {
        match self {
            Self::None => 0,
            Self::Utf8 => 3,
            Self::Utf16Le | Self::Utf16Be => 2,
        }
    }

    /// True for [`Bom::None`].
    pub fn is_empty(self) -> bool {
        self == Self::None
    }

    /// True for the two UTF-16 BOMs: offsets into such files must stay even.
    pub fn is_utf16(self) -> bool {
        matches!(self, Self::Utf16Le | Self::Utf16Be)
    }
}

/// Hex of the first 16 bytes of BLAKE3 over `bytes`.
pub fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&blake3::hash(bytes).as_bytes()[..16])
}

/// Opens a log file for reading without getting in its writer's way.
///
/// On Windows the share mode is `READ | WRITE | DELETE`, so the writer can keep appending and
/// can rename or delete the file while we hold it (std's default is the same; stating it makes
/// the guarantee independent of std's choice).
pub fn open_shared(path: &Path) -> io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
        opts.share_mode(0x1 | 0x2 | 0x4);
    }
    crate::faults::check_read(path)?;
    opts.open(path)
}

/// Reads exactly `len` bytes at `offset`, or fewer at end of file.
pub fn read_at(file: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len as usize);
    file.by_ref().take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The marker for `offset`: the up to [`MARKER_MAX`] bytes just before it, never reaching
/// back before `floor` (the BOM end, so that the marker is content).
pub fn marker_range(offset: u64, floor: u64) -> (u64, u64) {
    let start = offset.saturating_sub(MARKER_MAX).max(floor.min(offset));
    (start, offset - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_id_follows_the_file_not_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("a.log.1"));
        std::fs::write(&a, b"one\n").unwrap();
        let id = FileId::of_path(&a).unwrap();
        // Path and handle agree, and the open handle is what the tailer compares.
        assert_eq!(FileId::of_file(&open_shared(&a).unwrap()).unwrap(), id);
        assert!(!id.differs_from_metadata(&std::fs::metadata(&a).unwrap()));
        // Renamed: same file, same id under the new name.
        std::fs::rename(&a, &b).unwrap();
        assert_eq!(FileId::of_path(&b).unwrap(), id);
        // Recreated under the old name while the old file lives: another id.
        std::fs::write(&a, b"one\n").unwrap();
        assert_ne!(FileId::of_path(&a).unwrap(), id);
        assert_eq!(
            FileId::of_path(&dir.path().join("gone.log"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn bom_sniffing() {
        assert_eq!(Bom::sniff(&[0xFF, 0xFE, b'a', 0]), Bom::Utf16Le);
        assert_eq!(Bom::sniff(&[0xEF, 0xBB, 0xBF]), Bom::Utf8);
        assert_eq!(Bom::sniff(b"abc"), Bom::None);
        assert_eq!(Bom::Utf16Le.len(), 2);
    }

    #[test]
    fn marker_range_respects_floor() {
        assert_eq!(marker_range(100, 2), (36, 64));
        assert_eq!(marker_range(10, 2), (2, 8));
        assert_eq!(marker_range(0, 2), (0, 0));
    }
}
