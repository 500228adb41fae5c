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
    Mapped(MappedBytes),
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
        Some(m) => Got::Mapped(MappedBytes(Bytes::from_owner(m))),
        None => Got::Other(got),
    })
}

/// Bytes that lie in a read-only mapping of a file ([`get`]), so that the pages
/// read can be handed back ([`MappedBytes::release`]): a mapped page read once
/// counts in the process's resident memory for as long as it stays mapped, though
/// the kernel holds it in its page cache anyway (the stored id index is 240 MB at
/// 10 million rows, every byte of it read when it is loaded).
#[derive(Clone)]
pub(crate) struct MappedBytes(Bytes);

impl MappedBytes {
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// `sub` (a part of these bytes) as mapped bytes of its own.
    pub(crate) fn slice_ref(&self, sub: &[u8]) -> MappedBytes {
        MappedBytes(self.0.slice_ref(sub))
    }

    /// Let the pages wholly within `range` of these bytes leave the process's
    /// memory (`madvise(MADV_DONTNEED)`: the kernel keeps them in its page cache
    /// while memory allows). The bytes do not change: a page read again is mapped
    /// again, from the page cache (a minor fault) or else the disk. Partial pages
    /// at either end stay.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        let Some(part) = self.0.get(range) else { return };
        let page = page_size();
        let start = (part.as_ptr() as usize).next_multiple_of(page);
        let end = (part.as_ptr() as usize + part.len()) / page * page;
        if end > start {
            // SAFETY: [start, end) lies within a read-only mapping of a file (how a
            // `MappedBytes` is made), which the process never writes: dropping its
            // pages changes no byte anyone reads, only where they are read from.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
}

/// Releases the pages of mapped bytes read front to back behind the reader, a
/// step of 2 MiB at a time, and on being dropped all of them: reading them all
/// then holds at most a step or two resident. Made for bytes that may not be
/// mapped, it does nothing.
pub(crate) struct ReleaseBehind<'a> {
    bytes: Option<&'a MappedBytes>,
    /// Released up to here (less the page it ends in).
    done: usize,
}

impl<'a> ReleaseBehind<'a> {
    /// Released in steps of this many bytes: a system call for each.
    pub(crate) const STEP: usize = 2 << 20;

    pub(crate) fn new(bytes: Option<&'a MappedBytes>) -> ReleaseBehind<'a> {
        ReleaseBehind { bytes, done: 0 }
    }

    /// Nothing before `at` is to be read again (soon).
    pub(crate) fn reached(&mut self, at: usize) {
        if let Some(bytes) = self.bytes
            && at >= self.done + Self::STEP
        {
            // (from the page the last step ended in, which it kept)
            bytes.release(self.done.saturating_sub(page_size())..at);
            self.done = at;
        }
    }
}

impl Drop for ReleaseBehind<'_> {
    fn drop(&mut self) {
        // (all of them: pages before the last step read again since go too)
        if let Some(bytes) = self.bytes {
            bytes.release(0..bytes.0.len());
        }
    }
}

pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf reads a constant of the system.
    *PAGE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok().filter(|&p| p > 0).unwrap_or(4096))
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

/// The resident memory, in KiB, of the mapping that holds `at` (its `Rss` in
/// `/proc/self/smaps`).
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn resident_kib(at: &[u8]) -> usize {
    let at = at.as_ptr() as usize;
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if let Some((lo, hi)) = first.split_once('-').and_then(|(lo, hi)| Some((usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?))) {
            inside = (lo..hi).contains(&at);
        } else if inside && let Some(kib) = line.strip_prefix("Rss:") {
            return kib.trim().trim_end_matches("kB").trim().parse().expect("Rss in kB");
        }
    }
    panic!("no mapping holds {at:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::logstore::object_store::local::LocalFileSystem;
    use deltalake::logstore::object_store::memory::InMemory;

    /// Pages released leave the process's memory and read the same after; pages
    /// partly outside the range asked stay.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn released_pages_leave_the_process_and_read_the_same() {
        let scratch = crate::scratch::Scratch::new("mapped-release");
        let local = LocalFileSystem::new_with_prefix(&scratch.0).unwrap();
        let path = Path::from("big.bin");
        let page = page_size();
        let content: Vec<u8> = (0..64 * page).map(|i| (i * 7 % 251) as u8).collect();
        local.put(&path, content.clone().into()).await.unwrap();
        let Got::Mapped(m) = get(&local, &path).await.unwrap() else { panic!("not mapped") };
        let kib = |pages: usize| pages * page / 1024;
        assert_eq!(&m.bytes()[..], &content[..]);
        assert_eq!(resident_kib(m.bytes()), kib(64));
        // (a range not on page boundaries: the pages at its ends stay)
        m.release(page / 2..10 * page + 1);
        assert_eq!(resident_kib(m.bytes()), kib(64 - 9));
        assert_eq!(&m.bytes()[..], &content[..]);
        assert_eq!(resident_kib(m.bytes()), kib(64));
        // once a reader is dropped, nothing stays (this one reached less than a step)
        {
            let mut behind = ReleaseBehind::new(Some(&m));
            behind.reached(m.bytes().len() / 2);
        }
        assert_eq!(resident_kib(m.bytes()), 0);
        // a part of the bytes released: only its pages go
        assert_eq!(&m.bytes()[..], &content[..]);
        let part = m.slice_ref(&m.bytes()[8 * page..16 * page]);
        part.release(0..part.bytes().len());
        assert_eq!(resident_kib(m.bytes()), kib(64 - 8));
        assert_eq!(&part.bytes()[..], &content[8 * page..16 * page]);
        // more than a step: what is behind goes as the reader goes on
        let big = Path::from("bigger.bin");
        let len = 3 * ReleaseBehind::STEP;
        local.put(&big, vec![1u8; len].into()).await.unwrap();
        let Got::Mapped(m) = get(&local, &big).await.unwrap() else { panic!("not mapped") };
        let mut behind = ReleaseBehind::new(Some(&m));
        let mut went = vec![];
        for at in (0..len).step_by(page) {
            assert_eq!(m.bytes()[at], 1);
            behind.reached(at);
            if at % (64 * page) == 0 {
                went.push(resident_kib(m.bytes()));
            }
        }
        // (never more than two steps resident; once dropped, none)
        assert!(went.iter().all(|&k| k <= 2 * ReleaseBehind::STEP / 1024), "{:?}", went.iter().max());
        assert!(went.last().is_some_and(|&k| k < len / 1024 / 2), "{:?}", went.last());
        drop(behind);
        assert_eq!(resident_kib(m.bytes()), 0);
    }

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
            Got::Mapped(b) => assert_eq!(&b.bytes()[..], b"some bytes"),
            Got::Other(_) => panic!("a file on a local disk is read, not mapped"),
        }
        // the file replaced by a rename (as the lake's writers do): the mapping
        // taken before keeps what it saw
        let Got::Mapped(before) = get(&local, &path).await.unwrap() else { panic!() };
        local.put(&path, b"other bytes!"[..].into()).await.unwrap();
        assert_eq!(&before.bytes()[..], b"some bytes");
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
