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
/// - Wide columns, whose values are mostly all different (ids, references, lineage,
///   the `resource` JSON; and any column not named below), have pages of about
///   [`DV_WIDE_PAGE_BYTES`]: a few dozen rows for `resource` (hundreds of bytes a
///   row: a page ends at the first write batch of [`DV_BATCH_ROWS`] that takes it
///   past the limit), a few hundred for ids, not a megabyte's worth. Plain, snappy;
///   no dictionary (a reader of one row of a column chunk decodes its whole
///   dictionary page first). Ids are written uncompressed: every id index build
///   (`id_index/`) reads all of them, and snappy shortens random ids (UUIDs) by only
///   about a tenth (100,000 UUIDs: 3.57 MB against 4.00 MB).
/// - The narrow ones ([`DV_NARROW_REPEATED`], [`DV_NARROW_DISTINCT`]) have pages of
///   [`DV_NARROW_PAGE_ROWS`] rows, uncompressed: small without snappy, and reading
///   a row slices the page where it lies instead of decompressing it. Those whose
///   values repeat (one adapter, a few codes) are dictionary encoded, up to
///   [`DV_DICTIONARY_BYTES`] of dictionary (then plain); those different on every
///   row (ingest and receipt times, the receipt number) have no dictionary, which
///   would only fill up and be decoded by every reader. So the rows an upsert
///   replaces in one file share these columns' pages, and only the wide columns
///   cost a page per replaced row.
pub(crate) fn silver_dv_properties() -> WriterProperties {
    let mut b = builder()
        .set_dictionary_enabled(false)
        .set_data_page_size_limit(DV_WIDE_PAGE_BYTES)
        .set_data_page_row_count_limit(DV_NARROW_PAGE_ROWS)
        .set_write_batch_size(DV_BATCH_ROWS)
        .set_column_compression(ColumnPath::from("id"), Compression::UNCOMPRESSED);
    for c in DV_NARROW_REPEATED.iter().chain(&DV_NARROW_DISTINCT) {
        b = b
            .set_column_compression(ColumnPath::from(*c), Compression::UNCOMPRESSED)
            .set_column_data_page_size_limit(ColumnPath::from(*c), DV_NARROW_PAGE_BYTES)
            .set_column_dictionary_enabled(ColumnPath::from(*c), DV_NARROW_REPEATED.contains(c));
    }
    for c in DV_NARROW_REPEATED {
        b = b.set_column_dictionary_page_size_limit(ColumnPath::from(c), DV_DICTIONARY_BYTES);
    }
    b.build()
}

/// Narrow silver columns whose values repeat.
const DV_NARROW_REPEATED: [&str; 8] = ["resource_type", "effective_at", "code_system", "code", "status", "source_system", "adapter", "source_ts"];
/// Narrow silver columns different on (nearly) every row.
const DV_NARROW_DISTINCT: [&str; 4] = ["deleted", "ingested_at", "received_at", "receipt_seq"];
const DV_NARROW_PAGE_ROWS: usize = 4096;
/// (above what [`DV_NARROW_PAGE_ROWS`] of a narrow column take: 8 bytes a row)
const DV_NARROW_PAGE_BYTES: usize = 1024 * 1024;
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
    /// dozen to a few hundred rows, plain and snappy (ids uncompressed); the narrow
    /// ones' 4096, uncompressed, dictionary encoded where values repeat. Every
    /// narrow column named is a silver column.
    #[test]
    fn silver_by_deletion_vectors_has_small_wide_pages_and_large_narrow_ones() {
        let schema = crate::schema::silver_schema();
        for c in DV_NARROW_REPEATED.iter().chain(&DV_NARROW_DISTINCT) {
            assert!(schema.field_with_name(c).is_ok(), "{c} is not a silver column");
        }
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
                // (times: one value for the source's, one per row for ingest and receipt)
                let time = |i: usize| 1_780_000_000_000_000i64 + if f.name() == "source_ts" { 0 } else { i as i64 };
                match f.data_type() {
                    DataType::Utf8 => Arc::new(StringArray::from((0..n).map(text).collect::<Vec<_>>())),
                    DataType::Boolean => Arc::new(BooleanArray::from(vec![false; n])),
                    DataType::Int64 => Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
                    DataType::Timestamp(..) => Arc::new(TimestampMicrosecondArray::from((0..n).map(time).collect::<Vec<_>>()).with_timezone("UTC")),
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
            starts.windows(2).map(|w| w[1] - w[0]).max().unwrap() as usize
        };
        for (c, col) in group.columns().iter().enumerate() {
            let name = col.column_path().string();
            let dictionary = col.dictionary_page_offset().is_some();
            if DV_NARROW_REPEATED.contains(&name.as_str()) || DV_NARROW_DISTINCT.contains(&name.as_str()) {
                // (`effective_at` is different on every row here: its dictionary
                // fills up and falls back to plain, a page boundary of its own)
                match name.as_str() {
                    "effective_at" => assert!(rows_per_page(c) >= DV_NARROW_PAGE_ROWS, "{name}"),
                    _ => assert_eq!(rows_per_page(c), DV_NARROW_PAGE_ROWS, "{name}"),
                }
                assert_eq!(col.compression(), Compression::UNCOMPRESSED, "{name}");
                // (a boolean column has no dictionary in Parquet)
                assert_eq!(dictionary, DV_NARROW_REPEATED.contains(&name.as_str()), "{name}: dictionary");
            } else {
                // (`resource`: a page ends at the first write batch of 32 rows past
                // 8 KiB; the others, 40 to 50 bytes a row: a few hundred rows)
                let most = if name == "resource" { 64 } else { 512 };
                assert!(rows_per_page(c) <= most, "{name}: pages of {} rows", rows_per_page(c));
                let compression = if name == "id" { Compression::UNCOMPRESSED } else { Compression::SNAPPY };
                assert_eq!(col.compression(), compression, "{name}");
                assert!(!dictionary, "{name}: dictionary");
            }
            if matches!(name.as_str(), "resource_type" | "adapter" | "source_ts") {
                // (one value: the data pages are dictionary indices, under a byte a row)
                assert!(col.compressed_size() < n as i64, "{name}: {} bytes", col.compressed_size());
            }
        }
    }
}
