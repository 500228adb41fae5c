//! The segment log itself (synchronous).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 16;
const CHECKPOINT: &str = "checkpoint";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log in {dir}: {op}: {source}")]
    Io { dir: PathBuf, op: &'static str, source: io::Error },
    #[error("write-ahead log in {dir}: record of {len} bytes is larger than the limit of {max}")]
    TooLarge { dir: PathBuf, len: usize, max: usize },
    #[error("write-ahead log in {dir}: {0}", dir = .1.display())]
    Corrupt(String, PathBuf),
    #[error("write-ahead log in {dir}: an earlier write failed ({why}) and the segment could not be repaired yet; the next append tries again")]
    Poisoned { dir: PathBuf, why: String },
}

#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// A new segment file is started once the current one reaches this size.
    pub segment_bytes: u64,
    /// Largest payload accepted.
    pub max_record_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { segment_bytes: 64 << 20, max_record_bytes: 64 << 20 }
    }
}

/// A record read back for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
}

pub struct Log {
    dir: PathBuf,
    cfg: LogConfig,
    /// Segments in order; the last one is open for appends.
    segments: Vec<Segment>,
    file: File,
    file_len: u64,
    next_seq: u64,
    checkpoint: u64,
    /// Set when a write or fsync failed: the file's state past `file_len` is
    /// unknown (after a failed fsync Linux may have dropped the dirty pages). The
    /// next append first repairs it: the segment is reopened and cut back to
    /// `file_len`, the length of what was last made durable (and acknowledged).
    poisoned: Option<String>,
    /// Failure injection for tests: the next roll or write fails.
    #[cfg(test)]
    fail_next: Option<&'static str>,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

impl Log {
    fn io(&self, op: &'static str) -> impl FnOnce(io::Error) -> WalError + '_ {
        move |source| WalError::Io { dir: self.dir.clone(), op, source }
    }

    /// Open (or create) the log in `dir`. Returns the log and the records after the
    /// last checkpoint, in order: the ones to replay.
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<(Log, Vec<Record>), WalError> {
        let err = |op: &'static str| move |source| WalError::Io { dir: dir.to_path_buf(), op, source };
        fs::create_dir_all(dir).map_err(err("create directory"))?;
        let checkpoint = match fs::read_to_string(dir.join(CHECKPOINT)) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| WalError::Corrupt(format!("checkpoint file holds {s:?}, not a number"), dir.into()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(err("read checkpoint")(e)),
        };
        let mut segments: Vec<Segment> = Vec::new();
        for entry in fs::read_dir(dir).map_err(err("list segments"))? {
            let path = entry.map_err(err("list segments"))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if let Some(first) = name.strip_suffix(".wal").and_then(|s| s.parse::<u64>().ok()) {
                segments.push(Segment { first_seq: first, path });
            }
        }
        segments.sort_by_key(|s| s.first_seq);

        let mut replay = Vec::new();
        let mut next_seq = checkpoint + 1;
        let count = segments.len();
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == count;
            let (records, valid_len, total_len) = read_segment(&seg.path).map_err(err("read segment"))?;
            if valid_len < total_len {
                if !last || valid_record_after(&seg.path, valid_len).map_err(err("read segment"))? {
                    return Err(WalError::Corrupt(
                        format!("segment {} is damaged at byte {valid_len} of {total_len}, and valid records follow the damage (not a torn tail)", seg.path.display()),
                        dir.into(),
                    ));
                }
                // A torn tail: the write that was cut short was never acknowledged.
                tracing::warn!(segment = %seg.path.display(), "cutting a torn tail of {} bytes off the write-ahead log", total_len - valid_len);
                let f = OpenOptions::new().write(true).open(&seg.path).map_err(err("open segment"))?;
                f.set_len(valid_len).map_err(err("truncate segment"))?;
                f.sync_all().map_err(err("sync segment"))?;
            }
            for r in records {
                next_seq = next_seq.max(r.seq + 1);
                if r.seq > checkpoint {
                    replay.push(r);
                }
            }
        }

        let (file, file_len) = match segments.last() {
            Some(seg) => {
                let f = OpenOptions::new().append(true).open(&seg.path).map_err(err("open segment"))?;
                let len = f.metadata().map_err(err("stat segment"))?.len();
                (f, len)
            }
            None => {
                let path = dir.join(segment_name(next_seq));
                let f = create_segment(dir, &path).map_err(err("create segment"))?;
                segments.push(Segment { first_seq: next_seq, path });
                (f, 0)
            }
        };
        let log = Log {
            dir: dir.to_path_buf(),
            cfg,
            segments,
            file,
            file_len,
            next_seq,
            checkpoint,
            poisoned: None,
            #[cfg(test)]
            fail_next: None,
        };
        Ok((log, replay))
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn checkpointed(&self) -> u64 {
        self.checkpoint
    }

    /// Append `payloads` and make them durable; returns the sequence number of the
    /// first one (the rest follow consecutively).
    pub fn append<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<u64, WalError> {
        if let Some(why) = self.poisoned.clone() {
            // A transient failure (no space, no file descriptors) must not stop the
            // gateway for good: repair, then go on.
            if let Err(e) = self.repair() {
                return Err(WalError::Poisoned { dir: self.dir.clone(), why: format!("{why}; repair: {e}") });
            }
            tracing::warn!(dir = %self.dir.display(), "write-ahead log repaired after a failed write ({why}); appending again");
            self.poisoned = None;
        }
        for p in payloads {
            if p.as_ref().len() > self.cfg.max_record_bytes {
                return Err(WalError::TooLarge { dir: self.dir.clone(), len: p.as_ref().len(), max: self.cfg.max_record_bytes });
            }
        }
        // A roll that fails (no space, no descriptors) leaves the current segment
        // as it was: the append is refused, and the next one tries to roll again.
        if self.file_len >= self.cfg.segment_bytes {
            self.roll()?;
        }
        let first = self.next_seq;
        let size: usize = payloads.iter().map(|p| HEADER + p.as_ref().len()).sum();
        let mut buf = Vec::with_capacity(size);
        for (i, p) in payloads.iter().enumerate() {
            let p = p.as_ref();
            let seq = first + i as u64;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&seq.to_le_bytes());
            crc.update(p);
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc.finalize().to_le_bytes());
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(p);
        }
        if let Err(e) = self.write_durably(&buf) {
            // Fail-stop: a later append must not follow a half-written record, and
            // after a failed fsync the file's contents are not known. On restart, open
            // cuts a torn tail; the failed records were never acknowledged.
            self.poisoned = Some(e.to_string());
            return Err(self.io("append")(e));
        }
        self.file_len += buf.len() as u64;
        self.next_seq += payloads.len() as u64;
        Ok(first)
    }

