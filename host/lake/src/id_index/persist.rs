//! The id index kept beside its table, in `_ehrgate/silver_id_index` (Delta readers
//! and vacuums, delta-rs's and Spark's, leave directories starting with `_` alone),
//! so that a new process loads it and catches up from there instead of reading
//! every id of the table. It is a cache: checked on load (its table's id, a
//! checksum) and compared file by file with the table's current version (what a
//! catch-up does anyway); anything that does not fit is read from the table.
//!
//! Layout (little-endian): `EHRGIDX1`; the hash seed (u64); the table version it
//! was written at (u64); the table's id; the files (count, then for each its
//! number, its `add` action as JSON and the rows its deletion vector removes,
//! serialised as a RoaringTreemap); the entries (count, then 24 bytes each: the key's
//! halves, file number, row), ascending by key; a CRC-32 of all that. Strings and
//! blobs are a u32 length and the bytes. Ids are only there as seeded hashes.

use deltalake::kernel::Add;
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::{DeltaTableError, ObjectStore, Path};
use roaring::RoaringTreemap;

use bytes::Bytes;

use super::sorted::{ENTRY, Sorted};
use super::FileEntry;
use crate::mapped::MappedBytes;

pub(crate) const PATH: &str = "_ehrgate/silver_id_index";
const MAGIC: &[u8; 8] = b"EHRGIDX1";

/// An index as read back.
pub(crate) struct Stored {
    pub seed: u64,
    pub version: u64,
    pub table_id: String,
    pub files: Vec<(u32, FileEntry)>,
    pub sorted: Sorted,
    /// The copy's checksum (of all it holds).
    pub crc: u32,
}

