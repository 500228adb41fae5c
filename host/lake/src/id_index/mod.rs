//! Where each id of a silver table lives: the data file and the row in it, for every
//! row no deletion vector removes. Loaded from where a writer last stored it beside
//! the table ([`persist`]), or else built from the table's `id` column, then kept
//! current from what each commit changes: the files it adds are read (their `id`
//! column only), the files it removes are forgotten, and a file whose deletion
//! vector changed has its vector read again. So an upsert finds the rows its ids
//! replace without reading the table (`silver_dv.rs`), whatever the table's size.
//!
//! Two parts: the compact one ([`sorted`]: 24 bytes a row, a 128-bit hash of the
//! id, file and row numbers, plus a directory of 1 to 2 bytes a row), which is
//! what is stored, and a hash map of the rows indexed since (25 to 50 bytes a row),
//! merged into the compact part and stored again once it holds an eighth as many
//! rows ([`IdIndex::store_if_due`]): about 250 MB for 10 million rows.

mod persist;
mod sorted;

pub(crate) use persist::discard as discard_stored;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::DataType;
use deltalake::kernel::Add;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderMetadata;
// (ParquetObjectReader is deprecated in favour of a hand-written AsyncFileReader,
// which would do the same for us)
#[allow(deprecated)]
use deltalake::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::{DeltaTable, DeltaTableError, ObjectStore, Path};
use futures::{StreamExt, TryStreamExt};
use roaring::RoaringTreemap;

use crate::dv;
use crate::tasks::on_own_task;
use sorted::{Entry, Sorted};

/// A 128-bit hash of an id (xxh3): collisions are not expected in any table size,
/// and the upsert checks the id of every row it replaces anyway. (Two halves, not
/// a u128, whose 16-byte alignment would pad each map entry from 24 to 32 bytes.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key(u64, u64);

impl std::hash::Hash for Key {
    /// A key is a hash already: the map takes its first half as it is rather than
    /// hash it again.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

fn key(seed: Seed, id: &str) -> Key {
    let h = twox_hash::XxHash3_128::oneshot_with_seed(seed.0, id.as_bytes());
    Key(h as u64, (h >> 64) as u64)
}

/// The seed of an index's id hash: random when an index is first built (then
/// stored with it), so that ids made to collide in the map (a hostile feed slowing
/// every lookup) cannot be worked out ahead by whoever cannot read the lake.
#[derive(Debug, Clone, Copy)]
struct Seed(u64);

impl Default for Seed {
    fn default() -> Self {
        Seed(uuid::Uuid::new_v4().as_u64_pair().0)
    }
}

/// The map's hasher: passes a key's first half through.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("the id index's hasher takes its keys' first half only");
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Rows = HashMap<Key, Loc, BuildHasherDefault<KeyHasher>>;

/// A row of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Loc {
    pub file: u32,
    pub row: u32,
}

/// A live data file: its `add` action as the table's log has it, and the rows its
/// deletion vector removes.
pub(crate) struct FileEntry {
    pub add: Add,
    pub deleted: RoaringTreemap,
}

#[derive(Default)]
pub(crate) struct IdIndex {
    /// The table version this reflects, and the table's id (a table replaced by a
    /// new one under the same path starts the index again).
    version: Option<u64>,
    table_id: Option<String>,
    by_path: HashMap<String, u32>,
    files: HashMap<u32, FileEntry>,
    next_file: u32,
    /// The compact part, and the rows indexed since (which win over it).
    base: Sorted,
    rows: Rows,
    seed: Seed,
    /// Footers (with page locations) of files whose rows an upsert read.
    footers: HashMap<u32, ArrowReaderMetadata>,
    /// Build from the table even if an index is stored beside it.
    ignore_stored: bool,
    /// The checksum of the copy this writer last stored, until the compact part
    /// is taken from it ([`IdIndex::map_stored`]).
    stored_crc: Option<u32>,
    /// The files came from the stored index: their `add` actions are taken from
    /// the table at the next catch-up (the table's, not a copy's, go into commits).
    adds_from_store: bool,
}

