//! Silver upserts by deletion vectors (merge-on-read), for silver tables with
//! `delta.enableDeletionVectors`: a newer version of a stored id is appended with
//! the new rows, and the row it replaces is marked deleted in its file's deletion
//! vector instead of the file being rewritten. The id index (`id_index/`) says
//! where each id's row is, so a commit reads only the rows it replaces (their pre
//! images, for the version check and the change feed) and writes only the new rows,
//! one deletion-vector file and one change file: its cost follows the batch, not the
//! table. The rule is the MERGE's (`writer.rs`): a row replaces the stored one only
//! when it is a newer version.
//!
//! A batch is up to two commits. The new ids: an append (readers of Delta's change
//! data feed take inserts from the files it adds). The updates: an `add` per new
//! data file; per file with newly deleted rows a `remove` of it with its old vector
//! and an `add` of it with the new one; and a `cdc` file with the pre and post
//! images (the whole feed of that version, for readers).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, new_null_array};
use deltalake::arrow::compute::{cast, concat_batches, filter_record_batch, take};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimestampMicrosecondType};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, AddCDCFile, Remove};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection};
#[allow(deprecated)]
use deltalake::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use deltalake::parquet::file::metadata::PageIndexPolicy;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, ObjectStore, Path};
use futures::{StreamExt, TryStreamExt};

use crate::dv::DvFile;
use crate::id_index::{CaughtUp, FileEntry, IdIndex, Loc};
use crate::tasks::{on_blocking_thread, on_own_task};

/// The table property that turns these upserts on (Delta's own: Databricks and
/// Spark use deletion vectors for their DELETE, UPDATE and MERGE on such a table).
pub(crate) const DELETION_VECTORS: &str = "delta.enableDeletionVectors";

/// Whether `table` is written by deletion vectors: the property is on, and the
/// protocol has the reader feature (a table whose property was set by hand without
/// it goes through the MERGE).
pub(crate) fn enabled(table: &DeltaTable) -> bool {
    let Ok(s) = table.snapshot() else { return false };
    let on = s.metadata().configuration().get(DELETION_VECTORS).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let feature = serde_json::to_value(s.protocol()).ok().is_some_and(|p| {
        p["readerFeatures"].as_array().is_some_and(|f| f.iter().any(|f| f == "deletionVectors"))
    });
    on && feature
}

const OUT_OF_STEP: &str = "silver id index out of step";

fn out_of_step(detail: String) -> DeltaTableError {
    DeltaTableError::Generic(format!("{OUT_OF_STEP}: {detail}"))
}

pub(crate) fn is_out_of_step(e: &DeltaTableError) -> bool {
    e.to_string().contains(OUT_OF_STEP)
}

/// A file's rows an upsert replaces: its number in the index, (row, batch row)
/// pairs, the rows as stored, the file's row count, and its footer.
type Replaced = (u32, Vec<(u32, usize)>, RecordBatch, usize, ArrowReaderMetadata);

/// Files whose replaced rows are read at once.
const READ_AHEAD: usize = 16;

/// What one upsert did (for the writer's debug line).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Catching the id index up (at a writer's first commit: building it).
    pub index_ms: u64,
    pub lookup_ms: u64,
    /// Reading back the rows replaced (the new ids' data file is written meanwhile).
    pub read_ms: u64,
    /// From then to the last commit: deciding which rows are newer, waiting for
    /// the new ids' file, the rest of the writes, and the commits.
    pub write_ms: u64,
    /// Merging and storing the id index, when it was due.
    pub store_ms: u64,
    pub stored: bool,
    pub caught_up: CaughtUp,
    pub replaced: usize,
    pub inserted: usize,
    pub stale: usize,
    pub files_touched: usize,
    /// Delta commits made (an upsert with new ids and updates makes two).
    pub commits: usize,
}