pub(crate) fn encode<'a>(
    seed: u64,
    version: u64,
    table_id: &str,
    files: impl Iterator<Item = (u32, &'a FileEntry)>,
    entries: &Sorted,
) -> Result<Vec<u8>, DeltaTableError> {
    let mut out = Vec::with_capacity(64 + entries.raw().len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    blob(&mut out, table_id.as_bytes());
    let files: Vec<_> = files.collect();
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for (no, f) in files {
        out.extend_from_slice(&no.to_le_bytes());
        blob(
            &mut out,
            &serde_json::to_vec(&f.add)
                .map_err(|e| DeltaTableError::Generic(format!("silver id index: {e}")))?,
        );
        let mut vector = Vec::with_capacity(f.deleted.serialized_size());
        f.deleted
            .serialize_into(&mut vector)
            .map_err(|e| DeltaTableError::Generic(format!("silver id index: {e}")))?;
        blob(&mut out, &vector);
    }
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(entries.raw());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// `bytes` as read; the entries stay where they are (in `sorted`). The checksum
/// is computed in the pass that checks the entries (one pass over them, not two);
/// a copy that does not read is reported as damaged when its checksum says so.
pub(crate) fn decode(bytes: Bytes) -> Result<Stored, String> {
    decode_in(&bytes, None)
}

/// As [`decode`], a copy mapped from a local disk: the entries stay in the mapping,
/// and the pages the check has read are let go as it goes ([`Sorted::from_mapped`]).
fn decode_mapped(mapped: MappedBytes) -> Result<Stored, String> {
    decode_in(mapped.bytes(), Some(&mapped))
}

fn decode_in(bytes: &Bytes, mapped: Option<&MappedBytes>) -> Result<Stored, String> {
    let (body, crc) = bytes
        .split_at_checked(bytes.len().saturating_sub(4))
        .ok_or("empty")?;
    let want = u32::from_le_bytes(crc.try_into().map_err(|_| "empty")?);
    let mut hasher = crc32fast::Hasher::new();
    match parse(bytes, mapped, body, want, &mut hasher) {
        Ok(stored) if hasher.finalize() == want => Ok(stored),
        Ok(_) => Err("checksum mismatch".into()),
        Err(_) if crc32fast::hash(body) != want => Err("checksum mismatch".into()),
        Err(e) => Err(e),
    }
}

/// The index in `body` (a part of `bytes`, which `mapped` maps if given), whose
/// checksum is to be `crc`. When it reads, every byte of `body` has been given to
/// `hasher` (the part before the entries once it is parsed, the entries block by
/// block as they are checked): the caller compares.
fn parse(bytes: &Bytes, mapped: Option<&MappedBytes>, body: &[u8], crc: u32, hasher: &mut crc32fast::Hasher) -> Result<Stored, String> {
    let mut r = Reader(body);
    if r.take(8)? != MAGIC {
        return Err("not an id index (or another format's)".into());
    }
    let seed = r.u64()?;
    let version = r.u64()?;
    let table_id = String::from_utf8(r.blob()?.to_vec()).map_err(|_| "table id not UTF-8")?;
    // (files are numbered 0..count, each once, each path once: a stored index's
    // numbers are made so)
    let count = r.u32()? as usize;
    let mut files: Vec<(u32, FileEntry)> = vec![];
    let mut numbered = vec![false; count.min(body.len())];
    let mut paths = std::collections::HashSet::new();
    for _ in 0..count {
        let no = r.u32()?;
        if numbered.get(no as usize).is_none_or(|&seen| seen) {
            return Err(format!("file number {no} out of place"));
        }
        numbered[no as usize] = true;
        let add: Add = serde_json::from_slice(r.blob()?).map_err(|e| format!("file {no}: {e}"))?;
        let deleted =
            RoaringTreemap::deserialize_from(r.blob()?).map_err(|e| format!("file {no}: {e}"))?;
        if !paths.insert(add.path.clone()) {
            return Err(format!("{} listed twice", add.path));
        }
        files.push((no, FileEntry { add, deleted }));
    }
    let n = r.u64()? as usize;
    let raw = r.take(n.checked_mul(ENTRY).ok_or("entry count")?)?;
    if !r.0.is_empty() {
        return Err("bytes after the entries".into());
    }
    // (the entries end the body)
    hasher.update(&body[..body.len() - raw.len()]);
    let seen = |block: &[u8]| hasher.update(block);
    let sorted = match mapped {
        Some(m) => Sorted::from_mapped(m.slice_ref(raw), count as u32, seen)?,
        None => Sorted::from_raw(bytes.slice_ref(raw), count as u32, seen)?,
    };
    Ok(Stored {
        seed,
        version,
        table_id,
        files,
        sorted,
        crc,
    })
}

/// The stored index of the table `store` holds, if there is one that reads.
pub(crate) async fn load(store: &dyn ObjectStore) -> Option<Stored> {
    let read = match crate::mapped::get(store, &Path::from(PATH)).await {
        // (on a local disk the entries are used where they lie: see `mapped`)
        Ok(crate::mapped::Got::Mapped(mapped)) => decode_mapped(mapped),
        Ok(crate::mapped::Got::Other(got)) => got.bytes().await.map_err(|e| e.to_string()).and_then(decode),
        Err(deltalake::ObjectStoreError::NotFound { .. }) => return None,
        Err(e) => Err(e.to_string()),
    };
    read
        .inspect_err(|e| tracing::warn!("silver id index: {PATH} does not read ({e}); reading the ids from the table"))
        .ok()
}

/// The stored index of the table `store` holds, if it lies on a local disk (so it
/// is mapped) and reads; nothing is read otherwise.
pub(crate) async fn load_mapped(store: &dyn ObjectStore) -> Option<Stored> {
    match crate::mapped::get(store, &Path::from(PATH)).await {
        Ok(crate::mapped::Got::Mapped(mapped)) => decode_mapped(mapped).ok(),
        _ => None,
    }
}

/// The checksum `encode` put at the end of `bytes`.
pub(crate) fn crc_of(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(bytes.len().checked_sub(4)?..)?.try_into().ok()?))
}