/// What a catch-up took from where (for the table's metrics).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CaughtUp {
    /// Rows loaded from the stored index.
    pub loaded: usize,
    /// Ids read from data files.
    pub read: usize,
}

/// The overlay is merged into the compact part and stored once it holds this share
/// of the compact part's rows (an eighth: storing costs about 1/8 of a write per
/// row, and a new process reads at most an eighth of the table's ids), and at least
/// [`STORE_AFTER_ROWS`].
pub(crate) const STORE_SHARE: usize = 8;
const STORE_AFTER_ROWS: usize = 1_000;
/// A writer that stops (its process ends a job) stores its index once the rows
/// indexed since the compact part hold this share of it: the next process then
/// reads at most a 32nd of the table's ids, not an eighth.
pub(crate) const CLOSE_SHARE: usize = 32;

/// Files whose `id` column is read at once while catching up.
const READ_AHEAD: usize = 8;

impl IdIndex {
    /// An index that does not load the one stored beside the table (after it was
    /// found out of step with the table: the stored one may be why).
    pub(crate) fn ignoring_stored() -> IdIndex {
        IdIndex { ignore_stored: true, ..IdIndex::default() }
    }

    /// Forget everything (keeping whether the stored index is to be ignored).
    fn start_again(&mut self) {
        *self = IdIndex { ignore_stored: self.ignore_stored, ..IdIndex::default() };
    }

    /// Where the live rows with `ids` are, for those the table has,
    /// looked up in the order of their keys: the compact part (240 MB at 10 million
    /// rows) and its directory are then read front to back, not at random.
    pub(crate) fn find_all(&self, ids: &[&str]) -> Vec<Option<Loc>> {
        let mut keyed: Vec<(Key, u32)> = ids.iter().enumerate().map(|(i, id)| (key(self.seed, id), i as u32)).collect();
        keyed.sort_unstable_by_key(|&(k, _)| k);
        let mut found = vec![None; ids.len()];
        // (a stored index loaded from a local disk is mapped: its pages are let go
        // behind the lookups, rather than stay in the process's memory once read)
        let mut base = self.base.reader();
        let live = |loc: Loc| self.files.get(&loc.file).is_some_and(|f| !f.deleted.contains(loc.row as u64));
        for (k, i) in keyed {
            found[i as usize] = match self.rows.get(&k) {
                Some(&loc) if live(loc) => Some(loc),
                _ => base.get(k).filter(|&loc| live(loc)),
            };
        }
        found
    }

    pub(crate) fn file(&self, no: u32) -> Option<&FileEntry> {
        self.files.get(&no)
    }

    /// A file's new deletion vector, committed by this writer (so that catching up
    /// does not read it back).
    pub(crate) fn set_file(&mut self, no: u32, entry: FileEntry) {
        self.files.insert(no, entry);
    }

    /// A data file this writer committed, with the ids of its rows in order.
    /// (A file whose statistics count other rows is left for [`IdIndex::catch_up`].)
    pub(crate) fn add_file(&mut self, add: Add, ids: &[&str]) {
        if records(&add) != Some(ids.len()) {
            return;
        }
        let no = self.next_file;
        self.next_file += 1;
        for (row, id) in ids.iter().enumerate() {
            self.rows.insert(key(self.seed, id), Loc { file: no, row: row as u32 });
        }
        self.by_path.insert(add.path.clone(), no);
        self.files.insert(no, FileEntry { add, deleted: RoaringTreemap::new() });
    }

    pub(crate) fn footer(&self, no: u32) -> Option<ArrowReaderMetadata> {
        self.footers.get(&no).cloned()
    }

    /// The memory the footers kept take, about (for the writer's debug log).
    pub(crate) fn footers_bytes(&self) -> usize {
        self.footers.values().map(|f| f.metadata().memory_size()).sum()
    }

    pub(crate) fn keep_footer(&mut self, no: u32, footer: ArrowReaderMetadata) {
        if self.files.contains_key(&no) {
            self.footers.insert(no, footer);
        }
    }

    /// Rows indexed (live or not yet overwritten; a row indexed again since the
    /// compact part was made counts twice).
    pub(crate) fn len(&self) -> usize {
        self.base.len() + self.rows.len()
    }