/// Upsert `batch` (silver rows, one per id) into `table`: its new ids, then its
/// updates, in a commit each. Fails when another writer committed since `table`
/// was read (the caller reloads and calls again); the new ids' commit may have
/// landed by then, and the call again finds them stored, the same versions, and
/// leaves them. Until the second commit lands, a reader sees the batch's new ids
/// and not its updates.
pub(crate) async fn upsert(table: DeltaTable, batch: &RecordBatch, index: &mut IdIndex, props: WriterProperties) -> Result<(DeltaTable, Counts), DeltaTableError> {
    let mut counts = Counts::default();
    let started = std::time::Instant::now();
    counts.caught_up = index.catch_up(&table).await?;
    counts.index_ms = started.elapsed().as_millis() as u64;
    let started = std::time::Instant::now();
    let ids = string_column(batch, "id")?;
    // batch rows by the file holding their id
    let mut by_file: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
    let is_new: Vec<bool> = index
        .find_all(&ids)
        .into_iter()
        .enumerate()
        .map(|(i, found)| match found {
            Some(Loc { file, row }) => {
                by_file.entry(file).or_default().push((row, i));
                false
            }
            None => true,
        })
        .collect();
    counts.lookup_ms = started.elapsed().as_millis() as u64;

    // The new ids' data file does not depend on the rows read back below: it is
    // written meanwhile, on a task of its own (on another core; at the end of a job
    // nothing else keeps it busy).
    let new_ids: Vec<&str> = ids.iter().zip(&is_new).filter(|(_, n)| **n).map(|(id, _)| *id).collect();
    let inserts = if new_ids.is_empty() {
        None
    } else {
        let rows = filter_record_batch(batch, &BooleanArray::from(is_new.clone()))?;
        let (t, props) = (table.clone(), props.clone());
        Some(on_own_task("silver upsert: writing new ids", async move { write_files(&t, rows, props).await }))
    };

    let step = std::time::Instant::now();
    let store = table.object_store();
    let local = maps_files(&table).await;
    let schema = batch.schema();
    for rows in by_file.values_mut() {
        rows.sort_unstable();
        if rows.windows(2).any(|w| w[0].0 == w[1].0) {
            // (two ids of one batch found at one row: only a hash collision does that)
            return Err(out_of_step("two ids at one row".into()));
        }
    }
    let olds: Vec<Replaced> = futures::stream::iter(by_file.into_iter().map(|(no, rows)| {
        let add = index.file(no).map(|f| f.add.clone());
        let meta = index.footer(no);
        let (store, schema) = (store.clone(), schema.clone());
        // (each file read on its own task: on every core)
        on_own_task("silver upsert: reading replaced rows", async move {
            let add = add.ok_or_else(|| out_of_step("it names a file it does not hold".into()))?;
            let (old, total, meta) = read_rows(store, local, &add, meta, &rows.iter().map(|r| r.0).collect::<Vec<_>>(), &schema).await?;
            Ok((no, rows, old, total, meta))
        })
    }))
    .buffered(READ_AHEAD)
    .try_collect()
    .await?;
    counts.read_ms = step.elapsed().as_millis() as u64;

    let step = std::time::Instant::now();
    // decide: a stored row is replaced only by a newer version
    let mut pre_images = vec![];
    let mut post_rows = vec![];
    let mut deletions: Vec<(u32, Vec<u32>)> = vec![];
    let rows_in: HashMap<u32, usize> = olds.iter().map(|(no, _, _, total, _)| (*no, *total)).collect();
    for (no, _, _, _, meta) in &olds {
        index.keep_footer(*no, meta.clone());
    }
    for (no, rows, old, _, _) in &olds {
        let old_ids = string_column(old, "id")?;
        let mut keep = vec![];
        let mut deleted = vec![];
        for (j, &(row, i)) in rows.iter().enumerate() {
            if old_ids[j] != ids[i] {
                return Err(out_of_step(format!("row {row} of {} holds {:?}, not {:?}", index.file(*no).map_or("?", |f| f.add.path.as_str()), old_ids[j], ids[i])));
            }
            if newer(batch, i, old, j)? {
                keep.push(j as u32);
                deleted.push(row);
                post_rows.push(i as u32);
            } else {
                counts.stale += 1;
            }
        }
        if !deleted.is_empty() {
            pre_images.push(take_rows(old, &keep)?);
            deletions.push((*no, deleted));
        }
    }
    counts.replaced = post_rows.len();
    counts.inserted = new_ids.len();
    counts.files_touched = deletions.len();
    let mut table = table;
    let mut last = None;
    // New ids go in a commit of their own, a plain append: readers of the change
    // feed take its inserts from the files it adds. (In a commit with updates, the
    // change file is the whole feed for its version: the inserts would be written
    // twice, as data and as changes.)
    if let Some(inserts) = inserts {
        let files = inserts.await?;
        let append = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        let (t, v) = commit_rows(table, index, New { files, ids: &new_ids }, vec![], &rows_in, None, append, &props).await?;
        (table, last) = (t, Some(v));
        counts.commits += 1;
    }
    // The newer versions of stored ids: the new rows, the old ones deleted by
    // vector, and a change file with the pre and post images.
    if counts.replaced > 0 {
        let post = take_rows(batch, &post_rows)?;
        let post_ids: Vec<&str> = post_rows.iter().map(|&i| ids[i as usize]).collect();
        let mut parts = vec![];
        for old in &pre_images {
            parts.push(with_change_type(old, "update_preimage")?);
        }
        parts.push(with_change_type(&post, "update_postimage")?);
        let changes = concat_batches(&parts[0].schema(), &parts)?;
        let merge = DeltaOperation::Merge {
            predicate: None,
            merge_predicate: Some("target.id = source.id".into()),
            matched_predicates: vec![],
            not_matched_predicates: vec![],
            not_matched_by_source_predicates: vec![],
        };
        let files = write_files(&table, post, props.clone()).await?;
        let (t, v) = commit_rows(table, index, New { files, ids: &post_ids }, deletions, &rows_in, Some(changes), merge, &props).await?;
        (table, last) = (t, Some(v));
        counts.commits += 1;
    }
    let Some(last) = last else {
        counts.write_ms = step.elapsed().as_millis() as u64;
        return Ok((table, counts));
    };
    counts.write_ms = step.elapsed().as_millis() as u64;
    let step = std::time::Instant::now();
    // (the commit has landed: a failure to store the index only costs the next
    // process a longer build)
    counts.stored = store_index(&table, last, index, crate::id_index::STORE_SHARE, true).await;
    counts.store_ms = step.elapsed().as_millis() as u64;
    Ok((table, counts))
}