    fn write_durably(&mut self, buf: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_next == Some("write") {
            self.fail_next = None;
            // Half the bytes reach the file, then the disk is full.
            self.file.write_all(&buf[..buf.len() / 2])?;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "injected: no space left on device"));
        }
        self.file.write_all(buf)?;
        self.file.sync_data()
    }

    /// Cut the open segment back to what was last made durable, through a fresh
    /// descriptor, and make that durable.
    fn repair(&mut self) -> io::Result<()> {
        let path = &self.segments.last().expect("an open segment").path;
        let f = OpenOptions::new().append(true).open(path)?;
        f.set_len(self.file_len)?;
        f.sync_all()?;
        self.file = f;
        Ok(())
    }

    fn roll(&mut self) -> Result<(), WalError> {
        #[cfg(test)]
        if self.fail_next == Some("roll") {
            self.fail_next = None;
            return Err(self.io("create segment")(io::Error::other("injected: too many open files")));
        }
        let path = self.dir.join(segment_name(self.next_seq));
        self.file = create_segment(&self.dir, &path).map_err(self.io("create segment"))?;
        self.file_len = 0;
        self.segments.push(Segment { first_seq: self.next_seq, path });
        Ok(())
    }

    /// Everything up to and including `seq` is in its final store: it will not be
    /// replayed, and segments holding only such records are deleted.
    pub fn checkpoint(&mut self, seq: u64) -> Result<(), WalError> {
        if seq <= self.checkpoint {
            return Ok(());
        }
        // Segments whose records are all in their final store go first: that frees
        // space before the checkpoint file (which needs some) is written, so a full
        // disk recovers. Deleting before recording is safe: a restart replays from
        // the older checkpoint what is left, and what is gone is in the lake.
        // (A segment can go when the next one starts at or below seq + 1; the open
        // segment always stays.)
        while self.segments.len() > 1 && self.segments[1].first_seq <= seq + 1 {
            // Delete first: a segment that could not be deleted stays known.
            fs::remove_file(&self.segments[0].path).map_err(self.io("delete segment"))?;
            self.segments.remove(0);
        }
        let tmp = self.dir.join("checkpoint.tmp");
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(seq.to_string().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(CHECKPOINT))?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(self.io("write checkpoint"))?;
        self.checkpoint = seq;
        Ok(())
    }

    /// Segment files on disk (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

fn create_segment(dir: &Path, path: &Path) -> io::Result<File> {
    let f = match OpenOptions::new().create_new(true).append(true).open(path) {
        // Left empty by a roll that failed after creating it: reuse it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && fs::metadata(path)?.len() == 0 => OpenOptions::new().append(true).open(path)?,
        other => other?,
    };
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok(f)
}

