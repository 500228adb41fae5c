//! Files of a lake on a local disk used where they lie: mapped into memory, not
//! read (no copy, no system call per range). Used for the stored id index (read
//! whole) and for the data files whose rows silver reads back: the pages of the
//! rows an upsert replaces, and the files a compaction or a purge rewrites.
//!
//! Safe against the lake's own writers: a data file is never changed once written
//! (Delta), the stored index is replaced by a rename, and a vacuum or purge
//! unlinks; none of these changes a mapped file. What a read would report as an
//! error becomes a crash of the process (SIGBUS) while a file is mapped: a file
//! truncated in place (a `cp` over it, a restore: the lake is not to be written so
//! while gateways run, docs/tables.md) or a disk's read error on its pages.

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

/// Whether the directory `dir` lies on a local disk's file system (as for
/// [`on_local_disk`]); asked on a blocking thread (on NFS the question goes to the
/// server). False if it cannot be told.
pub(crate) async fn on_local_disk_dir(dir: std::path::PathBuf) -> bool {
    tokio::task::spawn_blocking(move || std::fs::File::open(dir).is_ok_and(|d| on_local_disk(&d))).await.unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::logstore::object_store::local::LocalFileSystem;
    use deltalake::logstore::object_store::memory::InMemory;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_local_file_is_mapped_and_an_object_elsewhere_is_left_to_be_read() {
        let scratch = crate::scratch::Scratch::new("mapped");
        let dir = &scratch.0;
        // (the test directory lies on a local disk's file system here: ext4, tmpfs or overlayfs)
        assert!(on_local_disk_dir(dir.clone()).await, "{} is not on a local disk", dir.display());
        let local = LocalFileSystem::new_with_prefix(dir).unwrap();
        let path = Path::from("a/file.bin");
        local.put(&path, b"some bytes"[..].into()).await.unwrap();
        match get(&local, &path).await.unwrap() {
            Got::Mapped(b) => assert_eq!(&b[..], b"some bytes"),
            Got::Other(_) => panic!("a file on a local disk is read, not mapped"),
        }
        // the file replaced by a rename (as the lake's writers do): the mapping
        // taken before keeps what it saw
        let Got::Mapped(before) = get(&local, &path).await.unwrap() else { panic!() };
        local.put(&path, b"other bytes!"[..].into()).await.unwrap();
        assert_eq!(&before[..], b"some bytes");
        assert!(matches!(get(&local, &Path::from("missing")).await, Err(ObjectStoreError::NotFound { .. })));
        let memory = InMemory::new();
        memory.put(&path, b"some bytes"[..].into()).await.unwrap();
        match get(&memory, &path).await.unwrap() {
            Got::Other(got) => assert_eq!(&got.bytes().await.unwrap()[..], b"some bytes"),
            Got::Mapped(_) => panic!("an object that is not a local file is mapped"),
        }
        assert!(!on_local_disk_dir(dir.join("missing")).await);
    }
}