/// Store `index` of `table` (at `version`) when `share` of it is due
/// ([`IdIndex::store_if_due`]); a failure is only logged. With `map_back`, the
/// index goes on from the copy stored where it can ([`IdIndex::map_stored`]).
/// Returns whether it stored.
pub(crate) async fn store_index(table: &DeltaTable, version: u64, index: &mut IdIndex, share: usize, map_back: bool) -> bool {
    let store = table.object_store();
    let stored = match index.store_if_due(store.as_ref(), share).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!("silver id index not stored: {e}");
            false
        }
    };
    // A purge that ran while the index was being stored may have discarded the
    // stored copy before this one landed, with hashes of the ids it deleted: then
    // this one goes too.
    if stored {
        match deleted_since(table, version).await {
            // (on a local disk, the merged compact part is then used from the copy
            // just stored, mapped, rather than kept on the heap; not by a writer
            // that is stopping)
            Ok(false) if map_back && maps_files(table).await => {
                index.map_stored(store.as_ref()).await;
            }
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = crate::id_index::discard_stored(store.as_ref()).await {
                    tracing::warn!("silver id index stored during a purge, not removed: {e}");
                }
            }
            Err(e) => tracing::warn!("silver id index stored: could not check for a purge since ({e})"),
        }
    }
    stored
}

/// New data files (written, not committed), and the ids of their rows in order.
struct New<'a> {
    files: Vec<Add>,
    ids: &'a [&'a str],
}