/// Whether a valid record starts anywhere after `from` (then the damage is not a
/// torn tail but a hole in acknowledged data).
fn valid_record_after(path: &Path, from: u64) -> io::Result<bool> {
    let bytes = fs::read(path)?;
    let from = from as usize;
    for at in from + 1..bytes.len().saturating_sub(HEADER - 1) {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let end = at + HEADER + len;
        if len == 0 || end > bytes.len() {
            continue;
        }
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[at + 8..end]);
        if h.finalize() == crc {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Read a segment: its valid records, the length of its valid prefix, its length.
fn read_segment(path: &Path) -> io::Result<(Vec<Record>, u64, u64)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while at + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        let end = at + HEADER + len;
        if end > bytes.len() {
            break;
        }
        let payload = &bytes[at + HEADER..end];
        let mut h = crc32fast::Hasher::new();
        h.update(&seq.to_le_bytes());
        h.update(payload);
        if h.finalize() != crc {
            break;
        }
        records.push(Record { seq, payload: payload.to_vec() });
        at = end;
    }
    Ok((records, at as u64, bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> LogConfig {
        LogConfig { segment_bytes: 100, max_record_bytes: 1000 }
    }

    #[test]
    fn a_failed_roll_or_write_is_repaired_by_the_next_append_and_nothing_acknowledged_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), small()).unwrap();
        assert_eq!(log.append(&[[1u8; 90]]).unwrap(), 1);
        // No descriptor for a new segment: refused, not fail-stop.
        log.fail_next = Some("roll");
        assert!(log.append(&[[2u8; 10]]).is_err());
        assert_eq!(log.append(&[[3u8; 10]]).unwrap(), 2, "the next append rolls and goes on");
        // The disk fills half way through a write: refused; the next append cuts
        // the half-written record off and goes on.
        log.fail_next = Some("write");
        assert!(log.append(&[[4u8; 40], [5u8; 40]]).is_err());
        assert_eq!(log.append(&[[6u8; 10]]).unwrap(), 3);
        drop(log);
        let (_, replay) = Log::open(dir.path(), small()).unwrap();
        let got: Vec<(u64, u8)> = replay.iter().map(|r| (r.seq, r.payload[0])).collect();
        assert_eq!(got, vec![(1, 1), (2, 3), (3, 6)], "exactly the acknowledged records, no torn data");
    }

    #[test]
    fn records_survive_reopen_until_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, replay) = Log::open(dir.path(), small()).unwrap();
        assert!(replay.is_empty());
        assert_eq!(log.append(&[b"one".as_slice(), b"two"]).unwrap(), 1);
        assert_eq!(log.append(&[b"three"]).unwrap(), 3);
        drop(log);
        let (mut log, replay) = Log::open(dir.path(), small()).unwrap();
        let got: Vec<(u64, &[u8])> = replay.iter().map(|r| (r.seq, r.payload.as_slice())).collect();
        assert_eq!(got, vec![(1, b"one".as_slice()), (2, b"two"), (3, b"three")]);
        log.checkpoint(2).unwrap();
        assert_eq!(log.append(&[b"four"]).unwrap(), 4, "sequence numbers continue after reopen");
        drop(log);
        let (_, replay) = Log::open(dir.path(), small()).unwrap();
        assert_eq!(replay.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn segments_roll_and_checkpointed_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), small()).unwrap();
        let payload = [7u8; 90];
        for _ in 0..10 {
            log.append(&[payload]).unwrap();
        }
        assert_eq!(log.segment_count(), 10, "one 106-byte record per 100-byte segment");
        log.checkpoint(7).unwrap();
        assert_eq!(log.segment_count(), 3, "segments starting at 8, 9, 10 remain");
        drop(log);
        let (log, replay) = Log::open(dir.path(), small()).unwrap();
        assert_eq!(replay.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![8, 9, 10]);
        assert_eq!(log.next_seq(), 11);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&[b"kept".as_slice(), b"torn"]).unwrap();
        drop(log);
        let seg = dir.path().join(segment_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        // A crash during the second record's write: only part of it reached disk.
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 2).unwrap();
        let (mut log, replay) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(replay.iter().map(|r| r.payload.as_slice()).collect::<Vec<_>>(), vec![b"kept".as_slice()]);
        assert_eq!(log.append(&[b"next"]).unwrap(), 2, "the torn record's number is reused: it was never acknowledged");
        drop(log);
        let (_, replay) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(replay.iter().map(|r| r.payload.as_slice()).collect::<Vec<_>>(), vec![b"kept".as_slice(), b"next"]);
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_ends_the_valid_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&[b"good".as_slice(), b"flipped"]).unwrap();
        drop(log);
        let seg = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&seg, bytes).unwrap();
        let (_, replay) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(replay.len(), 1);
    }

    #[test]
    fn a_hole_in_the_middle_of_the_last_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&[b"first".as_slice(), b"second", b"third"]).unwrap();
        drop(log);
        let seg = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&seg).unwrap();
        bytes[HEADER + 2] ^= 0xff; // inside "first": acknowledged records follow it
        fs::write(&seg, bytes).unwrap();
        let err = Log::open(dir.path(), LogConfig::default()).err().expect("must refuse");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn damage_before_the_last_segment_is_an_error_not_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), small()).unwrap();
        for _ in 0..3 {
            log.append(&[[1u8; 60]]).unwrap();
        }
        drop(log);
        let seg = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&seg).unwrap();
        bytes[20] ^= 0xff;
        fs::write(&seg, bytes).unwrap();
        let err = Log::open(dir.path(), small()).err().expect("must refuse");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn oversized_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), small()).unwrap();
        let err = log.append(&[vec![0u8; 1001]]).unwrap_err();
        assert!(matches!(err, WalError::TooLarge { len: 1001, max: 1000, .. }));
        assert_eq!(log.append(&[b"ok"]).unwrap(), 1);
    }
}