    /// Once the rows indexed since the compact part was made are due (`share` of
    /// it: [`STORE_SHARE`] after a commit, [`CLOSE_SHARE`] when a writer stops):
    /// merge them into it, leaving out rows no longer live, and store it beside the
    /// table (`store` is the table's). Returns whether it did. The merge stands
    /// even if storing fails (the index is then only in memory).
    pub(crate) async fn store_if_due(&mut self, store: &dyn ObjectStore, share: usize) -> Result<bool, DeltaTableError> {
        let (Some(version), Some(table_id)) = (self.version, self.table_id.clone()) else { return Ok(false) };
        if self.rows.len() < (self.base.len() / share).max(STORE_AFTER_ROWS) {
            return Ok(false);
        }
        self.stored_crc = None;
        let mut newer: Vec<Entry> = std::mem::take(&mut self.rows).into_iter().map(|(key, loc)| Entry { key, loc }).collect();
        newer.sort_unstable_by_key(|e| e.key);
        // The live files are numbered again from 0 (numbers would otherwise grow
        // with every commit for the life of the table); a row's file is found by
        // binary search among them.
        let mut numbers: Vec<u32> = self.files.keys().copied().collect();
        numbers.sort_unstable();
        let vectors: Vec<&RoaringTreemap> = numbers.iter().map(|no| &self.files[no].deleted).collect();
        let live = |loc: Loc| {
            let at = numbers.binary_search(&loc.file).ok()?;
            let d = vectors[at];
            (d.is_empty() || !d.contains(loc.row as u64)).then_some(Loc { file: at as u32, row: loc.row })
        };
        let merged = self.base.merge(&newer, live);
        drop((newer, vectors));
        self.base = merged;
        let mut files = HashMap::with_capacity(numbers.len());
        let mut footers = HashMap::new();
        for (at, no) in numbers.iter().enumerate() {
            files.insert(at as u32, self.files.remove(no).expect("listed"));
            if let Some(f) = self.footers.remove(no) {
                footers.insert(at as u32, f);
            }
        }
        self.by_path = files.iter().map(|(no, f)| (f.add.path.clone(), *no)).collect();
        self.files = files;
        self.footers = footers;
        self.next_file = numbers.len() as u32;
        let bytes = persist::encode(self.seed.0, version, &table_id, self.files.iter().map(|(no, f)| (*no, f)), &self.base)?;
        let crc = persist::crc_of(&bytes);
        store.put(&Path::from(persist::PATH), bytes.into()).await?;
        self.stored_crc = crc;
        Ok(true)
    }

    /// After [`IdIndex::store_if_due`] stored to a local disk: the compact part
    /// taken from the copy stored, mapped, in place of the one the merge made on
    /// the heap (240 MB at 10 million rows), so that its pages too leave the
    /// process's memory once read. Only if that copy is still the one this writer
    /// stored (its checksum, seed, version, table, length, and each file by number,
    /// path and deleted rows; another writer may have stored since: then the heap
    /// copy stays). Returns whether it did.
    pub(crate) async fn map_stored(&mut self, store: &dyn ObjectStore) -> bool {
        let Some(crc) = self.stored_crc.take() else { return false };
        let Some(stored) = persist::load_mapped(store).await else { return false };
        let same_files = stored.files.len() == self.files.len()
            && stored.files.iter().all(|(no, f)| self.files.get(no).is_some_and(|mine| mine.add.path == f.add.path && mine.deleted == f.deleted));
        let ours = stored.crc == crc
            && stored.seed == self.seed.0
            && Some(stored.version) == self.version
            && self.table_id.as_deref() == Some(stored.table_id.as_str())
            && stored.sorted.len() == self.base.len()
            && same_files;
        if ours {
            self.base = stored.sorted;
        }
        tracing::debug!(rows = self.base.len(), ours, "silver id index: the copy stored mapped back");
        ours
    }

