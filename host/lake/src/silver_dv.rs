//! Silver upserts by deletion vectors (merge-on-read), for silver tables with
//! `delta.enableDeletionVectors`: a newer version of a stored id is appended with
//! the new rows, and the row it replaces is marked deleted in its file's deletion
//! vector instead of the file being rewritten. The id index (`id_index.rs`) says
//! where each id's row is, so a commit reads only the rows it replaces (their pre
//! images, for the version check and the change feed) and writes only the new rows,
//! one deletion-vector file and one change file: its cost follows the batch, not the
//! table. The rule is the MERGE's (`writer.rs`): a row replaces the stored one only
//! when it is a newer version.
//!
//! One commit holds: an `add` per new data file; per file with newly deleted rows a
//! `remove` of it with its old vector and an `add` of it with the new one; and a
//! `cdc` file with the inserts, and the pre and post images of the updates, for
//! Delta's change data feed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, new_null_array};
use deltalake::arrow::compute::{cast, concat_batches, filter_record_batch, take};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimestampMicrosecondType};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, AddCDCFile, Remove};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection};
#[allow(deprecated)]
use deltalake::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use deltalake::parquet::file::metadata::PageIndexPolicy;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, ObjectStore, Path};
use futures::{StreamExt, TryStreamExt};

use crate::dv::DvFile;
use crate::id_index::{FileEntry, IdIndex, Loc};

/// The table property that turns these upserts on (Delta's own: Databricks and
/// Spark use deletion vectors for their DELETE, UPDATE and MERGE on such a table).
pub(crate) const DELETION_VECTORS: &str = "delta.enableDeletionVectors";

/// Files whose replaced rows are read at once.
const READ_AHEAD: usize = 16;

/// What one upsert did (for the writer's debug line).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Catching the id index up (at a writer's first commit: building it).
    pub index_ms: u64,
    pub lookup_ms: u64,
    pub read_ms: u64,
    pub write_ms: u64,
    pub replaced: usize,
    pub inserted: usize,
    pub stale: usize,
    pub files_touched: usize,
}

