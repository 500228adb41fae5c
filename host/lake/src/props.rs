//! Parquet settings for the files the lake writes.

use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use deltalake::parquet::schema::types::ColumnPath;

/// Parquet settings for our appends: snappy (deltalake's default), and no
/// dictionary for columns whose values are all different (hashes, ids, raw bytes,
/// resources): trying one first only costs time on every commit.
pub(crate) fn writer_properties() -> WriterProperties {
    builder().build()
}

/// For silver written by deletion vectors (its upserts, and compaction's rewrites),
/// laid out for reading back the rows an update replaces (their pre-images, through
/// the page locations). Such a read decodes one page per column for each row, so
/// what a page costs to reach and decode is what an update costs on a large table:
/// - The wide columns, whose values are mostly all different (the ids, references,
///   lineage, the `resource` JSON), have pages of about [`DV_WIDE_PAGE_BYTES`]:
///   a few dozen rows (for `resource`, hundreds of bytes a row: a page ends at the
///   first write batch of [`DV_BATCH_ROWS`] that takes it past the limit), not a
///   megabyte's worth. Plain, snappy; no dictionary (a reader of one row of a column
///   chunk decodes its whole dictionary page first). Ids are written uncompressed:
///   every id index build (`id_index/`) reads all of them, and snappy shortens random
///   ids (UUIDs) by only about a tenth (100,000 UUIDs: 3.57 MB against 4.00 MB).
/// - The narrow ones (resource type, codes, status, source, adapter, timestamps,
///   the deleted flag) have pages of up to [`DV_NARROW_PAGE_ROWS`] rows, dictionary
///   encoded (values repeat: one adapter, one ingest time per commit; a dictionary of
///   more than [`DV_DICTIONARY_BYTES`] falls back to plain) and uncompressed: the
///   pages are small without snappy, and reading a row slices the page where it lies
///   instead of decompressing it. So the rows an upsert replaces in one file share
///   these columns' pages, and only the wide columns cost a page per row.
pub(crate) fn silver_dv_properties() -> WriterProperties {
    let mut b = builder()
        .set_data_page_row_count_limit(DV_NARROW_PAGE_ROWS)
        .set_write_batch_size(DV_BATCH_ROWS);
    for c in ["id", "patient_ref", "encounter_ref", "lineage", "resource"] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_data_page_size_limit(ColumnPath::from(c), DV_WIDE_PAGE_BYTES);
    }
    b = b.set_column_compression(ColumnPath::from("id"), Compression::UNCOMPRESSED);
    for c in ["resource_type", "effective_at", "code_system", "code", "status", "source_system", "adapter", "source_ts", "deleted", "ingested_at", "received_at", "receipt_seq"] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), true)
            .set_column_dictionary_page_size_limit(ColumnPath::from(c), DV_DICTIONARY_BYTES)
            .set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
    }
    b.build()
}

const DV_NARROW_PAGE_ROWS: usize = 4096;
const DV_WIDE_PAGE_BYTES: usize = 8 * 1024;
const DV_BATCH_ROWS: usize = 32;
const DV_DICTIONARY_BYTES: usize = 16 * 1024;

fn builder() -> WriterPropertiesBuilder {
    let mut b = WriterProperties::builder().set_compression(Compression::SNAPPY);
    for c in ["record_id", "content_hash", "raw", "id", "lineage", "resource", "received_at", "ingested_at", "line"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use deltalake::arrow::datatypes::DataType;
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    use deltalake::parquet::file::metadata::PageIndexPolicy;
    use std::sync::Arc;

    /// Silver written by deletion vectors: the wide columns' pages hold a few
    /// dozen rows, the narrow ones' up to 4096 (dictionary encoded where values
    /// repeat, uncompressed), so that the rows an update replaces in a file share
    /// the narrow columns' pages.
    #[test]
    fn silver_by_deletion_vectors_has_small_wide_pages_and_few_narrow_ones() {
        let schema = crate::schema::silver_schema();
        let n = 10_000usize;
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                let text = |i: usize| match f.name().as_str() {
                    "resource_type" => "Patient".to_string(),
                    "adapter" => "reference@0.1.0".into(),
                    "source_system" | "status" | "code_system" | "code" => format!("{}-{}", f.name(), i % 3),
                    "resource" => format!(r#"{{"resourceType":"Patient","id":"{i:032x}","name":[{{"family":"Family{}","given":["Given{}"]}}],"address":[{{"line":["{} Main St"],"city":"Springfield"}}]}}"#, i % 997, i % 991, i * 7919 % 9999) + &"x".repeat(200),
                    _ => format!("{}/{:032x}", f.name(), i.wrapping_mul(0x9E37_79B9)),
                };
                match f.data_type() {
                    DataType::Utf8 => Arc::new(StringArray::from((0..n).map(text).collect::<Vec<_>>())),
                    DataType::Boolean => Arc::new(BooleanArray::from(vec![false; n])),
                    DataType::Int64 => Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
                    DataType::Timestamp(..) => Arc::new(TimestampMicrosecondArray::from(vec![1_780_000_000_000_000i64; n]).with_timezone("UTC")),
                    t => panic!("silver column of type {t}"),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
        let mut bytes = vec![];
        let mut w = ArrowWriter::try_new(&mut bytes, schema, Some(silver_dv_properties())).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required);
        let meta = ArrowReaderMetadata::load(&bytes::Bytes::from(bytes), options).unwrap();
        let meta = meta.metadata();
        let group = meta.row_group(0);
        let pages = &meta.offset_index().unwrap()[0];
        let rows_per_page = |c: usize| {
            let starts: Vec<i64> = pages[c].page_locations().iter().map(|p| p.first_row_index).chain([n as i64]).collect();
            starts.windows(2).map(|w| w[1] - w[0]).max().unwrap()
        };
        for (c, col) in group.columns().iter().enumerate() {
            let name = col.column_path().string();
            match name.as_str() {
                // (a page ends at the first write batch of 32 rows past 8 KiB)
                "resource" => assert!(rows_per_page(c) <= 64, "resource: pages of {} rows", rows_per_page(c)),
                // (40 to 50 bytes a row: a few hundred rows a page)
                "id" | "patient_ref" | "lineage" => assert!(rows_per_page(c) <= 512, "{name}: pages of {} rows", rows_per_page(c)),
                "encounter_ref" => {}
                _ => {
                    assert!(pages[c].page_locations().len() <= n.div_ceil(4096), "{name}: {} pages", pages[c].page_locations().len());
                    assert_eq!(col.compression(), Compression::UNCOMPRESSED, "{name}");
                    if !matches!(name.as_str(), "deleted" | "receipt_seq") {
                        assert!(col.dictionary_page_offset().is_some(), "{name}: no dictionary");
                    }
                }
            }
            if matches!(name.as_str(), "resource_type" | "adapter" | "ingested_at") {
                // (one value: the data pages are dictionary indices, under a byte a row)
                assert!(col.compressed_size() < n as i64, "{name}: {} bytes", col.compressed_size());
            }
        }
    }
}