/// Writes `rows` as data files of `table` (not committed): their `add`s.
async fn write_files(table: &DeltaTable, rows: RecordBatch, props: WriterProperties) -> Result<Vec<Add>, DeltaTableError> {
    let mut writer = RecordBatchWriter::for_table(table)?.with_writer_properties(props);
    writer.write(rows).await?;
    writer.flush().await
}

/// One commit: the `new` data files; per file in `deletions` (by index number,
/// with the rows of it to delete) a `remove` of it and an `add` with its new
/// deletion vector (all vectors in one file); `changes` as the commit's change
/// file. No retry: a commit another writer beat to its version fails, and the caller
/// starts the upsert again. The index learns the new files and vectors. Returns
/// the table at the new version, and the version.
#[allow(clippy::too_many_arguments)]
async fn commit_rows(
    table: DeltaTable,
    index: &mut IdIndex,
    new: New<'_>,
    deletions: Vec<(u32, Vec<u32>)>,
    rows_in: &HashMap<u32, usize>,
    changes: Option<RecordBatch>,
    operation: DeltaOperation,
    props: &WriterProperties,
) -> Result<(DeltaTable, u64), DeltaTableError> {
    let store = table.object_store();
    let new_files = new.files;
    let mut actions: Vec<Action> = new_files.iter().cloned().map(Action::Add).collect();
    let mut vectors = DvFile::new();
    let mut touched = vec![];
    let now = chrono::Utc::now().timestamp_millis();
    for (no, rows) in deletions {
        let old = index.file(no).ok_or_else(|| out_of_step("it names a file it does not hold".into()))?;
        let mut deleted = old.deleted.clone();
        deleted.extend(rows.iter().map(|&r| r as u64));
        let descriptor = vectors.push(&deleted)?;
        actions.push(Action::Remove(removal_of(&old.add, true, now)));
        let stats = old.add.stats.as_deref().map(wide_bounds).unwrap_or_else(|| serde_json::json!({"numRecords": rows_in.get(&no), "tightBounds": false}).to_string());
        let add = Add { deletion_vector: Some(descriptor), data_change: true, stats: Some(stats), ..old.add.clone() };
        actions.push(Action::Add(add.clone()));
        touched.push((no, FileEntry { add, deleted }));
    }
    if !vectors.is_empty() {
        vectors.put(store.as_ref()).await?;
    }
    if let Some(changes) = changes {
        actions.push(Action::Cdc(put_change_file(store.as_ref(), &changes, props.clone()).await?));
    }
    // (CommitProperties' defaults: a checkpoint every `delta.checkpointInterval` commits)
    let done = CommitBuilder::from(CommitProperties::default().with_max_retries(0))
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    for (no, entry) in touched {
        index.set_file(no, entry);
    }
    // One new file holds the written rows in order: the index takes them from here
    // rather than read them back (more files: it reads them when it catches up).
    if let [file] = &new_files[..] {
        index.add_file(file.clone(), new.ids);
    }
    // (the commit's own state of the table, brought up to its version: as
    // deltalake's operations return it)
    let mut table = table;
    table.state = Some(done.snapshot);
    Ok((table, done.version))
}

/// Whether a DELETE (a purge, a retention run) committed to `table` after `version`.
async fn deleted_since(table: &DeltaTable, version: u64) -> Result<bool, DeltaTableError> {
    let mut latest = table.clone();
    latest.update_incremental(None).await?;
    let newer = latest.version().unwrap_or(version).saturating_sub(version);
    if newer == 0 {
        return Ok(false);
    }
    let commits: Vec<_> = latest.history(Some(newer as usize)).try_collect().await?;
    Ok(commits.iter().any(|c| c.operation.as_deref() == Some("DELETE")))
}

/// `name` as strings (silver's ids and the rows read back are plain or view strings).
fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<Vec<&'a str>, DeltaTableError> {
    let col = batch.column_by_name(name).ok_or_else(|| DeltaTableError::Generic(format!("silver rows without {name}")))?;
    Ok(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().iter().map(|s| s.unwrap_or_default()).collect(),
        DataType::LargeUtf8 => col.as_string::<i64>().iter().map(|s| s.unwrap_or_default()).collect(),
        DataType::Utf8View => col.as_string_view().iter().map(|s| s.unwrap_or_default()).collect(),
        t => return Err(DeltaTableError::Generic(format!("silver {name} of type {t}"))),
    })
}

