//! Files of a lake on a local disk used where they lie: mapped into memory, not
//! read (no copy, no system call per range). Used for the files this crate reads
//! in many small pieces or in whole: the stored id index, and the pages of rows an
//! upsert replaces.
//!
//! Safe against the lake's own writers: a data file is never changed once written
//! (Delta), the stored index is replaced by a rename, and a vacuum or purge
//! unlinks; none of these changes a mapped file. Writing into a file in place (a
//! `cp` over it, a restore) while a gateway runs would, and truncating one could
//! crash the process (SIGBUS): the lake is not to be written so (docs/tables.md).

use bytes::Bytes;
use deltalake::logstore::object_store::{GetResult, GetResultPayload, ObjectStoreExt};
use deltalake::{ObjectStore, ObjectStoreError, Path};

/// A file as [`get`] found it.
pub(crate) enum Got {
    /// Mapped, read only.
    Mapped(Bytes),
    /// Anything else (another store, a network file system, a mapping refused): to
    /// be read.
    Other(GetResult),
}

/// `path` in `store`, mapped when the store keeps it as a file on a local disk.
/// (A store that is not a local file system answers with the object's body: call
/// this only on stores known to be local, or where the body is wanted anyway.)
pub(crate) async fn get(store: &dyn ObjectStore, path: &Path) -> Result<Got, ObjectStoreError> {
    let got = store.get(path).await?;
    let mapped = match &got.payload {
        // SAFETY: see the module's comment; the mapping is read only.
        GetResultPayload::File(file, _) if on_local_disk(file) => unsafe { memmap2::Mmap::map(file) }.ok(),
        _ => None,
    };
    Ok(match mapped {
        Some(m) => Got::Mapped(Bytes::from_owner(m)),
        None => Got::Other(got),
    })
}

/// Whether `file` lies on a local disk's file system (ext4, XFS, btrfs, ZFS, F2FS,
/// tmpfs, overlayfs). Elsewhere (NFS, SMB, FUSE...) another host's rename can
/// leave a mapping's pages unreadable, so the file is read instead.
#[cfg(target_os = "linux")]
fn on_local_disk(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    const LOCAL: [i64; 7] = [0xEF53, 0x5846_5342, 0x9123_683E, 0x2FC1_2FC1, 0xF2F5_2010, 0x0102_1994, 0x794C_7630];
    // SAFETY: fstatfs only writes into `s`, and the descriptor is open.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut s) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    LOCAL.contains(&(s.f_type as i64))
}

#[cfg(not(target_os = "linux"))]
fn on_local_disk(_: &std::fs::File) -> bool {
    false
}