    /// Take the index stored beside the table, if it is this table's (`table_id`).
    /// Its version is not taken: the catch-up after compares every file with the
    /// table's.
    async fn load_stored(&mut self, store: &dyn ObjectStore, table_id: &str) -> usize {
        let started = std::time::Instant::now();
        let Some(stored) = persist::load(store).await else { return 0 };
        if stored.table_id != table_id {
            return 0;
        }
        tracing::debug!(version = stored.version, rows = stored.sorted.len(), files = stored.files.len(), ms = started.elapsed().as_millis() as u64, "silver id index loaded");
        self.seed = Seed(stored.seed);
        self.adds_from_store = true;
        for (no, f) in stored.files {
            self.next_file = self.next_file.max(no + 1);
            self.by_path.insert(f.add.path.clone(), no);
            self.files.insert(no, f);
        }
        self.base = stored.sorted;
        self.base.len()
    }

    /// Catch up with `table`'s current version. After an error the next call tries
    /// again (from nothing, if the error came while reading added files).
    pub(crate) async fn catch_up(&mut self, table: &DeltaTable) -> Result<CaughtUp, DeltaTableError> {
        let snapshot = table.snapshot()?;
        let version = snapshot.version();
        let table_id = snapshot.metadata().id().to_string();
        if self.table_id.as_ref().is_some_and(|id| *id != table_id) || self.version.is_some_and(|v| v > version) {
            // (the table was replaced: start again)
            self.start_again();
        }
        let mut done = CaughtUp::default();
        if self.version == Some(version) {
            return Ok(done);
        }
        let store = table.object_store();
        if self.version.is_none() && self.files.is_empty() && !self.ignore_stored {
            done.loaded = self.load_stored(store.as_ref(), &table_id).await;
        }
        let mut live = HashSet::new();
        let mut added = vec![];
        let mut changed = vec![];
        let mut listed = 0;
        // (only the path and the vector are compared; a file's add is copied only
        // when it is new or its vector changed)
        for view in snapshot.log_data().iter() {
            listed += 1;
            let dv = view.deletion_vector_descriptor();
            #[allow(deprecated)]
            match self.by_path.get(view.path().as_ref()) {
                Some(&no) if self.files[&no].add.deletion_vector == dv => {
                    live.insert(no);
                    if self.adds_from_store {
                        self.files.get_mut(&no).expect("listed").add = view.add_action();
                    }
                }
                Some(&no) => {
                    live.insert(no);
                    changed.push((no, view.add_action()));
                }
                None => added.push(view.add_action()),
            }
        }
        if listed == 0 && snapshot.log_data().num_files() > 0 {
            return Err(DeltaTableError::Generic("silver id index: the table was loaded without its file list".into()));
        }
        let reread: Vec<(u32, FileEntry)> = futures::stream::iter(changed.into_iter().map(|(no, add)| {
            let store = store.clone();
            async move { Ok::<_, DeltaTableError>((no, FileEntry { deleted: dv::read(store.as_ref(), add.deletion_vector.as_ref()).await?, add })) }
        }))
        .buffered(READ_AHEAD)
        .try_collect()
        .await?;
        // A vector that no longer hides a row it hid (a RESTORE, a rollback) may have
        // brought back an id's live row: such a file is read again, like a new one.
        let (reread, shrunk): (Vec<_>, Vec<_>) = reread.into_iter().partition(|(no, e)| self.files[no].deleted.is_subset(&e.deleted));
        for (no, e) in shrunk {
            live.remove(&no);
            added.push(e.add);
        }
        self.files.retain(|no, _| live.contains(no));
        self.by_path.retain(|_, no| live.contains(no));
        self.footers.retain(|no, _| live.contains(no));
        for (no, entry) in reread {
            self.files.insert(no, entry);
        }
        // The added files' ids go in as each file is read (a first build does not hold
        // the whole column twice); should a read fail, the index starts again from
        // nothing at the next call rather than miss a file.
        self.rows.reserve(added.iter().map(|a| records(a).unwrap_or(0)).sum());
        // (each file read and hashed on its own task: on every core)
        let seed = self.seed;
        let mut new = futures::stream::iter(added.into_iter().map(|add| {
            let store = store.clone();
            on_own_task("silver id index: reading a file", async move {
                let deleted = dv::read(store.as_ref(), add.deletion_vector.as_ref()).await?;
                let keys = id_keys(store.clone(), &add, seed).await?;
                Ok((FileEntry { add, deleted }, keys))
            })
        }))
        .buffered(READ_AHEAD);
        while let Some(read) = new.next().await {
            let (entry, keys) = match read {
                Ok(r) => r,
                Err(e) => {
                    self.start_again();
                    return Err(e);
                }
            };
            done.read += keys.len();
            let no = self.next_file;
            self.next_file += 1;
            for (row, k) in keys.into_iter().enumerate() {
                if !entry.deleted.contains(row as u64) {
                    self.rows.insert(k, Loc { file: no, row: row as u32 });
                }
            }
            self.by_path.insert(entry.add.path.clone(), no);
            self.files.insert(no, entry);
        }
        self.version = Some(version);
        self.table_id = Some(table_id);
        self.adds_from_store = false;
        Ok(done)
    }
}