/// Whether row `i` of `new` is a newer version than row `j` of `old`: a later
/// source timestamp, or the same and a later receipt; a stored row without
/// receipt columns loses a tie. (The MERGE's predicate, `writer.rs`.)
fn newer(new: &RecordBatch, i: usize, old: &RecordBatch, j: usize) -> Result<bool, DeltaTableError> {
    let ts = |b: &RecordBatch, c: &str, r: usize| -> Result<Option<i64>, DeltaTableError> {
        let a = b.column_by_name(c).ok_or_else(|| DeltaTableError::Generic(format!("silver rows without {c}")))?;
        let a = a.as_primitive_opt::<TimestampMicrosecondType>().ok_or_else(|| DeltaTableError::Generic(format!("silver {c} is not a timestamp")))?;
        Ok(a.is_valid(r).then(|| a.value(r)))
    };
    let seq = |b: &RecordBatch, r: usize| -> Option<i64> {
        let a = b.column_by_name("receipt_seq")?.as_primitive_opt::<Int64Type>()?;
        a.is_valid(r).then(|| a.value(r))
    };
    let (ns, os) = (ts(new, "source_ts", i)?, ts(old, "source_ts", j)?);
    if ns != os {
        return Ok(matches!((ns, os), (Some(n), Some(o)) if n > o));
    }
    let (nr, or) = (ts(new, "received_at", i)?, ts(old, "received_at", j)?);
    Ok(match (nr, or) {
        (_, None) => true,
        (Some(n), Some(o)) if n > o => true,
        (Some(n), Some(o)) if n == o => matches!((seq(new, i), seq(old, j)), (Some(a), Some(b)) if a > b),
        _ => false,
    })
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch, DeltaTableError> {
    let idx = deltalake::arrow::array::UInt32Array::from(rows.to_vec());
    let cols = batch.columns().iter().map(|c| take(c.as_ref(), &idx, None)).collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}

/// Rows `rows` (ascending) of a data file, as `schema` (columns the file lacks,
/// added to the table after it was written, are null), the file's row count, and
/// its footer (given, or read) for the next read.
async fn read_rows(store: Arc<dyn ObjectStore>, local: bool, add: &Add, footer: Option<ArrowReaderMetadata>, rows: &[u32], schema: &SchemaRef) -> Result<(RecordBatch, usize, ArrowReaderMetadata), DeltaTableError> {
    read_selected(store, local, add, footer, schema, |total| {
        if rows.last().is_some_and(|&r| r as usize >= total) {
            return Err(out_of_step(format!("{} has {total} rows", add.path)));
        }
        Ok(rows.iter().map(|&r| r as usize..r as usize + 1).collect())
    })
    .await
}

/// The rows of a data file in the ranges `select` gives for its row count, as
/// `schema`, the row count, and the file's footer with its page locations (read
/// unless given: a file's footer is read once, the pages of a few rows each time).
/// Where the table lies on a local disk (`local`, [`maps_files`]) the file is
/// mapped and its pages used where they lie (`mapped`), decoded on a blocking
/// thread (a compaction reads whole files); elsewhere each page is fetched.
#[allow(deprecated)]
async fn read_selected(
    store: Arc<dyn ObjectStore>,
    local: bool,
    add: &Add,
    footer: Option<ArrowReaderMetadata>,
    schema: &SchemaRef,
    select: impl FnOnce(usize) -> Result<Vec<std::ops::Range<usize>>, DeltaTableError>,
) -> Result<(RecordBatch, usize, ArrowReaderMetadata), DeltaTableError> {
    let path = Path::from(add.path.as_str());
    let fetched = || ParquetObjectReader::new(store.clone(), path.clone()).with_file_size(add.size as u64);
    // (page locations, for reading a few rows; not the pages' min/max values)
    let options = || ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional).with_column_index_policy(PageIndexPolicy::Skip);
    let mapped = match local {
        true => match crate::mapped::get(store.as_ref(), &path).await? {
            crate::mapped::Got::Mapped(mapped) => Some(mapped.bytes().clone()),
            crate::mapped::Got::Other(_) => None,
        },
        false => None,
    };
    let footer = match (footer, &mapped) {
        (Some(f), _) => f,
        (None, Some(bytes)) => {
            let bytes = bytes.clone();
            on_blocking_thread("silver: reading a footer", move || Ok(ArrowReaderMetadata::load(&bytes, options())?)).await?
        }
        (None, None) => ArrowReaderMetadata::load_async(&mut fetched(), options()).await?,
    };
    let total = footer.metadata().file_metadata().num_rows() as usize;
    let ranges = select(total)?;
    // (parquet's selection panics on rows past the end: a vector naming one, say)
    if ranges.iter().any(|r| r.end > total) {
        return Err(DeltaTableError::Generic(format!("{}: rows past its {total} selected", add.path)));
    }
    let wanted: usize = ranges.iter().map(|r| r.len()).sum();
    let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), total);
    let batches: Vec<RecordBatch> = match mapped {
        Some(bytes) => {
            let footer = footer.clone();
            on_blocking_thread("silver: reading rows", move || {
                let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, footer).with_row_selection(selection).build()?;
                Ok(reader.collect::<Result<Vec<RecordBatch>, _>>()?)
            })
            .await?
        }
        None => ParquetRecordBatchStreamBuilder::new_with_metadata(fetched(), footer.clone()).with_row_selection(selection).build()?.try_collect().await?,
    };
    let file_schema = builder_schema(&batches, schema);
    let read = concat_batches(&file_schema, &batches)?;
    if read.num_rows() != wanted {
        return Err(DeltaTableError::Generic(format!("{}: read {} rows of {wanted}", add.path, read.num_rows())));
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match read.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), read.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok((RecordBatch::try_new(schema.clone(), cols)?, total, footer))
}