/// Upsert `batch` (silver rows, one per id) into `table`. Fails without changing
/// the table when another writer committed since `table` was read (the caller
/// reloads and calls again).
pub(crate) async fn upsert(table: DeltaTable, batch: &RecordBatch, index: &mut IdIndex, props: WriterProperties) -> Result<(DeltaTable, Counts), DeltaTableError> {
    let mut counts = Counts::default();
    let started = std::time::Instant::now();
    index.catch_up(&table).await?;
    counts.index_ms = started.elapsed().as_millis() as u64;
    let started = std::time::Instant::now();
    let ids = string_column(batch, "id")?;
    // batch rows by the file holding their id
    let mut by_file: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
    let is_new: Vec<bool> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| match index.find(id) {
            Some(Loc { file, row }) => {
                by_file.entry(file).or_default().push((row, i));
                false
            }
            None => true,
        })
        .collect();
    // (rows to write: the new ids, and below the newer versions of stored ones)
    let mut write = is_new.clone();
    counts.lookup_ms = started.elapsed().as_millis() as u64;

    let step = std::time::Instant::now();
    let store = table.object_store();
    let schema = batch.schema();
    let olds: Vec<(u32, Vec<(u32, usize)>, RecordBatch)> = futures::stream::iter(by_file.into_iter().map(|(no, mut rows)| {
        rows.sort_unstable();
        let add = index.file(no).map(|f| f.add.clone());
        let (store, schema) = (store.clone(), schema.clone());
        async move {
            let add = add.ok_or_else(|| DeltaTableError::Generic("silver id index names a file it does not hold".into()))?;
            let old = read_rows(store, &add, &rows.iter().map(|r| r.0).collect::<Vec<_>>(), &schema).await?;
            Ok::<_, DeltaTableError>((no, rows, old))
        }
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
    for (no, rows, old) in &olds {
        let old_ids = string_column(old, "id")?;
        let mut keep = vec![];
        let mut deleted = vec![];
        for (j, &(row, i)) in rows.iter().enumerate() {
            if old_ids[j] != ids[i] {
                return Err(DeltaTableError::Generic(format!("silver id index out of step: row {row} of {} holds {:?}, not {:?}", index.file(*no).map_or("?", |f| f.add.path.as_str()), old_ids[j], ids[i])));
            }
            if newer(batch, i, old, j)? {
                keep.push(j as u32);
                deleted.push(row);
                post_rows.push(i as u32);
                write[i] = true;
            } else {
                counts.stale += 1;
            }
        }
        if !deleted.is_empty() {
            pre_images.push(take_rows(old, &keep)?);
            deletions.push((*no, deleted));
        }
    }
    let written: Vec<&str> = ids.iter().zip(&write).filter(|(_, w)| **w).map(|(id, _)| *id).collect();
    let data = filter_record_batch(batch, &BooleanArray::from(write))?;
    if data.num_rows() == 0 {
        counts.write_ms = step.elapsed().as_millis() as u64;
        return Ok((table, counts));
    }
    counts.replaced = post_rows.len();
    counts.inserted = data.num_rows() - post_rows.len();
    counts.files_touched = deletions.len();

    // the new rows
    let mut writer = RecordBatchWriter::for_table(&table)?.with_writer_properties(props.clone());
    writer.write(data).await?;
    let new_files = writer.flush().await?;
    let mut actions: Vec<Action> = new_files.iter().cloned().map(Action::Add).collect();

    // the rows they replace
    let mut vectors = DvFile::new();
    let mut touched = vec![];
    let now = chrono::Utc::now().timestamp_millis();
    for (no, rows) in deletions {
        let old = index.file(no).expect("read above");
        let mut deleted = old.deleted.clone();
        deleted.extend(rows.iter().map(|&r| r as u64));
        let descriptor = vectors.push(&deleted)?;
        actions.push(Action::Remove(Remove {
            path: old.add.path.clone(),
            data_change: true,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(old.add.partition_values.clone()),
            size: Some(old.add.size),
            tags: old.add.tags.clone(),
            deletion_vector: old.add.deletion_vector.clone(),
            base_row_id: old.add.base_row_id,
            default_row_commit_version: old.add.default_row_commit_version,
        }));
        let add = Add { deletion_vector: Some(descriptor), data_change: true, stats: old.add.stats.as_deref().map(wide_bounds), ..old.add.clone() };
        actions.push(Action::Add(add.clone()));
        touched.push((no, FileEntry { add, deleted }));
    }
    if !vectors.is_empty() {
        vectors.put(store.as_ref()).await?;
    }

    // The change feed. A commit of new ids only is a plain append: readers derive
    // its inserts from the files it adds. Otherwise the commit's change file is the
    // whole feed for its version (readers then ignore its `add`s): the inserts, and
    // the pre and post images of the updates.
    let operation = if post_rows.is_empty() {
        DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None }
    } else {
        let post = take_rows(batch, &post_rows)?;
        let inserts = filter_record_batch(batch, &BooleanArray::from(is_new))?;
        let mut parts = vec![];
        for old in &pre_images {
            parts.push(with_change_type(old, "update_preimage")?);
        }
        parts.push(with_change_type(&post, "update_postimage")?);
        parts.push(with_change_type(&inserts, "insert")?);
        let changes = concat_batches(&parts[0].schema(), &parts)?;
        actions.push(Action::Cdc(put_change_file(store.as_ref(), &changes, props).await?));
        DeltaOperation::Merge {
            predicate: None,
            merge_predicate: Some("target.id = source.id".into()),
            matched_predicates: vec![],
            not_matched_predicates: vec![],
            not_matched_by_source_predicates: vec![],
        }
    };
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
        index.add_file(file.clone(), &written);
    }
    let mut table = table;
    table.update_incremental(Some(done.version())).await?;
    counts.write_ms = step.elapsed().as_millis() as u64;
    Ok((table, counts))
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
/// added to the table after it was written, are null).
#[allow(deprecated)]
async fn read_rows(store: Arc<dyn ObjectStore>, add: &Add, rows: &[u32], schema: &SchemaRef) -> Result<RecordBatch, DeltaTableError> {
    let reader = ParquetObjectReader::new(store, Path::from(add.path.as_str())).with_file_size(add.size as u64);
    let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional)).await?;
    let total = builder.metadata().file_metadata().num_rows() as usize;
    if rows.last().is_some_and(|&r| r as usize >= total) {
        return Err(DeltaTableError::Generic(format!("silver id index out of step: {} has {total} rows", add.path)));
    }
    let ranges = rows.iter().map(|&r| r as usize..r as usize + 1);
    let batches: Vec<RecordBatch> = builder.with_row_selection(RowSelection::from_consecutive_ranges(ranges, total)).build()?.try_collect().await?;
    let file_schema = builder_schema(&batches, schema);
    let read = concat_batches(&file_schema, &batches)?;
    if read.num_rows() != rows.len() {
        return Err(DeltaTableError::Generic(format!("{}: read {} rows of {}", add.path, read.num_rows(), rows.len())));
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
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
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

    #[test]
    fn bounds_are_marked_wide() {
        let s = wide_bounds(r#"{"numRecords":3,"minValues":{"id":"a"}}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["tightBounds"], false);
        assert_eq!(v["numRecords"], 3);
    }
}