/// A file's row count, from its statistics.
fn records(add: &Add) -> Option<usize> {
    let stats: serde_json::Value = serde_json::from_str(add.stats.as_deref()?).ok()?;
    stats.get("numRecords")?.as_u64().map(|n| n as usize)
}

/// The hashed ids of a data file, in row order.
#[allow(deprecated)]
async fn id_keys(store: std::sync::Arc<dyn ObjectStore>, add: &Add, seed: Seed) -> Result<Vec<Key>, DeltaTableError> {
    let reader = ParquetObjectReader::new(store, Path::from(add.path.as_str())).with_file_size(add.size as u64);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["id"]);
    let mut stream = builder.with_projection(mask).with_batch_size(8192).build()?;
    let mut keys = Vec::with_capacity(records(add).unwrap_or(0));
    while let Some(batch) = stream.try_next().await? {
        let col = batch.column_by_name("id").ok_or_else(|| DeltaTableError::Generic(format!("{}: no id column", add.path)))?;
        match col.data_type() {
            DataType::Utf8 => keys.extend(col.as_string::<i32>().iter().map(|id| key(seed, id.unwrap_or_default()))),
            DataType::LargeUtf8 => keys.extend(col.as_string::<i64>().iter().map(|id| key(seed, id.unwrap_or_default()))),
            DataType::Utf8View => keys.extend(col.as_string_view().iter().map(|id| key(seed, id.unwrap_or_default()))),
            t => return Err(DeltaTableError::Generic(format!("{}: id column of type {t}", add.path))),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each id asked gets its own row, in the order asked, whatever the order of
    /// their keys; an id the table lacks, or whose row a vector removes, none.
    #[test]
    fn find_all_answers_each_id_in_the_order_asked() {
        let add = |n: usize| -> Add {
            serde_json::from_value(serde_json::json!({
                "path": "a.parquet", "partitionValues": {}, "size": 10, "modificationTime": 1, "dataChange": true,
                "stats": format!("{{\"numRecords\":{n}}}")
            }))
            .unwrap()
        };
        let ids: Vec<String> = (0..1000).map(|i| format!("id{i}")).collect();
        let mut index = IdIndex::default();
        index.add_file(add(ids.len()), &ids.iter().map(String::as_str).collect::<Vec<_>>());
        let mut deleted = RoaringTreemap::new();
        deleted.insert(7);
        index.set_file(0, FileEntry { add: add(ids.len()), deleted });
        let asked = ["id42", "missing", "id7", "id0", "id999", "id42", "id500"];
        let at = |row| Some(Loc { file: 0, row });
        assert_eq!(index.find_all(&asked), vec![at(42), None, None, at(0), at(999), at(42), at(500)]);
        let all: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        let found = index.find_all(&all);
        assert!(found.iter().zip((0..1000u32).rev()).all(|(f, row)| *f == if row == 7 { None } else { at(row) }));
    }

    /// A stored index loaded from a local disk is mapped, and neither its load
    /// (which reads every entry) nor lookups of every id leave its pages in the
    /// process's memory; nor, once it has stored again, the compact part its merge
    /// made (taken from the copy stored, unless another writer stored since).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_mapped_stored_index_stays_out_of_the_processs_memory() {
        use crate::mapped::{page_size, resident_kib};
        use deltalake::logstore::object_store::local::LocalFileSystem;
        let scratch = crate::scratch::Scratch::new("id-index-mapped");
        let store = LocalFileSystem::new_with_prefix(&scratch.0).unwrap();
        let add = |path: &str, n: usize| -> Add {
            serde_json::from_value(serde_json::json!({
                "path": path, "partitionValues": {}, "size": 10, "modificationTime": 1, "dataChange": true,
                "stats": format!("{{\"numRecords\":{n}}}")
            }))
            .unwrap()
        };
        // (200,000 entries: 4.8 MB, more than one step of letting pages go)
        let n = 200_000;
        let ids: Vec<String> = (0..n + 30_000).map(|i| format!("id{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (first, more) = ids.split_at(n);
        let mut index = IdIndex { version: Some(3), table_id: Some("t".into()), ..IdIndex::default() };
        index.add_file(add("a.parquet", n), first);
        assert!(index.store_if_due(&store, STORE_SHARE).await.unwrap());
        let mut loaded = IdIndex::default();
        assert_eq!(loaded.load_stored(&store, "t").await, n);
        assert!(loaded.base.is_mapped(), "the stored index was read, not mapped");
        // (the pages at the entries' two ends, shared with what is around them, stay)
        let few = 3 * page_size() / 1024;
        let resident = |index: &IdIndex| resident_kib(index.base.raw());
        assert!(resident(&loaded) <= few, "{} KiB of a {} KiB index resident after loading", resident(&loaded), loaded.base.raw().len() / 1024);
        let found = loaded.find_all(first);
        assert!(found.iter().enumerate().all(|(row, f)| *f == Some(Loc { file: 0, row: row as u32 })));
        assert!(resident(&loaded) <= few, "{} KiB resident after looking every id up", resident(&loaded));

        // stored again (more rows since): the merge's compact part is on the heap
        // until it is taken from the copy just stored
        loaded.version = Some(4);
        loaded.table_id = Some("t".into());
        loaded.add_file(add("b.parquet", more.len()), more);
        assert!(loaded.store_if_due(&store, STORE_SHARE).await.unwrap());
        assert!(!loaded.base.is_mapped());
        assert!(loaded.map_stored(&store).await);
        assert!(loaded.base.is_mapped());
        let found = loaded.find_all(&ids);
        assert!(found.iter().enumerate().all(|(i, f)| *f == Some(if i < n { Loc { file: 0, row: i as u32 } } else { Loc { file: 1, row: (i - n) as u32 } })));
        assert!(resident(&loaded) <= few, "{} KiB resident after storing and looking every id up", resident(&loaded));
        // once only; and not over a copy another writer stored since
        assert!(!loaded.map_stored(&store).await);
        // (a copy whose checksum is not the one stored, all else the same)
        loaded.stored_crc = persist::load_mapped(&store).await.map(|s| s.crc ^ 1);
        assert!(!loaded.map_stored(&store).await);
        let newer: Vec<String> = (0..30_000).map(|i| format!("new{i}")).collect();
        loaded.add_file(add("c.parquet", newer.len()), &newer.iter().map(String::as_str).collect::<Vec<_>>());
        loaded.version = Some(5);
        assert!(loaded.store_if_due(&store, STORE_SHARE).await.unwrap());
        let mut other = IdIndex { version: Some(6), table_id: Some("t".into()), ..IdIndex::default() };
        other.add_file(add("d.parquet", 1_000), &more[..1_000]);
        assert!(other.store_if_due(&store, STORE_SHARE).await.unwrap());
        assert!(!loaded.map_stored(&store).await);
        assert!(!loaded.base.is_mapped());
    }

    #[test]
    fn keys_differ_by_id_and_agree_for_equal_ids() {
        let seed = Seed::default();
        assert_eq!(key(seed, "a"), key(seed, "a"));
        assert_ne!(key(seed, "a"), key(seed, "b"));
        assert_ne!(key(seed, "a").0, key(seed, "a").1);
        // (another index hashes the same id elsewhere)
        assert_ne!(key(seed, "a"), key(Seed(seed.0 ^ 1), "a"));
    }
}
