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

/// For silver written by deletion vectors (its upserts, and compaction's rewrites):
/// data pages of at most [`DV_PAGE_ROWS`] rows and about [`DV_PAGE_BYTES`] (the
/// byte limit, in effect, cuts the `resource` column's: JSON, hundreds of bytes a
/// row), so that reading back a row an
/// update replaces (its pre-image, through the page locations) decompresses and
/// decodes a few dozen rows per column, not a megabyte's worth. (A page ends at
/// the first write batch of [`DV_BATCH_ROWS`] that takes it past its limits.) No
/// column has a dictionary: a reader of one row of a column chunk decodes its whole
/// dictionary page first (up to a megabyte for columns of distinct values, such as
/// a Patient's `patient_ref`).
/// Their ids are written uncompressed: every id index build (`id_index/`) reads
/// all of them, and snappy shortens random ids (UUIDs) by only about a tenth
/// (100,000 UUIDs: 3.57 MB against 4.00 MB).
pub(crate) fn silver_dv_properties() -> WriterProperties {
    builder()
        .set_dictionary_enabled(false)
        .set_data_page_row_count_limit(DV_PAGE_ROWS)
        .set_data_page_size_limit(DV_PAGE_BYTES)
        .set_write_batch_size(DV_BATCH_ROWS)
        .set_column_compression(ColumnPath::from("id"), Compression::UNCOMPRESSED)
        .build()
}

const DV_PAGE_ROWS: usize = 128;
const DV_PAGE_BYTES: usize = 8 * 1024;
const DV_BATCH_ROWS: usize = 32;

fn builder() -> WriterPropertiesBuilder {
    let mut b = WriterProperties::builder().set_compression(Compression::SNAPPY);
    for c in ["record_id", "content_hash", "raw", "id", "lineage", "resource", "received_at", "ingested_at", "line"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    b
}