/// Remove the stored index (after a purge: no hash of a purged id stays behind).
pub(crate) async fn discard(store: &dyn ObjectStore) -> Result<(), DeltaTableError> {
    match store.delete(&Path::from(PATH)).await {
        Ok(()) | Err(deltalake::ObjectStoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn blob(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, rest) = self.0.split_at_checked(n).ok_or("cut short")?;
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn blob(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id_index::sorted::Entry;
    use crate::id_index::{Key, Loc};

    fn decode(b: &[u8]) -> Result<Stored, String> {
        super::decode(Bytes::copy_from_slice(b))
    }

    fn add(path: &str) -> Add {
        serde_json::from_value(serde_json::json!({
            "path": path, "partitionValues": {}, "size": 10, "modificationTime": 1, "dataChange": true,
            "stats": "{\"numRecords\":3}"
        }))
        .unwrap()
    }

    #[test]
    fn reads_back_what_it_wrote_and_refuses_a_damaged_copy() {
        let mut deleted = RoaringTreemap::new();
        deleted.insert(1);
        let files = [
            (
                0u32,
                FileEntry {
                    add: add("a.parquet"),
                    deleted,
                },
            ),
            (
                1,
                FileEntry {
                    add: add("b.parquet"),
                    deleted: RoaringTreemap::new(),
                },
            ),
        ];
        let entries = vec![
            Entry {
                key: Key(1, 2),
                loc: Loc { file: 0, row: 0 },
            },
            Entry {
                key: Key(1, 3),
                loc: Loc { file: 1, row: 2 },
            },
            Entry {
                key: Key(u64::MAX, 0),
                loc: Loc { file: 0, row: 2 },
            },
        ];
        let bytes = encode(
            42,
            9,
            "table-1",
            files.iter().map(|(n, f)| (*n, f)),
            &Sorted::from_sorted(entries.clone()),
        )
        .unwrap();
        let got = decode(&bytes).unwrap();
        assert_eq!(
            (got.seed, got.version, got.table_id.as_str()),
            (42, 9, "table-1")
        );
        assert_eq!(got.sorted.entries(), entries);
        assert_eq!(got.files.len(), 2);
        assert_eq!(got.files[0].1.add, files[0].1.add);
        assert_eq!(got.files[0].1.deleted, files[0].1.deleted);
        assert_eq!(got.files[1].0, 1);
        // one bit flipped anywhere, or the end cut off: refused
        for at in [0, 9, 20, bytes.len() / 2, bytes.len() - 30, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "flipped at {at}");
        }
        assert!(decode(&bytes[..bytes.len() - 24]).is_err());
        assert!(decode(&[]).is_err());
        // well formed, checksum and all, but not as this writer makes them: file
        // numbers out of place, a path twice, an entry in an unlisted file
        let refused = |files: &[(u32, &FileEntry)], entries: &[Entry]| {
            let bytes = encode(42, 9, "table-1", files.iter().copied(), &Sorted::from_sorted(entries.to_vec())).unwrap();
            decode(&bytes).err().unwrap_or_default()
        };
        let (a, b) = (&files[0].1, &files[1].1);
        assert!(refused(&[(0, a), (7, b)], &entries[..1]).contains("out of place"));
        assert!(refused(&[(0, a), (0, b)], &entries[..1]).contains("out of place"));
        // (entries checked block by block, each given to the checksum: a flip in
        // the last block of many is a checksum mismatch, whether or not the
        // entries it leaves are in order)
        let many: Vec<Entry> = (0..5000u64).map(|i| Entry { key: Key(i << 40, i), loc: Loc { file: 1, row: i as u32 } }).collect();
        let bytes = encode(42, 9, "table-1", files.iter().map(|(n, f)| (*n, f)), &Sorted::from_sorted(many.clone())).unwrap();
        assert_eq!(decode(&bytes).unwrap().sorted.entries(), many);
        for (at, bit) in [(bytes.len() - 30, 0x01), (bytes.len() - 12, 0x80)] {
            let mut bad = bytes.clone();
            bad[at] ^= bit;
            assert_eq!(decode(&bad).err().as_deref(), Some("checksum mismatch"), "flipped at {at}");
        }
        assert!(refused(&[(u32::MAX, a)], &[]).contains("out of place"));
        assert!(refused(&[(0, a), (1, a)], &entries[..1]).contains("twice"));
        assert!(refused(&[(0, a)], &entries).contains("not listed"));
    }
}