/// Rewrite, without the rows their deletion vectors hide, the files of `table` that
/// have a vector and, given a `predicate` (SQL over the table's columns), hide a
/// row matching it. A DELETE reads through the vectors, so without this a purge or
/// a retention run would leave the superseded versions of what it deleted in files
/// that stay; compaction (`predicate` None) leaves no hidden rows. The commit
/// changes no data (`dataChange: false`: nothing in the change feed). Returns the
/// table and the number of files rewritten.
pub(crate) async fn rewrite_hidden(table: DeltaTable, predicate: Option<&str>) -> Result<(DeltaTable, usize), DeltaTableError> {
    let mut table = table;
    let mut attempt = 1;
    loop {
        match rewrite_hidden_once(&table, predicate).await {
            Ok(None) => return Ok((table, 0)),
            Ok(Some((t, n))) => return Ok((t, n)),
            // (another writer changed one of the files meanwhile: again, on its version)
            Err(e) if attempt < 5 && (matches!(e, DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_)) || e.to_string().to_lowercase().contains("conflict")) => {
                attempt += 1;
                table.update_state().await?;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn rewrite_hidden_once(table: &DeltaTable, predicate: Option<&str>) -> Result<Option<(DeltaTable, usize)>, DeltaTableError> {
    let snapshot = table.snapshot()?;
    #[allow(deprecated)]
    let with_vectors: Vec<Add> = snapshot.log_data().iter().filter(|v| v.deletion_vector_descriptor().is_some()).map(|v| v.add_action()).collect();
    if with_vectors.is_empty() {
        return Ok(None);
    }
    let store = table.object_store();
    let local = maps_files(table).await;
    let mut writer = RecordBatchWriter::for_table(table)?.with_writer_properties(crate::props::silver_dv_properties());
    let schema = writer.arrow_schema();
    let mut actions = vec![];
    let mut rewritten = 0;
    let now = chrono::Utc::now().timestamp_millis();
    for add in with_vectors {
        let deleted = crate::dv::read(store.as_ref(), add.deletion_vector.as_ref()).await?;
        if let Some(predicate) = predicate {
            let hidden = |_total: usize| Ok(deleted.iter().map(|r| r as usize..r as usize + 1).collect());
            let (rows, _, _) = read_selected(store.clone(), local, &add, None, &schema, hidden).await?;
            if !matches_any(rows, predicate).await? {
                continue;
            }
        }
        let kept = |total: usize| {
            let mut ranges = vec![];
            let mut from = 0;
            for r in deleted.iter().map(|r| r as usize).filter(|&r| r < total) {
                if r > from {
                    ranges.push(from..r);
                }
                from = r + 1;
            }
            if from < total {
                ranges.push(from..total);
            }
            Ok(ranges)
        };
        let (rows, _, _) = read_selected(store.clone(), local, &add, None, &schema, kept).await?;
        if rows.num_rows() > 0 {
            writer.write(rows).await?;
            actions.extend(writer.flush().await?.into_iter().map(|a| Action::Add(Add { data_change: false, ..a })));
        }
        actions.push(Action::Remove(removal_of(&add, false, now)));
        rewritten += 1;
    }
    if rewritten == 0 {
        return Ok(None);
    }
    let operation = DeltaOperation::Optimize { predicate: predicate.map(str::to_string), target_size: 0 };
    let done = CommitBuilder::from(CommitProperties::default().with_max_retries(0)).with_actions(actions).build(Some(snapshot), table.log_store(), operation).await?;
    let mut t = table.clone();
    t.update_incremental(Some(done.version())).await?;
    Ok(Some((t, rewritten)))
}

/// The `remove` of a live file as its `add` names it (its vector included: the
/// protocol identifies a file by path and vector).
fn removal_of(add: &Add, data_change: bool, now: i64) -> Remove {
    Remove {
        path: add.path.clone(),
        data_change,
        deletion_timestamp: Some(now),
        extended_file_metadata: Some(true),
        partition_values: Some(add.partition_values.clone()),
        size: Some(add.size),
        tags: add.tags.clone(),
        deletion_vector: add.deletion_vector.clone(),
        base_row_id: add.base_row_id,
        default_row_commit_version: add.default_row_commit_version,
    }
}

/// Whether any row of `rows` matches `predicate`.
async fn matches_any(rows: RecordBatch, predicate: &str) -> Result<bool, DeltaTableError> {
    if rows.num_rows() == 0 {
        return Ok(false);
    }
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    ctx.register_batch("hidden", rows)?;
    let found = ctx.sql(&format!("SELECT 1 FROM hidden WHERE {predicate} LIMIT 1")).await?.collect().await?;
    Ok(found.iter().any(|b| b.num_rows() > 0))
}

/// Whether `table`'s data files are to be mapped: it lies in a directory on a
/// local disk (`mapped`; asked once per upsert, not per file).
async fn maps_files(table: &DeltaTable) -> bool {
    match table.table_url().to_file_path() {
        Ok(dir) if table.table_url().scheme() == "file" => crate::mapped::on_local_disk_dir(dir).await,
        _ => false,
    }
}

fn builder_schema(batches: &[RecordBatch], fallback: &SchemaRef) -> SchemaRef {
    batches.first().map_or_else(|| fallback.clone(), |b| b.schema())
}

/// `batch` with the change feed's `_change_type` column.
fn with_change_type(batch: &RecordBatch, kind: &str) -> Result<RecordBatch, DeltaTableError> {
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("_change_type", DataType::Utf8, false));
    let mut cols = batch.columns().to_vec();
    cols.push(Arc::new(StringArray::from(vec![kind; batch.num_rows()])));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

async fn put_change_file(store: &dyn ObjectStore, changes: &RecordBatch, props: WriterProperties) -> Result<AddCDCFile, DeltaTableError> {
    let mut bytes = vec![];
    let mut w = ArrowWriter::try_new(&mut bytes, changes.schema(), Some(props))?;
    w.write(changes)?;
    w.close()?;
    let path = format!("_change_data/cdc-{}.snappy.parquet", uuid::Uuid::new_v4());
    let size = bytes.len() as i64;
    store.put(&Path::from(path.as_str()), bytes.into()).await?;
    Ok(AddCDCFile { path, size, partition_values: HashMap::new(), data_change: false, tags: None })
}

/// A file's statistics once a deletion vector hides some of its rows: its bounds
/// may be wider than its live rows' (`tightBounds: false`, as the protocol asks).
fn wide_bounds(stats: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(stats) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.insert("tightBounds".into(), serde_json::Value::Bool(false));
            serde_json::Value::Object(m).to_string()
        }
        _ => stats.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of a file read through the mapping and fetched range by range
    /// are the same, footers from either serve the other, and a column the file
    /// lacks comes back null.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_mapped_read_gives_what_a_fetched_read_gives() {
        use deltalake::arrow::array::Int64Array;
        use deltalake::logstore::object_store::local::LocalFileSystem;
        let scratch = crate::scratch::Scratch::new("read-selected");
        let dir = &scratch.0;
        let file_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false), Field::new("n", DataType::Int64, false), Field::new("text", DataType::Utf8, true)]));
        let n = 1000;
        let rows = RecordBatch::try_new(
            file_schema.clone(),
            vec![
                Arc::new(StringArray::from((0..n).map(|i| format!("id{i}")).collect::<Vec<_>>())),
                Arc::new(Int64Array::from((0..n).collect::<Vec<i64>>())),
                Arc::new(StringArray::from((0..n).map(|i| (i % 7 != 0).then(|| "x".repeat(i as usize % 300))).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let mut bytes = vec![];
        let mut w = ArrowWriter::try_new(&mut bytes, file_schema.clone(), Some(crate::props::silver_dv_properties())).unwrap();
        w.write(&rows).unwrap();
        w.close().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
        let size = bytes.len();
        store.put(&Path::from("f.parquet"), bytes.into()).await.unwrap();
        let add: Add = serde_json::from_value(serde_json::json!({"path": "f.parquet", "partitionValues": {}, "size": size, "modificationTime": 1, "dataChange": true})).unwrap();
        // (the table's schema has a column added after the file was written)
        let mut fields: Vec<Field> = file_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("added", DataType::Utf8, true));
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let wanted = [0u32, 3, 127, 128, 200, 201, 700, 999];
        let select = |total: usize| -> Result<Vec<std::ops::Range<usize>>, DeltaTableError> {
            assert_eq!(total, n as usize);
            Ok(wanted.iter().map(|&r| r as usize..r as usize + 1).collect())
        };
        let (mapped, total, footer) = read_selected(store.clone(), true, &add, None, &schema, select).await.unwrap();
        let (fetched, total2, footer2) = read_selected(store.clone(), false, &add, None, &schema, select).await.unwrap();
        assert_eq!((total, total2), (n as usize, n as usize));
        assert_eq!(mapped, fetched);
        let ids: Vec<&str> = mapped.column(0).as_string::<i32>().iter().map(|v| v.unwrap()).collect();
        assert_eq!(ids, wanted.iter().map(|r| format!("id{r}")).collect::<Vec<_>>());
        assert_eq!(mapped.column(2).as_string::<i32>().value(4), "x".repeat(200));
        assert!(mapped.column(2).is_null(0) && mapped.column(3).null_count() == wanted.len());
        // each footer serves the other path
        assert_eq!(read_selected(store.clone(), false, &add, Some(footer), &schema, select).await.unwrap().0, mapped);
        assert_eq!(read_selected(store.clone(), true, &add, Some(footer2), &schema, select).await.unwrap().0, mapped);
        // a row past the end is refused by both
        for local in [true, false] {
            let past = |_: usize| Ok(vec![999..1001]);
            assert!(read_selected(store.clone(), local, &add, None, &schema, past).await.is_err(), "local {local}");
        }
    }

    #[test]
    fn bounds_are_marked_wide() {
        let s = wide_bounds(r#"{"numRecords":3,"minValues":{"id":"a"}}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["tightBounds"], false);
        assert_eq!(v["numRecords"], 3);
    }
}
